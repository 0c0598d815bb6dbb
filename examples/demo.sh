#!/usr/bin/env bash
# The main job of `make demo`: starts the three-peer cluster of examples/cluster.toml in a scratch
# folder, tours it with dhtkit-cli, and stops every process it started.
set -euo pipefail

bin=${1:-build/examples}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/dhtkit-demo.XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cp "$here/cluster.toml" "$work/"
cli() { "$bin/dhtkit-cli" --config "$work/cluster.toml" "$@"; }
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ dhtkit-cli %s\n' "$*"; cli "$@" 2>&1; }

step "a 50 MiB file in peer 1's shared folder"
mkdir -p "$work/run/peer1/shared"
head -c $((50 << 20)) /dev/urandom > "$work/run/peer1/shared/big.bin"
sha256sum "$work/run/peer1/shared/big.bin" | cut -c1-64

step "starting peers 0, 1, 2 (dhtkit-peer --no-client), logs in $work"
for id in 0 1 2; do
  "$bin/dhtkit-peer" --config "$work/cluster.toml" --id "$id" --no-client 2> "$work/peer$id.log" &
  pids+=($!)
done
for id in 0 1 2; do
  for _ in $(seq 100); do grep -q "serving on" "$work/peer$id.log" 2>/dev/null && break; sleep 0.05; done
  grep "serving on" "$work/peer$id.log" || { echo "peer $id did not start:"; cat "$work/peer$id.log"; exit 1; }
done
show peers

step "keys live on the home of their slot: CRC16 of the key mod 16384, as Redis Cluster computes it"
for key in apple fig kiwi; do
  show put "$key" "a value for $key"
  printf '  home of %s: ' "$key"; cli where "$key"
done
show get fig
show del fig
set +e; show get fig; echo "  (exit status $?: not found)"; set -e

step "files: register, search, obtain (checked against the holder's checksum)"
show --peer 1 register big.bin
show search big.bin
show obtain big.bin "$work/downloaded.bin"
sha256sum "$work/downloaded.bin" | cut -c1-64
cmp "$work/run/peer1/shared/big.bin" "$work/downloaded.bin" && echo "identical to the original"

step "replication: every slot's keys and files are also kept by the 2 peers after its home"
for _ in $(seq 100); do [ "$(cli search big.bin | wc -l)" -ge 3 ] && break; sleep 0.1; done
show search big.bin
home=$(cli where apple | cut -d" " -f4)
show where apple
worker=$(cli stats "$home" | sed -n 's/^pid=//p')
echo "each peer is two processes: supervisor ${pids[$home]} and worker $worker; kill -9 of the worker of peer $home, apple's home"
kill -KILL "$worker"
show get apple
show put apple "written while peer $home was down"

step "peer $home's supervisor starts a new worker, which catches up from the backups before it serves"
for _ in $(seq 100); do
  now=$(cli stats "$home" 2>/dev/null | sed -n 's/^pid=//p' || true)
  [ -n "$now" ] && [ "$now" != "$worker" ] && break
  sleep 0.05
done
show get apple
show stats "$home" | grep -E "^pid|restarts|caught_up"
step "the same cluster speaks RESP (resp_port): redis-cli -c routes by the map that CLUSTER SLOTS gives"
if command -v redis-cli > /dev/null; then
  rcli() { printf '$ redis-cli -c -p 7500 %s\n' "$*"; redis-cli -c -p 7500 "$@" 2>&1; }
  rcli set session:42 "set over RESP" EX 60
  rcli ttl session:42
  rcli get session:42
  show get session:42
  rcli get apple
  rcli cluster keyslot apple
else
  echo "(redis-cli is not installed: bash cmake/install-deps.sh)"
fi

step "stats of peer 1"
show stats 1
step "stopping the peers"
for i in "${!pids[@]}"; do
  kill -TERM "${pids[$i]}"
  wait "${pids[$i]}" && echo "peer $i exited with status 0"
done
pids=()

step "dynamic backup: the same three peers with [replication] policy = \"dynamic\" (SWIM failure detection, healing)"
sed 's/^backups = 2$/backups = 2\npolicy = "dynamic"/' "$here/cluster.toml" > "$work/dynamic.toml"
rm -rf "$work/run"
dcli() { "$bin/dhtkit-cli" --config "$work/dynamic.toml" "$@"; }
dshow() { printf '$ dhtkit-cli %s\n' "$*"; dcli "$@" 2>&1; }
alive_everywhere() {  # every peer listed says it sees $1 members alive
  local want=$1; shift
  for id in "$@"; do [ "$(dcli stats "$id" 2>/dev/null | sed -n 's/^members_alive=//p')" = "$want" ] || return 1; done
}
healed_everywhere() {
  for id in "$@"; do [ "$(dcli stats "$id" 2>/dev/null | sed -n 's/^under_replicated_slots=//p')" = "0" ] || return 1; done
}
for id in 0 1 2; do
  "$bin/dhtkit-peer" --config "$work/dynamic.toml" --id "$id" --no-client --no-supervisor 2> "$work/dyn$id.log" &
  pids+=($!)
done
for id in 0 1 2; do
  for _ in $(seq 100); do grep -q "serving on" "$work/dyn$id.log" 2>/dev/null && break; sleep 0.05; done
done
for _ in $(seq 100); do alive_everywhere 3 0 1 2 && break; sleep 0.1; done
for i in $(seq 1 200); do dcli put "key-$i" "value $i" > /dev/null; done
echo "200 keys written"
dshow where apple

step "a fourth peer that is not in the file joins (dhtkit-peer --join 127.0.0.1:7400 --listen 127.0.0.1:7403 --dir ...)"
"$bin/dhtkit-peer" --config "$work/dynamic.toml" --join 127.0.0.1:7400 --listen 127.0.0.1:7403 --dir "$work/joined" \
  --no-client --no-supervisor 2> "$work/joined.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "serving on" "$work/joined.log" 2>/dev/null && break; sleep 0.05; done
joined=$(cat "$work/joined/data/node_id")
for _ in $(seq 200); do alive_everywhere 4 0 1 2 "$joined" && healed_everywhere 0 1 2 "$joined" && break; sleep 0.1; done
dshow peers
dshow stats "$joined" | grep -E "^(slots_held|healed_records|members_alive)="

step "kill -9 of peer 1: the others suspect it, declare it dead, and heal its copies"
kill -KILL "${pids[1]}"
wait "${pids[1]}" 2> /dev/null || true
t0=$(date +%s.%N)
for _ in $(seq 300); do alive_everywhere 3 0 2 "$joined" && break; sleep 0.05; done
echo "every survivor took peer 1 for dead after $(echo "$t0 $(date +%s.%N)" | awk '{ printf "%.1f", $2 - $1 }') s"
for _ in $(seq 300); do healed_everywhere 0 2 "$joined" && break; sleep 0.1; done
dshow peers
dshow where apple
missing=0
for i in $(seq 1 200); do [ "$(dcli get "key-$i" 2>/dev/null)" = "value $i" ] || missing=$((missing + 1)); done
echo "200 keys read back, $missing missing"
for id in 0 2 "$joined"; do printf 'peer %s: ' "$id"; dcli stats "$id" | grep -E "^(epoch|under_replicated_slots|healed_records)=" | tr '\n' ' '; echo; done

step "stopping the dynamic peers"
for i in 0 2 3; do
  kill -TERM "${pids[$i]}" 2> /dev/null || true
  wait "${pids[$i]}" 2> /dev/null || true
done
pids=()
