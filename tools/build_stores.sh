#!/usr/bin/env bash
# Builds the old Redis releases that the old-store tests put behind the proxy,
# from the source archives in STORES_SRC (default ../shared/stores, relative
# to the repository root) into build/stores/redis-<v>/; the server is
# build/stores/redis-<v>/src/redis-server. A release built before is kept
# (build/stores/redis-<v>/.built marks a finished build). Compiler output goes
# to build/stores/build-<v>.log; stdout gets one line per release. Without the
# archives it says so and succeeds: the tests then skip, saying why.
#
#   STORES_SRC=dir        where redis-<v>.tar.gz are
#   STORES_RELEASES="..." which releases (default: all five)
#   STORES_JOBS=n         make -j (default 2)

set -u
cd "$(dirname "$0")/.." || exit 2

SRC=${STORES_SRC:-../shared/stores}
OUT=build/stores
RELEASES=${STORES_RELEASES:-"2.4.18 2.8.24 3.2.13 5.0.14 6.0.20"}
JOBS=${STORES_JOBS:-2}

if [ ! -d "$SRC" ]; then
    echo "stores: $SRC is absent: the old-store tests will skip"
    exit 0
fi
mkdir -p "$OUT"

# Only the server is needed. gcc 12 needs -fcommon for these old trees; their
# warnings are not ours to read (-w). 2.4 picks its allocator with
# FORCE_LIBC_MALLOC; the others with MALLOC.
build_one() { # version dir
    case "$1" in
        2.4.*) make -C "$2/src" -j"$JOBS" redis-server MALLOC=libc FORCE_LIBC_MALLOC=yes CFLAGS="-fcommon -w" ;;
        *) make -C "$2/src" -j"$JOBS" redis-server MALLOC=libc CFLAGS="-fcommon -w" ;;
    esac
}

status=0
for v in $RELEASES; do
    dir=$OUT/redis-$v
    if [ -f "$dir/.built" ] && [ -x "$dir/src/redis-server" ]; then
        echo "stores: redis $v already built"
        continue
    fi
    tarball=$SRC/redis-$v.tar.gz
    log=$OUT/build-$v.log
    if [ ! -f "$tarball" ]; then
        echo "stores: redis $v: $tarball is missing"
        status=1
        continue
    fi
    start=$(date +%s)
    rm -rf "$dir"
    if tar xzf "$tarball" -C "$OUT" >"$log" 2>&1 && build_one "$v" "$dir" >>"$log" 2>&1 &&
        [ -x "$dir/src/redis-server" ]; then
        touch "$dir/.built"
        echo "stores: redis $v built in $(($(date +%s) - start))s"
    else
        echo "stores: redis $v failed to build (see $log)"
        status=1
    fi
done
exit $status
