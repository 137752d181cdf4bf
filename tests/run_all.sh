#!/usr/bin/env bash
# Runs every test for each build that is present:
#   release:  ./evalproxy          and build/release/tests/test_*
#   san:      build/san/evalproxy  and build/san/tests/test_*   (ASan + UBSan)
# SUITES=release|san|"release san" picks the builds (default: both).
# Each build runs its cmocka unit test binaries; then the pytest integration
# suites of every build run side by side, each against its build's proxy
# binary, and their logs are printed one after the other. The last line is
# the total:
#   N passed, N failed[, N skipped]
# and the exit status is non-zero if anything failed, a runner crashed, or
# nothing ran at all.

set -u
cd "$(dirname "$0")/.." || exit 2

PYTHON=/usr/bin/python3
# Builds asked for explicitly must exist; by default a missing build is skipped.
if [ -n "${SUITES:-}" ]; then explicit=1; else explicit=0; fi
SUITES=${SUITES:-release san}
# The suite must exercise the real proxy binary, never the store stand-in.
unset EVALPROXY_TARGET
# Keep the source tree free of __pycache__ directories.
export PYTHONDONTWRITEBYTECODE=1
# The journal's conserved-total runs (test_journal.py) last 60 s each alone;
# the full suite keeps them short.
export JOURNAL_STRESS_SECONDS=${JOURNAL_STRESS_SECONDS:-10}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
IT_TIMEOUT=${IT_TIMEOUT:-1800}

total_pass=0
total_fail=0
total_skip=0
problems=()
summaries=()

logdir=$(mktemp -d "${TMPDIR:-/tmp}/evalproxy-tests.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

summary() { # build what passed failed skipped
    local line
    line=$(printf '%-8s %-34s %5d passed, %d failed' "$1" "$2" "$3" "$4")
    if [ "$5" -gt 0 ]; then line="$line, $5 skipped"; fi
    summaries+=("$line")
    echo "== $line"
}

# Sum the numbers cmocka prints in "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)".
cmocka_count() { # file PASSED|FAILED
    sed -n "s/^\[  $2  \] \([0-9][0-9]*\) test(s).*/\1/p" "$1" | awk '{s+=$1} END {print s+0}'
}

run_unit() { # build binary
    local build=$1 bin=$2 name log rc pass fail
    name=$(basename "$bin")
    log="$logdir/$build-$name.log"
    timeout "$UNIT_TIMEOUT" "$bin" >"$log" 2>&1
    rc=$?
    pass=$(cmocka_count "$log" PASSED)
    fail=$(cmocka_count "$log" FAILED)
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        # Crashed, timed out or a sanitizer aborted it: not a clean test failure.
        fail=1
        problems+=("$build unit $name: exited with status $rc without a cmocka failure count")
    elif [ "$rc" -ne 0 ]; then
        problems+=("$build unit $name: $fail failed")
    elif [ $((pass + fail)) -eq 0 ]; then
        fail=1
        problems+=("$build unit $name: ran no tests")
    fi
    if [ "$fail" -gt 0 ]; then
        echo "---- $build/$name output ----"
        cat "$log"
        echo "----"
    fi
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    summary "$build" "unit $name" "$pass" "$fail" 0
}

# Reads "N passed", "N failed", "N skipped", "N error(s)" from pytest's final summary.
pytest_count() { # file word
    local line
    line=$(grep -E '^(=+ )?[0-9a-z ,]+ in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$1" | tail -n 1)
    echo "$line" | grep -oE "[0-9]+ $2" | awk '{s+=$1} END {print s+0}'
}

# Runs one pytest suite into its log (and its exit status next to it).
run_pytest() { # build binary mode files...
    local build=$1 bin=$2 mode=$3 log
    shift 3
    local files=("$@")
    [ ${#files[@]} -eq 0 ] && files=(tests/integration)
    log="$logdir/$build-integration$mode.log"
    echo "-- $build: pytest ${files[*]} (EVALPROXY_BIN=$bin${mode:+ EVALPROXY_STORES=$mode})" >"$log"
    EVALPROXY_STORES="$mode" EVALPROXY_BIN="$bin" timeout "$IT_TIMEOUT" \
        "$PYTHON" -m pytest -q -p no:cacheprovider "${files[@]}" >>"$log" 2>&1
    echo $? >"$log.rc"
}

# Counts what one suite's log says, printing the log.
count_pytest() { # build mode
    local build=$1 mode=$2 log rc pass fail skip errors label=integration
    [ -n "$mode" ] && label="integration, $mode"
    log="$logdir/$build-integration$mode.log"
    cat "$log"
    rc=$(cat "$log.rc" 2>/dev/null || echo 2)
    pass=$(pytest_count "$log" passed)
    fail=$(pytest_count "$log" failed)
    skip=$(pytest_count "$log" skipped)
    errors=$(pytest_count "$log" error)
    fail=$((fail + errors))
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        # 2 interrupted, 3 internal error, 4 usage, 5 nothing collected, 124 timeout.
        fail=$((fail + 1))
        problems+=("$build $label: pytest exited with status $rc")
    elif [ "$rc" -eq 1 ] && [ "$fail" -eq 0 ]; then
        fail=1
        problems+=("$build $label: pytest failed without a failure count")
    elif [ "$fail" -gt 0 ]; then
        problems+=("$build $label: $fail failed")
    elif [ "$pass" -eq 0 ]; then
        fail=1
        problems+=("$build $label: no test passed")
    fi
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    total_skip=$((total_skip + skip))
    summary "$build" "$label" "$pass" "$fail" "$skip"
}

# A build's environment: its proxy binary, unit test folder, sanitizer options.
build_env() { # build
    case "$1" in
        release)
            bin=./evalproxy
            unitdir=build/release/tests
            unset ASAN_OPTIONS UBSAN_OPTIONS
            ;;
        san)
            bin=build/san/evalproxy
            unitdir=build/san/tests
            export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
            export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
            ;;
        *) return 1 ;;
    esac
}

# The integration suites of one build, one after another: the whole suite,
# then the relay and script corpora in front of several stores (a pool of
# three, ketama, and a Redis Cluster of three masters).
integration_suites() { # build binary
    run_pytest "$1" "$2" ""
    for mode in pool cluster; do
        run_pytest "$1" "$2" "$mode" tests/integration/test_relay_diff.py tests/integration/test_scripts_diff.py
    done
}

builds_run=0
ran=()
for build in $SUITES; do
    if ! build_env "$build"; then
        echo "unknown suite '$build' in SUITES (use release and/or san)" >&2
        problems+=("unknown suite $build")
        total_fail=$((total_fail + 1))
        continue
    fi
    if [ ! -x "$bin" ]; then
        echo "-- $build: $bin not built, skipping this build"
        if [ "$explicit" -eq 1 ]; then
            problems+=("$build: $bin is missing")
            total_fail=$((total_fail + 1))
        fi
        continue
    fi
    builds_run=$((builds_run + 1))
    ran+=("$build")
    echo "== $build build: $bin"
    unset CMOCKA_MESSAGE_OUTPUT CMOCKA_XML_FILE
    found_unit=0
    for t in "$unitdir"/test_*; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        found_unit=1
        run_unit "$build" "$t"
    done
    if [ "$found_unit" -eq 0 ]; then
        echo "-- $build: no unit test binaries in $unitdir"
    fi
done

# The builds' integration suites run side by side (each on its own free
# ports, see harness.free_port): most of their time is spent waiting on
# servers, leases and timers, not on the CPU.
pids=()
for build in "${ran[@]+"${ran[@]}"}"; do
    build_env "$build"
    abs="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
    echo "-- $build: integration suites started"
    (integration_suites "$build" "$abs") &
    pids+=($!)
done
for pid in "${pids[@]+"${pids[@]}"}"; do
    wait "$pid"
done
for build in "${ran[@]+"${ran[@]}"}"; do
    echo "== $build integration"
    for mode in "" pool cluster; do
        count_pytest "$build" "$mode"
    done
done

echo
echo "Summary:"
for s in "${summaries[@]+"${summaries[@]}"}"; do
    echo "  $s"
done
for p in "${problems[@]+"${problems[@]}"}"; do
    echo "  problem: $p"
done

if [ "$builds_run" -eq 0 ] || [ $((total_pass + total_fail)) -eq 0 ]; then
    echo "  problem: no tests ran"
    total_fail=$((total_fail + 1))
fi

final="$total_pass passed, $total_fail failed"
if [ "$total_skip" -gt 0 ]; then final="$final, $total_skip skipped"; fi
echo "$final"
[ "$total_fail" -eq 0 ]
