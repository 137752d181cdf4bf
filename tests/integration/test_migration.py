"""Live migration (migrate-from): memcached -> redis-server 7.0 and redis
2.8.24 -> redis-server 7.0 while 50 clients work.

Keys are loaded into the old store with TTLs (and, on Redis, every type it
has). Then the proxy starts with migrate-from, and 50 clients run a
conserved-total transfer workload (scripts that read both balances before
writing, MULTI/EXEC, and plain INCRBY pairs) plus per-client counters whose
every INCR must answer one more than the last (a stale or resurrected value
shows there) and readers that check the loaded values, while the
background mover runs. In the middle the proxy is restarted (and, on
Redis, the old store too). At the end every key is in the new store with
its value and TTL (within a second), none is left in the old one, the
total is conserved and no reader saw a stale or missing value.

EVALPROXY_MIGRATION_KEYS sets how many keys are loaded (default 100000, the
issue's number: the file takes about two minutes on two busy cores; 20000
makes it a quick check).
"""

import os
import random
import threading
import time

import pytest
import redis

import harness
from conftest import old_redis_binary, proxy_binary, stop_proxy
from test_memcached import MEMCACHED, Memcached

NKEYS = int(os.environ.get("EVALPROXY_MIGRATION_KEYS", "100000"))
CLIENTS = 50
ACCOUNTS = 200
BALANCE = 1000
TTL_S = 3600
RUN_SECONDS = float(os.environ.get("EVALPROXY_MIGRATION_SECONDS", "12"))

TRANSFER = """
local a = tonumber(redis.call('GET', KEYS[1]))
local b = tonumber(redis.call('GET', KEYS[2]))
local amt = tonumber(ARGV[1])
if a == nil or b == nil then return redis.error_reply('missing account') end
if a < amt then return 0 end
redis.call('DECRBY', KEYS[1], amt)
redis.call('INCRBY', KEYS[2], amt)
return 1
"""


def old_store_error(e):
    return "old store" in str(e)


def info(r, section="migration"):
    return r.info(section)


def wait_done(r, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = info(r)
        if last.get("migration_state") == "done":
            return last
        time.sleep(0.2)
    raise AssertionError("the migration did not finish within %.0fs: %r" % (timeout, last))


class Expected:
    """What was loaded: key -> (type, value, ttl deadline or None)."""

    def __init__(self):
        self.keys = {}


def load_strings(r, exp, n, prefix, with_ttl_every=2):
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        now = time.time()
        k = "%s%d" % (prefix, i)
        v = "value-%d-%s" % (i, "x" * (i % 50))
        if i % with_ttl_every == 0:
            ttl = TTL_S + i % 600
            pipe.setex(k, ttl, v)  # 2.4 has no SET ... EX
            exp.keys[k] = ("string", v, now + ttl)
        else:
            pipe.set(k, v)
            exp.keys[k] = ("string", v, None)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def load_accounts(r, exp):
    pipe = r.pipeline(transaction=False)
    for i in range(ACCOUNTS):
        pipe.set("acct:%d" % i, BALANCE)
    for c in range(CLIENTS):
        pipe.set("ctr:%d" % c, 1000 * c)
    pipe.execute()


def load_types(r, exp, n):
    """Redis old stores: hashes, lists, sets and sorted sets, some with TTLs."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        now = time.time()
        kind = ("hash", "list", "set", "zset")[i % 4]
        k = "%s:%d" % (kind, i)
        if kind == "hash":
            v = {"f%d" % j: "v%d-%d" % (i, j) for j in range(5)}
            pipe.execute_command("HMSET", k, *[x for kv in v.items() for x in kv])  # 2.8: no multi-field HSET
        elif kind == "list":
            v = ["e%d-%d" % (i, j) for j in range(5)]
            pipe.rpush(k, *v)
        elif kind == "set":
            v = {"m%d-%d" % (i, j) for j in range(5)}
            pipe.sadd(k, *v)
        else:
            v = {"z%d-%d" % (i, j): float(j) + 0.5 for j in range(5)}
            for m, score in v.items():
                pipe.execute_command("ZADD", k, score, m)
        deadline = None
        if i % 3 == 0:
            ttl = TTL_S + i % 600
            pipe.expire(k, ttl)
            deadline = now + ttl
        exp.keys[k] = (kind, v, deadline)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def read_value(r, k, kind):
    if kind == "string":
        v = r.get(k)
        return None if v is None else v.decode()
    if kind == "hash":
        return {a.decode(): b.decode() for a, b in r.hgetall(k).items()} or None
    if kind == "list":
        return [x.decode() for x in r.lrange(k, 0, -1)] or None
    if kind == "set":
        return {x.decode() for x in r.smembers(k)} or None
    return {m.decode(): s for m, s in r.zrange(k, 0, -1, withscores=True)} or None


class Workload:
    """50 clients: transfers of three kinds, counters, readers."""

    def __init__(self, proxy, exp):
        self.proxy = proxy
        self.exp = exp
        self.loaded_keys = list(exp.keys)
        self.stop = threading.Event()
        self.go = threading.Event()  # cleared: clients wait (a restart is under way)
        self.go.set()
        self.idle = threading.Semaphore(0)
        self.generation = 0
        self.lock = threading.Lock()
        self.violations = []
        self.counts = {"transfers": 0, "reads": 0, "old_store_errors": 0, "incr": 0}
        self.threads = [threading.Thread(target=self.client, args=(c,), daemon=True) for c in range(CLIENTS)]

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def violation(self, text):
        with self.lock:
            if len(self.violations) < 50:
                self.violations.append(text)

    def connect(self):
        return redis.Redis(host=self.proxy.host, port=self.proxy.port, socket_timeout=30)

    def pause(self):
        """Every client finishes what it does and waits."""
        self.go.clear()
        for _ in self.threads:
            self.idle.acquire(timeout=60)
        self.generation += 1

    def resume(self):
        self.go.set()

    def client(self, c):
        rnd = random.Random(c)
        gen = self.generation
        r = self.connect()
        transfer = r.register_script(TRANSFER)
        counter = 1000 * c
        while not self.stop.is_set():
            if not self.go.is_set():
                self.idle.release()
                self.go.wait()
            if gen != self.generation:
                gen = self.generation
                r = self.connect()
                transfer = r.register_script(TRANSFER)
            try:
                op = rnd.random()
                a, b = rnd.sample(range(ACCOUNTS), 2)
                ka, kb = "acct:%d" % a, "acct:%d" % b
                amt = rnd.randint(1, 20)
                if op < 0.2:
                    transfer(keys=[ka, kb], args=[amt])
                    self.count("transfers")
                elif op < 0.4:
                    p = r.pipeline(transaction=True)
                    p.decrby(ka, amt)
                    p.incrby(kb, amt)
                    p.execute()
                    self.count("transfers")
                elif op < 0.55:
                    # Plain pairs: an error means the command did not run, so
                    # the second half is retried until it lands.
                    r.incrby(ka, -amt)
                    while True:
                        try:
                            r.incrby(kb, amt)
                            break
                        except redis.ResponseError as e:
                            if not old_store_error(e):
                                raise
                            self.count("old_store_errors")
                            time.sleep(0.05)
                    self.count("transfers")
                elif op < 0.7:
                    got = r.incr("ctr:%d" % c)
                    if got != counter + 1:
                        self.violation("ctr:%d answered %d after %d" % (c, got, counter))
                    counter = got
                    self.count("incr")
                else:
                    k = rnd.choice(self.loaded_keys)
                    kind, want, _ = self.exp.keys[k]
                    got = read_value(r, k, kind)
                    if kind == "zset" and got is not None:
                        want = {m: float(s) for m, s in want.items()}
                    if got != want:
                        self.violation("%s read %r, loaded %r" % (k, got, want))
                    self.count("reads")
            except redis.ResponseError as e:
                if old_store_error(e):
                    self.count("old_store_errors")
                    time.sleep(0.05)
                else:
                    self.violation("error: %s" % e)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if self.go.is_set():
                    self.violation("connection: %s" % e)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        self.go.set()
        for t in self.threads:
            t.join(60)


def start_proxy(new, old_url, work, rate, name="proxy"):
    p = harness.ProxyProcess(proxy_binary(), new, os.path.join(work, name),
                             extra_args=["--migrate-from", old_url, "--migrate-rate", str(rate),
                                         "--backend-connections", "4"])
    p.start()
    return p


def check_first_touch_latency(r, keys):
    """GETs of keys not moved yet (the mover paused) against GETs of moved ones."""
    r.execute_command("MIGRATION", "PAUSE")
    try:
        t0 = time.perf_counter()
        for k in keys:
            r.get(k)
        first = (time.perf_counter() - t0) / len(keys)
        t0 = time.perf_counter()
        for k in keys:
            r.get(k)
        moved = (time.perf_counter() - t0) / len(keys)
    finally:
        r.execute_command("MIGRATION", "RESUME")
    return first, moved


def run_migration(old_url, new, exp, work, old_check, restart_old=None):
    rate = max(500, int(NKEYS / RUN_SECONDS))
    proxy = start_proxy(new, old_url, work, rate)
    try:
        r = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=30)
        # DBSIZE answers for both stores while nothing has moved yet.
        assert r.dbsize() == len(exp.keys) + ACCOUNTS + CLIENTS
        sample = [k for k in list(exp.keys)[-200:]]
        first, moved = check_first_touch_latency(r, sample)
        print("\nfirst touch: %.0f us a GET (moved already: %.0f us): %.0f us added"
              % (first * 1e6, moved * 1e6, (first - moved) * 1e6))
        wl = Workload(proxy, exp)
        started = time.monotonic()
        wl.start()
        time.sleep(RUN_SECONDS * 0.3)
        # A proxy restart in the middle: the old store's contents are the state.
        wl.pause()
        before = info(r)
        proxy.stop()
        proxy.start()
        r = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=30)
        wl.resume()
        assert int(before["migration_keys_moved"]) > 0 and before["migration_state"] == "moving", before
        time.sleep(RUN_SECONDS * 0.2)
        if restart_old:
            # The old store goes away for a moment: keys not known moved get
            # an error naming it, the others keep working.
            restart_old(lambda: check_outage(r, old_url))
        d = wait_done(r, timeout=max(120, NKEYS / rate * 4))
        elapsed = time.monotonic() - started
        time.sleep(1)
        wl.finish()
        print("moved %s keys in %.1fs (%.0f keys/s with the workload; migrate-rate %d); %r; INFO: %r"
              % (d["migration_keys_moved"], elapsed, int(d["migration_keys_moved"]) / elapsed, rate, wl.counts, d))
        assert not wl.violations, wl.violations
        assert wl.counts["transfers"] > 100 and wl.counts["reads"] > 100
        # Conserved total, read through the proxy.
        total = sum(int(r.get("acct:%d" % i)) for i in range(ACCOUNTS))
        assert total == ACCOUNTS * BALANCE
        # Every key in the new store with its value and TTL.
        rn = redis.Redis(host=new.host, port=new.port)
        assert rn.dbsize() == len(exp.keys) + ACCOUNTS + CLIENTS
        bad = []
        for k, (kind, want, deadline) in exp.keys.items():
            got = read_value(rn, k, kind)
            if kind == "zset" and got is not None:
                want = {m: float(s) for m, s in want.items()}
            if got != want:
                bad.append((k, got, want))
            now = time.time()
            pttl = rn.pttl(k)
            if deadline is None and pttl != -1:
                bad.append((k, "pttl", pttl))
            if deadline is not None and abs(pttl / 1000.0 - (deadline - now)) > 1.0:
                bad.append((k, "pttl", pttl, deadline - now))
            if len(bad) > 20:
                break
        assert not bad, bad
        old_check()
        # DBSIZE and SCAN answer as the new store alone now.
        assert r.dbsize() == rn.dbsize()
        assert len(set(r.scan_iter(count=1000))) == rn.dbsize()
    except BaseException:
        print(proxy.diagnostics())
        proxy.stop()
        raise
    stop_proxy(proxy)  # fails on a sanitizer report or an unclean exit


def check_outage(r, old_url):
    if info(r)["migration_state"] == "done":
        return
    try:
        r.get("never-existed-%d" % random.randint(0, 1 << 30))
    except redis.ResponseError as e:
        assert "old store" in str(e) and old_url.split("//")[1] in str(e), str(e)
        return
    raise AssertionError("a key not known moved was answered while the old store was down")


@pytest.mark.skipif(not os.path.exists(MEMCACHED), reason="memcached is not installed")
def test_memcached_to_redis(tmp_path):
    work = str(tmp_path)
    mc = Memcached().start()
    new = harness.RedisServer("new", os.path.join(work, "new"), rename_scripting=True).start()
    loader = harness.ProxyProcess(proxy_binary(), new, os.path.join(work, "loader"))
    i = loader.args.index("--backend")
    loader.args[i + 1] = "memcached://%s:%d" % (mc.host, mc.port)
    loader.start()
    try:
        lr = redis.Redis(host=loader.host, port=loader.port)
        exp = Expected()
        load_strings(lr, exp, NKEYS - ACCOUNTS - CLIENTS, "k:")
        load_accounts(lr, exp)
        assert lr.dbsize() == len(exp.keys) + ACCOUNTS + CLIENTS

        def old_check():
            assert lr.dbsize() == 0
            assert lr.keys("*") == []

        run_migration("memcached://%s:%d" % (mc.host, mc.port), new, exp, work, old_check)
        stop_proxy(loader)
    finally:
        loader.stop()
        new.stop()
        mc.stop()


def test_redis28_to_redis7(tmp_path):
    work = str(tmp_path)
    old = harness.RedisServer("old", os.path.join(work, "old"), rename_scripting=True,
                              binary=old_redis_binary("2.8.24")).start()
    new = harness.RedisServer("new", os.path.join(work, "new"), rename_scripting=True).start()
    try:
        ro = redis.Redis(host=old.host, port=old.port)
        exp = Expected()
        ntypes = NKEYS // 5
        load_types(ro, exp, ntypes)
        load_strings(ro, exp, NKEYS - ntypes - ACCOUNTS - CLIENTS, "k:")
        load_accounts(ro, exp)
        # Saved when stopped (SIGTERM), loaded again at start.
        ro.config_set("save", "900 1")

        def restart_old(during_outage):
            old.stop()
            during_outage()
            old.start()

        def old_check():
            assert ro.dbsize() == 0

        run_migration("redis://%s:%d" % (old.host, old.port), new, exp, work, old_check, restart_old=restart_old)
    finally:
        old.stop()
        new.stop()


def test_keyspace_commands_answer_for_both_stores(tmp_path):
    """DBSIZE, KEYS, SCAN, RANDOMKEY over both stores while the mover is
    paused; EXISTS, TTL, DEL and a blocking pop move on touch; FLUSHALL
    empties both, and the migration is then done."""
    work = str(tmp_path)
    old = harness.RedisServer("old", os.path.join(work, "old"), rename_scripting=True,
                              binary=old_redis_binary("2.8.24")).start()
    new = harness.RedisServer("new", os.path.join(work, "new"), rename_scripting=True).start()
    proxy = None
    try:
        ro, rn = redis.Redis(host=old.host, port=old.port), redis.Redis(host=new.host, port=new.port)
        for i in range(100):
            ro.set("old:%d" % i, i)
        ro.rpush("queue", "job")
        ro.setex("expiring", 100, "x")
        ro.config_set("save", "900 1")  # saved when stopped, loaded at start
        proxy = harness.ProxyProcess(proxy_binary(), new, os.path.join(work, "proxy"),
                                     extra_args=["--migrate-from", "redis://%s:%d" % (old.host, old.port),
                                                 "--migrate-pause", "yes"])
        proxy.start()
        r = redis.Redis(host=proxy.host, port=proxy.port)
        for i in range(50):
            r.set("new:%d" % i, i)
        assert r.execute_command("MIGRATION", "STATUS").decode().count("migration_state:paused") == 1
        assert r.config_get("migrate-pause") == {"migrate-pause": "yes"}
        assert r.dbsize() == 152
        assert len(r.keys("*")) == 152 and len(r.keys("old:*")) == 100
        seen, cursor = [], 0
        while True:
            cursor, keys = r.scan(cursor, count=7)
            seen += keys
            if cursor == 0:
                break
        assert len(set(seen)) == 152
        assert r.randomkey() is not None
        # Touches move keys: EXISTS, TTL, DEL on keys still in the old store.
        assert r.exists("old:1") == 1 and rn.exists("old:1") == 1 and ro.exists("old:1") == 0
        assert 98 <= r.ttl("expiring") <= 100 and ro.exists("expiring") == 0
        assert r.delete("old:2") == 1 and ro.exists("old:2") == 0 and rn.exists("old:2") == 0
        assert r.blpop("queue", 1) == (b"queue", b"job") and ro.exists("queue") == 0
        info_before = r.info("migration")
        assert info_before["migration_state"] == "paused" and info_before["migration_keys_moved"] >= 3
        # The old store down: a key not known moved gets an error naming it.
        old.stop()
        with pytest.raises(redis.ResponseError, match="old store %s:%d" % (old.host, old.port)):
            r.get("old:5")
        assert r.get("old:1") == b"1" and r.get("new:1") == b"1"  # known moved, or new: unaffected
        old.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert r.get("old:5") == b"5"
                break
            except redis.ResponseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert r.flushall() is True
        assert ro.dbsize() == 0 and rn.dbsize() == 0
        r.config_set("migrate-pause", "no")
        wait_done(r, 10)
        assert r.dbsize() == 0
        stop_proxy(proxy)
        proxy = None
    finally:
        if proxy:
            proxy.stop()
        old.stop()
        new.stop()


def test_redis24_to_redis7_by_type(tmp_path):
    """Redis 2.4 has neither DUMP nor SCAN nor PTTL: keys move by their
    type's reads and writes, the mover lists them with KEYS, and TTLs come
    in whole seconds (rounded up)."""
    work = str(tmp_path)
    old = harness.RedisServer("old", os.path.join(work, "old"), rename_scripting=True,
                              binary=old_redis_binary("2.4.18")).start()
    new = harness.RedisServer("new", os.path.join(work, "new"), rename_scripting=True).start()
    proxy = None
    try:
        ro = redis.Redis(host=old.host, port=old.port)
        exp = Expected()
        load_types(ro, exp, 400)
        load_strings(ro, exp, 400, "k:")
        proxy = harness.ProxyProcess(proxy_binary(), new, os.path.join(work, "proxy"),
                                     extra_args=["--migrate-from", "redis://%s:%d" % (old.host, old.port),
                                                 "--migrate-rate", "2000"])
        proxy.start()
        r = redis.Redis(host=proxy.host, port=proxy.port)
        assert r.dbsize() == 800
        d = wait_done(r, 30)
        assert int(d["migration_keys_moved"]) == 800 and int(d["migration_errors"]) == 0, d
        rn = redis.Redis(host=new.host, port=new.port)
        assert ro.dbsize() == 0 and rn.dbsize() == 800
        for k, (kind, want, deadline) in exp.keys.items():
            got = read_value(rn, k, kind)
            if kind == "zset":
                want = {m: float(s) for m, s in want.items()}
            assert got == want, (k, got, want)
            pttl = rn.pttl(k)
            if deadline is None:
                assert pttl == -1, (k, pttl)
            else:
                # 2.4 keeps deadlines in whole seconds and TTL answers whole seconds,
                # rounded up here: never early, less than two seconds late
                assert -0.1 <= pttl / 1000.0 - (deadline - time.time()) <= 2.0, (k, pttl, deadline - time.time())
        stop_proxy(proxy)
        proxy = None
    finally:
        if proxy:
            proxy.stop()
        old.stop()
        new.stop()
