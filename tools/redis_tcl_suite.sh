#!/usr/bin/env bash
# Runs Redis's own Tcl test units against the proxy, as against an external
# server: a store (scripting renamed away, DEBUG on) and the proxy in front
# of it on free loopback ports, then `tests/test_helper.tcl --host --port`.
#
#   tools/redis_tcl_suite.sh REDIS_SRC [unit/scripting unit/functions ...]
#
# REDIS_SRC is a Redis 7.0 source tree (its tests/ folder and runtest). Tests
# tagged needs:repl (the replication stream) are left out; the proxy runs
# with busy-reply-scope all and backend-admin-commands yes, as the units
# expect of a server. PROXY_ARGS adds the proxy's arguments, TCL_ARGS the
# test helper's (--skiptest NAME, --only NAME). Prints each unit's counts
# and its failures; the store is restarted between units.
set -uo pipefail
SRC=${1:?usage: tools/redis_tcl_suite.sh REDIS_SRC [units...]}; shift
UNITS=("${@:-unit/scripting unit/functions unit/multi unit/tracking unit/introspection}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EVALPROXY=${EVALPROXY:-$ROOT/build/release/evalproxy}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/evalproxy-tcl.XXXXXX")
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; PIDS=(); }
trap 'stop; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for unit in ${UNITS[@]}; do
  stop
  SP=$(free_port); PP=$(free_port)
  { echo "port $SP"; echo "bind 127.0.0.1"; echo "dir $WORK"; echo 'save ""'; echo "appendonly no"; echo "enable-debug-command yes"
    for c in EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FUNCTION FCALL FCALL_RO; do echo "rename-command $c \"\""; done
  } >"$WORK/store.conf"
  redis-server "$WORK/store.conf" >"$WORK/store.log" 2>&1 & PIDS+=($!)
  "$EVALPROXY" --bind 127.0.0.1 --port "$PP" --backend "redis://127.0.0.1:$SP" --loglevel warning \
    --busy-reply-scope all --backend-admin-commands yes ${PROXY_ARGS:-} >"$WORK/proxy.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 50); do [ "$(redis-cli -p "$PP" PING 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  out="$WORK/$(echo "$unit" | tr / _).out"
  (cd "$SRC" && timeout "${UNIT_TIMEOUT:-900}" tclsh tests/test_helper.tcl --host 127.0.0.1 --port "$PP" \
     --single "$unit" --clients 1 --tags -needs:repl ${TCL_ARGS:-}) >"$out" 2>&1
  rc=$?
  clean=$(sed 's/\x1b\[[0-9;]*m//g' "$out")
  printf '== %s (exit %d): %s ok, %s err, %s exception, %s ignored, %s skipped\n' "$unit" "$rc" \
    "$(grep -c '^\[ok\]' <<<"$clean")" "$(grep -c '^\[err\]' <<<"$clean")" "$(grep -c '^\[exception\]' <<<"$clean")" \
    "$(grep -c '^\[ignore\]' <<<"$clean")" "$(grep -c '^\[skip\]' <<<"$clean")"
  grep -A2 -E '^\[(err|exception)\]' <<<"$clean" | head -20
done
