#!/usr/bin/env bash
# How long one peer with [storage] mode = "log" takes to serve again after a restart with KEYS keys
# (default 1,000,000, 100-byte values): puts them (dhtkit-bench's preload), stops the peer with
# SIGTERM, starts it again, and reports the time to "serving on" and what stats say of the replay.
# Usage: benchmarks/restart_bench.sh [KEYS] ; BIN as for network_bench.sh; FSYNC (default everysec).
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
bin=${BIN:-build/examples}
work=$(mktemp -d /tmp/dhtkit-restart.XXXXXX)
pid=
trap '[[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; wait; rm -rf "$work"' EXIT
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
printf '[replication]\nbackups = 0\n[storage]\nmode = "log"\nfsync = "%s"\ncompact_after_mb = 100000\n' "${FSYNC:-everysec}" > "$work/cluster.toml"
printf '[[peers]]\nid = 0\nhost = "127.0.0.1"\nport = %d\nshared = "shared"\ndata = "data"\n' "$port" >> "$work/cluster.toml"

took=
start() {  # sets pid, and took: seconds to "serving on"
  local t0 t1
  t0=$(date +%s.%N)
  "$bin/dhtkit-peer" --config "$work/cluster.toml" --id 0 --no-client --no-supervisor > /dev/null 2> "$work/peer.log" &
  pid=$!
  until grep -q "serving on" "$work/peer.log" 2> /dev/null; do sleep 0.01; done
  t1=$(date +%s.%N)
  took=$(echo "$t0 $t1" | awk '{ printf "%.2f", $2 - $1 }')
}

start
echo "first start: $took s"
"$bin/dhtkit-bench" --config "$work/cluster.toml" --keys "$keys" --seconds 0.1 --connections 1 > /dev/null
kill -TERM "$pid"; wait "$pid" || true; pid=
echo "log: $(du -h "$work/data" | tail -1 | cut -f1)"
start
echo "restart with $keys keys: $took s to serving"
"$bin/dhtkit-cli" --config "$work/cluster.toml" stats 0 | grep -E "^(keys|replayed_records|replay_seconds)="
