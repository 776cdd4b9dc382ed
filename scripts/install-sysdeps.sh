#!/usr/bin/env bash
# Installs the system packages kernelpilot needs, only when missing and only as root.
# `install-sysdeps.sh test` adds what only the test suite uses (a headless browser).
set -u
need=()
command -v clang >/dev/null || need+=(clang)
command -v llvm-strip >/dev/null || need+=(llvm)
command -v bpftool >/dev/null || need+=(bpftool)
[ -e /usr/include/bpf/libbpf.h ] || need+=(libbpf-dev)
ldconfig -p | grep -q 'libbpf.so.1 ' || need+=(libbpf1)
command -v stress-ng >/dev/null || need+=(stress-ng)
command -v cyclictest >/dev/null || need+=(rt-tests)
command -v perf >/dev/null || need+=(linux-perf)  # perf bench sched (bench sched's throughput pass)
command -v strace >/dev/null || need+=(strace)
command -v setpriv >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
if [ "${1:-}" = test ]; then  # what only the test suite needs
  command -v chromium >/dev/null || need+=(chromium)
  command -v tmux >/dev/null || need+=(tmux)
  command -v prometheus >/dev/null || need+=(prometheus)  # scrapes `kpilot serve` in tests/fleet
fi
command -v gcc >/dev/null || need+=(gcc)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "kernelpilot: missing system packages (${need[*]}); run as root or: sudo apt-get install ${need[*]}" >&2
  exit 0
fi
echo "kernelpilot: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
