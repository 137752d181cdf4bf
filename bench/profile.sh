#!/usr/bin/env bash
# Profile evalproxy under one redis-benchmark workload with perf.
#
#   bench/profile.sh relay   [-P N]   # set,get,incr,... relayed to the store
#   bench/profile.sh evalsha [-P N]   # EVALSHA of an INCR script
#
# Starts a store (scripting renamed away) and evalproxy on free loopback
# ports, records `perf record -g` on evalproxy for the duration of the run,
# prints the top of `perf report`, and stops everything. The perf data stays
# in build/bench/profile/perf.data. CALLGRAPH=dwarf records call chains
# through libraries built without frame pointers (libc, liblua).
set -uo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${1:-relay}; shift || true
PIPE=16
EVALPROXY=${EVALPROXY:-./evalproxy}
if [ "${1:-}" = -P ]; then PIPE=$2; fi
N=${PROFILE_N:-300000}
DIR=build/bench/profile
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3
rm -rf "$DIR"; mkdir -p "$DIR"
command -v perf >/dev/null || { echo "profile: perf not found" >&2; exit 1; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT

read -r STORE_PORT PROXY_PORT < <("$PYTHON" -c '
import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\n' "$STORE_PORT" "$PWD/$DIR" >"$DIR/store.conf"
for c in EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FUNCTION FCALL FCALL_RO; do
  echo "rename-command $c \"\"" >>"$DIR/store.conf"
done
redis-server "$DIR/store.conf" >"$DIR/store.log" 2>&1 & PIDS+=($!)
ready() { for _ in $(seq 50); do [ "$(timeout 2 redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0; sleep 0.1; done
  echo "profile: nothing answers PING on :$1" >&2; exit 1; }
ready "$STORE_PORT"
"$EVALPROXY" --bind 127.0.0.1 --port "$PROXY_PORT" --backend "redis://127.0.0.1:$STORE_PORT" \
  --loglevel warning ${PROXY_ARGS:-} >"$DIR/proxy.log" 2>&1 & PROXY_PID=$!; PIDS+=($PROXY_PID)
ready "$PROXY_PORT"

CALLGRAPH=${CALLGRAPH:-fp}
perf record --call-graph "$CALLGRAPH" -F 2000 -p "$PROXY_PID" -o "$DIR/perf.data" >"$DIR/perf.log" 2>&1 & PERF_PID=$!
sleep 0.5
case $WORKLOAD in
  relay)
    timeout 120 redis-benchmark -p "$PROXY_PORT" -c 50 -n "$N" -P "$PIPE" -r 10000 -q \
      -t set,get,incr,lpush,lpop,sadd,hset,mset 2>&1 | tr "\r" "\n" | grep "per second" ;;
  evalsha)
    SHA=$(redis-cli -p "$PROXY_PORT" SCRIPT LOAD "return redis.call('incr', KEYS[1])")
    [[ $SHA =~ ^[0-9a-f]{40}$ ]] || { echo "profile: SCRIPT LOAD failed: $SHA" >&2; exit 1; }
    timeout 120 redis-benchmark -p "$PROXY_PORT" -c 50 -n "$N" -P "$PIPE" -r 10000 -q \
      EVALSHA "$SHA" 1 "bench:incr:__rand_int__" 2>&1 | tr "\r" "\n" | grep "per second" ;;
  *) echo "profile: unknown workload $WORKLOAD (relay | evalsha)" >&2; exit 2 ;;
esac
kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null
cleanup
echo "== self time (top 25)"
perf report -i "$DIR/perf.data" --no-children --stdio -g none --sort dso,symbol 2>/dev/null \
  | grep -E '^ +[0-9]' | head -25
echo "== perf data: $DIR/perf.data  (perf report -i $DIR/perf.data --no-children)"
