#!/usr/bin/env bash
# Installs what Ferry needs on a Debian machine (as root) and builds everything: system packages
# (clang, libbpf, bpftool, iproute2; prometheus for `sandbox up --prometheus`), npm dependencies, the BPF objects, the addon and TypeScript,
# and the dev cluster (devcluster/, Go; scripts/build-devcluster.sh) unless FERRY_DEVCLUSTER names one already built.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs packages, and Ferry needs root to load BPF programs)" >&2
  exit 1
fi

PACKAGES=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool iproute2 iputils-ping util-linux procps make g++ python3 pkg-config curl tcpdump prometheus graphviz)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# BPF programs compiled with -target bpf include <asm/types.h> from the multiarch directory.
test -d "/usr/include/$(uname -m)-linux-gnu/asm" || { echo "setup: /usr/include/$(uname -m)-linux-gnu/asm missing (linux-libc-dev)" >&2; exit 1; }

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build

# The dev cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from the upstream
# Go modules, for the k8s tests and the sandbox. Rebuilt only when its inputs changed.
if [ -n "${FERRY_DEVCLUSTER:-}" ]; then
  echo "setup: using the dev cluster FERRY_DEVCLUSTER=$FERRY_DEVCLUSTER${FERRY_KUBECTL:+ and FERRY_KUBECTL=$FERRY_KUBECTL}; not building devcluster/"
else
  scripts/build-devcluster.sh
fi
