#!/usr/bin/env bash
# `make run`: start a local redis-server store (its scripting commands
# renamed away, so every script runs in the proxy) and the proxy in front of
# it on 127.0.0.1:6380, in the foreground. Ctrl-C stops both.
# `make run BACKEND=memcached`: the same in front of memcached.
# `make run BACKEND=pool`: in front of a pool of three redis-servers (ketama,
# placed as twemproxy places keys). `make run BACKEND=cluster`: in front of
# a Redis Cluster of three masters.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=build/run
mkdir -p "$RUN_DIR"
PROXY_PORT=${PROXY_PORT:-6380}
STORE_PORT=${STORE_PORT:-6379}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while port_busy "$STORE_PORT"; do STORE_PORT=$((STORE_PORT + 1000)); done
if port_busy "$PROXY_PORT"; then
  echo "port $PROXY_PORT is taken; set PROXY_PORT=... to use another" >&2
  exit 1
fi

if [ "${BACKEND:-redis}" = memcached ]; then
  while port_busy "$STORE_PORT"; do STORE_PORT=$((STORE_PORT + 1)); done
  memcached -l 127.0.0.1 -p "$STORE_PORT" -U 0 -m 64 $( [ "$(id -u)" = 0 ] && echo "-u nobody" ) &
  STORE_PID=$!
  trap 'kill $STORE_PID 2>/dev/null || true; wait $STORE_PID 2>/dev/null || true' EXIT
  for _ in $(seq 50); do port_busy "$STORE_PORT" && break; sleep 0.1; done
  echo "store: memcached on 127.0.0.1:$STORE_PORT"
  echo "proxy: evalproxy on 127.0.0.1:$PROXY_PORT — try: redis-cli -p $PROXY_PORT"
  ./evalproxy proxy.conf --port "$PROXY_PORT" --backend "memcached://127.0.0.1:$STORE_PORT"
  exit $?
fi

# A redis-server with its scripting renamed away: store_conf NAME PORT [extra lines...]
store_conf() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$RUN_DIR/$name"
  {
    echo "port $port"
    echo "bind 127.0.0.1"
    echo 'save ""'
    echo "appendonly no"
    echo "dir $PWD/$RUN_DIR/$name"
    echo "logfile $PWD/$RUN_DIR/$name/store.log"
    for c in EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FUNCTION FCALL FCALL_RO; do
      echo "rename-command $c \"\""
    done
    for line in "$@"; do echo "$line"; done
  } > "$RUN_DIR/$name/store.conf"
}

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
start_store() { # name port [extra lines...]
  store_conf "$@"
  redis-server "$RUN_DIR/$1/store.conf" &
  PIDS+=($!)
  for _ in $(seq 50); do port_busy "$2" && break; sleep 0.1; done
}
free_ports() { # n: sets PORTS to n free ports from STORE_PORT up
  PORTS=()
  local p=$STORE_PORT
  while [ ${#PORTS[@]} -lt "$1" ]; do
    port_busy "$p" || port_busy $((p + 10000)) || PORTS+=("$p")
    p=$((p + 1))
  done
}

case "${BACKEND:-redis}" in
  pool)
    free_ports 3
    args=()
    for p in "${PORTS[@]}"; do
      start_store "store-$p" "$p"
      args+=(--backend "redis://127.0.0.1:$p")
    done
    echo "stores: a pool of redis-servers on 127.0.0.1:${PORTS[*]} (ketama, scripting renamed away)"
    echo "proxy: evalproxy on 127.0.0.1:$PROXY_PORT — try: redis-cli -p $PROXY_PORT"
    ./evalproxy proxy.conf --port "$PROXY_PORT" "${args[@]}" --distribution ketama
    ;;
  cluster)
    free_ports 3
    seeds=()
    for p in "${PORTS[@]}"; do
      start_store "node-$p" "$p" "cluster-enabled yes" "cluster-config-file nodes.conf" \
        "cluster-node-timeout 2000"
      seeds+=("127.0.0.1:$p")
    done
    redis-cli --cluster create "${seeds[@]}" --cluster-yes >"$RUN_DIR/cluster-create.log"
    for _ in $(seq 100); do
      redis-cli -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
    echo "stores: a Redis Cluster of three masters on 127.0.0.1:${PORTS[*]} (scripting renamed away)"
    echo "proxy: evalproxy on 127.0.0.1:$PROXY_PORT — try: redis-cli -p $PROXY_PORT"
    ./evalproxy proxy.conf --port "$PROXY_PORT" --backend "redis-cluster://$(IFS=,; echo "${seeds[*]}")"
    ;;
  *)
    start_store store "$STORE_PORT"
    echo "store: redis-server on 127.0.0.1:$STORE_PORT (scripting renamed away)"
    echo "proxy: evalproxy on 127.0.0.1:$PROXY_PORT — try: redis-cli -p $PROXY_PORT"
    ./evalproxy proxy.conf --port "$PROXY_PORT" --backend "redis://127.0.0.1:$STORE_PORT"
    ;;
esac
