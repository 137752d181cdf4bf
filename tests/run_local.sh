#!/usr/bin/env bash
# `make run`: start a local redis-server store (its scripting commands
# renamed away, so every script runs in the proxy) and the proxy in front of
# it on 127.0.0.1:6380, in the foreground. Ctrl-C stops both.
# `make run BACKEND=memcached`: the same in front of memcached.
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

cat > "$RUN_DIR/store.conf" <<CONF
port $STORE_PORT
bind 127.0.0.1
save ""
appendonly no
dir $PWD/$RUN_DIR
logfile $PWD/$RUN_DIR/store.log
CONF
for c in EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FUNCTION FCALL FCALL_RO; do
  echo "rename-command $c \"\"" >> "$RUN_DIR/store.conf"
done

redis-server "$RUN_DIR/store.conf" &
STORE_PID=$!
trap 'kill $STORE_PID 2>/dev/null || true; wait $STORE_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do port_busy "$STORE_PORT" && break; sleep 0.1; done

echo "store: redis-server on 127.0.0.1:$STORE_PORT (scripting renamed away)"
echo "proxy: evalproxy on 127.0.0.1:$PROXY_PORT — try: redis-cli -p $PROXY_PORT"
./evalproxy proxy.conf --port "$PROXY_PORT" --backend "redis://127.0.0.1:$STORE_PORT"
