# evalproxy — build, run, test, bench.
#
#   make          build ./evalproxy
#   make run      install what is missing, build, start a redis-server store and the proxy
#   make test     install what is missing, build, check the rooms (tools/check_rooms.py),
#                 run every test (normal and ASan/UBSan)
#   make stores   build the old Redis releases the tests put behind the proxy
#                 (from STORES_SRC, default ../shared/stores; once, into build/stores)
#   make bench    side-by-side benchmarks
#   make fuzz     build and run the libFuzzer targets for a short while
#   make deps     install the Debian packages needed to build and test

PKGS := libevent libevent_openssl hiredis lua5.1 openssl lua5.1-cjson lua5.1-bitop libsystemd

# Debian packages: build, test, bench.
DEB_BUILD := build-essential pkg-config libevent-dev libhiredis-dev liblua5.1-0-dev libsystemd-dev \
             libssl-dev lua-cjson-dev lua-bitop-dev
DEB_TEST := redis-server redis-tools memcached python3 python3-redis python3-pytest \
            libcmocka-dev clang openssl
DEB_BENCH := nutcracker libmemcached-tools

PYTHON := /usr/bin/python3
# Source archives of old Redis releases (tests/integration/test_old_stores.py).
STORES_SRC ?= ../shared/stores
export STORES_SRC
CC ?= cc
OPT ?= -O2
SAN ?=

ifeq ($(SAN),1)
BUILD := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD := build/release
SANFLAGS :=
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_ALL = -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wno-unused-parameter \
             -D_GNU_SOURCE -DHAVE_LIBSYSTEMD -I. $(PKG_CFLAGS) $(SANFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)
LIBS_ALL = $(PKG_LIBS) -lm $(LIBS)

# Rooms, lowest first: util/ < lua/, backends/ < fleet/ < proxy/core/ < proxy/commands/ < proxy/main.c
SRC_DIRS := util lua backends fleet proxy/core proxy/commands proxy
SRCS := $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c))
OBJS := $(patsubst %.c,$(BUILD)/%.o,$(SRCS))
LIB_OBJS := $(filter-out $(BUILD)/proxy/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

BIN := $(BUILD)/evalproxy

.PHONY: all deps deps-build run stores clients resp3-shapes test test-unit test-integration test-san bench fuzz clean

# Packages first, then the build: under -j the compiler must not start before
# the headers are installed.
all: deps-build
	@$(MAKE) --no-print-directory evalproxy

# ./evalproxy is the release build; build/san/evalproxy the sanitizer build.
evalproxy: $(BUILD)/evalproxy
ifneq ($(SAN),1)
	@ln -sf $(BUILD)/evalproxy evalproxy
endif

$(BIN): $(OBJS)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

$(BUILD)/%.o: %.c $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.h))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIB_OBJS) $(LIBS_ALL) -lcmocka

# Install the Debian packages that are missing (as root, or through sudo).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps-build:
	$(call apt_install,$(DEB_BUILD))

deps: deps-build
	$(call apt_install,$(DEB_TEST) $(DEB_BENCH))

run: deps evalproxy
	@tests/run_local.sh

unit: $(UNIT_BINS) $(BUILD)/tests/resp3_convert $(BUILD)/tests/placement_tool

# The RESP2 -> RESP3 converter as a command-line filter, for
# tests/integration/test_resp3_shapes.py.
$(BUILD)/tests/resp3_convert: tests/tools/resp3_convert.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIB_OBJS) $(LIBS_ALL)

# Key placement (util/placement.c) as a command-line filter, for
# tests/integration/test_pool_placement.py.
$(BUILD)/tests/placement_tool: tests/tools/placement_tool.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(LIB_OBJS) $(LIBS_ALL)

# Regenerates proxy/core/resp3_shapes.c from the reply schemas in
# $(STORES_SRC)/redis-7.2.6-commands-json.tar.gz.
resp3-shapes:
	$(PYTHON) tools/gen_resp3_shapes.py --archive $(STORES_SRC)/redis-7.2.6-commands-json.tar.gz

# Built once and kept (a release already in build/stores is skipped).
stores:
	@tools/build_stores.sh

# Client libraries the tests drive (node-redis and ioredis from the npm
# registry), installed again when package-lock.json changes; a machine
# without npm or the registry skips those tests.
clients:
	@cd tests/clients/node && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
	  { command -v npm >/dev/null && timeout 300 npm ci --no-audit --no-fund --loglevel=error; } || \
	  echo "clients: node-redis not installed; its tests will be skipped"; }

test: deps
	@$(MAKE) --no-print-directory stores
	@$(MAKE) --no-print-directory clients
	@$(MAKE) --no-print-directory evalproxy unit
	@$(PYTHON) tools/check_rooms.py build/release
	@$(MAKE) --no-print-directory SAN=1 evalproxy unit
	@tests/run_all.sh

test-san: deps
	@$(MAKE) --no-print-directory stores
	@$(MAKE) --no-print-directory SAN=1 evalproxy unit
	@SUITES=san tests/run_all.sh

# bench/kvload: one load generator for RESP and memcache's text protocol.
build/bench-tools/kvload: bench/kvload.c
	@mkdir -p build/bench-tools
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $<

bench: deps evalproxy build/bench-tools/kvload
	@bench/run.sh

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE $(PKG_CFLAGS)

build/fuzz/fuzz_request_parser: tests/fuzz/fuzz_request_parser.c proxy/core/request_parser.c
	@mkdir -p build/fuzz
	clang $(FUZZ_CFLAGS) -o $@ $^ $(PKG_LIBS)

build/fuzz/fuzz_script_reply: tests/fuzz/fuzz_script_reply.c $(wildcard lua/*.c)
	@mkdir -p build/fuzz
	clang $(FUZZ_CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

fuzz: deps $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do echo "== $$t"; mkdir -p build/fuzz/corpus-$$(basename $$t); \
	  seeds=tests/fuzz/seeds/$$(basename $$t); [ -d $$seeds ] || seeds=tests/fuzz/seeds; \
	  $$t -max_total_time=$${FUZZ_SECONDS:-60} build/fuzz/corpus-$$(basename $$t) $$seeds || exit 1; done

clean:
	rm -rf build evalproxy
