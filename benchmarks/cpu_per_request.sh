#!/usr/bin/env bash
# Server CPU per request: one peer (R = 0, THREADS workers, default 2) serving GET and SET from 50
# connections, over our frames and over RESP. The peer's CPU (user + system, all threads, from
# /proc/PID/stat) is read around each run:
#   binary, resp:  dhtkit-bench --mix write100|read100 --connections 50 [--resp] for SECONDS_RUN
#                  and for 1 s; the CPU and the requests of the short run are taken from the long
#                  one's, so what both share (connecting, the bench's preload of 100,000 keys)
#                  cancels out. One load generator for both fronts: how a client bunches its
#                  requests changes how many wake-ups (epoll_wait) a request costs the server.
#   redis-bench:   redis-benchmark -t set|get -n N -c 50 -d 100 -r 100000 on the RESP port; CPU
#                  over the run / N.
# With BINS="dirA dirB" (the build/examples of two commits) the rounds alternate between their
# peers; the load generator is always BENCH (default build/examples/dhtkit-bench).
# Prints one line per run: build, front, op, requests, server CPU s, us/request, and of those
# us/request the part spent in user space (the rest is the kernel's: sockets, wake-ups).
# Usage: benchmarks/cpu_per_request.sh [ROUNDS (default 3)]; N (default 300000), SECONDS_RUN
#        (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
n=${N:-300000}
seconds=${SECONDS_RUN:-4}
bins=(${BINS:-build/examples})
bench_bin=${BENCH:-build/examples/dhtkit-bench}
command -v redis-benchmark > /dev/null || { echo "redis-benchmark is missing: bash cmake/install-deps.sh" >&2; exit 1; }
work=$(mktemp -d /tmp/dhtkit-cpu-bench.XXXXXX)
pid=
stop_peer() {
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  pid=
}
trap 'stop_peer; rm -rf "$work"' EXIT
ticks=$(getconf CLK_TCK)

cpu_seconds() {  # PID: "user+system user" time of all its threads, in seconds
  awk -v t="$ticks" '{ sub(/.*\) /, ""); printf "%.3f %.3f\n", ($12 + $13) / t, $12 / t }' "/proc/$1/stat"
}
minus() {  # "A1 A2" "B1 B2": "A1-B1 A2-B2"
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.3f %.3f\n", x[1] - y[1], x[2] - y[2] }'
}

start_peer() {  # BIN: one peer with a binary port and a RESP port; sets pid, port, resp_port
  read -r port resp_port < <(python3 -c "
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(('127.0.0.1',0)) for x in s]
print(' '.join(str(x.getsockname()[1]) for x in s))")
  rm -rf "$work/d" && mkdir -p "$work/d"
  printf '[pool]\nthreads = %s\n[replication]\nbackups = 0\n[[peers]]\nid = 0\nhost = "127.0.0.1"\nport = %d\nresp_port = %d\nshared = "p0/shared"\ndata = "p0/data"\n' \
    "${THREADS:-2}" "$port" "$resp_port" > "$work/d/cluster.toml"
  "$1/dhtkit-peer" --config "$work/d/cluster.toml" --id 0 --no-client --no-supervisor 2> "$work/d/peer.log" &
  pid=$!
  for _ in $(seq 200); do redis-cli -p "$resp_port" ping > /dev/null 2>&1 && return 0; sleep 0.05; done
  echo "the peer does not answer on $resp_port" >&2
  cat "$work/d/peer.log" >&2
  return 1
}

report() {  # BUILD FRONT TEST REQUESTS "CPU USER"
  awk -v b="$1" -v f="$2" -v t="$3" -v r="$4" -v c="$5" \
    'BEGIN { split(c, x, " "); printf "%-28s %-11s %-3s %9d %7.2f %7.2f %7.2f\n", b, f, t, r, x[1], x[1] * 1e6 / r, x[2] * 1e6 / r }'
}

resp_run() {  # BUILD TEST
  local before after
  before=$(cpu_seconds "$pid")
  redis-benchmark -p "$resp_port" -t "$2" -n "$n" -c 50 -d 100 -r 100000 -q > /dev/null 2>&1
  after=$(cpu_seconds "$pid")
  report "$1" redis-bench "$2" "$n" "$(minus "$after" "$before")"
}

bench_ops() {  # MIX SECONDS [--resp]: prints "requests cpu"
  local before after ops
  before=$(cpu_seconds "$pid")
  ops=$("$bench_bin" --config "$work/d/cluster.toml" --mix "$1" --connections 50 --seconds "$2" --json ${3:-} |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["ops"])')
  after=$(cpu_seconds "$pid")
  echo "$ops $(minus "$after" "$before")"
}

bench_run() {  # BUILD FRONT TEST
  local mix=read100 long short flag=
  [[ $3 == set ]] && mix=write100
  [[ $2 == resp ]] && flag=--resp
  long=($(bench_ops "$mix" "$seconds" $flag))
  short=($(bench_ops "$mix" 1 $flag))
  report "$1" "$2" "$3" "$((long[0] - short[0]))" "$(minus "${long[1]} ${long[2]}" "${short[1]} ${short[2]}")"
}

printf '%-28s %-11s %-3s %9s %7s %7s %7s\n' build front op requests cpu_s us/req user_us
for ((r = 1; r <= rounds; r++)); do
  for bin in "${bins[@]}"; do
    start_peer "$bin"
    for op in set get; do
      bench_run "$bin" binary $op
      bench_run "$bin" resp $op
      resp_run "$bin" $op
    done
    stop_peer
  done
done
