#!/usr/bin/env bash
# Installs the Debian packages dhtkit builds with, when any is missing. Safe to run again.
set -euo pipefail

packages=(cmake ninja-build g++ clang pkg-config make
          libfmt-dev catch2 libbenchmark-dev libtomlplusplus-dev libxxhash-dev
          libcuckoo-dev libtbb-dev libboost-dev libspdlog-dev
          libsodium-dev  # crypto_auth: the cluster secret's MACs
          libcli11-dev libedit-dev  # the programs' flags; the prompt's line editing and history
          iproute2  # ip netns, veth and bridges: the partition test's network
          redis-server redis-tools  # the durability benchmark runs Redis beside us (no service is started)
          python3-redis)  # the RESP tests: redis-py's RedisCluster against a dhtkit cluster (Debian's /usr/bin/python3)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
