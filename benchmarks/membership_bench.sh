#!/usr/bin/env bash
# Live membership on this machine: five peers with [replication] policy = "dynamic" and the
# default [membership] settings, one killed with kill -9.
#   detection: from the kill until every other peer has logged it dead (polled every 20 ms);
#   healing:   with KEYS keys of 100 bytes put first (dhtkit-bench's preload), from the kill until
#              every survivor has caught up the slots it gained (stats: under_replicated_slots=0),
#              and the records it took.
#   foreground: with KEYS, a read90 load on peer 0 (dhtkit-bench --peer 0, 10,000 keys of its own)
#              for 5 s before the kill, then from the kill for 15 s: its p99 without and with
#              detection and healing going on (peer 0 only gains slots when another dies, so its
#              keys stay its own).
# Usage: benchmarks/membership_bench.sh [RUNS] ; KEYS (default 0: detection only); BIN as for
# network_bench.sh. Prints each run, then the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
keys=${KEYS:-0}
bin=${BIN:-build/examples}
peers=5
work=$(mktemp -d /tmp/dhtkit-membership.XXXXXX)
pids=()
stop_all() { for p in "${pids[@]}"; do kill -KILL "$p" 2> /dev/null || true; done; wait 2> /dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$work"' EXIT

stat_of() { "$bin/dhtkit-cli" --config "$work/cluster.toml" stats "$1" 2> /dev/null | sed -n "s/^$2=//p"; }
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

detections=()
heals=()
ratios=()
fg() {  # a foreground load on peer 0 for $1 seconds; prints its p99 in us and its errors
  { "$bin/dhtkit-bench" --config "$work/cluster.toml" --peer 0 --mix read90 --keys 10000 --value-size 100 \
    --seconds "$1" --connections 8 || true; } | sed -n 's/.*p99 \([0-9.]*\) us.*errors \([0-9]*\).*/\1 \2/p'
}
for run in $(seq 1 "$runs"); do
  rm -rf "$work"/*
  printf '[pool]\nthreads = 2\n[replication]\nbackups = 2\npolicy = "dynamic"\n' > "$work/cluster.toml"
  for i in $(seq 0 $((peers - 1))); do
    port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
    printf '[[peers]]\nid = %d\nhost = "127.0.0.1"\nport = %d\nshared = "p%d/shared"\ndata = "p%d/data"\n' \
      "$i" "$port" "$i" "$i" >> "$work/cluster.toml"
    mkdir -p "$work/p$i/shared"
  done
  for i in $(seq 0 $((peers - 1))); do
    "$bin/dhtkit-peer" --config "$work/cluster.toml" --id "$i" --no-client --no-supervisor > /dev/null 2> "$work/peer$i.log" &
    pids+=($!)
  done
  for i in $(seq 0 $((peers - 1))); do
    until grep -q "serving on" "$work/peer$i.log" 2> /dev/null; do sleep 0.05; done
  done
  for i in $(seq 0 $((peers - 1))); do
    until [[ "$(stat_of "$i" members_alive)" == "$peers" ]]; do sleep 0.1; done
  done
  if (( keys > 0 )); then
    "$bin/dhtkit-bench" --config "$work/cluster.toml" --keys "$keys" --value-size 100 --seconds 0.1 --connections 4 > /dev/null
  fi
  victim=$((peers - 1))
  quiet_p99=
  if (( keys > 0 )); then
    read -r quiet_p99 quiet_errors <<< "$(fg 5)"
    fg 15 > "$work/busy_p99" &
    fg_pid=$!
  fi
  t0=$(now)
  kill -KILL "${pids[$victim]}"
  wait "${pids[$victim]}" 2> /dev/null || true
  detected=
  healed=
  while [[ -z "$healed" ]]; do
    if [[ -z "$detected" ]]; then
      seen=0
      for i in $(seq 0 $((victim - 1))); do
        grep -q "membership: peer $victim (.*) is dead" "$work/peer$i.log" && seen=$((seen + 1))
      done
      if (( seen == victim )); then
        detected=$(echo "$t0 $(now)" | awk '{ printf "%.2f", $2 - $1 }')
        (( keys == 0 )) && healed=skip
      fi
    else
      done_peers=0
      for i in $(seq 0 $((victim - 1))); do
        [[ "$(stat_of "$i" under_replicated_slots)" == "0" ]] && done_peers=$((done_peers + 1))
      done
      (( done_peers == victim )) && healed=$(echo "$t0 $(now)" | awk '{ printf "%.2f", $2 - $1 }')
    fi
    sleep 0.02
  done
  records=0
  if (( keys > 0 )); then
    for i in $(seq 0 $((victim - 1))); do records=$((records + $(stat_of "$i" healed_records))); done
    wait "$fg_pid" || true
    read -r busy_p99 busy_errors < "$work/busy_p99"
    ratio=$(echo "$quiet_p99 $busy_p99" | awk '{ printf "%.2f", $2 / $1 }')
    ratios+=("$ratio")
    echo "run $run: every survivor found peer $victim dead after $detected s; healed after $healed s ($records records" \
      "healed); foreground p99 $quiet_p99 us before, $busy_p99 us during (x $ratio; errors $quiet_errors, $busy_errors)"
  else
    echo "run $run: every survivor found peer $victim dead after $detected s"
  fi
  detections+=("$detected")
  [[ "$healed" != skip ]] && heals+=("$healed")
  stop_all
done
echo "median detection: $(printf '%s\n' "${detections[@]}" | median) s over $runs runs"
if (( ${#heals[@]} > 0 )); then
  echo "median healing ($keys keys): $(printf '%s\n' "${heals[@]}" | median) s"
  echo "median foreground p99 ratio (during / before): $(printf '%s\n' "${ratios[@]}" | median)"
fi
exit 0
