#!/usr/bin/env bash
# Crash soak: real release `hearth` processes on sled stores on disk, killed with SIGKILL at
# random moments while they add entries, import FHIR bundles, sync, rotate keys (a grant
# issued and revoked moves the section to a new key) and upload the record to an
# organisation's relay. Every write and upload a command acknowledged (exit 0) is recorded;
# after every kill the stores must open (the patient's, a professional's and the relay's),
# `hearth store check` must find no damage, every acknowledged write must be there, the relay
# must hold the log heads the patient's node held when the last acknowledged upload began,
# and at intervals the two nodes must converge (the same log heads in every section both
# hold) and a second professional, who reaches the record only through the relay, must
# collect from it every note acknowledged before the last acknowledged upload.
#
#   bash scripts/crash-soak.sh [CYCLES]     (default 1000; SOAK_SEED=N repeats a run's choices)
#
# Prints the figures at the end; exits non-zero on the first lost write or upload or damaged
# store, keeping the nodes' folders for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES=${1:-1000}
SEED=${SOAK_SEED:-$$}
RANDOM=$SEED
if [ -n "${HEARTH_BIN:-}" ]; then
  BIN=$HEARTH_BIN # a binary built elsewhere (e.g. to try the script with a debug build)
else
  cargo build --release --locked -q -p hearth-node
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/hearth
fi
FIXTURES=${HEARTH_FHIR_FIXTURES:-../shared/fixtures/fhir}
mapfile -t BUNDLES < <(ls "$FIXTURES"/*.json 2>/dev/null)
[ ${#BUNDLES[@]} -gt 0 ] || { echo "no FHIR fixtures in $FIXTURES"; exit 1; }
ROOT=$(mktemp -d /tmp/hearth-soak.XXXXXX)
export HEARTH_PASSPHRASE=soak-passphrase-0 HEARTH_LOG=warn
DAEMON="" RDAEMON=""
KEEP=0
cleanup() {
  [ -n "$DAEMON" ] && kill -9 "$DAEMON" 2>/dev/null || true
  [ -n "$RDAEMON" ] && kill -9 "$RDAEMON" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then echo "kept for inspection: $ROOT"; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT
h() { local who=$1; shift; "$BIN" --home "$ROOT/$who" "$@"; }
field() { python3 -c "import sys,json; d=json.load(sys.stdin); print($1)"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
fail() { echo "SOAK FAILURE (cycle $cycle, seed $SEED): $*"; KEEP=1; exit 1; }

# Counters.
kills_daemon=0 kills_cli=0 acked=0 lost=0 checks=0
reopen_total=0 reopen_n=0 reopen_max=0
conv_total=0 conv_n=0 conv_max=0
IMPORTS_SEEN=0
ACKED_NOTES=$ROOT/acked-notes ACKED_IMPORTS=$ROOT/acked-imports ACKED_REVOKES=$ROOT/acked-revokes
: >"$ACKED_NOTES"; : >"$ACKED_IMPORTS"; : >"$ACKED_REVOKES"
# The relay: kills of its daemon and its restarts; acknowledged uploads, one line each:
# "CYCLE NOTES" (NOTES: how many lines of acked-notes were acknowledged when it began; the
# patient's log heads then are in upload-CYCLE.heads); the checks that they are at the relay.
kills_relay=0 rreopen_total=0 rreopen_n=0 rreopen_max=0 relay_moved=0
collections=0 uploads_verified=0 heads_checks=0 heads_after_kill=0
ACKED_UPLOADS=$ROOT/acked-uploads
: >"$ACKED_UPLOADS"

start_daemon() {
  local t0; t0=$(now_ms)
  "$BIN" --home "$ROOT/p" run --sync-interval 2 "$@" >>"$ROOT/p.log" 2>&1 &
  DAEMON=$!
  for _ in $(seq 1 300); do
    if h p status --json 2>/dev/null | field 'len(d["listen_addrs"])' 2>/dev/null | grep -qv '^0$'; then
      local dt=$(( $(now_ms) - t0 ))
      reopen_total=$((reopen_total + dt)); reopen_n=$((reopen_n + 1))
      if [ $dt -gt $reopen_max ]; then reopen_max=$dt; fi
      return 0
    fi
    kill -0 "$DAEMON" 2>/dev/null || break
    sleep 0.05
  done
  tail -20 "$ROOT/p.log"; fail "the daemon did not start again"
}

# The relay's daemon (it listens again where it last listened), timed like the patient's.
start_relay() {
  local t0; t0=$(now_ms)
  "$BIN" --home "$ROOT/r" run "$@" >>"$ROOT/r.log" 2>&1 &
  RDAEMON=$!
  for _ in $(seq 1 300); do
    if h r status --json 2>/dev/null | field 'len(d["listen_addrs"])' 2>/dev/null | grep -qv '^0$'; then
      local dt=$(( $(now_ms) - t0 ))
      rreopen_total=$((rreopen_total + dt)); rreopen_n=$((rreopen_n + 1))
      if [ $dt -gt $rreopen_max ]; then rreopen_max=$dt; fi
      [ -n "${RADDR:-}" ] || return 0
      # Another process may have taken its port while it was down: then it listens on a new
      # one, which the patient's node and the professional behind the relay are told (a peer
      # address, not the patient's: not a failure of the relay, but said in the log).
      local now; now=$(h r status --json | field 'd["listen_addrs"][0]')/p2p/$RP
      if [ "$now" != "$RADDR" ]; then
        echo "  note (cycle $cycle): the relay came back on $now, not $RADDR (its port was taken)"
        relay_moved=$((relay_moved + 1)); RADDR=$now
        h p peers add "$RP" "${now%/p2p/*}" >/dev/null && h v peers add "$RP" "${now%/p2p/*}" >/dev/null \
          || fail "could not tell the nodes the relay's new address"
      fi
      return 0
    fi
    kill -0 "$RDAEMON" 2>/dev/null || break
    sleep 0.05
  done
  tail -20 "$ROOT/r.log"; fail "the relay's daemon did not start again"
}

# A store check that must find the store intact (exit 0). Runs in the daemon when it is up.
# With a file: `--json`, the report (with the log heads) kept in it.
check_store() {
  local who=$1 keep=${2:-} out
  checks=$((checks + 1))
  if [ -n "$keep" ]; then
    if ! h "$who" store check --json >"$keep" 2>"$keep.err"; then
      cat "$keep" "$keep.err"; fail "store check on $who found damage or could not open the store"
    fi
  elif ! out=$(h "$who" store check 2>&1); then
    echo "$out"; fail "store check on $who found damage or could not open the store"
  fi
}

# The relay holds what the last acknowledged upload sent: for every log the patient's node
# held when that upload began (section and author), the relay's head (in r.check, from the
# relay's store check) is the same bundle or a later one. `after-kill`: checked on the
# relay's store while its daemon is down, before the patient's node can supply it again.
relay_holds_upload() {
  [ -s "$ACKED_UPLOADS" ] || return 0
  local last missing
  last=$(tail -n 1 "$ACKED_UPLOADS" | cut -d' ' -f1)
  heads_checks=$((heads_checks + 1))
  if [ "${1:-}" = after-kill ]; then heads_after_kill=$((heads_after_kill + 1)); fi
  missing=$(python3 - "$ROOT/upload-$last.heads" "$ROOT/r.check" "$RID" <<'EOF'
import json, sys
p, r, rid = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
def heads(d):
    return {(x["section"], x["author"]): (x["seq"], x["hash"]) for x in d["heads"] if x["record"] == rid}
hp, hr = heads(p), heads(r)
miss = [k for k, (seq, h) in hp.items() if not (k in hr and (hr[k][0] > seq or hr[k] == (seq, h)))]
for k in miss:
    print(f"  section {k[0]} by {k[1]}: patient {hp[k]} when the upload began, relay {hr.get(k)}", file=sys.stderr)
print(len(miss))
EOF
)
  [ "$missing" = 0 ] || { lost=$((lost + missing)); fail "the relay lacks $missing logs' bundles that the acknowledged upload of cycle $last sent${1:+ ($1)}"; }
}

# A professional granted notes, who has never been told where the patient's node is, syncs
# with the relay only and must collect every note acknowledged before the last acknowledged
# upload began.
verify_relay() {
  collections=$((collections + 1))
  local ok=0
  for _ in $(seq 1 20); do
    if h v sync --with "$RP" --wait --json >"$ROOT/v.sync" 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok = 1 ] || { cat "$ROOT/v.sync"; fail "the professional behind the relay could not collect the record from it"; }
  if h v peers --json | grep -q "$PP"; then fail "the professional behind the relay knows the patient's node"; fi
  check_store v
  [ -s "$ACKED_UPLOADS" ] || return 0
  local last before missing
  read -r last before < <(tail -n 1 "$ACKED_UPLOADS")
  h v record show notes --record "$RID" --json >"$ROOT/v.shown" || fail "record show on the professional behind the relay failed"
  missing=$(python3 - "$ROOT/v.shown" "$ACKED_NOTES" "$before" <<'EOF'
import sys
shown = open(sys.argv[1]).read()
notes = [m.strip() for m in open(sys.argv[2]) if m.strip()][: int(sys.argv[3])]
gone = [m for m in notes if f'"{m}"' not in shown]
if gone:
    print("  not collected from the relay: " + " ".join(gone), file=sys.stderr)
print(len(gone))
EOF
)
  if [ "$missing" != 0 ]; then
    lost=$((lost + missing))
    python3 -c 'import json,sys; print("  errors on the professional behind the relay:", json.load(open(sys.argv[1])).get("errors"))' "$ROOT/v.shown" || true
    fail "$missing notes acknowledged before the acknowledged upload of cycle $last are not at the relay"
  fi
  uploads_verified=$(wc -l <"$ACKED_UPLOADS")
}

# Every acknowledged write is present on the patient's node: the entries every cycle; the
# imports and revocations acknowledged in this cycle, or all of them when `all` is given.
check_acked() {
  local scope=${1:-new}
  h p record show --json >"$ROOT/shown" || fail "record show failed"
  h p grant list --json >"$ROOT/grants" || fail "grant list failed"
  local imports=()
  if [ "$scope" = all ]; then mapfile -t imports < <(sort -u "$ACKED_IMPORTS"); else mapfile -t imports < <(tail -n +$((IMPORTS_SEEN + 1)) "$ACKED_IMPORTS"); fi
  IMPORTS_SEEN=$(wc -l <"$ACKED_IMPORTS")
  local f w
  for f in "${imports[@]}"; do
    w=$(h p record import --fhir "$f" --dry-run --accept-different-patient --json | field 'd["imported"] + d["updated"]') \
      || fail "import dry run failed"
    [ "$w" = 0 ] || { lost=$((lost + 1)); fail "an acknowledged import of $f is not all there ($w to write)"; }
  done
  local missing
  missing=$(python3 - "$ROOT/shown" "$ACKED_NOTES" "$ROOT/grants" "$ACKED_REVOKES" <<'EOF2'
import json, sys
shown = open(sys.argv[1]).read()
notes = [m.strip() for m in open(sys.argv[2]) if m.strip()]
grants = json.load(open(sys.argv[3]))
revoked = {e["id"] for e in grants["events"] if e.get("event") == "revoked" or e.get("status") == "revoked"}
want = [g.strip() for g in open(sys.argv[4]) if g.strip()]
print(sum(f'"{m}"' not in shown for m in notes) + sum(g not in revoked for g in want))
EOF2
)
  [ "$missing" = 0 ] || { lost=$((lost + missing)); fail "$missing acknowledged writes missing"; }
}

# Both nodes hold the same log heads in every section the professional holds.
converge() {
  local t0; t0=$(now_ms)
  local ok=0
  for _ in $(seq 1 20); do
    if h g sync --with "$PP" --wait --json >/dev/null 2>&1; then
      h p store check --json >"$ROOT/p.heads" 2>/dev/null || true
      h g store check --json >"$ROOT/g.heads" 2>/dev/null || true
      if python3 - "$ROOT/p.heads" "$ROOT/g.heads" "$RID" <<'EOF'
import json, sys
p, g, rid = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
def heads(d):
    out = {}
    for x in d["heads"]:
        if x["record"] == rid:
            out.setdefault(x["section"], {})[x["author"]] = (x["seq"], x["hash"])
    return out
hp, hg = heads(p), heads(g)
sys.exit(0 if hg and all(hp.get(s) == v for s, v in hg.items()) else 1)
EOF
      then ok=1; break; fi
    fi
    sleep 0.2
  done
  [ $ok = 1 ] || fail "the two nodes did not converge"
  local dt=$(( $(now_ms) - t0 ))
  conv_total=$((conv_total + dt)); conv_n=$((conv_n + 1))
  if [ $dt -gt $conv_max ]; then conv_max=$dt; fi
}

# Set-up: a patient with a daemon, a professional granted notes (keys in the grant), a
# third node whose peer id receives the grants that are issued and revoked, an organisation's
# relay node with its own daemon, keeping the patient's record, and a second professional
# granted notes (keys in the grant) who reaches the record only through the relay.
cycle=0
h p init --role patient --name "Soak Patient" --nhs-number 9434765919 --json >/dev/null
h g init --role professional --name "Dr Soak" --json >/dev/null
h x init --role professional --name "Dr Revoked" --json >/dev/null
h v init --role professional --name "Dr Via Relay" --json >/dev/null
h r init --role relay --name "Soak relay" --json >/dev/null
RID=$(h p id --json | field 'd["record_id"]')
PP=$(h p id --json | field 'd["peer_id"]')
XP=$(h x id --json | field 'd["peer_id"]')
RP=$(h r id --json | field 'd["peer_id"]')
h p record add notes --entry '{"text": "soak start"}' >/dev/null
start_relay --listen /ip4/127.0.0.1/tcp/0
RADDR=$(h r status --json | field 'd["listen_addrs"][0]')/p2p/$RP
# Both before the patient's daemon first runs, so that the grant carries no address of the
# patient's node, only the relay's (a grant carries the relays' addresses as hints).
[ "$(h p relay use "$RADDR" --json | field 'd["supplied"]')" = True ] || fail "the relay was not supplied"
VCARD=$(h v id --card --json | field 'd["card"]')
VGRANT=$(h p grant --to "$VCARD" --sections notes --ability read --expires 30d --json | field 'd["token"]')
h v accept "$VGRANT" >/dev/null
if h v peers --json | grep -q "$PP"; then fail "the professional behind the relay was told the patient's node"; fi
start_daemon --listen /ip4/127.0.0.1/tcp/0
GCARD=$(h g id --card --json | field 'd["card"]')
GRANT=$(h p grant --to "$GCARD" --sections notes,medications,conditions --ability read --expires 30d --json | field 'd["token"]')
h g accept "$GRANT" >/dev/null
PADDR=$(h p status --json | field 'd["listen_addrs"][0]')
h g peers add "$PP" "$PADDR" >/dev/null
converge
h p sync --with "$RP" --wait >/dev/null || fail "the first upload to the relay failed" # its new list names the professional behind it
verify_relay
T0=$(now_ms)

# One operation, run in the background; its pid in OP_PID, its acknowledgement recorded by
# the subshell only when the command exits 0.
run_op() {
  local op=$1 n=$2
  case $op in
    add)
      ( h p record add notes --entry "{\"text\": \"soak-ack-$n\"}" >/dev/null 2>&1 \
          && echo "soak-ack-$n" >>"$ACKED_NOTES" ) &
      ;;
    import)
      local f=${BUNDLES[$((RANDOM % ${#BUNDLES[@]}))]}
      ( h p record import --fhir "$f" --accept-different-patient >/dev/null 2>&1 \
          && echo "$f" >>"$ACKED_IMPORTS" ) &
      ;;
    sync)
      ( h g sync --with "$PP" --wait >/dev/null 2>&1 ) &
      ;;
    rotate)
      ( id=$(h p grant --to "$XP" --sections notes --ability read --expires 1d --json 2>/dev/null | field 'd["id"]') \
          && h p grant revoke "$id" >/dev/null 2>&1 && echo "$id" >>"$ACKED_REVOKES" ) &
      ;;
    upload)
      # The patient's node syncs with the relay until it reports holding everything the node
      # holds (exit 0). First, the log heads the node holds now (a store check, counted).
      check_store p "$ROOT/upload-$n.heads"
      local before; before=$(wc -l <"$ACKED_NOTES")
      ( h p sync --with "$RP" --wait >/dev/null 2>&1 && echo "$n $before" >>"$ACKED_UPLOADS" ) &
      ;;
  esac
  OP_PID=$!
}

# Kills `pid` and every process under it (all started by this script).
kill_tree() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c" || true; done
  kill -9 "$1" 2>/dev/null
}

OPS=(add add add add import sync rotate upload)
for cycle in $(seq 1 "$CYCLES"); do
  op=${OPS[$((RANDOM % ${#OPS[@]}))]}
  victim=$((RANDOM % 4)) # 0: the daemon; 1: the command, forwarded to the daemon; 2: the command, alone on the store; 3: the relay's daemon
  if [ $victim = 2 ]; then
    kill -9 "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; DAEMON=""
  fi
  run_op "$op" "$cycle"
  delay=$((RANDOM % 1500))
  sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
  if [ $victim = 0 ]; then
    if kill -9 "$DAEMON" 2>/dev/null; then kills_daemon=$((kills_daemon + 1)); fi
    wait "$DAEMON" 2>/dev/null || true; DAEMON=""
  fi
  if [ $victim = 3 ]; then
    if kill -9 "$RDAEMON" 2>/dev/null; then kills_relay=$((kills_relay + 1)); fi
    wait "$RDAEMON" 2>/dev/null || true; RDAEMON=""
  fi
  # The command itself (the hearth processes under the subshell), unless it already finished.
  killed=0
  for c in $(pgrep -P "$OP_PID" 2>/dev/null); do if kill_tree "$c"; then killed=1; fi; done
  if [ $killed = 1 ]; then kills_cli=$((kills_cli + 1)); fi
  wait "$OP_PID" 2>/dev/null || true
  if [ "$op" = upload ] && ! grep -q "^$cycle " "$ACKED_UPLOADS"; then rm -f "$ROOT/upload-$cycle.heads"*; fi
  # After the crash: the stores open and check clean (directly when no daemon runs), the
  # daemon comes back, and every acknowledged write is there.
  if [ -z "$DAEMON" ]; then check_store p; start_daemon; else check_store p; fi
  check_store g
  # The relay's store: checked directly when its daemon was killed (and the relay must hold
  # the last acknowledged upload before the patient's node can supply it again), then its
  # daemon comes back; else through its daemon.
  if [ -z "$RDAEMON" ]; then
    check_store r "$ROOT/r.check"; relay_holds_upload after-kill; start_relay
  else
    check_store r "$ROOT/r.check"; relay_holds_upload
  fi
  if [ $((cycle % 10)) = 0 ] || [ "$cycle" = "$CYCLES" ]; then
    check_acked all
    converge
    verify_relay
  else
    check_acked
  fi
  if [ $((cycle % 50)) = 0 ]; then echo "  $cycle cycles: $kills_daemon daemon kills, $kills_cli command kills, $(($(wc -l <"$ACKED_NOTES") + $(wc -l <"$ACKED_IMPORTS") + $(wc -l <"$ACKED_REVOKES"))) acknowledged writes, 0 lost"; fi
  if [ $((cycle % 50)) = 0 ]; then echo "  $cycle cycles: $kills_relay relay kills, $(wc -l <"$ACKED_UPLOADS") acknowledged uploads, $uploads_verified verified through the relay, 0 lost"; fi
done
acked=$(($(wc -l <"$ACKED_NOTES") + $(wc -l <"$ACKED_IMPORTS") + $(wc -l <"$ACKED_REVOKES")))
secs=$(( ($(now_ms) - T0) / 1000 ))
echo "crash soak: $CYCLES cycles in ${secs}s (seed $SEED)"
echo "  kills: $((kills_daemon + kills_cli)) ($kills_daemon of the daemon, $kills_cli of commands)"
echo "  acknowledged writes: $acked ($(wc -l <"$ACKED_NOTES") entries, $(wc -l <"$ACKED_IMPORTS") FHIR imports, $(wc -l <"$ACKED_REVOKES") revocations with key rotation)"
echo "  lost: $lost; store checks: $checks, all clean"
echo "  time to reopen (daemon back and listening): mean $((reopen_total / reopen_n)) ms, max $reopen_max ms ($reopen_n restarts)"
echo "  convergence (same log heads on both nodes): mean $((conv_total / conv_n)) ms, max $conv_max ms ($conv_n checks)"
echo "  relay: $kills_relay kills of its daemon; back and listening: mean $((rreopen_total / rreopen_n)) ms, max $rreopen_max ms ($rreopen_n restarts)"
echo "  relay uploads: $(wc -l <"$ACKED_UPLOADS") acknowledged, $uploads_verified verified (every note acknowledged before the last one, collected by a professional syncing only through the relay: $collections collections); the relay held the last one's log heads in $heads_checks checks ($heads_after_kill straight after a relay kill)"
if [ "$relay_moved" -gt 0 ]; then echo "  note: the relay came back on another port $relay_moved times (its port taken while it was down)"; fi
