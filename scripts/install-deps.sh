#!/usr/bin/env bash
# Installs everything CloudBridge needs on a Debian host (run as root). Idempotent and quick when
# everything is already there: it checks for each tool before touching apt, and skips `npm ci`
# when node_modules matches package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(clang llvm libbpf-dev bpftool bird2 wireguard-go wireguard-tools iproute2 iperf3 netsniff-ng
  nftables iputils-ping util-linux procps psmisc curl gcc-multilib gcc make chromium prometheus postgresql openssl)
# One command per package that proves it is installed (dpkg -s is slower and misses renamed packages).
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The notify test plays systemd's side with python3 (Node cannot bind a unix datagram socket).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# bird2's package enables a system-wide bird service; the agent runs its own BIRD, so keep it off.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet bird 2>/dev/null; then
  systemctl disable --now bird >/dev/null 2>&1 || true
fi
pkill -x bird -u root --pidfile /run/bird/bird.pid 2>/dev/null || true

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

stamp=node_modules/.cbr-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "install-deps: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# Commit habits (subjects of 72 characters at most) for whoever commits from this checkout.
if git rev-parse --git-dir >/dev/null 2>&1 && [ "$(git config core.hooksPath)" != scripts/git-hooks ]; then
  git config core.hooksPath scripts/git-hooks
fi
