#!/usr/bin/env bash
# dhtkit over RESP against Redis, measured by Redis's own redis-benchmark, in one run, alternating:
#   single:  one peer (R = 0) against one redis-server (no persistence),
#            -t set,get -d 100 -r 100000 -c 50, then the same with -P 16
#   cluster: three peers (R = 0, then R = 2) with --cluster against a three-master Redis Cluster
#            (cluster-enabled, no replicas) that this script starts
# Prints one line per run: setup, test, requests/s, p99 in ms.
# Usage: benchmarks/resp_bench.sh [ROUNDS (default 3)] ; N requests per run (default 1000000);
#        THREADS workers per peer (default 2); BIN as for network_bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
n=${N:-1000000}
bin=${BIN:-build/examples}
command -v redis-server > /dev/null || { echo "redis-server is missing: bash cmake/install-deps.sh" >&2; exit 1; }
work=$(mktemp -d /tmp/dhtkit-resp-bench.XXXXXX)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

# COUNT ports that are free, and whose port + 10000 (a Redis Cluster node's bus) is free too.
free_ports() {  # COUNT
  python3 -c "
import random, socket
held, out = [], []
while len(out) < $1:
    p = random.randint(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(('127.0.0.1', q)); held.append(s)
        out.append(p)
    except OSError:
        pass
print(' '.join(map(str, out)))"
}
wait_port() {  # PORT
  for _ in $(seq 200); do redis-cli -p "$1" ping > /dev/null 2>&1 && return 0; sleep 0.05; done
  echo "nothing answers on port $1" >&2
  return 1
}

# Starts PEERS dhtkit peers with BACKUPS; sets first_port (a RESP port).
start_dhtkit() {  # PEERS BACKUPS
  local ports resp i
  ports=($(free_ports $(($1 * 2))))
  rm -rf "$work/d" && mkdir -p "$work/d"
  {
    printf '[pool]\nthreads = %s\n[replication]\nbackups = %s\n' "${THREADS:-2}" "$2"
    for ((i = 0; i < $1; i++)); do
      printf '[[peers]]\nid = %d\nhost = "127.0.0.1"\nport = %d\nresp_port = %d\nshared = "p%d/shared"\ndata = "p%d/data"\n' \
        $i "${ports[$i]}" "${ports[$(($1 + i))]}" $i $i
    done
  } > "$work/d/cluster.toml"
  for ((i = 0; i < $1; i++)); do
    "$bin/dhtkit-peer" --config "$work/d/cluster.toml" --id $i --no-client --no-supervisor 2> "$work/d/peer$i.log" &
    pids+=($!)
  done
  for ((i = 0; i < $1; i++)); do wait_port "${ports[$(($1 + i))]}"; done
  first_port=${ports[$1]}
}

# Starts COUNT redis-servers; with cluster=1 as a Redis Cluster of masters holding every slot.
start_redis() {  # COUNT CLUSTER
  local ports i addrs=()
  ports=($(free_ports "$1"))
  rm -rf "$work/r" && mkdir -p "$work/r"
  for ((i = 0; i < $1; i++)); do
    local extra=()
    [[ $2 == 1 ]] && extra=(--cluster-enabled yes --cluster-config-file "$work/r/nodes$i.conf")
    redis-server --port "${ports[$i]}" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/r" \
      --daemonize no --logfile "$work/r/redis$i.log" "${extra[@]}" &
    pids+=($!)
    addrs+=("127.0.0.1:${ports[$i]}")
  done
  for ((i = 0; i < $1; i++)); do wait_port "${ports[$i]}"; done
  if [[ $2 == 1 ]]; then
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes > "$work/r/create.log" 2>&1
    for _ in $(seq 200); do redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok && break; sleep 0.05; done
  fi
  first_port=${ports[0]}
}

bench() {  # SETUP PORT redis-benchmark flags...
  local setup=$1 port=$2
  shift 2
  redis-benchmark -p "$port" -t set,get -n "$n" -d 100 -r 100000 -c 50 --csv "$@" 2> /dev/null |
    awk -F'","' -v s="$setup" '/^"(SET|GET)"/ { gsub(/"/, "", $1); printf "%-24s %-4s %10.0f %6.3f\n", s, $1, $2, $7 }'
}

printf '%-24s %-4s %10s %6s\n' "setup" "test" "req/s" "p99ms"
for ((r = 1; r <= rounds; r++)); do
  for pipeline in 1 16; do
    start_dhtkit 1 0; bench "dhtkit 1 peer -P $pipeline" "$first_port" -P $pipeline; stop_all
    start_redis 1 0; bench "redis 1 server -P $pipeline" "$first_port" -P $pipeline; stop_all
  done
  start_dhtkit 3 0; bench "dhtkit 3 peers R=0" "$first_port" --cluster; stop_all
  start_dhtkit 3 2; bench "dhtkit 3 peers R=2" "$first_port" --cluster; stop_all
  start_redis 3 1; bench "redis cluster 3 masters" "$first_port" --cluster; stop_all
done
