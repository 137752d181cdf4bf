#!/usr/bin/env bash
# `make bench`: side-by-side throughput of evalproxy, the store it fronts,
# twemproxy in front of the same store, and native EVALSHA on redis-server 7.0.
#
# Everything runs on free loopback ports and is started and stopped here.
# Results: a table on stdout, build/bench/results.txt and build/bench/results.csv.
# Ratios matter, not absolute figures: each measurement runs BENCH_REPS times,
# targets interleaved, and the best run is reported.
#
# Knobs (environment):
#   BENCH_REPS       runs per measurement (default 3; the best is reported)
#   BENCH_N_P16      requests per test with -P 16 (default 100000)
#   BENCH_N_P1       requests per test with -P 1  (default 30000)
#   BENCH_CLIENTS    redis-benchmark -c          (default 50)
#   BENCH_MAX_SECONDS  give up (non-zero exit) past this many seconds (default 280)
#   EVALPROXY        the binary to measure (default ./evalproxy)
#   BENCH_MEMCACHED  1: also evalproxy in front of memcached (set,get,incr,mset and
#                    EVALSHA; default 0). redis-benchmark cannot speak the memcache
#                    protocol, so twemproxy in front of memcached is not measured.
#   BENCH_N_MC       requests per test against evalproxy-mc, any -P (default 20000)
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=build/bench
RUN=$OUT/run
REPS=${BENCH_REPS:-3}
MEMCACHED=${BENCH_MEMCACHED:-0}
MC_TESTS=set,get,incr,mset
N_MC=${BENCH_N_MC:-20000}
N_P16=${BENCH_N_P16:-100000}
N_P1=${BENCH_N_P1:-30000}
CLIENTS=${BENCH_CLIENTS:-50}
RANGE=10000
MAX_SECONDS=${BENCH_MAX_SECONDS:-280}
TESTS=set,get,incr,lpush,lpop,sadd,hset,mset
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3

rm -rf "$RUN"
mkdir -p "$RUN"
RAW=$OUT/raw.csv        # rep,target,pipeline,test,rps — every single run
MEM=$OUT/memory.csv     # process,when,vmhwm_kb,vmrss_kb
echo "rep,target,pipeline,test,rps" > "$RAW"
echo "process,when,vmhwm_kb,vmrss_kb" > "$MEM"

die() { echo "bench: $*" >&2; exit 1; }

for tool in redis-server redis-cli redis-benchmark nutcracker; do
  command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
done
EVALPROXY=${EVALPROXY:-./evalproxy}
[ -x "$EVALPROXY" ] || die "$EVALPROXY not built (make evalproxy)"

# ---------------------------------------------------------------- processes
PIDS=()
NAMES=()
CHILD=   # the redis-benchmark run in progress (run in the background, so signals act at once)
cleanup() {
  local i
  if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; CHILD=; fi
  for i in "${!PIDS[@]}"; do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for i in "${!PIDS[@]}"; do
    # bounded wait, then KILL
    for _ in $(seq 30); do kill -0 "${PIDS[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

# Distinct free loopback ports, all bound at once then released.
read -r STORE_PORT NATIVE_PORT PROXY_PORT TWEM_PORT TWEM_STATS_PORT MC_PORT MC_PROXY_PORT < <("$PYTHON" - <<'PY'
import socket
socks = []
for _ in range(7):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
PY
)
[ -n "${MC_PROXY_PORT:-}" ] || die "could not find free ports"

start() {  # start NAME CMD... : background, log to $RUN/NAME.log
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  eval "${name}_PID=$!"
}

wait_ping() {  # wait_ping NAME PORT
  local name=$1 port=$2 pidvar="${1}_PID"
  for _ in $(seq 100); do
    if ! kill -0 "${!pidvar}" 2>/dev/null; then
      echo "--- $RUN/$name.log:" >&2; tail -20 "$RUN/$name.log" >&2
      die "$name exited during startup"
    fi
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "--- $RUN/$name.log:" >&2; tail -20 "$RUN/$name.log" >&2
  die "$name did not answer PING on port $port within 10s"
}

# The store: scripting renamed away, as in front of a store without EVAL.
cat > "$RUN/store.conf" <<CONF
port $STORE_PORT
bind 127.0.0.1
save ""
appendonly no
daemonize no
dir $PWD/$RUN
CONF
for c in EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FUNCTION FCALL FCALL_RO; do
  echo "rename-command $c \"\"" >> "$RUN/store.conf"
done
# The native redis-server 7.0, for EVALSHA as Redis runs it.
cat > "$RUN/native.conf" <<CONF
port $NATIVE_PORT
bind 127.0.0.1
save ""
appendonly no
daemonize no
dir $PWD/$RUN
CONF
# twemproxy: one pool, the store as its only server.
cat > "$RUN/nutcracker.yml" <<CONF
bench:
  listen: 127.0.0.1:$TWEM_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  preconnect: true
  timeout: 5000
  servers:
   - 127.0.0.1:$STORE_PORT:1
CONF
nutcracker -t -c "$RUN/nutcracker.yml" >"$RUN/nutcracker-test.log" 2>&1 \
  || { cat "$RUN/nutcracker-test.log" >&2; die "nutcracker rejected its configuration"; }

start store  redis-server "$RUN/store.conf"
start native redis-server "$RUN/native.conf"
wait_ping store "$STORE_PORT"
wait_ping native "$NATIVE_PORT"
start evalproxy "$EVALPROXY" --bind 127.0.0.1 --port "$PROXY_PORT" \
  --backend "redis://127.0.0.1:$STORE_PORT" --loglevel warning
start twemproxy nutcracker -c "$RUN/nutcracker.yml" -s "$TWEM_STATS_PORT" -a 127.0.0.1 \
  -o "$RUN/nutcracker.out" -v 4
wait_ping evalproxy "$PROXY_PORT"
wait_ping twemproxy "$TWEM_PORT"
if [ "$MEMCACHED" = 1 ]; then
  command -v memcached >/dev/null || die "memcached not found (make deps installs it)"
  mc_user=(); [ "$(id -u)" = 0 ] && mc_user=(-u nobody)
  start memcached memcached "${mc_user[@]}" -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 256
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MC_PORT") 2>/dev/null && break; sleep 0.1; done
  start evalproxy_mc "$EVALPROXY" --bind 127.0.0.1 --port "$MC_PROXY_PORT" \
    --backend "memcached://127.0.0.1:$MC_PORT" --loglevel warning
  wait_ping evalproxy_mc "$MC_PROXY_PORT"
  [ "$(timeout 2 redis-cli -p "$MC_PROXY_PORT" SET bench:probe 1)" = OK ] \
    || die "evalproxy in front of memcached does not answer SET"
fi

mem() {  # mem WHEN: VmHWM/VmRSS of every process we started
  local i name pid hwm rss
  for i in "${!PIDS[@]}"; do
    name=${NAMES[$i]}; pid=${PIDS[$i]}
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    echo "$name,$1,${hwm:-},${rss:-}" >> "$MEM"
  done
}
mem start

echo "bench: store :$STORE_PORT  evalproxy :$PROXY_PORT  twemproxy :$TWEM_PORT  native :$NATIVE_PORT"
[ "$MEMCACHED" = 1 ] && echo "bench: memcached :$MC_PORT  evalproxy-mc (evalproxy in front of memcached) :$MC_PROXY_PORT"
echo "bench: -c $CLIENTS -r $RANGE, -n $N_P16 with -P 16, -n $N_P1 with -P 1; $REPS runs each, targets interleaved, best reported"

# ---------------------------------------------------------------- benchmarks
port_of() {
  case $1 in
    store) echo "$STORE_PORT" ;; evalproxy) echo "$PROXY_PORT" ;;
    twemproxy) echo "$TWEM_PORT" ;; native) echo "$NATIVE_PORT" ;;
    evalproxy-mc) echo "$MC_PROXY_PORT" ;;
  esac
}

FAILED=0
check_time() {
  if [ "$SECONDS" -gt "$MAX_SECONDS" ]; then
    die "over the time budget (${MAX_SECONDS}s); lower BENCH_N_P16/BENCH_N_P1 or BENCH_REPS"
  fi
}

# bench REP TARGET PIPELINE LABEL EXPECTED_ROWS ARGS... : run redis-benchmark, append to RAW.
# LABEL: empty to keep redis-benchmark's test names, else the name of the one row.
bench() {
  local rep=$1 target=$2 p=$3 label=$4 expect=$5; shift 5
  local n=$N_P1 out rc rows
  [ "$p" -gt 1 ] && n=$N_P16
  [ "$target" = evalproxy-mc ] && n=$N_MC
  out=$RUN/bench-$target-P$p-$rep-${label:-std}.csv
  check_time
  timeout 120 redis-benchmark -h 127.0.0.1 -p "$(port_of "$target")" -c "$CLIENTS" -n "$n" \
    -P "$p" -r "$RANGE" --csv "$@" >"$out" 2>"$out.err" &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=
  rows=$(grep -c '^"[A-Z]' "$out" 2>/dev/null)
  if [ "$rc" -ne 0 ] || [ "${rows:-0}" -ne "$expect" ] \
     || grep -qE 'Error from server|Could not connect|Connection reset' "$out" "$out.err"; then
    echo "bench: redis-benchmark against $target (-P $p ${label:-$TESTS}) failed (rc $rc, $rows/$expect results):" >&2
    sed 's/^/  | /' "$out.err" "$out" | tail -8 >&2
    FAILED=1
    return 1
  fi
  # "TEST","rps",... -> rep,target,pipeline,test,rps
  tail -n +2 "$out" | while IFS=, read -r test rps _; do
    test=${test//\"/}; rps=${rps//\"/}
    [ -n "$label" ] && test=$label
    echo "$rep,$target,$p,$test,$rps" >> "$RAW"
  done
  printf '.'
}

NTESTS=$(tr ',' '\n' <<<"$TESTS" | wc -l)
printf 'bench: relay'
for rep in $(seq "$REPS"); do
  for p in 16 1; do
    for target in store evalproxy twemproxy; do
      bench "$rep" "$target" "$p" "" "$NTESTS" -t "$TESTS"
    done
    if [ "$MEMCACHED" = 1 ]; then
      bench "$rep" evalproxy-mc "$p" "" "$(tr ',' '\n' <<<"$MC_TESTS" | wc -l)" -t "$MC_TESTS"
    fi
  done
done
echo

# Scripts: the same script body, loaded on the proxy and on the native server.
INCR_SCRIPT="return redis.call('incr', KEYS[1])"
GET_SCRIPT="return redis.call('get', KEYS[1])"
sha() {  # sha TARGET BODY
  timeout 5 redis-cli -h 127.0.0.1 -p "$(port_of "$1")" SCRIPT LOAD "$2" 2>&1
}
INCR_SHA_P=$(sha evalproxy "$INCR_SCRIPT"); GET_SHA_P=$(sha evalproxy "$GET_SCRIPT")
INCR_SHA_N=$(sha native "$INCR_SCRIPT");    GET_SHA_N=$(sha native "$GET_SCRIPT")
for s in "$INCR_SHA_P" "$GET_SHA_P" "$INCR_SHA_N" "$GET_SHA_N"; do
  [[ $s =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD failed: $s"
done
[ "$INCR_SHA_P" = "$INCR_SHA_N" ] && [ "$GET_SHA_P" = "$GET_SHA_N" ] \
  || die "SCRIPT LOAD gave different SHA1s on evalproxy and redis-server"
INCR_SHA=$INCR_SHA_P; GET_SHA=$GET_SHA_P
SCRIPT_TARGETS="evalproxy native"
if [ "$MEMCACHED" = 1 ]; then
  SCRIPT_TARGETS="evalproxy native evalproxy-mc"
  for b in "$INCR_SCRIPT" "$GET_SCRIPT"; do
    s=$(sha evalproxy-mc "$b")
    [ "$s" = "$INCR_SHA" ] || [ "$s" = "$GET_SHA" ] || die "SCRIPT LOAD on evalproxy-mc failed: $s"
  done
fi

# Keys the read-only script finds (on the store, through which evalproxy reads, and on native).
LOAD_PORTS="$STORE_PORT $NATIVE_PORT"
[ "$MEMCACHED" = 1 ] && LOAD_PORTS="$LOAD_PORTS $MC_PROXY_PORT"
for port in $LOAD_PORTS; do
  awk -v n="$RANGE" 'BEGIN { for (i = 0; i < n; i++) printf "SET bench:get:%012d value-%d\r\n", i, i }' \
    | timeout 30 redis-cli -h 127.0.0.1 -p "$port" --pipe >"$RUN/pipe-$port.log" 2>&1 \
    || { cat "$RUN/pipe-$port.log" >&2; die "could not load keys into :$port"; }
done
# Fresh counters on both.
for port in "$STORE_PORT" "$NATIVE_PORT"; do
  redis-cli -h 127.0.0.1 -p "$port" --scan --pattern 'bench:incr:*' | \
    xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$port" DEL >/dev/null
done

printf 'bench: scripts'
for rep in $(seq "$REPS"); do
  for p in 16 1; do
    for target in $SCRIPT_TARGETS; do
      bench "$rep" "$target" "$p" "EVALSHA incr" 1 EVALSHA "$INCR_SHA" 1 'bench:incr:__rand_int__'
      bench "$rep" "$target" "$p" "EVALSHA get" 1 EVALSHA "$GET_SHA" 1 'bench:get:__rand_int__'
    done
  done
done
echo

# Sanity: the script ran and changed the store (through evalproxy) as on native.
for port in "$STORE_PORT" "$NATIVE_PORT"; do
  k=$(redis-cli -h 127.0.0.1 -p "$port" --scan --pattern 'bench:incr:*' | head -1)
  [ -n "$k" ] || { echo "bench: no bench:incr:* keys on :$port after EVALSHA incr" >&2; FAILED=1; }
done

# Every component must still be alive.
for i in "${!PIDS[@]}"; do
  kill -0 "${PIDS[$i]}" 2>/dev/null || { echo "bench: ${NAMES[$i]} died during the run" >&2; FAILED=1; }
done

mem end
cleanup

"$PYTHON" bench/report.py "$RAW" "$MEM" "$OUT/results.csv" "$OUT/results.txt" \
  --note "$CLIENTS clients, -r $RANGE, -n $N_P16 with -P 16 and $N_P1 with -P 1$([ "$MEMCACHED" = 1 ] && echo " (-n $N_MC against evalproxy-mc)"); best of $REPS runs per cell, targets interleaved; redis-benchmark on the same $(nproc)-core machine. ${SECONDS}s total." \
  || FAILED=1

if [ "$FAILED" -ne 0 ]; then
  echo "bench: FAILED (see messages above; logs in $RUN)" >&2
  exit 1
fi
echo "bench: results in $OUT/results.txt and $OUT/results.csv"
exit 0
