#!/usr/bin/env bash
# Write throughput and p99 of one peer under each storage rule, and of Redis under the matching
# appendfsync settings, in one run: 50 connections, 100-byte values.
#   dhtkit: memory, log+no, log+everysec, log+always   (dhtkit-bench --mix write100)
#   Redis:  appendonly no, appendfsync everysec, always  (redis-benchmark -t set)
# Usage: benchmarks/durability_bench.sh [ROUNDS (default 3)] ; BIN as for network_bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
command -v redis-server > /dev/null || { echo "redis-server is missing: bash cmake/install-deps.sh" >&2; exit 1; }
redis_dir=$(mktemp -d /tmp/dhtkit-redis.XXXXXX)
trap 'rm -rf "$redis_dir"' EXIT

dhtkit() {  # STORAGE FSYNC
  local line
  line=$(THREADS=${THREADS:-2} BACKUPS=0 STORAGE=$1 FSYNC=$2 benchmarks/network_bench.sh 1 loop --mix write100 \
    --connections 50 --seconds 3 --keys 100000 --value-size 100 | grep "ops/s")
  echo "$line" | awk '{for (i = 1; i <= NF; i++) { if ($(i+1) == "ops/s") o = $i; if ($i == "p99") p = $(i+1) } print o, p}'
}

redis() {  # appendonly appendfsync
  local port
  port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  rm -rf "${redis_dir:?}"/*
  redis-server --port "$port" --bind 127.0.0.1 --save '' --dir "$redis_dir" --appendonly "$1" \
    --appendfsync "$2" --daemonize no > "$redis_dir.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping > /dev/null 2>&1 && break; sleep 0.05; done
  redis-benchmark -p "$port" -t set -c 50 -d 100 -r 100000 -n 300000 --csv 2> /dev/null |
    awk -F'","' 'NR == 2 { print $2, $7 * 1000 }'  # rps, p99 (ms -> us)
  kill "$pid"
  wait "$pid" 2> /dev/null || true
}

printf '%-22s %s\n' "round setup" "ops/s p99_us"
for ((r = 1; r <= rounds; r++)); do
  printf '%s %-20s %s\n' "$r" "memory" "$(dhtkit memory everysec)"
  for rule in no everysec always; do printf '%s %-20s %s\n' "$r" "log $rule" "$(dhtkit log $rule)"; done
  printf '%s %-20s %s\n' "$r" "redis appendonly=no" "$(redis no everysec)"
  for rule in everysec always; do printf '%s %-20s %s\n' "$r" "redis $rule" "$(redis yes $rule)"; done
done
