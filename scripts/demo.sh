#!/usr/bin/env bash
# The main job: a patient, a GP and a social worker as three separate `hearth` nodes talking
# libp2p over loopback on this machine, narrated step by step. Everything is real: release
# binary, sled stores on disk, encrypted bundles, grants, live sync. Nothing leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${HEARTH_BIN:-}" ]; then
  BIN=$HEARTH_BIN # a binary built already (CI builds it once for every step)
else
  cargo build --release --locked -q -p hearth-node
  BIN=$PWD/target/release/hearth
fi
ROOT=$(mktemp -d /tmp/hearth-demo.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$ROOT"; }
trap cleanup EXIT
export HEARTH_PASSPHRASE=${HEARTH_PASSPHRASE:-demo-passphrase-0}
h() { local who=$1; shift; "$BIN" --home "$ROOT/$who" "$@"; }
field() { python3 -c "import sys,json; d=json.load(sys.stdin); print($1)"; }
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
start() {
  local who=$1; shift
  "$BIN" --home "$ROOT/$who" run --listen /ip4/127.0.0.1/tcp/0 "$@" >"$ROOT/$who.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    h "$who" status --json 2>/dev/null | field 'd["listen_addrs"][0]' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the $who node did not start; its log:"; cat "$ROOT/$who.log"; exit 1
}

say "1. Three people set up their nodes (keys sealed under a passphrase, Argon2id)."
h edith init --role patient --name "Edith Jones" --nhs-number 9434765919 --json >/dev/null
h gp init --role professional --name "Dr A. Shah" --json >/dev/null
h sw init --role professional --name "Sam Okafor (social worker)" --json >/dev/null
RID=$(h edith id --json | field 'd["record_id"]')
echo "   Edith's record: $RID"

say "2. Edith writes her record. Each entry is a signed bundle, encrypted under its section's key."
h edith record add notes --entry '{"text": "Two falls at home this month"}' >/dev/null
h edith record add notes --label mental-health --entry '{"text": "Low mood since my husband died (private)"}' >/dev/null
h edith record add medications --entry '{"name": "Apixaban 5mg twice daily"}' >/dev/null
h edith record add social-care/assessments --entry '{"assessment_type": "Care Act needs assessment", "date": "2026-11-01", "summary": "Needs help with washing and dressing"}' >/dev/null
h edith record sections

say "3. All three nodes start, listening on loopback only."
start edith; start gp; start sw
EDITH_PEER=$(h edith id --json | field 'd["peer_id"]')
EDITH_ADDR=$(h edith status --json | field 'd["listen_addrs"][0]')
echo "   Edith's node: $EDITH_ADDR/p2p/$EDITH_PEER"

say "4. Edith grants the GP notes (append) and the social worker notes + assessments (read)."
echo "   Neither is granted notes:mental-health. The cards let the grants carry the keys."
GP_CARD=$(h gp id --card --json | field 'd["card"]')
SW_CARD=$(h sw id --card --json | field 'd["card"]')
GP_GRANT=$(h edith grant --to "$GP_CARD" --sections notes --ability append --purpose direct-care --expires 30d --json | field 'd["token"]')
SW_GRANT=$(h edith grant --to "$SW_CARD" --sections notes,social-care/assessments --ability read --purpose social-care --expires 30d --json | field 'd["token"]')
h gp accept "$GP_GRANT" | sed 's/^/   /'
h sw accept "$SW_GRANT" | sed 's/^/   /'
h gp peers add "$EDITH_PEER" "$EDITH_ADDR" >/dev/null
h sw peers add "$EDITH_PEER" "$EDITH_ADDR" >/dev/null

say "5. They sync with Edith's node over libp2p (Noise-encrypted, peer ids proven)."
h gp sync --with "$EDITH_PEER" --wait >/dev/null
h sw sync --with "$EDITH_PEER" --wait >/dev/null
echo "   The GP holds:"; h gp record sections --record "$RID" | sed 's/^/     /'
echo "   The social worker holds:"; h sw record sections --record "$RID" | sed 's/^/     /'

say "6. The GP writes a note into Edith's record; it reaches Edith's node live."
h gp record add notes --record "$RID" --entry '{"text": "Home visit: referred to the falls clinic"}' >/dev/null
for _ in $(seq 1 100); do
  if h edith record show notes --json | grep -q "falls clinic"; then break; fi
  sleep 0.1
done
h edith record show notes | sed 's/^/   /'

say "7. The social worker syncs and receives the GP's note, checked against the GP's grant."
h sw sync --with "$EDITH_PEER" --wait >/dev/null
h sw record show notes --record "$RID" | sed 's/^/   /'

say "8. What never left Edith's node: her mental-health notes."
for who in gp sw; do
  if grep -rqaF "Low mood" "$ROOT/$who"; then echo "   LEAK in $who's node"; exit 1; fi
  if h "$who" record sections --record "$RID" --json | grep -q mental-health; then echo "   $who holds the section"; exit 1; fi
done
echo "   Not in the GP's node, not in the social worker's: not as text, not as ciphertext, not by name."

say "9. Edith adds her phone: a one-time code (SPAKE2), and it holds her whole record."
CODE=$(h edith device link --json --no-qr | field 'd["code"]')
h phone init --join "$CODE" --name "Edith's phone" | sed 's/^/   /'
h phone record sections | sed 's/^/   /'
h edith device list | sed 's/^/   /'

say "10. Edith's consent ledger, in plain words."
h edith grant list | sed 's/^/   /'

say "11. Riverside Practice runs a relay: it keeps Edith's record reachable, encrypted, when her laptop is off."
h relay init --role relay --name "Riverside Practice relay" --json >/dev/null
start relay
RELAY_ADDR=$(h relay status --json | field 'd["listen_addrs"][0]')/p2p/$(h relay id --json | field 'd["peer_id"]')
h edith relay use "$RELAY_ADDR" | sed 's/^/   /'
for _ in $(seq 1 150); do
  [ "$(h relay relay status --json | field 'd["since_start"]["stored"] if d["since_start"] else 0')" -gt 0 ] && break
  sleep 0.2
done
sleep 3   # the GP's and social worker's nodes learn the relay from Edith's record
h relay relay status | sed 's/^/   /'

say "12. Edith arranges emergency access with St Mary's A&E: if she cannot answer, its doctors may read her medications, each use with a reason she will see."
h ae init --role relay --name "St Mary's A&E" --json >/dev/null
start ae --relay-peer "$RELAY_ADDR"   # its node is on the relays' network
AE_ADDR=$(h ae status --json | field 'd["listen_addrs"][0]')/p2p/$(h ae id --json | field 'd["peer_id"]')
h doc init --role professional --name "Dr R. Patel" --json >/dev/null
CRED=$(h ae org attest --staff "$(h doc id --json | field 'd["peer_id"]')" --name "Dr R. Patel" --role "A&E consultant" --registration "GMC 7654321" --expires 365d --json | field 'd["token"]')
h doc credential add "$CRED" >/dev/null
h edith emergency arrange --org "$AE_ADDR" --name "St Mary's A&E" --sections medications --max-duration 4h | sed 's/^/   /'
h edith sync --wait --timeout 30 >/dev/null   # the relay now holds the arrangement and the escrowed keys

say "13. Edith's laptop goes off. The GP writes; the note waits at the relay, which cannot read it."
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true   # Edith's node was started first
h gp record add notes --record "$RID" --entry '{"text": "Phoned: falls clinic booked for Tuesday"}' >/dev/null
h gp sync --wait --timeout 30 >/dev/null
if grep -rqaF -e "falls clinic" -e "Edith" -e "9434765919" "$ROOT/relay"; then echo "   LEAK at the relay"; exit 1; fi
echo "   No name, NHS number or note text anywhere under the relay's home."

say "14. The social worker syncs while Edith is offline: through the relay."
h sw sync --wait --timeout 30 | sed 's/^/   /'
h sw record show notes --record "$RID" | grep -B1 "clinic booked" | sed 's/^/   /'

say "15. Edith falls and is brought to St Mary's A&E, unable to answer. Her laptop is off. The doctor uses the emergency access she arranged, with a reason."
for _ in $(seq 1 100); do   # the doctor's node asks the relays' network, through St Mary's node, who keeps her record
  [ "$(h doc relay find "$RID" --via "$AE_ADDR" --timeout 5 --json | field 'len(d["relays"])')" -gt 0 ] && break
  sleep 0.3
done
h doc emergency access --record "$RID" --reason "Brought in unconscious after a fall" --duration 1h | sed 's/^/   /'
h doc record show medications --record "$RID" | sed 's/^/   /'
echo "   St Mary's information governance list:"; h ae org audit | sed 's/^/     /'
if grep -rqaF -e "Apixaban" -e "Edith" -e "9434765919" "$ROOT/ae" "$ROOT/relay"; then echo "   LEAK at St Mary's or the relay"; exit 1; fi
echo "   Neither St Mary's node nor the relay holds her medication, name or NHS number in the clear."

say "16. Edith's laptop comes back and collects the GP's note from the relay, checked against the GP's grant."
start edith
for _ in $(seq 1 150); do
  if h edith record show notes --json | grep -q "clinic booked"; then break; fi
  sleep 0.2
done
h edith record show notes | grep -B1 "clinic booked" | sed 's/^/   /'

say "17. Who looked at Edith's record: the emergency use first, every session her node and the relay served, and what the GP and social worker report they read."
h sw record show notes --record "$RID" >/dev/null   # the social worker reads again
h sw sync --wait --timeout 30 >/dev/null             # and reports it to Edith's node
h gp sync --wait --timeout 30 >/dev/null
for _ in $(seq 1 150); do
  h edith audit | head -n 1 | grep -q "EMERGENCY ACCESS" && break
  sleep 0.2
done
h edith audit | head -n 6 | sed 's/^/   /'
h edith audit verify | sed 's/^/   /'

say "Done: four people on five nodes, a relay and a hospital's node, no central database, only the granted sections moved."
