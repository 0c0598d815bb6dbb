#!/usr/bin/env bash
# Starts a loopback cluster (1 or 3 peers, a given dispatch model, BACKUPS copies per key, default
# 2, CONSISTENCY "available" or "majority", default available, SECRET=1 for a cluster secret,
# STORAGE "memory" or "log" and FSYNC "always", "everysec" or "no" for [storage],
# THREADS workers per peer, default 2),
# runs dhtkit-bench against it,
# and stops it. Usage: benchmarks/network_bench.sh PEERS DISPATCH [dhtkit-bench flags...]
#   e.g. benchmarks/network_bench.sh 1 loop --mix read100 --connections 50 --seconds 5
set -euo pipefail
peers=$1 dispatch=$2
shift 2
bin=${BIN:-build/examples}
work=$(mktemp -d /tmp/dhtkit-netbench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$work"' EXIT

ports=$(python3 -c "
import socket
s=[socket.socket() for _ in range($peers)]
[x.bind(('127.0.0.1',0)) for x in s]
print(' '.join(str(x.getsockname()[1]) for x in s))")
{
  printf '[pool]\nthreads = %s\ndispatch = "%s"\n' "${THREADS:-2}" "$dispatch"
  printf "[replication]\nbackups = %s\n" "${BACKUPS:-2}"
  [[ -n "${CONSISTENCY:-}" ]] && printf 'consistency = "%s"\n' "$CONSISTENCY"
  [[ -n "${STORAGE:-}" ]] && printf '[storage]\nmode = "%s"\nfsync = "%s"\n' "$STORAGE" "${FSYNC:-everysec}"
  if [[ -n "${SECRET:-}" ]]; then  # SECRET=1: the peers sign their requests to each other
    head -c 32 /dev/urandom > "$work/secret" && chmod 600 "$work/secret"
    printf '[security]\ncluster_secret_file = "secret"\n'
  fi
  i=0
  for port in $ports; do
    printf '[[peers]]\nid = %d\nhost = "127.0.0.1"\nport = %d\nshared = "p%d/shared"\ndata = "p%d/data"\n' $i "$port" $i $i
    i=$((i + 1))
  done
} > "$work/cluster.toml"
for ((i = 0; i < peers; i++)); do
  "$bin/dhtkit-peer" --config "$work/cluster.toml" --id $i --no-client 2> "$work/peer$i.log" &
  pids+=($!)
done
for ((i = 0; i < peers; i++)); do
  for _ in $(seq 100); do grep -q "serving on" "$work/peer$i.log" 2>/dev/null && break; sleep 0.05; done
done
"$bin/dhtkit-bench" --config "$work/cluster.toml" "$@"
