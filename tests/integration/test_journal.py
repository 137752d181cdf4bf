"""The undo journal: scripts caught in a lock cycle over undeclared keys are
undone and re-run, never failed; with rollback on, a script that errors, is
killed or loses its store after writing leaves nothing behind.

Each store (a redis-server without scripting, and memcached) gets its own
proxy, started by this module on free loopback ports.

JOURNAL_STRESS_SECONDS   length of the conserved-total runs (default 60;
                         `make test` sets a shorter one)
"""

import os
import shutil
import threading
import time

import pytest

import harness
from test_memcached import Memcached, MEMCACHED

STRESS_SECONDS = float(os.environ.get("JOURNAL_STRESS_SECONDS", "60"))

# Decrements one key, spins long enough for the other client to start, then
# increments the other: two clients with the keys swapped wait for each
# other's undeclared key after both have written.
SWAP_SCRIPT = (
    "redis.call('decrby',ARGV[1],10) local i=0 while i<3000000 do i=i+1 end "
    "redis.call('incrby',ARGV[2],10) return 'done'")


def proxy_binary():
    return os.path.abspath(os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy"))


def check_proxy_exit(proxy):
    status = proxy.stop()
    report = proxy.sanitizer_report()
    assert not report, "the proxy printed a sanitizer report:\n" + report
    assert status in (0, -15), "proxy exit status %s\n%s" % (status, proxy.diagnostics())


class Env:
    def __init__(self, kind, store, proxy):
        self.kind, self.store, self.proxy = kind, store, proxy

    def conn(self, **kw):
        return self.proxy.connect(**kw)

    def call(self, *args):
        with self.conn() as c:
            return harness.parse_reply(c.call(*args))

    def info(self, section="scripting"):
        with self.conn() as c:
            return harness.info_fields(c, section)


def start_proxy(work, backend_url, store, extra=()):
    proxy = harness.ProxyProcess(proxy_binary(), store, str(work / "proxy"), extra_args=extra)
    i = proxy.args.index("--backend")
    proxy.args[i + 1] = backend_url
    proxy.start()
    return proxy


@pytest.fixture(scope="module")
def redis_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("journal-redis")
    store = harness.RedisServer("store", str(work / "store"), rename_scripting=True).start()
    proxy = start_proxy(work, "redis://%s:%d" % (store.host, store.port), store)
    yield Env("redis", store, proxy)
    check_proxy_exit(proxy)
    store.stop()


@pytest.fixture(scope="module")
def memcached_env(tmp_path_factory):
    if not os.path.exists(MEMCACHED):
        pytest.skip("memcached is not installed")
    work = tmp_path_factory.mktemp("journal-mc")
    mc = Memcached().start()
    proxy = start_proxy(work, "memcached://%s:%d" % (mc.host, mc.port), mc)
    yield Env("memcached", mc, proxy)
    check_proxy_exit(proxy)
    mc.stop()


@pytest.fixture(params=["redis", "memcached"])
def env(request):
    e = request.getfixturevalue(request.param + "_env")
    assert e.proxy.alive(), e.proxy.diagnostics()
    with e.conn() as c:
        c.call("FLUSHALL")
        c.call("CONFIG", "SET", "lua-rollback-on-error", "no")
    return e


def run_parallel(fns, timeout=120):
    results = [None] * len(fns)
    errors = []

    def wrap(i, fn):
        try:
            results[i] = fn()
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a client did not finish within %ss" % timeout
    if errors:
        raise errors[0]
    return results


# ---- deadlock victims are undone and re-run ----------------------------------

def test_swapped_keys_both_done(env):
    """The issue's example: both clients get `done` and the values stay
    100/100 (before: one got "declare it in KEYS" and kept half its writes)."""
    env.call("MSET", "dl:x", "100", "dl:y", "100")
    sha = env.call("SCRIPT", "LOAD", SWAP_SCRIPT)

    def client(a, b):
        def go():
            with env.conn(timeout=60) as c:
                return harness.parse_reply(c.call("EVALSHA", sha, "0", a, b))
        return go

    for _ in range(3):
        results = run_parallel([client("dl:x", "dl:y"), client("dl:y", "dl:x")])
        assert results == [b"done", b"done"], results
        assert env.call("MGET", "dl:x", "dl:y") == [b"100", b"100"]
    info = env.info()
    assert int(info.get("scripts_deadlock_errors", 0)) == 0, info
    assert int(info["scripts_undone"]) >= 1, info
    assert int(info["scripts_rerun_after_undo"]) >= 1, info
