#!/usr/bin/env bash
# Partitions: a patient, a GP and a nurse (both with append grants to the patient's notes) and
# an organisation relay, as four real `hearth` daemons talking libp2p over TCP. Each node lives in
# its own network namespace, wired by a veth pair into a bridge in a hub namespace (10.77.0.0/24).
# Links are cut and healed; during each partition every node writes notes on its side; after
# healing we poll until the three nodes hold identical section heads (`record sections --json`,
# field `heads`), then check that every entry written by anyone is readable on every node allowed
# to read it, and that the patient's private section never left her node. Beside that, from the
# same heal, we poll the relay's catch-up: the relay cannot read the record, but its store check
# (`store check --json`, field `heads`) shows the log heads it holds; it has caught up when, for
# every (section, author) log, it holds the newest head any writer held at the heal and, for every
# log the patient's node holds when polled, the same head (seq and hash) or a later one.
#
#   bash scripts/partition.sh [ROUNDS]      # default 5 rounds; CI runs 2
#
# Prints, per heal, the time to converge and the relay's time to catch up (ms), and at the end:
# partitions run, edits during partitions, entries lost (must be 0), both times' min, median and
# max (overall and per partition), and the mode. Exits non-zero if anything is lost or leaked, if
# the nodes do not converge within $CONVERGE_TIMEOUT seconds (default 60), or if the relay does
# not catch up within $RELAY_TIMEOUT seconds of a heal (default: $CONVERGE_TIMEOUT; a relay that
# does not is reported at once, the run goes on, and it fails at the end), or if fewer partitions
# ran than ROUNDS asked for. Timings are printed, never asserted.
#
# Mode `netns` needs root and `ip netns`; where `ip netns add` fails the script falls back to
# `process-stop`: nodes on loopback, a partition made by stopping the cut-off nodes' daemons (they
# keep writing to their stores offline) and healed by restarting them on the same addresses.
# Everything it creates (namespaces, processes, the temporary folder) is removed on exit, even on
# failure. Logs name nodes, sections, counts and times; never entry text, keys or tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

ROUNDS=${1:-5}
EDITS=${EDITS:-3}                          # `record add` per node per partition
HOLD=${HOLD:-2}                            # seconds each partition lasts after its edits
CONVERGE_TIMEOUT=${CONVERGE_TIMEOUT:-60}   # seconds; generous, only to fail a hang
RELAY_TIMEOUT=${RELAY_TIMEOUT:-$CONVERGE_TIMEOUT}  # seconds from a heal for the relay to catch up
# PARTITION_MODE=process-stop forces the fallback (to test it where namespaces work).
case $ROUNDS in '' | *[!0-9]* | 0) echo "usage: $0 [ROUNDS>0]" >&2; exit 2 ;; esac

if [ -z "${HEARTH_BIN:-}" ]; then
  cargo build --release --locked -q -p hearth-node
  BIN=$REPO/target/release/hearth
else
  BIN=$HEARTH_BIN
fi
[ -x "$BIN" ] || { echo "no hearth binary at $BIN" >&2; exit 1; }
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }

export HEARTH_PASSPHRASE=${HEARTH_PASSPHRASE:-partition-passphrase-0}
ROOT=$(mktemp -d /tmp/hearth-partition.XXXXXX)
TAG=hp$$-$RANDOM                            # unique per run: namespace names
NODES=(patient gp nurse relay)
declare -A NS ADDR PID HOSTIP
for i in "${!NODES[@]}"; do HOSTIP[${NODES[$i]}]=10.77.0.$((i + 2)); done
HUB=$TAG-hub
MODE=process-stop
CREATED_NS=()

log() { printf '%s\n' "$*"; }
now_ms() { date +%s%3N; }

cleanup() {
  local rc=$?
  set +e
  for n in "${NODES[@]}"; do
    local p=${PID[$n]:-}
    [ -n "$p" ] && kill -CONT "$p" 2>/dev/null && kill "$p" 2>/dev/null
  done
  for n in "${NODES[@]}"; do
    local p=${PID[$n]:-}
    [ -n "$p" ] || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  # Any other child still running (an edit cut short by the failure) goes too.
  for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ns in "${CREATED_NS[@]:-}"; do
    [ -n "$ns" ] || continue
    # Anything still inside (there should be nothing) goes with it.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ "$rc" -ne 0 ]; then
    for n in "${NODES[@]}"; do
      [ -f "$ROOT/$n.log" ] && { echo "--- last lines of the $n daemon's log:"; tail -n 15 "$ROOT/$n.log"; }
    done >&2
  fi
  rm -rf "$ROOT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the network -----------------------------------------------------------------------------

setup_netns() {
  if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null || true
  fi
  command -v ip >/dev/null 2>&1 || return 1
  ip netns add "$HUB" 2>/dev/null || return 1
  CREATED_NS+=("$HUB")
  ip -n "$HUB" link set lo up || return 1
  ip -n "$HUB" link add br0 type bridge || return 1
  ip -n "$HUB" link set br0 up || return 1
  for n in "${NODES[@]}"; do
    NS[$n]=$TAG-$n
    ip netns add "${NS[$n]}" || return 1
    CREATED_NS+=("${NS[$n]}")
    ip -n "${NS[$n]}" link set lo up || return 1
    ip -n "$HUB" link add "h-$n" type veth peer name eth0 netns "${NS[$n]}" || return 1
    ip -n "$HUB" link set "h-$n" master br0 || return 1
    ip -n "$HUB" link set "h-$n" up || return 1
    ip -n "${NS[$n]}" addr add "${HOSTIP[$n]}/24" dev eth0 || return 1
    ip -n "${NS[$n]}" link set eth0 up || return 1
  done
}

# Runs a command on node $1's network (its namespace in netns mode).
on() {
  local n=$1; shift
  if [ "$MODE" = netns ]; then ip netns exec "${NS[$n]}" "$@"; else "$@"; fi
}
h() { local n=$1; shift; on "$n" "$BIN" --home "$ROOT/$n" "$@"; }
field() { python3 -c "import sys,json; d=json.load(sys.stdin); print($1)"; }

start() {
  local n=$1 listen=$2
  if [ "$MODE" = netns ]; then
    ip netns exec "${NS[$n]}" "$BIN" --home "$ROOT/$n" run --listen "$listen" >>"$ROOT/$n.log" 2>&1 &
  else
    "$BIN" --home "$ROOT/$n" run --listen "$listen" >>"$ROOT/$n.log" 2>&1 &
  fi
  PID[$n]=$!
  for _ in $(seq 1 150); do
    local a
    a=$(h "$n" status --json 2>/dev/null | field 'd["listen_addrs"][0] if d["running"] else ""' 2>/dev/null || true)
    if [ -n "$a" ]; then ADDR[$n]=$a; return 0; fi
    kill -0 "${PID[$n]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "the $n node did not start" >&2
  return 1
}

stop() {
  local n=$1
  local p=${PID[$n]}
  kill "$p"
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  PID[$n]=
}

# cut SIDE... : each argument is one side, nodes joined by commas ("patient" "gp,nurse,relay").
# A side of one node loses its link (the veth into the bridge goes down at the hub: a cable
# pulled); between sides of several nodes every cross pair gets a blackhole route both ways.
# In process-stop mode the daemons of every side but the largest stop.
CUT_LINKS=()
CUT_ROUTES=()
STOPPED=()
cut() {
  local sides=("$@")
  if [ "$MODE" = netns ]; then
    local multi=()
    for s in "${sides[@]}"; do
      if [[ $s != *,* ]]; then
        ip -n "$HUB" link set "h-$s" down
        CUT_LINKS+=("$s")
      else
        multi+=("$s")
      fi
    done
    if [ "${#multi[@]}" -gt 1 ]; then
      local i j a b
      for ((i = 0; i < ${#multi[@]}; i++)); do
        for ((j = 0; j < ${#multi[@]}; j++)); do
          [ "$i" = "$j" ] && continue
          for a in ${multi[$i]//,/ }; do
            for b in ${multi[$j]//,/ }; do
              ip -n "${NS[$a]}" route add blackhole "${HOSTIP[$b]}/32"
              CUT_ROUTES+=("$a:$b")
            done
          done
        done
      done
    fi
  else
    local largest="" s
    for s in "${sides[@]}"; do
      [ "${#s}" -gt "${#largest}" ] && largest=$s
    done
    for s in "${sides[@]}"; do
      [ "$s" = "$largest" ] && continue
      for a in ${s//,/ }; do stop "$a"; STOPPED+=("$a"); done
    done
  fi
}

heal() {
  local n r
  if [ "$MODE" = netns ]; then
    for n in "${CUT_LINKS[@]:-}"; do [ -n "$n" ] && ip -n "$HUB" link set "h-$n" up; done
    for r in "${CUT_ROUTES[@]:-}"; do
      [ -n "$r" ] && ip -n "${NS[${r%%:*}]}" route del blackhole "${HOSTIP[${r#*:}]}/32"
    done
  else
    for n in "${STOPPED[@]:-}"; do [ -n "$n" ] && start "$n" "${ADDR[$n]%/p2p/*}"; done
  fi
  CUT_LINKS=(); CUT_ROUTES=(); STOPPED=()
}

# ---- what the nodes hold ---------------------------------------------------------------------

# Section heads of notes on node $1, as one canonical line (empty if it holds none yet).
heads() {
  h "$1" record sections --record "$RID" --json 2>/dev/null | python3 -c '
import sys, json
d = json.load(sys.stdin)
print(json.dumps([s["heads"] for s in d["sections"] if s["section"] == "notes"], sort_keys=True))
' 2>/dev/null || true
}

# The markers of the notes entries node $1 can read, one per line.
markers() {
  h "$1" record show notes --record "$RID" --json 2>/dev/null | python3 -c '
import sys, json
d = json.load(sys.stdin)
for s in d["sections"]:
    for e in s["entries"]:
        t = json.dumps(e)
        i = t.find("pmark-")
        if i >= 0:
            print(t[i:].split("\"")[0].split(" ")[0])
' 2>/dev/null || true
}

# Waits until the three nodes show identical, non-empty notes heads holding every marker written
# so far; prints the milliseconds it took (since $1, a time in ms, when given: the heal). Fails
# after CONVERGE_TIMEOUT.
converge() {
  local t0 deadline hp hg hn
  t0=${1:-$(now_ms)}
  deadline=$((t0 + CONVERGE_TIMEOUT * 1000))
  while :; do
    hp=$(heads patient); hg=$(heads gp); hn=$(heads nurse)
    if [ -n "$hp" ] && [ "$hp" != "[]" ] && [ "$hp" = "$hg" ] && [ "$hp" = "$hn" ]; then
      if [ "$(count_missing patient)" = 0 ]; then
        echo $(($(now_ms) - t0))
        return 0
      fi
    fi
    if [ "$(now_ms)" -gt "$deadline" ]; then
      echo "no convergence within ${CONVERGE_TIMEOUT}s" >&2
      for n in patient gp nurse; do
        echo "  $n: $(count_missing "$n") of $(wc -l <"$ROOT/expected") entries missing" >&2
      done
      return 1
    fi
    sleep 0.1
  done
}

# ---- what the relay holds --------------------------------------------------------------------

# Node $1's store check (`store check --json`: through its daemon, or on its store when none
# runs), written to file $2. Its `heads` are (record, section, author, seq, hash) of every log
# whose chain verifies: ids, counts and hashes only. Fails if the check does (damage, no store).
store_heads() { h "$1" store check --json >"$2" 2>"$2.err"; }

# The relay's target at a heal: for every (section, author) log of the record, the newest head
# that any of the three writers holds (each holds its own log's newest bundle, so this is
# everything written so far), in target.json.
relay_target() {
  local n
  for n in patient gp nurse; do
    store_heads "$n" "$ROOT/check.$n" || {
      echo "store check on the $n node failed: $(head -c 300 "$ROOT/check.$n.err")" >&2
      return 1
    }
  done
  python3 - "$RID" "$ROOT/check.patient" "$ROOT/check.gp" "$ROOT/check.nurse" >"$ROOT/target.json" <<'EOF'
import json, sys
rid, best = sys.argv[1], {}
for f in sys.argv[2:]:
    for x in json.load(open(f))["heads"]:
        if x["record"] != rid:
            continue
        k = (x["section"], x["author"])
        b = best.get(k)
        if b and b["seq"] == x["seq"] and b["hash"] != x["hash"]:
            print(f"  two heads at seq {x['seq']} of one log (section {k[0][:12]}, author {k[1][:16]})", file=sys.stderr)
        if not b or x["seq"] > b["seq"]:
            best[k] = x
print(json.dumps({"heads": list(best.values())}))
EOF
}

# How many logs the relay's check (file $2) lacks: logs in the files $3... (store checks or
# target.json) whose head the relay does not hold, neither that bundle nor a later one. With
# $1 = v, each lagging log is also described on stderr (section name where the patient's node
# names it, author as a node's name).
relay_lacks() {
  local verbose=$1 relay=$2; shift 2
  python3 - "$RID" "$verbose" "$ROOT/names.json" "$relay" "$@" <<'EOF'
import json, sys
rid, verbose, names, relay, wanted = sys.argv[1], sys.argv[2] == "v", sys.argv[3], sys.argv[4], sys.argv[5:]
def heads(path):
    return {(x["section"], x["author"]): (x["seq"], x["hash"])
            for x in json.load(open(path))["heads"] if x["record"] == rid}
hr = heads(relay)
miss = {}
for f in wanted:
    for k, (seq, h) in heads(f).items():
        r = hr.get(k)
        if not (r and (r[0] > seq or r == (seq, h))):
            miss[k] = (seq, h)
if verbose:
    try:
        nm = json.load(open(names))
    except Exception:
        nm = {"sections": {}, "authors": {}}
    for (s, a), (seq, h) in sorted(miss.items()):
        r = hr.get((s, a))
        held = f"seq {r[0]}" + (" (another bundle)" if r[0] == seq else "") if r else "nothing"
        print(f"  section {nm['sections'].get(s, s[:12])} by {nm['authors'].get(a, a[:16])}: "
              f"wanted seq {seq}, the relay holds {held}", file=sys.stderr)
print(len(miss))
EOF
}

# Section names and the writers' names for the relay's reports (ids only otherwise).
relay_names() {
  h patient record sections --record "$RID" --json 2>/dev/null | python3 -c '
import sys, json
d = json.load(sys.stdin)
secs = {i: s["section"] for s in d["sections"] for i in s.get("ids", [])}
secs.update({"00" * 16: "(auth document)", "ff" * 16: "(ledger)", "fe" * 16: "(audit log)"})
authors = dict(zip(sys.argv[1::2], sys.argv[2::2]))
print(json.dumps({"sections": secs, "authors": authors}))
' patient "${PEER[patient]}" gp "${PEER[gp]}" nurse "${PEER[nurse]}" >"$ROOT/names.tmp" 2>/dev/null || true
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
d["authors"] = {v: k for k, v in d["authors"].items()}
print(json.dumps(d))
' "$ROOT/names.tmp" >"$ROOT/names.json" 2>/dev/null || echo '{"sections": {}, "authors": {}}' >"$ROOT/names.json"
}

# Polls from $1 (a time in ms: the heal) until the relay has caught up: it holds every log of
# target.json at that head or a later one, and for every log the patient's node holds when
# polled, the same head or a later one. Writes "ok MS" to relay.result, or, after RELAY_TIMEOUT
# seconds, "timeout" and what the relay lacks (relay.lacks). Run in the background beside
# `converge`.
relay_catchup() {
  local t0=$1 deadline m failed=0 wanted pfail
  deadline=$((t0 + RELAY_TIMEOUT * 1000))
  rm -f "$ROOT/relay.result" "$ROOT/relay.lacks"
  while :; do
    wanted=()
    pfail=0
    if store_heads relay "$ROOT/rc.relay"; then
      wanted=("$ROOT/target.json")
      m=$(relay_lacks q "$ROOT/rc.relay" "$ROOT/target.json") || m=unknown
      if [ "$m" = 0 ]; then
        if store_heads patient "$ROOT/rc.patient"; then
          wanted+=("$ROOT/rc.patient")
          m=$(relay_lacks q "$ROOT/rc.relay" "$ROOT/rc.patient") || m=unknown
          if [ "$m" = 0 ]; then
            echo "ok $(($(now_ms) - t0)) $failed" >"$ROOT/relay.result"
            return 0
          fi
        else
          pfail=1
        fi
      fi
    else
      failed=$((failed + 1))
    fi
    if [ "$(now_ms)" -gt "$deadline" ]; then
      # What the last poll found.
      {
        if [ "${#wanted[@]}" = 0 ]; then
          echo "  its store check fails: $(head -c 300 "$ROOT/rc.relay.err")"
        else
          if [ "$pfail" = 1 ]; then
            echo "  (the patient's store check fails: $(head -c 300 "$ROOT/rc.patient.err"))"
          fi
          m=$(relay_lacks v "$ROOT/rc.relay" "${wanted[@]}" 2>"$ROOT/relay.why") || m=unknown
          if [ "${#wanted[@]}" = 1 ]; then
            echo "  at the last poll it lacked $m logs at their heads at the heal:"
          else
            echo "  at the last poll it lacked $m logs as the patient's node held them:"
          fi
          cat "$ROOT/relay.why"
        fi
        if [ "$failed" -gt 0 ]; then echo "  ($failed of its store checks failed while polling)"; fi
      } >"$ROOT/relay.lacks" 2>&1 || true
      echo timeout >"$ROOT/relay.result"
      return 1
    fi
    sleep 0.1
  done
}

# How many of the expected markers node $1 cannot read.
count_missing() {
  markers "$1" | sort -u >"$ROOT/have.$1"
  sort -u "$ROOT/expected" | comm -23 - "$ROOT/have.$1" | wc -l
}

# Waits for the relay's poller (pid $1) and sets RT to its time in ms; when the relay did not
# catch up, RT is empty and what it lacks is reported on stderr ($2 names the heal).
RELAY_FAILED=0
RELAY_CHECK_FAILS=0
relay_wait() {
  local res ms nfail
  RT=
  wait "$1" || true
  res=$(cat "$ROOT/relay.result" 2>/dev/null || echo none)
  case $res in
    ok\ *)
      # (`cut` here is the partition's: read the fields instead.)
      read -r _ ms nfail <<<"$res"
      RT=$ms
      RELAY_CHECK_FAILS=$((RELAY_CHECK_FAILS + nfail))
      ;;
    timeout)
      echo "$2: the relay did not catch up within ${RELAY_TIMEOUT}s of the heal" >&2
      cat "$ROOT/relay.lacks" >&2 2>/dev/null || true
      RELAY_FAILED=$((RELAY_FAILED + 1))
      ;;
    *)
      echo "$2: the relay's poller stopped without an answer" >&2
      RELAY_FAILED=$((RELAY_FAILED + 1))
      ;;
  esac
}
# "relay caught up in N ms", or that it did not, for the line of a heal.
relay_words() {
  if [ -n "$RT" ]; then echo "relay caught up in ${RT} ms"; else echo "relay NOT caught up within ${RELAY_TIMEOUT}s"; fi
}

# Node $1 adds EDITS notes, each with a unique marker (recorded as expected once acknowledged).
edits() {
  local n=$1 label=$2 k rec=()
  [ "$n" != patient ] && rec=(--record "$RID")
  for k in $(seq 1 "$EDITS"); do
    local m=pmark-$label-$n-$k
    h "$n" record add notes "${rec[@]}" --entry "{\"text\": \"$m during a partition\"}" --json >/dev/null
    echo "$m" >>"$ROOT/expected.$n"
  done
}

# ---- set up ----------------------------------------------------------------------------------

if [ "${PARTITION_MODE:-}" != process-stop ] && setup_netns; then MODE=netns; else
  for ns in "${CREATED_NS[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
  CREATED_NS=()
fi
log "== partitions: mode $MODE, $ROUNDS rounds, $EDITS edits per node per partition"
listen_of() { if [ "$MODE" = netns ]; then echo "/ip4/${HOSTIP[$1]}/tcp/0"; else echo /ip4/127.0.0.1/tcp/0; fi; }

h patient init --role patient --name "Partition Patient" --json >/dev/null
h gp init --role professional --name "Partition GP" --json >/dev/null
h nurse init --role professional --name "Partition Nurse" --json >/dev/null
h relay init --role relay --name "Partition relay" --json >/dev/null
RID=$(h patient id --json | field 'd["record_id"]')
: >"$ROOT/expected"
h patient record add notes --entry '{"text": "pmark-setup-patient-1 before any partition"}' --json >/dev/null
echo pmark-setup-patient-1 >>"$ROOT/expected"
# A section only the patient may read: it must never reach anyone else.
h patient record add notes --label mental-health --entry '{"text": "pprivate-canary"}' --json >/dev/null

for n in "${NODES[@]}"; do start "$n" "$(listen_of "$n")"; done
peer_of() { h "$1" id --json | field 'd["peer_id"]'; }
declare -A PEER
for n in "${NODES[@]}"; do PEER[$n]=$(peer_of "$n"); done
for n in gp nurse; do
  card=$(h "$n" id --card --json | field 'd["card"]')
  token=$(h patient grant --to "$card" --sections notes --ability append --purpose direct-care --expires 30d --json | field 'd["token"]')
  h "$n" accept "$token" >/dev/null
done
# The GP and the nurse know each other's nodes too (a care team), and the relay keeps the record.
h gp peers add "${PEER[nurse]}" "${ADDR[nurse]}" >/dev/null
h nurse peers add "${PEER[gp]}" "${ADDR[gp]}" >/dev/null
h patient relay use "${ADDR[relay]}/p2p/${PEER[relay]}" >/dev/null
h gp record add notes --record "$RID" --entry '{"text": "pmark-setup-gp-1 before any partition"}' --json >/dev/null
h nurse record add notes --record "$RID" --entry '{"text": "pmark-setup-nurse-1 before any partition"}' --json >/dev/null
printf '%s\n' pmark-setup-gp-1 pmark-setup-nurse-1 >>"$ROOT/expected"
relay_names
relay_target || exit 1
t0=$(now_ms)
relay_catchup "$t0" &
rpid=$!
t=$(converge "$t0") || exit 1
log "initial sync: all three hold identical notes heads after ${t} ms"
relay_wait "$rpid" "initial sync"
if [ -n "$RT" ]; then
  log "initial sync: the relay holds every log head the patient's node holds after ${RT} ms"
fi

# ---- rounds ----------------------------------------------------------------------------------

# Each partition: a name and its sides. In process-stop mode only partitions that stopping
# daemons can make run (the largest side keeps running).
PARTS=(
  "patient-alone|patient gp,nurse,relay"
  "patient+gp/nurse+relay|patient,gp nurse,relay"
  "nurse-alone|patient,gp,relay nurse"
  "relay-cut-off|patient,gp,nurse relay"
  "all-apart|patient gp nurse,relay"
)
[ "$MODE" = process-stop ] && PARTS=(
  "patient-alone|patient gp,nurse,relay"
  "nurse-alone|patient,gp,relay nurse"
  "relay-cut-off|patient,gp,nurse relay"
  "patient+nurse-stopped|patient nurse gp,relay"
)

PARTITIONS=0
EDITS_DURING=0
TIMES=()
RTIMES=()
: >"$ROOT/rtimes"
: >"$ROOT/rfailed"
for r in $(seq 1 "$ROUNDS"); do
  for p in "${PARTS[@]}"; do
    name=${p%%|*}
    read -r -a sides <<<"${p#*|}"
    label=r$r-${name//[^a-z0-9]/-}
    cut "${sides[@]}"
    # Concurrent edits: every node writes on its own side at the same time.
    rm -f "$ROOT"/expected.*
    ok=1
    epids=()
    for n in patient gp nurse; do edits "$n" "$label" & epids+=($!); done
    for e in "${epids[@]}"; do wait "$e" || ok=0; done
    [ "$ok" = 1 ] || { echo "an edit failed during $name" >&2; exit 1; }
    cat "$ROOT"/expected.* >>"$ROOT/expected"
    EDITS_DURING=$((EDITS_DURING + 3 * EDITS))
    sleep "$HOLD"
    # The partition was real: no node reads an entry written on another side during it.
    for s in "${sides[@]}"; do
      for a in ${s//,/ }; do
        [ "$a" = relay ] && continue
        for b in patient gp nurse; do
          [[ ",$s," == *",$b,"* ]] && continue
          if markers "$a" | grep -- "^pmark-$label-$b-" >/dev/null; then
            echo "partition $name did not hold: $a reads an entry $b wrote on the other side" >&2
            exit 1
          fi
        done
      done
    done
    # What the relay must come to hold: the newest head of every log as the heal begins.
    relay_target || { echo "round $r, partition $name: the writers' store checks failed" >&2; exit 1; }
    heal
    t0=$(now_ms)
    relay_catchup "$t0" &
    rpid=$!
    PARTITIONS=$((PARTITIONS + 1))
    t=$(converge "$t0") || { echo "round $r, partition $name: no convergence" >&2; exit 1; }
    TIMES+=("$t")
    echo "$name $t" >>"$ROOT/times"
    relay_wait "$rpid" "round $r, partition $name"
    if [ -n "$RT" ]; then RTIMES+=("$RT"); echo "$name $RT" >>"$ROOT/rtimes"; else echo "$name" >>"$ROOT/rfailed"; fi
    log "round $r  $(printf '%-24s' "$name") healed: converged in ${t} ms; $(relay_words)"
  done
done

# ---- nothing lost, nothing leaked ------------------------------------------------------------

LOST=0
for n in patient gp nurse; do
  m=$(count_missing "$n")
  [ "$m" -gt 0 ] && echo "$n cannot read $m acknowledged entries" >&2
  LOST=$((LOST + m))
done
for n in gp nurse relay; do
  if grep -rqaF pprivate-canary "$ROOT/$n"; then echo "the private section's text is on the $n node" >&2; exit 1; fi
  if [ "$n" != relay ] && h "$n" record sections --record "$RID" --json | grep mental-health >/dev/null; then
    echo "the $n node holds the private section" >&2; exit 1
  fi
done
total=$(sort -u "$ROOT/expected" | wc -l)
sorted=$(printf '%s\n' "${TIMES[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(echo "$sorted" | tail -n 1)
min=$(echo "$sorted" | head -n 1)
log "== partitions: mode $MODE"
log "partitions run:            $PARTITIONS ($ROUNDS rounds of ${#PARTS[@]})"
log "edits during partitions:   $EDITS_DURING (entries written in all: $total)"
log "entries lost:              $LOST"
log "time to converge (ms):     min $min, median $median, max $max"
# min, median and max of the numbers on stdin, "min A, median B, max C" (or "none").
stats() { sort -n | awk '{v[NR] = $1} END {if (NR) printf "min %d, median %d, max %d", v[1], v[int((NR + 1) / 2)], v[NR]; else printf "none"}'; }
rfail=$(wc -l <"$ROOT/rfailed")
rwords="$(printf '%s\n' "${RTIMES[@]:-}" | grep . | stats || true)"
if [ "$rfail" -gt 0 ]; then rwords="$rwords; NOT caught up within ${RELAY_TIMEOUT}s after $rfail of $PARTITIONS heals"; fi
log "relay caught up (ms):      $rwords"
for p in "${PARTS[@]}"; do
  name=${p%%|*}
  line=$(awk -v n="$name" '$1 == n {print $2}' "$ROOT/times" | sort -n | awk -v n="$name" '
    {v[NR] = $1} END {printf "  %-24s min %d, median %d, max %d (ms, %d heals)", n, v[1], v[int((NR + 1) / 2)], v[NR], NR}')
  rw=$(awk -v n="$name" '$1 == n {print $2}' "$ROOT/rtimes" | stats || true)
  nf=$(grep -cx -- "$name" "$ROOT/rfailed" || true)
  if [ "$nf" -gt 0 ]; then rw="$rw; $nf not caught up"; fi
  log "$line; relay $rw"
done
if [ "$RELAY_CHECK_FAILS" -gt 0 ]; then
  log "note: $RELAY_CHECK_FAILS of the relay's store checks failed while polling (retried; the heals counted caught up passed later checks)"
fi
[ "$LOST" -eq 0 ] || exit 1
# Every partition ran (an error that cuts the loop short must not pass as a shorter run).
if [ "$PARTITIONS" -ne $((ROUNDS * ${#PARTS[@]})) ]; then
  echo "only $PARTITIONS of $((ROUNDS * ${#PARTS[@]})) partitions ran" >&2
  exit 1
fi
if [ "$RELAY_FAILED" -gt 0 ]; then
  echo "the relay did not catch up within ${RELAY_TIMEOUT}s after $RELAY_FAILED heal(s) (see above)" >&2
  exit 1
fi
