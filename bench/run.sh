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
#   PIN              1 (default): store, proxies, memcached and native redis on core 0,
#                    redis-benchmark, memcaslap and bench/scale.py on core 1 (taskset);
#                    0: no pinning
#   QUICK            1: one run per measurement, fewer requests (under 2 minutes)
#   BENCH_REPS       runs per measurement (default 3; QUICK=1: 1; the best is reported)
#   BENCH_N_P16      requests per test with -P 16 (default 100000; QUICK=1: 20000)
#   BENCH_N_P1       requests per test with -P 1  (default 30000; QUICK=1: 8000)
#   BENCH_N_C1       requests per test with -c 1  (default 10000; QUICK=1: 3000)
#   BENCH_N_CALLS    runs of the 10 000-call script (bench/calls.lua) per calls row
#   BENCH_CALLS_LOAD_N  GETs of the 50 clients the calls script runs beside (default: enough
#                    for about BENCH_CALLS_LOAD_SECONDS, 4 s, at the GET -P 1 rate measured
#                    on evalproxy in the relay rows; at least 4 x BENCH_N_P1)
#                    (default 6; QUICK=1: 2)
#   BENCH_CLIENTS    redis-benchmark -c          (default 50; the -c 1 rows use 1)
#   BENCH_MAX_SECONDS  give up (non-zero exit) past this many seconds (default 660)
#   EVALPROXY        the binary to measure (default ./evalproxy)
#   BENCH_MEMCACHED  1 (default): also memcached: memcaslap (get/set 9:1) against
#                    memcached direct and twemproxy in front of memcached, and
#                    redis-benchmark against evalproxy in front of memcached (set, get,
#                    incr, mset and EVALSHA); 0: none of these
#   BENCH_N_MC       requests per test against evalproxy-mc, any -P (default 20000)
#   BENCH_MC_SECONDS seconds per memcaslap run (default 5; QUICK=1: 2)
#   BENCH_SCALE      1 (default): memory per idle connection and per script in flight,
#                    on an evalproxy of its own (bench/scale.py); 0: skipped
#   BENCH_SCALE_CONNS    idle connections (default 10000)
#   BENCH_SCALE_SCRIPTS  scripts in flight at once, on as many of them (default 1000)
#   BENCH_SCALE_OUT  1 (default): SET/GET and EVALSHA through evalproxy in front of pools of
#                    1, 2 and 3 redis-servers (ketama), beside twemproxy in front of the same
#                    pools, and in front of a 3-master Redis Cluster, beside redis-benchmark
#                    --cluster against the cluster itself; 0: skipped
#   BENCH_SCALE_OUT_N_P16, BENCH_SCALE_OUT_N_P1  requests per scale-out test (default half of
#                    BENCH_N_P16 and BENCH_N_P1, QUICK=1: all of BENCH_N_P16; 44 runs per repetition)
#   BENCH_CLUSTER_SECONDS  each redis-benchmark --cluster run lasts at least about this long
#                    (default 2; QUICK=1: 1.5): its request count is sized for it, see cluster_n
#   BENCH_FLEET      1 (default): SET/GET and EVALSHA through fleets of 1, 2 and 3 evalproxy
#                    members (one fleet-name) in front of one redis-server, beside one evalproxy
#                    without a fleet in front of the same store; 0: skipped
#   BENCH_FLEET_N_P16, BENCH_FLEET_N_P1  requests per fleet test, split over the members
#                    (default: BENCH_SCALE_OUT_N_P16 and BENCH_N_P1)
#   BENCH_FLEET_CPUS cores for the fleet members, taken in turn (default: every core but 0, the
#                    store's, and 1, the load generators'; with 2 cores that leaves none, so 0)
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=build/bench
RUN=$OUT/run
QUICK=${QUICK:-0}
PIN=${PIN:-1}
if [ "$QUICK" = 1 ]; then
  REPS=${BENCH_REPS:-1}; N_P16=${BENCH_N_P16:-20000}; N_P1=${BENCH_N_P1:-8000}; N_C1=${BENCH_N_C1:-3000}
  N_CALLS=${BENCH_N_CALLS:-2}
  N_MC=${BENCH_N_MC:-5000}; MC_SECONDS=${BENCH_MC_SECONDS:-2}
else
  REPS=${BENCH_REPS:-3}; N_P16=${BENCH_N_P16:-100000}; N_P1=${BENCH_N_P1:-30000}; N_C1=${BENCH_N_C1:-10000}
  N_CALLS=${BENCH_N_CALLS:-6}
  N_MC=${BENCH_N_MC:-20000}; MC_SECONDS=${BENCH_MC_SECONDS:-5}
fi
MEMCACHED=${BENCH_MEMCACHED:-1}
SCALE=${BENCH_SCALE:-1}
SCALE_CONNS=${BENCH_SCALE_CONNS:-10000}
SCALE_SCRIPTS=${BENCH_SCALE_SCRIPTS:-1000}
SCALE_OUT=${BENCH_SCALE_OUT:-1}
# Halved for the default run's time; QUICK's -P 16 count is short enough already.
SO_N_P16=${BENCH_SCALE_OUT_N_P16:-$([ "$QUICK" = 1 ] && echo "$N_P16" || echo $((N_P16 / 2)))}
SO_N_P1=${BENCH_SCALE_OUT_N_P1:-$((N_P1 / 2))}
CLUSTER_SECONDS=${BENCH_CLUSTER_SECONDS:-$([ "$QUICK" = 1 ] && echo 1.5 || echo 2)}
FLEET=${BENCH_FLEET:-1}
# Not halved at -P 1: split over three members, shorter runs move too much.
FLEET_N_P16=${BENCH_FLEET_N_P16:-$SO_N_P16}
FLEET_N_P1=${BENCH_FLEET_N_P1:-$N_P1}
MC_TESTS=set,get,incr,mset
CLIENTS=${BENCH_CLIENTS:-50}
RANGE=10000
MAX_SECONDS=${BENCH_MAX_SECONDS:-660}
TESTS=set,get,incr,lpush,lpop,sadd,hset,mset
C1_TESTS=set,get   # relay tests also run with -c 1
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3

rm -rf "$RUN"
mkdir -p "$RUN"
# Every single run: pipeline is 16, 1 or c1 (-c 1 -P 1); latencies in ms; CPU in
# microseconds per request of the server that executes the commands (the store, or
# native for native) and of the proxy in the path (evalproxy or twemproxy), from /proc.
RAW=$OUT/raw.csv
MEM=$OUT/memory.csv     # process,when,vmhwm_kb,vmrss_kb
SCALE_CSV=$OUT/scale.csv  # metric,value from bench/scale.py
# Fleet rows: every member's own redis-benchmark run (RAW has their sum), and
# where each member ran and what it forwarded.
FLEET_RUNS=$OUT/fleet-runs.csv
FLEET_INFO=$OUT/fleet.csv
echo "rep,target,pipeline,test,rps,p50_ms,p99_ms,server_cpu_us,proxy_cpu_us,avg_ms" > "$RAW"
rm -f "$SCALE_CSV" "$FLEET_RUNS" "$FLEET_INFO"
echo "process,when,vmhwm_kb,vmrss_kb" > "$MEM"

die() { echo "bench: $*" >&2; exit 1; }

# CPU pinning: servers and proxies share core 0, the load generators get core 1.
SRV_PIN=(); LOAD_PIN=()
if [ "$PIN" = 1 ]; then
  if ! command -v taskset >/dev/null; then
    echo "bench: taskset not found (util-linux); running unpinned" >&2; PIN=0
  elif [ "$(nproc)" -lt 2 ]; then
    echo "bench: fewer than 2 usable cores; running unpinned" >&2; PIN=0
  else
    SRV_PIN=(taskset -c 0); LOAD_PIN=(taskset -c 1)
  fi
fi
if [ "$PIN" = 1 ]; then
  PIN_NOTE="pinned: store, proxies and native redis on core 0, load generators (redis-benchmark, memcaslap, bench/scale.py) on core 1 (PIN=0 disables)"
else
  PIN_NOTE="unpinned (PIN=0): all processes share the $(nproc) cores"
fi

for tool in redis-server redis-cli redis-benchmark nutcracker; do
  command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
done
if [ "$MEMCACHED" = 1 ]; then
  [ -x "${KVLOAD:-build/bench-tools/kvload}" ] || die "bench/kvload not built (make bench builds it; BENCH_MEMCACHED=0 skips memcached)"
  for tool in memcached memcaslap; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps installs it; BENCH_MEMCACHED=0 skips memcached)"
  done
fi
# Open files as far as allowed: the scale rows hold $SCALE_CONNS connections on
# the proxy (which inherits this limit) and in bench/scale.py.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$SCALE" = 1 ] && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((SCALE_CONNS + 200)) ]; then
  die "open files limit $(ulimit -n) is too low for BENCH_SCALE_CONNS=$SCALE_CONNS (raise ulimit -Hn, lower it, or BENCH_SCALE=0)"
fi
EVALPROXY=${EVALPROXY:-./evalproxy}
[ -x "$EVALPROXY" ] || die "$EVALPROXY not built (make evalproxy)"

# ---------------------------------------------------------------- processes
PIDS=()
NAMES=()
CHILD=   # the redis-benchmark runs in progress (in the background, so signals act at once)
cleanup() {
  local i
  if [ -n "$CHILD" ]; then kill -TERM $CHILD 2>/dev/null; wait $CHILD 2>/dev/null; CHILD=; fi
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
# Scale-out rows: pool stores, an evalproxy and a twemproxy pool per pool size,
# the cluster nodes with their bus ports (cluster-port, not port + 10000).
# Fleet rows: a store, one evalproxy without a fleet, the members of fleets of 1, 2 and 3.
read -r STORE_PORT NATIVE_PORT PROXY_PORT TWEM_PORT TWEM_STATS_PORT MC_PORT MC_PROXY_PORT \
  TWEM_MC_PORT SCALE_PORT PL_PORT RB_PORT \
  POOL_STORE1_PORT POOL_STORE2_PORT POOL_STORE3_PORT \
  EVALPROXY_POOL1_PORT EVALPROXY_POOL2_PORT EVALPROXY_POOL3_PORT \
  TWEM_POOL1_PORT TWEM_POOL2_PORT TWEM_POOL3_PORT TWEM_POOLS_STATS_PORT \
  CLUSTER_NODE1_PORT CLUSTER_NODE2_PORT CLUSTER_NODE3_PORT \
  CLUSTER_BUS1_PORT CLUSTER_BUS2_PORT CLUSTER_BUS3_PORT EVALPROXY_CLUSTER_PORT \
  FLEET_STORE_PORT FLEET_SINGLE_PORT FLEET1_1_PORT FLEET2_1_PORT FLEET2_2_PORT \
  FLEET3_1_PORT FLEET3_2_PORT FLEET3_3_PORT < <("$PYTHON" - <<'PY'
import socket
socks = []
for _ in range(36):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
PY
)
[ -n "${FLEET3_3_PORT:-}" ] || die "could not find free ports"

start() {  # start NAME CMD... : background, log to $RUN/NAME.log
  local name=$1; shift
  "${SRV_PIN[@]}" "$@" >"$RUN/$name.log" 2>&1 &
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
# twemproxy: one pool, the store as its only server (and with BENCH_MEMCACHED=1 a
# second, memcache-protocol pool with memcached as its only server).
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
if [ "$MEMCACHED" = 1 ]; then
  cat >> "$RUN/nutcracker.yml" <<CONF
bench_mc:
  listen: 127.0.0.1:$TWEM_MC_PORT
  hash: fnv1a_64
  distribution: ketama
  redis: false
  auto_eject_hosts: false
  preconnect: true
  timeout: 5000
  servers:
   - 127.0.0.1:$MC_PORT:1
CONF
fi
nutcracker -t -c "$RUN/nutcracker.yml" >"$RUN/nutcracker-test.log" 2>&1 \
  || { cat "$RUN/nutcracker-test.log" >&2; die "nutcracker rejected its configuration"; }

start store  redis-server "$RUN/store.conf"
start native redis-server "$RUN/native.conf"
wait_ping store "$STORE_PORT"
wait_ping native "$NATIVE_PORT"
# memcache protocol probe: mc_probe PORT -> 0 if a set is STORED within 2s.
mc_probe() {
  local fd line=
  exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'set bench:probe 0 0 1\r\n1\r\n' >&"$fd"
  IFS= read -r -t 2 line <&"$fd"
  exec {fd}>&-
  [ "${line%$'\r'}" = STORED ]
} 2>/dev/null
if [ "$MEMCACHED" = 1 ]; then  # before twemproxy, which connects to it at start
  mc_user=(); [ "$(id -u)" = 0 ] && mc_user=(-u nobody)
  start memcached memcached "${mc_user[@]}" -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 256
  for _ in $(seq 50); do mc_probe "$MC_PORT" && break; sleep 0.1; done
  mc_probe "$MC_PORT" || { tail -20 "$RUN/memcached.log" >&2; die "memcached does not answer on :$MC_PORT"; }
fi
start evalproxy "$EVALPROXY" --bind 127.0.0.1 --port "$PROXY_PORT" \
  --backend "redis://127.0.0.1:$STORE_PORT" --loglevel warning
start twemproxy nutcracker -c "$RUN/nutcracker.yml" -s "$TWEM_STATS_PORT" -a 127.0.0.1 \
  -o "$RUN/nutcracker.out" -v 4
wait_ping evalproxy "$PROXY_PORT"
# evalproxy-pl: the same with lua-script-pipelining (scripts rows, -P 16 only)
start evalproxy_pl "$EVALPROXY" --bind 127.0.0.1 --port "$PL_PORT" \
  --backend "redis://127.0.0.1:$STORE_PORT" --loglevel warning --lua-script-pipelining yes
wait_ping evalproxy_pl "$PL_PORT"
# evalproxy-rb: the same with lua-rollback-on-error (every run keeps an undo
# journal), for the journal's cost on scripts that write
start evalproxy_rb "$EVALPROXY" --bind 127.0.0.1 --port "$RB_PORT" \
  --backend "redis://127.0.0.1:$STORE_PORT" --loglevel warning --lua-rollback-on-error yes
wait_ping evalproxy_rb "$RB_PORT"
wait_ping twemproxy "$TWEM_PORT"
if [ "$MEMCACHED" = 1 ]; then
  for _ in $(seq 50); do mc_probe "$TWEM_MC_PORT" && break; sleep 0.1; done
  mc_probe "$TWEM_MC_PORT" || die "twemproxy's memcache pool does not answer on :$TWEM_MC_PORT"
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
[ "$MEMCACHED" = 1 ] && echo "bench: memcached :$MC_PORT  twemproxy-mc (twemproxy in front of memcached) :$TWEM_MC_PORT  evalproxy-mc (evalproxy in front of memcached) :$MC_PROXY_PORT"
echo "bench: -c $CLIENTS -r $RANGE, -n $N_P16 with -P 16, -n $N_P1 with -P 1, -n $N_C1 with -c 1; $REPS runs each, targets interleaved, best reported"
echo "bench: $PIN_NOTE$([ "$QUICK" = 1 ] && echo "; QUICK=1")"

# ---------------------------------------------------------------- benchmarks
port_of() {
  case $1 in
    store) echo "$STORE_PORT" ;; evalproxy) echo "$PROXY_PORT" ;; evalproxy-pl) echo "$PL_PORT" ;;
    evalproxy-rb) echo "$RB_PORT" ;;
    twemproxy) echo "$TWEM_PORT" ;; native) echo "$NATIVE_PORT" ;;
    evalproxy-mc) echo "$MC_PROXY_PORT" ;;
    memcached) echo "$MC_PORT" ;; twemproxy-mc) echo "$TWEM_MC_PORT" ;;
    evalproxy-pool[123]) eval echo "\$EVALPROXY_POOL${1#evalproxy-pool}_PORT" ;;
    twemproxy-pool[123]) eval echo "\$TWEM_POOL${1#twemproxy-pool}_PORT" ;;
    native-pools) echo "$NATIVE_PORT" ;;
    cluster) echo "$CLUSTER_NODE1_PORT" ;; evalproxy-cluster) echo "$EVALPROXY_CLUSTER_PORT" ;;
    evalproxy-single) echo "$FLEET_SINGLE_PORT" ;;
    evalproxy-fleet[123]) eval echo "\$FLEET${1#evalproxy-fleet}_1_PORT" ;;
  esac
}
fleet_ports() {  # every member's port (one proxy: its own)
  case $1 in
    evalproxy-single) echo "$FLEET_SINGLE_PORT" ;;
    evalproxy-fleet1) echo "$FLEET1_1_PORT" ;;
    evalproxy-fleet2) echo "$FLEET2_1_PORT $FLEET2_2_PORT" ;;
    evalproxy-fleet3) echo "$FLEET3_1_PORT $FLEET3_2_PORT $FLEET3_3_PORT" ;;
  esac
}

# cpu_ticks PID...: utime+stime (all threads) in clock ticks, summed over the PIDs
# (the stores of a pool or a cluster); empty if there is none or one is gone.
# Fields after the ')' that closes the command name: state is [0], utime [11],
# stime [12]. Read without forking: on a busy machine every fork between two
# redis-benchmark runs shows in the run's length.
cpu_ticks() {
  local pid line f sum=0
  [ $# -gt 0 ] || return 0
  for pid in "$@"; do
    { read -r line < "/proc/$pid/stat"; } 2>/dev/null || return 0
    f=(${line##*) })
    [ -n "${f[12]:-}" ] || return 0
    sum=$((sum + f[11] + f[12]))
  done
  echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
server_pid_of() {  # the processes that execute the commands for TARGET
  case $1 in
    store|evalproxy|evalproxy-pl|evalproxy-rb|twemproxy) echo "${store_PID:-}" ;; native) echo "${native_PID:-}" ;;
    evalproxy-mc|memcached|twemproxy-mc) echo "${memcached_PID:-}" ;;
    *-pool1) echo "${pool_store1_PID:-}" ;;
    *-pool2) echo "${pool_store1_PID:-} ${pool_store2_PID:-}" ;;
    *-pool3) echo "${pool_store1_PID:-} ${pool_store2_PID:-} ${pool_store3_PID:-}" ;;
    native-pools) echo "${native_PID:-}" ;;
    cluster|evalproxy-cluster) echo "${cluster_node1_PID:-} ${cluster_node2_PID:-} ${cluster_node3_PID:-}" ;;
    evalproxy-single|evalproxy-fleet[123]) echo "${fleet_store_PID:-}" ;;
  esac
}
proxy_pid_of() {
  case $1 in
    evalproxy) echo "${evalproxy_PID:-}" ;; twemproxy) echo "${twemproxy_PID:-}" ;;
    evalproxy-pl) echo "${evalproxy_pl_PID:-}" ;;
    evalproxy-rb) echo "${evalproxy_rb_PID:-}" ;;
    evalproxy-mc) echo "${evalproxy_mc_PID:-}" ;;
    twemproxy-mc) echo "${twemproxy_PID:-}" ;;
    evalproxy-pool[123]) eval echo "\${evalproxy_pool${1#evalproxy-pool}_PID:-}" ;;
    twemproxy-pool[123]) echo "${twemproxy_pools_PID:-}" ;;
    evalproxy-cluster) echo "${evalproxy_cluster_PID:-}" ;;
    evalproxy-single) echo "${evalproxy_single_PID:-}" ;;
    evalproxy-fleet1) echo "${evalproxy_fleet1_1_PID:-}" ;;
    evalproxy-fleet2) echo "${evalproxy_fleet2_1_PID:-} ${evalproxy_fleet2_2_PID:-}" ;;
    evalproxy-fleet3) echo "${evalproxy_fleet3_1_PID:-} ${evalproxy_fleet3_2_PID:-} ${evalproxy_fleet3_3_PID:-}" ;;
  esac
}
us_per_req() {  # us_per_req BEFORE AFTER REQUESTS
  [ -n "$1" ] && [ -n "$2" ] || return 0
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) * 1e6 / hz / n }'
}

FAILED=0
check_time() {
  if [ "$SECONDS" -gt "$MAX_SECONDS" ]; then
    die "over the time budget (${MAX_SECONDS}s); lower BENCH_N_P16/BENCH_N_P1 or BENCH_REPS"
  fi
}

# bench REP TARGET MODE LABEL EXPECTED_ROWS ARGS... : run redis-benchmark, append to RAW.
# MODE: 16 (-P 16), 1 (-P 1) or c1 (-c 1 -P 1).
# LABEL: empty to keep redis-benchmark's test names, else the name of the one row.
# CPU per request is over the whole redis-benchmark run, so pass one test per run.
bench() {
  local rep=$1 target=$2 mode=$3 label=$4 expect=$5; shift 5
  local n=$N_P1 p=$mode c=$CLIENTS out rc rows spid ppid s0 s1 p0 p1 scpu pcpu
  case $mode in
    16) n=$N_P16 ;;
    c1) n=$N_C1; p=1; c=1 ;;
  esac
  [ "$label" = "$CALLS_TEST" ] && n=$N_CALLS
  [ "$target" = evalproxy-mc ] && [ "$mode" != c1 ] && n=$N_MC
  case $target in  # the scale-out rows
    *-pool[123]|native-pools|evalproxy-cluster) n=$SO_N_P1; [ "$mode" = 16 ] && n=$SO_N_P16 ;;
    cluster) n=${CLUSTER_N["$mode:${label:-$*}"]:?} ;;
  esac
  out=$RUN/bench-$target-$mode-$rep-$(tr -c 'A-Za-z0-9_.-' '_' <<<"${label:-$*}" | cut -c1-60).csv
  check_time
  spid=$(server_pid_of "$target"); ppid=$(proxy_pid_of "$target")
  s0=$(cpu_ticks $spid); p0=$(cpu_ticks $ppid)
  timeout 120 "${LOAD_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$(port_of "$target")" -c "$c" -n "$n" \
    -P "$p" -r "$RANGE" --csv "$@" >"$out" 2>"$out.err" &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=
  s1=$(cpu_ticks $spid); p1=$(cpu_ticks $ppid)
  scpu=$(us_per_req "$s0" "$s1" "$((n * expect))")
  pcpu=$(us_per_req "$p0" "$p1" "$((n * expect))")
  rows=$(grep -c '^"[A-Z]' "$out" 2>/dev/null)
  if [ "$rc" -ne 0 ] || [ "${rows:-0}" -ne "$expect" ] \
     || grep -qE 'Error from server|Could not connect|Connection reset' "$out" "$out.err"; then
    echo "bench: redis-benchmark against $target (-P $p ${label:-$TESTS}) failed (rc $rc, $rows/$expect results):" >&2
    sed 's/^/  | /' "$out.err" "$out" | tail -8 >&2
    FAILED=1
    return 1
  fi
  # "test","rps","avg","min","p50","p95","p99","max" -> RAW
  # (the test name may hold commas, e.g. an EVAL with its script: count from the end;
  # with --cluster the node list comes before the header)
  awk -F, '/^"test",/ { h = 1; next } h { t = $1; for (i = 2; i <= NF - 7; i++) t = t "," $i
      gsub(/"/, ""); gsub(/"/, "", t); print t "\t" $(NF-6) "\t" $(NF-3) "\t" $(NF-1) "\t" $(NF-5) }' "$out" \
  | while IFS=$'\t' read -r test rps p50 p99 avg; do
    [ -n "$label" ] && test=$label
    echo "$rep,$target,$mode,$test,$rps,$p50,$p99,$scpu,$pcpu,$avg" >> "$RAW"
  done
  printf '.'
}

# timed_load TARGET SECONDS OUT CMD...: runs the load generator CMD on the
# load core (killable by the run's trap, as CHILD), its output in OUT, for
# about SECONDS; sets LOAD_RC, and LOAD_S0/LOAD_S1 and LOAD_P0/LOAD_P1: the
# CPU ticks of TARGET's server and proxy before and after.
timed_load() {
  local target=$1 secs=$2 out=$3 spid ppid
  shift 3
  check_time
  spid=$(server_pid_of "$target"); ppid=$(proxy_pid_of "$target")
  LOAD_S0=$(cpu_ticks $spid); LOAD_P0=$(cpu_ticks $ppid)
  timeout $((secs + 60)) "${LOAD_PIN[@]}" "$@" >"$out" 2>&1 &
  CHILD=$!
  wait "$CHILD"
  LOAD_RC=$?
  CHILD=
  LOAD_S1=$(cpu_ticks $spid); LOAD_P1=$(cpu_ticks $ppid)
}

# load_row REP TARGET MODE TEST OPS RATE AVG_MS: a timed_load's row in RAW.
load_row() {
  local scpu pcpu
  scpu=$(us_per_req "$LOAD_S0" "$LOAD_S1" "$5")
  pcpu=$(us_per_req "$LOAD_P0" "$LOAD_P1" "$5")
  echo "$1,$2,$3,$4,$6,,,$scpu,$pcpu,$7" >> "$RAW"
  printf '.'
}

# memcaslap REP TARGET: memcaslap (memcache protocol, get/set 9:1, its default
# mix) for MC_SECONDS against memcached or twemproxy-mc; ops/s, the mean latency
# (memcaslap prints no percentiles; -S prints its mean, min, max) and CPU per op
# into RAW as test "memcaslap get/set 9:1" with mode 1 (each of the $CLIENTS
# connections has one request outstanding).
MC_TEST="memcaslap get/set 9:1"
memcaslap_run() {
  local rep=$1 target=$2 out ops tps avg
  out=$RUN/memcaslap-$target-$rep.txt
  timed_load "$target" "$MC_SECONDS" "$out" memcaslap -s "127.0.0.1:$(port_of "$target")" \
    -T 1 -c "$CLIENTS" -t "${MC_SECONDS}s" -S "${MC_SECONDS}s"
  # "Run time: 5.0s Ops: 214379 TPS: 71443 Net_rate: 59.2M/s"
  read -r ops tps < <(awk '/^Run time:/ { for (i = 1; i < NF; i++) { if ($i == "Ops:") o = $(i+1); if ($i == "TPS:") t = $(i+1) }
                                         print o, t }' "$out")
  # "Total Statistics (N events)" then "   Avg:  945" (microseconds)
  avg=$(awk '/^Total Statistics \(/ { f = 1 } f && $1 == "Avg:" { printf "%.3f", $2 / 1000; exit }' "$out")
  if [ "$LOAD_RC" -ne 0 ] || [ -z "$ops" ] || [ "${ops:-0}" -le 0 ] || [ -z "$tps" ] \
     || grep -qiE 'error|failed|refused' "$out"; then
    echo "bench: memcaslap against $target failed (rc $LOAD_RC):" >&2
    tr -d '\033' <"$out" | sed 's/^/  | /' | tail -8 >&2
    FAILED=1
    return 1
  fi
  load_row "$rep" "$target" 1 "$MC_TEST" "$ops" "$tps" "$avg"
}

# kvload_run REP TARGET DEPTH: bench/kvload, one load generator for both
# protocols (memcache text to memcached and twemproxy-mc, RESP to
# evalproxy-mc), get/set 9:1 with DEPTH requests outstanding per connection,
# for MC_SECONDS; into RAW as test "kvload get/set 9:1", mode DEPTH.
KV_TEST="kvload get/set 9:1"
KVLOAD=${KVLOAD:-build/bench-tools/kvload}
kvload_run() {
  local rep=$1 target=$2 depth=$3 proto=mc out ops tps avg
  [ "$target" = evalproxy-mc ] && proto=resp
  out=$RUN/kvload-$target-$depth-$rep.txt
  timed_load "$target" "$MC_SECONDS" "$out" "$KVLOAD" -p "$(port_of "$target")" -P "$proto" \
    -c "$CLIENTS" -d "$depth" -t "$MC_SECONDS" -r "$RANGE"
  read -r ops tps avg < <(sed -n 's/^ops=\([0-9]*\) .*ops_per_sec=\([0-9]*\) avg_ms=\([0-9.]*\) .*/\1 \2 \3/p' "$out")
  if [ "$LOAD_RC" -ne 0 ] || [ -z "$ops" ] || [ "${ops:-0}" -le 0 ]; then
    echo "bench: kvload against $target failed (rc $LOAD_RC):" >&2
    sed 's/^/  | /' "$out" | tail -8 >&2
    FAILED=1
    return 1
  fi
  load_row "$rep" "$target" "$depth" "$KV_TEST" "$ops" "$tps" "$avg"
}

# LRANGE_100: a 100-element list on the store, read whole (redis-benchmark's own
# lrange_100 test would LPUSH first, in the same run, and blur the CPU figures).
redis-cli -h 127.0.0.1 -p "$STORE_PORT" DEL bench:list >/dev/null
redis-cli -h 127.0.0.1 -p "$STORE_PORT" RPUSH bench:list $(seq -f 'element-%03g' 100) >/dev/null
[ "$(redis-cli -h 127.0.0.1 -p "$STORE_PORT" LLEN bench:list)" = 100 ] || die "could not fill bench:list"

CALLS_TEST="calls 10000"           # the rows of bench/calls.lua (see below)
CALLS_REF_TEST="GET beside calls"  # the store's GET at -c 1, run next to them
CALLS_LOADED_TEST="calls 10000 beside GET load"  # the script again, beside 50 GET clients on the proxy
CALLS_LOAD_TEST="GET load beside calls"          # those clients (their p50)
CALLS_LOAD_SECONDS=${BENCH_CALLS_LOAD_SECONDS:-4}

printf 'bench: relay'
for rep in $(seq "$REPS"); do
  for mode in 16 1 c1; do
    tests=$TESTS; [ "$mode" = c1 ] && tests=$C1_TESTS
    for t in ${tests//,/ }; do
      for target in store evalproxy twemproxy; do
        bench "$rep" "$target" "$mode" "" 1 -t "$t"
      done
    done
    if [ "$mode" != c1 ]; then
      for target in store evalproxy twemproxy; do
        bench "$rep" "$target" "$mode" "LRANGE_100" 1 LRANGE bench:list 0 99
      done
    fi
    if [ "$MEMCACHED" = 1 ] && [ "$mode" != c1 ]; then
      for t in ${MC_TESTS//,/ }; do
        bench "$rep" evalproxy-mc "$mode" "" 1 -t "$t"
      done
    fi
  done
done
echo

# Scripts: the same script body, loaded on the proxy and on the native server.
INCR_SCRIPT="return redis.call('incr', KEYS[1])"
GET_SCRIPT="return redis.call('get', KEYS[1])"
THREE_SCRIPT="redis.call('set', KEYS[1], ARGV[1]); redis.call('incr', KEYS[1]); return redis.call('get', KEYS[1])"
sha() {  # sha TARGET BODY
  timeout 5 redis-cli -h 127.0.0.1 -p "$(port_of "$1")" SCRIPT LOAD "$2" 2>&1
}
INCR_SHA_P=$(sha evalproxy "$INCR_SCRIPT"); GET_SHA_P=$(sha evalproxy "$GET_SCRIPT")
INCR_SHA_N=$(sha native "$INCR_SCRIPT");    GET_SHA_N=$(sha native "$GET_SCRIPT")
THREE_SHA_P=$(sha evalproxy "$THREE_SCRIPT"); THREE_SHA_N=$(sha native "$THREE_SCRIPT")
for s in "$INCR_SHA_P" "$GET_SHA_P" "$INCR_SHA_N" "$GET_SHA_N" "$THREE_SHA_P" "$THREE_SHA_N"; do
  [[ $s =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD failed: $s"
done
[ "$INCR_SHA_P" = "$INCR_SHA_N" ] && [ "$GET_SHA_P" = "$GET_SHA_N" ] && [ "$THREE_SHA_P" = "$THREE_SHA_N" ] \
  || die "SCRIPT LOAD gave different SHA1s on evalproxy and redis-server"
INCR_SHA=$INCR_SHA_P; GET_SHA=$GET_SHA_P; THREE_SHA=$THREE_SHA_P
for b in "$INCR_SCRIPT" "$THREE_SCRIPT"; do
  s=$(sha evalproxy-pl "$b")
  [ "$s" = "$INCR_SHA" ] || [ "$s" = "$THREE_SHA" ] || die "SCRIPT LOAD on evalproxy-pl failed: $s"
  s=$(sha evalproxy-rb "$b")
  [ "$s" = "$INCR_SHA" ] || [ "$s" = "$THREE_SHA" ] || die "SCRIPT LOAD on evalproxy-rb failed: $s"
done
SCRIPT_TARGETS="evalproxy native evalproxy-pl evalproxy-rb"
if [ "$MEMCACHED" = 1 ]; then
  SCRIPT_TARGETS="evalproxy native evalproxy-pl evalproxy-rb evalproxy-mc"
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
  for mode in 16 1 c1; do
    for target in $SCRIPT_TARGETS; do
      [ "$mode" = c1 ] && [ "$target" = evalproxy-mc ] && continue
      [ "$mode" != 16 ] && [ "$target" = evalproxy-pl ] && continue
      if [ "$target" = evalproxy-rb ]; then  # writing scripts only, -P 16 and -P 1
        [ "$mode" = c1 ] && continue
        bench "$rep" "$target" "$mode" "EVALSHA incr" 1 EVALSHA "$INCR_SHA" 1 'bench:incr:__rand_int__'
        bench "$rep" "$target" "$mode" "EVALSHA 3-call" 1 EVALSHA "$THREE_SHA" 1 'bench:three:__rand_int__' 5
        continue
      fi
      bench "$rep" "$target" "$mode" "EVALSHA incr" 1 EVALSHA "$INCR_SHA" 1 'bench:incr:__rand_int__'
      if [ "$target" = evalproxy-pl ] || { [ "$mode" = c1 ] && [ "$target" != evalproxy-mc ]; }; then
        bench "$rep" "$target" "$mode" "EVALSHA 3-call" 1 EVALSHA "$THREE_SHA" 1 'bench:three:__rand_int__' 5
        continue
      fi
      [ "$mode" = c1 ] && continue
      bench "$rep" "$target" "$mode" "EVALSHA get" 1 EVALSHA "$GET_SHA" 1 'bench:get:__rand_int__'
      [ "$target" = evalproxy-mc ] && continue
      bench "$rep" "$target" "$mode" "EVALSHA 3-call" 1 EVALSHA "$THREE_SHA" 1 'bench:three:__rand_int__' 5
      bench "$rep" "$target" "$mode" "EVAL incr" 1 EVAL "$INCR_SCRIPT" 1 'bench:incr:__rand_int__'
    done
  done
done
echo

# Calls inside one script: one client (-c 1) runs bench/calls.lua, 10 000
# sequential redis.call's (SET, GET, HSET, DEL on two keys), alone on the
# proxy; each run beside a GET at -c 1 straight to the store, the floor a
# call is compared with (report.py: microseconds per call over microseconds
# per GET). native runs the same script inside redis-server 7.0.
CALLS_SCRIPT=$(cat bench/calls.lua)
CALLS_SHA=$(sha evalproxy "$CALLS_SCRIPT")
[ "$(sha native "$CALLS_SCRIPT")" = "$CALLS_SHA" ] && [[ $CALLS_SHA =~ ^[0-9a-f]{40}$ ]] \
  || die "SCRIPT LOAD of bench/calls.lua failed: $CALLS_SHA"
printf 'bench: calls'
for rep in $(seq "$REPS"); do
  bench "$rep" store c1 "$CALLS_REF_TEST" 1 -t get
  for target in evalproxy native; do
    bench "$rep" "$target" c1 "$CALLS_TEST" 1 EVALSHA "$CALLS_SHA" 2 bench:calls:s bench:calls:h
  done
done
echo

# The same script beside 50 clients of GET load on the proxy (-P 1): runs of
# it one after another while the load lasts (only those that end before it
# count), against the p50 latency the GET clients see (report.py: target
# microseconds per call <= that p50).
calls_beside_load() {  # calls_beside_load REP
  local rep=$1 load=$RUN/calls-load-$rep.csv lpid runs=0 ns=0 t0 t1 port n
  port=$(port_of evalproxy)
  check_time
  # Long enough for whole runs of the script beside it on any machine: sized
  # by the GET -P 1 rate the relay rows measured on evalproxy.
  n=${BENCH_CALLS_LOAD_N:-$(awk -F, -v s="$CALLS_LOAD_SECONDS" -v min=$((N_P1 * 4)) '
      $2 == "evalproxy" && $3 == "1" && $4 == "GET" && $5 > r { r = $5 }
      END { n = int(r * s); print (n > min ? n : min) }' "$RAW")}
  timeout 120 "${LOAD_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$n" \
    -r "$RANGE" --csv -t get >"$load" 2>"$load.err" &
  lpid=$!
  sleep 0.3
  while kill -0 "$lpid" 2>/dev/null; do
    t0=$(date +%s%N)
    timeout 60 "${LOAD_PIN[@]}" redis-cli -h 127.0.0.1 -p "$port" EVALSHA "$CALLS_SHA" 2 bench:calls:s bench:calls:h \
      >"$RUN/calls-loaded.out" 2>&1 || break
    t1=$(date +%s%N)
    kill -0 "$lpid" 2>/dev/null || break  # the load ended during this run: not counted
    runs=$((runs + 1)); ns=$((ns + t1 - t0))
  done
  wait "$lpid"
  local row
  row=$(awk -F, '/^"GET"/ { gsub(/"/, ""); print $2 "," $5 "," $7 "," $3; exit }' "$load")
  if [ "$runs" -eq 0 ] || [ -z "$row" ] || grep -q ERR "$RUN/calls-loaded.out"; then
    echo "bench: calls beside GET load failed ($runs runs; load: $(tail -1 "$load.err" 2>/dev/null))" >&2
    FAILED=1
    return 1
  fi
  IFS=, read -r lrps lp50 lp99 lavg <<<"$row"
  echo "$rep,evalproxy,1,$CALLS_LOADED_TEST,$(awk -v r="$runs" -v ns="$ns" 'BEGIN { printf "%.4f", r / (ns / 1e9) }'),,,,," \
    >> "$RAW"
  echo "$rep,evalproxy,1,$CALLS_LOAD_TEST,$lrps,$lp50,$lp99,,,$lavg" >> "$RAW"
  printf '.'
}
printf 'bench: calls beside GET load'
for rep in $(seq "$REPS"); do
  calls_beside_load "$rep"
done
echo

if [ "$MEMCACHED" = 1 ]; then
  printf 'bench: memcaslap'
  for rep in $(seq "$REPS"); do
    for target in memcached twemproxy-mc; do
      memcaslap_run "$rep" "$target"
    done
  done
  echo
  printf 'bench: kvload'
  for rep in $(seq "$REPS"); do
    for depth in 1 16; do
      for target in memcached twemproxy-mc evalproxy-mc; do
        kvload_run "$rep" "$target" "$depth"
      done
    done
  done
  echo
fi

# The stores of the scale-out and fleet rows: scripting renamed away, data apart.
server_conf() {  # server_conf NAME PORT [LINES...]: $RUN/NAME.conf, data in $RUN/NAME
  local name=$1 port=$2; shift 2
  mkdir -p "$RUN/$name"
  printf '%s\n' "port $port" "bind 127.0.0.1" 'save ""' "appendonly no" "daemonize no" \
    "dir $PWD/$RUN/$name" "$@" > "$RUN/$name.conf"
}
NO_SCRIPTING=()
for c in EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FUNCTION FCALL FCALL_RO; do
  NO_SCRIPTING+=("rename-command $c \"\"")
done

# Scale-out: store pools of 1, 2 and 3 redis-servers (scripting renamed away)
# behind evalproxy and behind twemproxy, placed alike (ketama, fnv1a_64, the same
# server list), and a Redis Cluster of 3 masters, direct (redis-benchmark --cluster)
# and behind evalproxy. Started here, after the other rows, so they cost nothing
# before; stopped with everything else.
if [ "$SCALE_OUT" = 1 ]; then
  check_time
  echo "bench: scale-out: pool stores :$POOL_STORE1_PORT :$POOL_STORE2_PORT :$POOL_STORE3_PORT," \
    "cluster nodes :$CLUSTER_NODE1_PORT :$CLUSTER_NODE2_PORT :$CLUSTER_NODE3_PORT;" \
    "-n $SO_N_P16 with -P 16, $SO_N_P1 with -P 1"
  for i in 1 2 3; do
    eval "port=\$POOL_STORE${i}_PORT"
    server_conf "pool_store$i" "$port" "${NO_SCRIPTING[@]}"
    start "pool_store$i" redis-server "$RUN/pool_store$i.conf"
  done
  # Cluster nodes keep scripting: native EVALSHA runs on them.
  for i in 1 2 3; do
    eval "port=\$CLUSTER_NODE${i}_PORT bus=\$CLUSTER_BUS${i}_PORT"
    server_conf "cluster_node$i" "$port" "cluster-enabled yes" "cluster-config-file nodes.conf" \
      "cluster-port $bus" "cluster-node-timeout 5000"
    start "cluster_node$i" redis-server "$RUN/cluster_node$i.conf"
  done
  for i in 1 2 3; do
    eval "port=\$POOL_STORE${i}_PORT"; wait_ping "pool_store$i" "$port"
    eval "port=\$CLUSTER_NODE${i}_PORT"; wait_ping "cluster_node$i" "$port"
  done

  # twemproxy: one process, a pool per size; pool N has the first N stores.
  : > "$RUN/nutcracker_pools.yml"
  for n in 1 2 3; do
    eval "listen=\$TWEM_POOL${n}_PORT"
    printf '%s\n' "pool$n:" "  listen: 127.0.0.1:$listen" "  hash: fnv1a_64" "  distribution: ketama" \
      "  redis: true" "  auto_eject_hosts: false" "  preconnect: true" "  timeout: 5000" "  servers:" \
      >> "$RUN/nutcracker_pools.yml"
    for i in $(seq "$n"); do
      eval "port=\$POOL_STORE${i}_PORT"
      echo "   - 127.0.0.1:$port:1" >> "$RUN/nutcracker_pools.yml"
    done
  done
  nutcracker -t -c "$RUN/nutcracker_pools.yml" >"$RUN/nutcracker_pools-test.log" 2>&1 \
    || { cat "$RUN/nutcracker_pools-test.log" >&2; die "nutcracker rejected the pools configuration"; }
  start twemproxy_pools nutcracker -c "$RUN/nutcracker_pools.yml" -s "$TWEM_POOLS_STATS_PORT" -a 127.0.0.1 \
    -o "$RUN/nutcracker_pools.out" -v 4
  # evalproxy: the same stores in the same order; one store is the plain single backend.
  start evalproxy_pool1 "$EVALPROXY" --bind 127.0.0.1 --port "$EVALPROXY_POOL1_PORT" \
    --backend "redis://127.0.0.1:$POOL_STORE1_PORT" --loglevel warning
  for n in 2 3; do
    args=()
    for i in $(seq "$n"); do
      eval "port=\$POOL_STORE${i}_PORT"
      args+=(--backend "redis://127.0.0.1:$port")
    done
    eval "listen=\$EVALPROXY_POOL${n}_PORT"
    start "evalproxy_pool$n" "$EVALPROXY" --bind 127.0.0.1 --port "$listen" "${args[@]}" \
      --distribution ketama --hash fnv1a_64 --loglevel warning
  done
  for n in 1 2 3; do
    eval "port=\$EVALPROXY_POOL${n}_PORT"; wait_ping "evalproxy_pool$n" "$port"
    eval "port=\$TWEM_POOL${n}_PORT"; wait_ping twemproxy_pools "$port"
  done

  # The cluster: distinct config epochs, every node meets every other, a third of
  # the slots on each; then every node must say ok and give the same slot map.
  cnodes=("$CLUSTER_NODE1_PORT" "$CLUSTER_NODE2_PORT" "$CLUSTER_NODE3_PORT")
  cbus=("$CLUSTER_BUS1_PORT" "$CLUSTER_BUS2_PORT" "$CLUSTER_BUS3_PORT")
  cluster_ok() {  # cluster_ok PORT ARGS...: the command must answer OK
    local r
    r=$(timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>&1)
    [ "$r" = OK ] || die "cluster node :$1: ${*:2}: $r"
  }
  for i in 0 1 2; do
    cluster_ok "${cnodes[$i]}" CLUSTER SET-CONFIG-EPOCH $((i + 1))
  done
  for a in 0 1 2; do
    for b in 0 1 2; do
      [ "$a" = "$b" ] || cluster_ok "${cnodes[$a]}" CLUSTER MEET 127.0.0.1 "${cnodes[$b]}" "${cbus[$b]}"
    done
  done
  cluster_ok "${cnodes[0]}" CLUSTER ADDSLOTSRANGE 0 5460
  cluster_ok "${cnodes[1]}" CLUSTER ADDSLOTSRANGE 5461 10922
  cluster_ok "${cnodes[2]}" CLUSTER ADDSLOTSRANGE 10923 16383
  cluster_agrees() {
    local p info maps=()
    for p in "${cnodes[@]}"; do
      info=$(timeout 2 redis-cli -h 127.0.0.1 -p "$p" CLUSTER INFO 2>/dev/null | tr -d '\r')
      grep -qx 'cluster_state:ok' <<<"$info" && grep -qx 'cluster_known_nodes:3' <<<"$info" \
        && grep -qx 'cluster_slots_ok:16384' <<<"$info" || return 1
      maps+=("$(timeout 2 redis-cli -h 127.0.0.1 -p "$p" CLUSTER SLOTS 2>/dev/null)")
    done
    [ -n "${maps[0]}" ] && [ "${maps[0]}" = "${maps[1]}" ] && [ "${maps[0]}" = "${maps[2]}" ]
  }
  for _ in $(seq 300); do cluster_agrees && break; sleep 0.1; done
  cluster_agrees || die "the cluster did not reach cluster_state:ok with one slot map on every node within 30s"
  start evalproxy_cluster "$EVALPROXY" --bind 127.0.0.1 --port "$EVALPROXY_CLUSTER_PORT" \
    --backend "redis-cluster://127.0.0.1:${cnodes[0]},127.0.0.1:${cnodes[1]},127.0.0.1:${cnodes[2]}" \
    --loglevel warning
  wait_ping evalproxy_cluster "$EVALPROXY_CLUSTER_PORT"
  for _ in $(seq 100); do
    timeout 2 redis-cli -h 127.0.0.1 -p "$EVALPROXY_CLUSTER_PORT" INFO backend 2>/dev/null | tr -d '\r' \
      | grep -qx 'backend_cluster_state:ok' && break
    sleep 0.1
  done
  timeout 2 redis-cli -h 127.0.0.1 -p "$EVALPROXY_CLUSTER_PORT" INFO backend 2>/dev/null | tr -d '\r' \
    | grep -qx 'backend_cluster_state:ok' || die "evalproxy in front of the cluster has no complete slot map"

  # The 1-call script on every evalproxy and on every cluster node (native keeps its own).
  for target in evalproxy-pool1 evalproxy-pool2 evalproxy-pool3 evalproxy-cluster; do
    s=$(sha "$target" "$INCR_SCRIPT")
    [ "$s" = "$INCR_SHA" ] || die "SCRIPT LOAD on $target failed: $s"
  done
  for p in "${cnodes[@]}"; do
    s=$(timeout 5 redis-cli -h 127.0.0.1 -p "$p" SCRIPT LOAD "$INCR_SCRIPT" 2>&1)
    [ "$s" = "$INCR_SHA" ] || die "SCRIPT LOAD on cluster node :$p failed: $s"
  done

  # redis-benchmark --cluster runs a thread per master, and with threads it sees the
  # end of a run only on its 250 ms timer: the elapsed time is rounded up to a
  # multiple of 250 ms, and req/s is low by up to 250 ms / elapsed. So each
  # cluster-direct test gets as many requests as last at least CLUSTER_SECONDS,
  # sized by runs that are not recorded: more requests (8 times after a run of 1
  # tick, 3 times after 2) until a run reports 3 ticks or more (k ticks: it ran
  # more than k - 1), then scaled by the rate's upper bound, requests / (k - 1) ticks.
  # A recorded run that still reports no more than CLUSTER_SECONDS (the machine got
  # faster) is dropped and run again, resized the same way, three runs at most.
  declare -A CLUSTER_N
  more_requests() {  # more_requests N MS: the next request count after N took MS (reported)
    if [ "$2" -lt 500 ]; then echo $(($1 * 8))
    elif [ "$2" -lt 750 ]; then echo $(($1 * 3))
    else awk -v n="$1" -v ms="$2" -v s="$CLUSTER_SECONDS" 'BEGIN { printf "%d", n * s * 1000 / (ms - 250) }'
    fi
  }
  cluster_n() {  # cluster_n MODE LABEL ARGS...: sets CLUSTER_N[MODE:LABEL or ARGS]
    local mode=$1 label=$2; shift 2
    local n=$SO_N_P1 out=$RUN/cluster-sizing.csv rps ms
    [ "$mode" = 16 ] && n=$SO_N_P16
    while :; do
      check_time
      timeout 120 "${LOAD_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$CLUSTER_NODE1_PORT" -c "$CLIENTS" \
        -n "$n" -P "$mode" -r "$RANGE" --csv "$@" >"$out" 2>&1 &
      CHILD=$!
      wait "$CHILD" || { CHILD=; sed 's/^/  | /' "$out" | tail -8 >&2; die "sizing redis-benchmark --cluster $* failed"; }
      CHILD=
      rps=$(awk -F, '/^"test",/ { h = 1; next } h { gsub(/"/, ""); print $(NF-6); exit }' "$out")
      ms=$(awk -v n="$n" -v r="${rps:-0}" 'BEGIN { if (r > 0) printf "%d", n * 1000 / r }')
      [ -n "$ms" ] || { sed 's/^/  | /' "$out" | tail -8 >&2; die "sizing redis-benchmark --cluster $*: no result"; }
      n=$(more_requests "$n" "$ms")
      if [ "$ms" -ge 750 ]; then
        CLUSTER_N["$mode:${label:-$*}"]=$n
        echo "cluster $mode:${label:-$*}: $n requests" >> "$RUN/cluster-sizing.log"
        return 0
      fi
    done
  }
  bench_cluster() {  # bench_cluster REP MODE LABEL ARGS...: bench against the cluster direct
    local rep=$1 mode=$2 label=$3; shift 3
    local key="$mode:${label:-$*}" try rps ms
    for try in 1 2 3; do
      bench "$rep" cluster "$mode" "$label" 1 "$@" || return 1
      rps=$(tail -1 "$RAW" | cut -d, -f5)
      ms=$(awk -v n="${CLUSTER_N[$key]}" -v r="$rps" 'BEGIN { printf "%d", n * 1000 / r }')
      awk -v ms="$ms" -v s="$CLUSTER_SECONDS" 'BEGIN { exit !(ms > s * 1000) }' && return 0
      echo "cluster $key: ${CLUSTER_N[$key]} requests reported ${ms} ms (run $try)" >> "$RUN/cluster-sizing.log"
      [ "$try" = 3 ] && { echo "bench: kept a cluster-direct run of ${ms} ms ($key)" >&2; return 0; }
      sed -i '$d' "$RAW"
      CLUSTER_N[$key]=$(more_requests "${CLUSTER_N[$key]}" "$ms")
    done
  }
  # One unrecorded run against every proxy first: the first load on a fresh
  # process is slower (twemproxy's first run measured a fraction of its later ones).
  printf 'bench: scale-out: warming up the proxies'
  for target in evalproxy-pool1 evalproxy-pool2 evalproxy-pool3 twemproxy-pool1 twemproxy-pool2 \
                twemproxy-pool3 evalproxy-cluster; do
    check_time
    timeout 120 "${LOAD_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$(port_of "$target")" -c "$CLIENTS" \
      -n "$SO_N_P16" -P 16 -r "$RANGE" --csv -t set >"$RUN/warmup-$target.csv" 2>&1 &
    CHILD=$!
    wait "$CHILD" || { CHILD=; sed 's/^/  | /' "$RUN/warmup-$target.csv" | tail -8 >&2; die "warm-up run against $target failed"; }
    CHILD=
    printf '.'
  done
  echo
  printf 'bench: scale-out: sizing the redis-benchmark --cluster runs'
  for mode in 16 1; do
    for t in set get; do
      cluster_n "$mode" "" --cluster -t "$t"; printf '.'
    done
    cluster_n "$mode" "EVALSHA incr" --cluster EVALSHA "$INCR_SHA" 1 'bench:incr:{tag}:__rand_int__'; printf '.'
  done
  echo

  # Random keys (-r) spread over the stores. redis-benchmark --cluster puts a hash
  # tag of its connection's node into {tag}; through evalproxy the key has none, so
  # the proxy places it.
  printf 'bench: scale-out'
  for rep in $(seq "$REPS"); do
    for mode in 16 1; do
      for t in set get; do
        for n in 1 2 3; do
          bench "$rep" "evalproxy-pool$n" "$mode" "" 1 -t "$t"
          bench "$rep" "twemproxy-pool$n" "$mode" "" 1 -t "$t"
        done
        bench_cluster "$rep" "$mode" "" --cluster -t "$t"
        bench "$rep" evalproxy-cluster "$mode" "" 1 -t "$t"
      done
      bench "$rep" native-pools "$mode" "EVALSHA incr" 1 EVALSHA "$INCR_SHA" 1 'bench:incr:__rand_int__'
      for n in 1 2 3; do
        bench "$rep" "evalproxy-pool$n" "$mode" "EVALSHA incr" 1 EVALSHA "$INCR_SHA" 1 'bench:incr:__rand_int__'
      done
      bench_cluster "$rep" "$mode" "EVALSHA incr" --cluster EVALSHA "$INCR_SHA" 1 'bench:incr:{tag}:__rand_int__'
      bench "$rep" evalproxy-cluster "$mode" "EVALSHA incr" 1 EVALSHA "$INCR_SHA" 1 'bench:incr:__rand_int__'
    done
  done
  echo
  # The keys did spread: every store of the 3-store pool and every cluster master
  # holds keys written through evalproxy (untagged: key:0..., bench:incr:0...).
  for p in "$POOL_STORE1_PORT" "$POOL_STORE2_PORT" "$POOL_STORE3_PORT" "${cnodes[@]}"; do
    for pat in 'key:0*' 'bench:incr:0*'; do
      [ -n "$(timeout 10 redis-cli -h 127.0.0.1 -p "$p" --scan --pattern "$pat" | head -1)" ] \
        || { echo "bench: no $pat keys on :$p after the scale-out rows" >&2; FAILED=1; }
    done
  done
fi

# Fleets: 1, 2 and 3 evalproxy members with one fleet-name each (one lock domain
# per fleet) in front of one redis-server, beside one evalproxy without a fleet in
# front of the same store. The clients are spread over the members: one
# redis-benchmark per member, all at once, each with its share of the clients and
# requests; the row's rate is the sum of theirs. Started after the other rows.
FLEET_NOTE=
if [ "$FLEET" = 1 ]; then
  check_time
  [ "$CLIENTS" -ge 3 ] || die "the fleet rows spread BENCH_CLIENTS over 3 members: at least 3 (or BENCH_FLEET=0)"
  # Placement. Pinned: the store keeps core 0 and the load generators core 1;
  # members take BENCH_FLEET_CPUS in turn, by default the cores beyond those two,
  # so each member gets a core of its own where the machine has them. The one
  # proxy runs where each fleet's first member runs, so fleet of 1 / one proxy is
  # the fleet's own cost.
  FCPUS=()
  if [ "$PIN" = 1 ]; then
    if [ -n "${BENCH_FLEET_CPUS:-}" ]; then
      IFS=, read -r -a FCPUS <<<"$BENCH_FLEET_CPUS"
    elif [ "$(nproc)" -gt 2 ]; then
      FCPUS=($(seq 2 $(($(nproc) - 1))))
    else
      FCPUS=(0)
    fi
  fi
  fleet_cpu() {  # fleet_cpu K: the core of a fleet's K-th member (0-based)
    [ "$PIN" = 1 ] && echo "${FCPUS[$(($1 % ${#FCPUS[@]}))]}"
  }
  start_on() {  # start_on CPU NAME CMD...: start, pinned to CPU when pinning
    local cpu=$1; shift
    [ "$PIN" = 1 ] && SRV_PIN=(taskset -c "$cpu")
    start "$@"
    [ "$PIN" = 1 ] && SRV_PIN=(taskset -c 0)
    return 0
  }
  if [ "$PIN" = 1 ]; then
    FLEET_NOTE="fleet placement: store on core 0, load generators on core 1; one proxy on core $(fleet_cpu 0)"
    for n in 1 2 3; do
      cpus=; for k in $(seq 0 $((n - 1))); do cpus="$cpus${cpus:+,}$(fleet_cpu "$k")"; done
      FLEET_NOTE="$FLEET_NOTE; fleet of $n on core(s) $cpus"
    done
    if [ -z "${BENCH_FLEET_CPUS:-}" ] && [ "$(nproc)" -le 2 ]; then
      FLEET_NOTE="$FLEET_NOTE ($(nproc) cores: none left for members of their own, so every member shares core 0 with the store; BENCH_FLEET_CPUS=0,1 puts them on both cores, beside the load generators)"
    fi
  else
    FLEET_NOTE="fleet placement: unpinned, every process shares the $(nproc) cores"
  fi
  echo "bench: fleet: store :$FLEET_STORE_PORT, one proxy :$FLEET_SINGLE_PORT, members" \
    ":$FLEET1_1_PORT | :$FLEET2_1_PORT :$FLEET2_2_PORT | :$FLEET3_1_PORT :$FLEET3_2_PORT :$FLEET3_3_PORT;" \
    "-n $FLEET_N_P16 with -P 16, $FLEET_N_P1 with -P 1, split over the members"
  echo "bench: $FLEET_NOTE"

  server_conf fleet_store "$FLEET_STORE_PORT" "${NO_SCRIPTING[@]}"
  start fleet_store redis-server "$RUN/fleet_store.conf"
  wait_ping fleet_store "$FLEET_STORE_PORT"
  start_on "$(fleet_cpu 0)" evalproxy_single "$EVALPROXY" --bind 127.0.0.1 --port "$FLEET_SINGLE_PORT" \
    --backend "redis://127.0.0.1:$FLEET_STORE_PORT" --loglevel warning
  # A fleet name of its own per size (and per run: a fleet lives in its store).
  for n in 1 2 3; do
    k=0
    for port in $(fleet_ports "evalproxy-fleet$n"); do
      start_on "$(fleet_cpu "$k")" "evalproxy_fleet${n}_$((k + 1))" "$EVALPROXY" --bind 127.0.0.1 \
        --port "$port" --backend "redis://127.0.0.1:$FLEET_STORE_PORT" --loglevel warning \
        --fleet-name "bench-$n-$$" --fleet-lease-ms 1000
      k=$((k + 1))
    done
  done
  wait_ping evalproxy_single "$FLEET_SINGLE_PORT"
  for n in 1 2 3; do
    k=1
    for port in $(fleet_ports "evalproxy-fleet$n"); do wait_ping "evalproxy_fleet${n}_$k" "$port"; k=$((k + 1)); done
  done
  fleet_field() {  # fleet_field PORT FIELD: a field of the member's INFO fleet
    timeout 2 redis-cli -h 127.0.0.1 -p "$1" INFO fleet 2>/dev/null | tr -d '\r' \
      | awk -F: -v f="$2" '$1 == f { print $2 }'
  }
  fleet_serving() {  # every member serving, in a view of its fleet's size
    local n port
    for n in 1 2 3; do
      for port in $(fleet_ports "evalproxy-fleet$n"); do
        [ "$(fleet_field "$port" fleet_state)" = serving ] && [ "$(fleet_field "$port" fleet_members)" = "$n" ] \
          || return 1
      done
    done
  }
  for _ in $(seq 100); do fleet_serving && break; sleep 0.2; done
  fleet_serving || die "the fleets did not reach fleet_state:serving with every member in view within 20s"
  # The 1-call script on every member and on the one proxy.
  for port in "$FLEET_SINGLE_PORT" $(fleet_ports evalproxy-fleet1) $(fleet_ports evalproxy-fleet2) \
              $(fleet_ports evalproxy-fleet3); do
    s=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" SCRIPT LOAD "$INCR_SCRIPT" 2>&1)
    [ "$s" = "$INCR_SHA" ] || die "SCRIPT LOAD on :$port failed: $s"
  done

  # bench_fleet REP TARGET MODE LABEL ARGS...: one redis-benchmark per member of
  # TARGET at once (the one proxy: one), each with its share of the clients and as
  # large a share of the requests, so that they run about as long. RAW gets the
  # sum of their rates (p50: the members' median, p99: their highest, mean:
  # weighted by requests; CPU over all members); FLEET_RUNS each member's run,
  # with what it forwarded to other members meanwhile (INFO fleet, read outside
  # the CPU window). REP "warmup": run, check, record nothing.
  declare -A FLEET_SENT
  echo "rep,target,pipeline,test,member,port,cpu,clients,requests,rps,p50_ms,p99_ms,forwarded" > "$FLEET_RUNS"
  bench_fleet() {
    local rep=$1 target=$2 mode=$3 label=$4; shift 4
    local n=$FLEET_N_P1 ports k i c out outs=() cs=() ns=() pids=() rc=0 bad= total=0
    local spid ppid s0 s1 p0 p1 scpu pcpu line rps p50 p99 avg members= fw0=() fw1=()
    [ "$mode" = 16 ] && n=$FLEET_N_P16
    read -r -a ports <<<"$(fleet_ports "$target")"
    k=${#ports[@]}
    check_time
    for i in "${!ports[@]}"; do fw0+=("$(fleet_field "${ports[$i]}" fleet_forwarded)"); done
    spid=$(server_pid_of "$target"); ppid=$(proxy_pid_of "$target")
    s0=$(cpu_ticks $spid); p0=$(cpu_ticks $ppid)
    for i in "${!ports[@]}"; do
      c=$((CLIENTS / k + (i < CLIENTS % k ? 1 : 0)))
      cs+=("$c"); ns+=($((n * c / CLIENTS))); total=$((total + n * c / CLIENTS))
    done
    ns[0]=$((ns[0] + n - total)); total=$n   # the rounding's remainder
    for i in "${!ports[@]}"; do
      out=$RUN/fleet-$target-$mode-$rep-$(tr -c 'A-Za-z0-9_.-' '_' <<<"$label")-m$((i + 1)).csv
      timeout 120 "${LOAD_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "${ports[$i]}" -c "${cs[$i]}" -n "${ns[$i]}" \
        -P "$mode" -r "$RANGE" --csv "$@" >"$out" 2>"$out.err" &
      pids+=($!); outs+=("$out")
    done
    CHILD="${pids[*]}"
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || rc=$?; done
    CHILD=
    s1=$(cpu_ticks $spid); p1=$(cpu_ticks $ppid)
    for i in "${!ports[@]}"; do fw1+=("$(fleet_field "${ports[$i]}" fleet_forwarded)"); done
    for i in "${!outs[@]}"; do
      if [ "$(grep -c '^"[A-Z]' "${outs[$i]}" 2>/dev/null)" != 1 ] \
         || grep -qE 'Error from server|Could not connect|Connection reset' "${outs[$i]}" "${outs[$i]}.err"; then
        bad="${bad:-${outs[$i]}}"
      fi
    done
    if [ "$rc" -ne 0 ] || [ -n "$bad" ]; then
      echo "bench: redis-benchmark against $target (-P $mode $label) failed (rc $rc):" >&2
      sed 's/^/  | /' "${bad:-${outs[0]}}.err" "${bad:-${outs[0]}}" | tail -8 >&2
      FAILED=1
      return 1
    fi
    FLEET_SENT[$target]=$(( ${FLEET_SENT[$target]:-0} + total ))
    [ "$rep" = warmup ] && { printf '.'; return 0; }
    scpu=$(us_per_req "$s0" "$s1" "$total")
    pcpu=$(us_per_req "$p0" "$p1" "$total")
    # "test","rps","avg","min","p50","p95","p99","max": counted from the end
    for i in "${!outs[@]}"; do
      line=$(awk -F, '/^"test",/ { h = 1; next } h { gsub(/"/, ""); print $(NF-6), $(NF-3), $(NF-1), $(NF-5); exit }' \
        "${outs[$i]}")
      read -r rps p50 p99 avg <<<"$line"
      echo "$rep,$target,$mode,$label,$((i + 1)),${ports[$i]},$(fleet_cpu "$i"),${cs[$i]},${ns[$i]},$rps,$p50,$p99,$(
        [ -n "${fw0[$i]}" ] && [ -n "${fw1[$i]}" ] && echo $((fw1[i] - fw0[i])))" >> "$FLEET_RUNS"
      members="$members$rps $p50 $p99 $avg ${ns[$i]}"$'\n'
    done
    # sorted by p50, for the median
    sort -n -k2,2 <<<"$members" | awk -v rep="$rep" -v t="$target" -v m="$mode" -v l="$label" -v sc="$scpu" \
      -v pc="$pcpu" '
      NF == 5 { r += $1; p50[++k] = $2; if ($3 > p99) p99 = $3; a += $4 * $5; n += $5 }
      END { med = k % 2 ? p50[(k + 1) / 2] : (p50[k / 2] + p50[k / 2 + 1]) / 2
            printf "%s,%s,%s,%s,%.2f,%.3f,%.3f,%s,%s,%.3f\n", rep, t, m, l, r, med, p99, sc, pc, a / n }' \
      >> "$RAW"
    printf '.'
  }
  FLEET_TARGETS="evalproxy-single evalproxy-fleet1 evalproxy-fleet2 evalproxy-fleet3"
  # One unrecorded run against every member first, as for the scale-out proxies.
  printf 'bench: fleet: warming up'
  for target in $FLEET_TARGETS; do bench_fleet warmup "$target" 16 SET -t set; done
  echo
  printf 'bench: fleet'
  for rep in $(seq "$REPS"); do
    for mode in 16 1; do
      for t in SET GET; do
        for target in $FLEET_TARGETS; do bench_fleet "$rep" "$target" "$mode" "$t" -t "${t,,}"; done
      done
      for target in $FLEET_TARGETS; do
        bench_fleet "$rep" "$target" "$mode" "EVALSHA incr" EVALSHA "$INCR_SHA" 1 'bench:incr:__rand_int__'
      done
    done
  done
  echo
  # Every member still serving in its full view, none fenced; what they forwarded.
  echo "target,members,cpus,requests,forwarded,fences" > "$FLEET_INFO"
  for n in 1 2 3; do
    fwd=0; fences=0; cpus=; k=0
    for port in $(fleet_ports "evalproxy-fleet$n"); do
      [ "$(fleet_field "$port" fleet_state)" = serving ] && [ "$(fleet_field "$port" fleet_members)" = "$n" ] \
        || { echo "bench: fleet member :$port is no longer serving in a view of $n after the fleet rows" >&2; FAILED=1; }
      fwd=$((fwd + $(fleet_field "$port" fleet_forwarded))); fences=$((fences + $(fleet_field "$port" fleet_fences)))
      cpus="$cpus${cpus:+ }$(fleet_cpu "$k")"; k=$((k + 1))
    done
    [ "$n" -gt 1 ] && [ "$fwd" = 0 ] && { echo "bench: the fleet of $n forwarded nothing" >&2; FAILED=1; }
    echo "evalproxy-fleet$n,$n,$cpus,${FLEET_SENT[evalproxy-fleet$n]:-0},$fwd,$fences" >> "$FLEET_INFO"
  done
fi

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

# Scale: an evalproxy of its own (nothing else has used its memory), in front of
# the same store, with room for the connections; scripts never reach -BUSY.
if [ "$SCALE" = 1 ]; then
  check_time
  echo "bench: scale: $SCALE_CONNS idle connections, then $SCALE_SCRIPTS scripts in flight on them"
  start evalproxy_scale "$EVALPROXY" --bind 127.0.0.1 --port "$SCALE_PORT" \
    --backend "redis://127.0.0.1:$STORE_PORT" --loglevel warning \
    --maxclients $((SCALE_CONNS * 2)) --busy-reply-threshold 600000
  wait_ping evalproxy_scale "$SCALE_PORT"
  timeout 300 "${LOAD_PIN[@]}" "$PYTHON" bench/scale.py "$SCALE_PORT" "$evalproxy_scale_PID" \
    --conns "$SCALE_CONNS" --scripts "$SCALE_SCRIPTS" >"$SCALE_CSV.tmp" 2>"$RUN/scale.err" &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=
  if [ "$rc" -ne 0 ]; then
    echo "bench: scale measurement failed (rc $rc):" >&2
    sed 's/^/  | /' "$RUN/scale.err" | tail -8 >&2
    FAILED=1
  else
    mv "$SCALE_CSV.tmp" "$SCALE_CSV"
  fi
  kill -0 "$evalproxy_scale_PID" 2>/dev/null || { echo "bench: evalproxy_scale died during the run" >&2; FAILED=1; }
fi

cleanup

SCALE_ARGS=(); [ -f "$SCALE_CSV" ] && SCALE_ARGS=(--scale "$SCALE_CSV")
[ -f "$FLEET_RUNS" ] && SCALE_ARGS+=(--fleet-runs "$FLEET_RUNS" --fleet-note "$FLEET_NOTE")
[ -f "$FLEET_INFO" ] && SCALE_ARGS+=(--fleet-info "$FLEET_INFO")
"$PYTHON" bench/report.py "$RAW" "$MEM" "$OUT/results.csv" "$OUT/results.txt" "${SCALE_ARGS[@]}" --clients "$CLIENTS" \
  --note "$CLIENTS clients (1 for -c 1), -r $RANGE, -n $N_P16 with -P 16, $N_P1 with -P 1, $N_C1 with -c 1$([ "$MEMCACHED" = 1 ] && echo " (-n $N_MC against evalproxy-mc); memcaslap -T 1 -c $CLIENTS -t ${MC_SECONDS}s")$([ "$SCALE_OUT" = 1 ] && echo "; scale-out rows -n $SO_N_P16 with -P 16, $SO_N_P1 with -P 1")$([ "$FLEET" = 1 ] && echo "; fleet rows -n $FLEET_N_P16 with -P 16, $FLEET_N_P1 with -P 1, split over the members"); best of $REPS runs per cell, targets interleaved; load generators on the same $(nproc)-core machine; $PIN_NOTE$([ "$QUICK" = 1 ] && echo "; QUICK=1"). ${SECONDS}s total." \
  || FAILED=1

if [ "$FAILED" -ne 0 ]; then
  echo "bench: FAILED (see messages above; logs in $RUN)" >&2
  exit 1
fi
echo "bench: results in $OUT/results.txt and $OUT/results.csv"
exit 0
