#!/usr/bin/env bash
# Profile evalproxy under one redis-benchmark workload with perf.
#
#   bench/profile.sh relay   [-P N] [-c N]   # set,get,incr,... relayed to the store
#   bench/profile.sh get     [-P N] [-c N]   # GET alone (with -c 1: one client's round trips)
#   bench/profile.sh evalsha [-P N] [-c N]   # EVALSHA of an INCR script
#   bench/profile.sh calls                   # one client running a script of 10 000
#                                            # sequential redis.call's (the calls rows)
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
CONC=50
EVALPROXY=${EVALPROXY:-./evalproxy}
while [ $# -ge 2 ]; do
  case $1 in -P) PIPE=$2 ;; -c) CONC=$2 ;; *) echo "profile: unknown option $1" >&2; exit 2 ;; esac
  shift 2
done
# -c 1 runs one request at a time: fewer of them fill the same seconds.
N=${PROFILE_N:-$([ "$CONC" = 1 ] && echo 30000 || echo 300000)}
DIR=build/bench/profile
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3
rm -rf "$DIR"; mkdir -p "$DIR"
# Pinned as make bench pins: store and proxy share core 0, the load runs on core 1.
SRV_PIN=(); LOAD_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ] && [ "${PIN:-1}" = 1 ]; then
  SRV_PIN=(taskset -c 0); LOAD_PIN=(taskset -c 1)
fi
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
"${SRV_PIN[@]}" redis-server "$DIR/store.conf" >"$DIR/store.log" 2>&1 & PIDS+=($!)
ready() { for _ in $(seq 50); do [ "$(timeout 2 redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0; sleep 0.1; done
  echo "profile: nothing answers PING on :$1" >&2; exit 1; }
ready "$STORE_PORT"
"${SRV_PIN[@]}" "$EVALPROXY" --bind 127.0.0.1 --port "$PROXY_PORT" --backend "redis://127.0.0.1:$STORE_PORT" \
  --loglevel warning ${PROXY_ARGS:-} >"$DIR/proxy.log" 2>&1 & PROXY_PID=$!; PIDS+=($PROXY_PID)
ready "$PROXY_PORT"

CALLGRAPH=${CALLGRAPH:-fp}
perf record --call-graph "$CALLGRAPH" -F 2000 -p "$PROXY_PID" -o "$DIR/perf.data" >"$DIR/perf.log" 2>&1 & PERF_PID=$!
sleep 0.5
case $WORKLOAD in
  relay)
    timeout 120 "${LOAD_PIN[@]}" redis-benchmark -p "$PROXY_PORT" -c "$CONC" -n "$N" -P "$PIPE" -r 10000 -q \
      -t set,get,incr,lpush,lpop,sadd,hset,mset 2>&1 | tr "\r" "\n" | grep "per second" ;;
  get)
    timeout 120 "${LOAD_PIN[@]}" redis-benchmark -p "$PROXY_PORT" -c "$CONC" -n "$N" -P "$PIPE" -r 10000 -q \
      -t get 2>&1 | tr "\r" "\n" | grep "per second" ;;
  calls)
    SHA=$(redis-cli -p "$PROXY_PORT" SCRIPT LOAD "$(cat bench/calls.lua)")
    [[ $SHA =~ ^[0-9a-f]{40}$ ]] || { echo "profile: SCRIPT LOAD failed: $SHA" >&2; exit 1; }
    timeout 120 "${LOAD_PIN[@]}" redis-benchmark -p "$PROXY_PORT" -c 1 -n "${PROFILE_N:-20}" -q \
      EVALSHA "$SHA" 2 bench:calls:s bench:calls:h 2>&1 | tr "\r" "\n" | grep "per second" ;;
  evalsha)
    SHA=$(redis-cli -p "$PROXY_PORT" SCRIPT LOAD "return redis.call('incr', KEYS[1])")
    [[ $SHA =~ ^[0-9a-f]{40}$ ]] || { echo "profile: SCRIPT LOAD failed: $SHA" >&2; exit 1; }
    timeout 120 "${LOAD_PIN[@]}" redis-benchmark -p "$PROXY_PORT" -c "$CONC" -n "$N" -P "$PIPE" -r 10000 -q \
      EVALSHA "$SHA" 1 "bench:incr:__rand_int__" 2>&1 | tr "\r" "\n" | grep "per second" ;;
  *) echo "profile: unknown workload $WORKLOAD (relay | get | evalsha | calls)" >&2; exit 2 ;;
esac
kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null
cleanup
echo "== self time (top 25)"
perf report -i "$DIR/perf.data" --no-children --stdio -g none --sort dso,symbol 2>/dev/null \
  | grep -E '^ +[0-9]' | head -25
echo "== perf data: $DIR/perf.data  (perf report -i $DIR/perf.data --no-children)"
