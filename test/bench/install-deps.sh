#!/usr/bin/env bash
# Installs the Debian programs the benchmarks compare against or drive (not needed by npm test):
# dnsperf (DNS load), knot and bind9 (reference DNS servers), wrk (load for the register and renewal
# benches), gcc (builds the blocking bench's C holder, wake-holder.c). Run as root: bash test/bench/install-deps.sh
set -euo pipefail
missing=()
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
command -v knotd >/dev/null 2>&1 || missing+=(knot)
command -v named >/dev/null 2>&1 || missing+=(bind9)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
if [ "${#missing[@]}" -eq 0 ]; then echo "benchmark tools present"; exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
# The packages start system services; the benchmark runs its own instances on other ports.
for svc in knot named bind9; do systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
echo "installed: ${missing[*]}"
