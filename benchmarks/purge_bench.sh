#!/usr/bin/env bash
# Tombstone purging, measured as memory: one peer (R = 0, memory storage, tombstone_purge_s =
# PURGE_S, default 20) takes KEYS puts of 100-byte values (default 1,000,000) then a delete of
# each, through RESP pipelines of 1,000 (redis-py, Debian's /usr/bin/python3); its resident memory is read from /proc before,
# after the puts, after the deletes, then every second until it is back within 10 % of where it
# started or PURGE_S + 60 s have passed. Prints each reading and the time from the last delete.
# Usage: benchmarks/purge_bench.sh ; BIN (default build/examples), KEYS, PURGE_S.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-build/examples}
keys=${KEYS:-1000000}
purge_s=${PURGE_S:-20}
dir=$(mktemp -d /tmp/dhtkit-purge.XXXXXX)
pid=
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
port=$(free_port)
resp=$(free_port)
mkdir -p "$dir/p0/shared"
cat > "$dir/cluster.toml" << EOF
[pool]
threads = 2
[replication]
backups = 0
tombstone_purge_s = $purge_s
[[peers]]
id = 0
host = "127.0.0.1"
port = $port
resp_port = $resp
shared = "p0/shared"
data = "p0/data"
EOF
"$bin/dhtkit-peer" --config "$dir/cluster.toml" --id 0 --no-client --no-supervisor 2> "$dir/peer.log" &
pid=$!
for _ in $(seq 200); do redis-cli -p "$resp" ping > /dev/null 2>&1 && break; sleep 0.05; done

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }  # KiB
start=$(rss)
echo "resident at start: ${start} KiB"
/usr/bin/python3 - "$resp" "$keys" << 'EOF'
import sys, redis
r = redis.Redis(port=int(sys.argv[1]))
n, value = int(sys.argv[2]), b"v" * 100
for op in ("set", "delete"):
    for first in range(0, n, 1000):
        p = r.pipeline(transaction=False)
        for i in range(first, min(first + 1000, n)):
            p.set(f"key:{i}", value) if op == "set" else p.delete(f"key:{i}")
        p.execute()
    if op == "set":
        print("puts done", flush=True)
EOF
echo "resident after puts and deletes: $(rss) KiB"
deleted_at=$(date +%s)
limit=$((purge_s + 60))
for ((t = 1; t <= limit; t++)); do
  sleep 1
  now=$(rss)
  if ((t % 5 == 0)); then echo "  +${t} s: ${now} KiB"; fi
  if ((now * 10 <= start * 11)); then
    echo "back within 10 % of the start (${now} KiB vs ${start} KiB) $(($(date +%s) - deleted_at)) s after the last delete (purge period ${purge_s} s)"
    exit 0
  fi
done
echo "still $(rss) KiB (start ${start} KiB) ${limit} s after the last delete"
exit 1
