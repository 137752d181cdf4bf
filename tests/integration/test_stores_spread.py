"""evalproxy in front of several stores: a pool of three redis-servers
(ketama, as twemproxy places keys) and a Redis Cluster of three masters.

Scripts, transactions and multi-key commands whose keys live on different
stores give Redis 7.0's replies (a plain redis-server 7.0 is the oracle);
keyspace-wide commands answer for every store; a store killed under load
takes only its own keys down; a slot migration (ASK) and a CLUSTER FAILOVER
under a load of transfer scripts lose nothing (the conserved total holds
for every reader at every moment).
"""

import os
import random
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster_harness  # noqa: E402
import conftest  # noqa: E402
import harness  # noqa: E402

# ---- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_stores(workdir):
    stores = []
    try:
        for i in range(3):
            stores.append(harness.RedisServer("pool%d" % i, str(workdir / ("spread-pool%d" % i)),
                                              rename_scripting=True).start())
        yield stores
    finally:
        for s in stores:
            s.stop()


def pool_args(stores):
    args = []
    for s in stores:
        args += ["--backend", "redis://%s:%d" % (s.host, s.port)]
    return args + ["--distribution", "ketama"]


@pytest.fixture(scope="module")
def pool_proxy(pool_stores, workdir):
    p = harness.ProxyProcess(conftest.proxy_binary(), None, str(workdir / "spread-pool-proxy"),
                             backend_args=pool_args(pool_stores))
    p.start()
    conftest.wait_store_learnt(p)
    yield p
    conftest.stop_proxy(p)


@pytest.fixture(scope="module")
def cluster(workdir):
    c = cluster_harness.RedisCluster(str(workdir / "spread-cluster"), masters=3, replicas=1).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cluster_proxy(cluster, workdir):
    p = harness.ProxyProcess(conftest.proxy_binary(), None, str(workdir / "spread-cluster-proxy"),
                             backend_url=cluster.seed_url(), extra_args=["--cluster-refresh-interval", "500"])
    p.start()
    conftest.wait_cluster_map(p)
    yield p
    conftest.stop_proxy(p)


@pytest.fixture(params=["pool", "cluster"])
def spread(request):
    """(kind, proxy, stores): the proxy and the stores (masters) behind it."""
    if request.param == "pool":
        proxy, stores = request.getfixturevalue("pool_proxy"), request.getfixturevalue("pool_stores")
    else:
        c = request.getfixturevalue("cluster")
        proxy, stores = request.getfixturevalue("cluster_proxy"), c.masters()
    if not proxy.alive():
        pytest.fail("the proxy is no longer running\n" + proxy.diagnostics(), pytrace=False)
    with proxy.connect() as c:
        assert c.call("FLUSHALL") == b"+OK\r\n"
    return request.param, proxy, stores


def holder(stores, key):
    """Index of the store holding key (it must exist on exactly one)."""
    found = []
    for i, s in enumerate(stores):
        with s.connect() as c:
            r = c.call("EXISTS", key)
            if r == b":1\r\n":
                found.append(i)
    assert len(found) == 1, "key %r is on stores %r" % (key, found)
    return found[0]


def keys_on_each_store(proxy, stores, count=1, prefix="k"):
    """count keys per store, written through the proxy: {store: [keys]}."""
    out = {i: [] for i in range(len(stores))}
    with proxy.connect() as c:
        for n in range(10000):
            if all(len(v) >= count for v in out.values()):
                break
            k = "%s%d" % (prefix, n)
            assert c.call("SET", k, "x") == b"+OK\r\n"
            i = holder(stores, k)
            if len(out[i]) < count:
                out[i].append(k)
            else:
                c.call("DEL", k)
    assert all(len(v) >= count for v in out.values()), out
    return out


def three_keys(proxy, stores):
    """One key on each of three stores, each set to "x" through the proxy."""
    ks = keys_on_each_store(proxy, stores)
    return [ks[0][0], ks[1][0], ks[2][0]]


# ---- replies across stores ---------------------------------------------------------------------


def test_script_spanning_three_stores(spread, oracle):
    kind, proxy, stores = spread
    a, b, c = three_keys(proxy, stores)
    d = harness.Differ(oracle, proxy)
    with oracle.connect() as o:
        o.call("FLUSHALL")
        o.call("MSET", a, "x", b, "x", c, "x")
    script = ("redis.call('SET', KEYS[1], ARGV[1]); redis.call('APPEND', KEYS[2], ARGV[2]); "
              "redis.call('INCR', KEYS[3] .. ':n'); redis.call('HSET', KEYS[3] .. ':h', 'f', 'v'); "
              "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3]), "
              "redis.call('MGET', KEYS[1], KEYS[2], KEYS[3]), redis.call('EXISTS', KEYS[1], KEYS[2], 'nope')}")
    steps = [("EVAL", script, "3", a, b, c, "one", "two"),
             ("MGET", a, b, c, "missing"),
             ("EXISTS", a, b, c, a),
             ("MSETNX", a, "1", "fresh", "2"),
             ("MSETNX", "fresh1", "1", "fresh2", "2", "fresh3", "3"),
             ("MGET", "fresh1", "fresh2", "fresh3"),
             ("TOUCH", a, b, c, "nope"),
             ("DEL", a, b, c, "nope"),
             ("DBSIZE",),
             ("EVAL", "return redis.call('DBSIZE')", "0")]
    d.run(steps)


def test_transaction_across_stores(spread, oracle):
    kind, proxy, stores = spread
    a, b, c = three_keys(proxy, stores)
    with oracle.connect() as o:
        o.call("FLUSHALL")
        o.call("MSET", a, "x", b, "x", c, "x")
    d = harness.Differ(oracle, proxy)
    d.run([("MULTI",), ("SET", a, "1"), ("INCR", b), ("LPUSH", c, "v"), ("MGET", a, b, c), ("DEL", c),
           ("EXEC",), ("MGET", a, b, c)])
    # WATCH across stores: a write to any watched key by another client aborts.
    for victim in (a, b, c):
        with proxy.connect() as w, proxy.connect() as other:
            assert w.call("WATCH", a, b, c) == b"+OK\r\n"
            assert other.call("SET", victim, "changed") == b"+OK\r\n"
            w.call("MULTI")
            w.call("SET", a, "mine")
            assert w.call("EXEC") == b"*-1\r\n", "a write to %s did not abort EXEC" % victim
    with proxy.connect() as w:
        assert w.call("WATCH", a, b, c) == b"+OK\r\n"
        w.call("MULTI")
        w.call("SET", a, "mine")
        w.call("GET", c)
        assert w.call("EXEC") == b"*2\r\n+OK\r\n$7\r\nchanged\r\n"


def test_keyspace_wide_commands(spread):
    kind, proxy, stores = spread
    keys = ["key:%d" % i for i in range(300)]
    with proxy.connect() as c:
        assert c.call("MSET", *[x for k in keys for x in (k, "v")]) == b"+OK\r\n"
        assert c.call("DBSIZE") == b":300\r\n"
        got = set(harness.parse_reply(c.call("KEYS", "key:*")))
        assert got == set(k.encode() for k in keys)
        seen, cursor, calls = [], b"0", 0
        while True:
            cur, page = harness.parse_reply(c.call("SCAN", cursor, "COUNT", "20"))
            seen += page
            calls += 1
            cursor = cur
            if cursor == b"0":
                break
            assert calls < 1000
        assert sorted(seen) == sorted(k.encode() for k in keys) and calls > 3
        assert harness.parse_reply(c.call("RANDOMKEY")) in set(k.encode() for k in keys)
        info = harness.parse_reply(c.call("INFO", "keyspace")).decode()
        assert "db0:keys=300,expires=0" in info, info
        assert c.call("FLUSHDB") == b"+OK\r\n"
        assert c.call("DBSIZE") == b":0\r\n"
        assert c.call("RANDOMKEY") == b"$-1\r\n"
        assert c.call("RENAME", "{t}a", "{t}b").startswith(b"-ERR no such key")
        if kind == "cluster":
            assert c.call("SELECT", "1") == b"-ERR SELECT is not allowed in cluster mode\r\n"
            assert c.call("SELECT", "0") == b"+OK\r\n"
    # Every store took part.
    for s in stores:
        with s.connect() as c:
            assert c.call("DBSIZE") == b":0\r\n"


def test_info_shows_every_store(spread):
    kind, proxy, stores = spread
    with proxy.connect() as c:
        info = harness.info_fields(c, "backend")
    assert info["backend_type"] == kind
    lines = [v for k, v in info.items() if k.startswith("store")]
    for s in stores:
        assert any("%s:%d" % (s.host, s.port) in v and "state=up" in v for v in lines), (s.port, lines)
    if kind == "cluster":
        assert info["backend_cluster_slots_served"] == "16384"
    else:
        assert info["backend_distribution"] == "ketama"


def test_crossslot_where_keys_must_live_together(spread):
    kind, proxy, stores = spread
    a, b, c = three_keys(proxy, stores)
    with proxy.connect() as cn:
        for cmd in (("RENAME", a, b), ("SUNIONSTORE", a, b, c), ("LMOVE", a, b, "LEFT", "LEFT"),
                    ("BLPOP", a, b, "1")):
            assert cn.call(*cmd) == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n", cmd
        r = cn.call("EVAL", "return redis.call('RENAME', KEYS[1], KEYS[2])", "2", a, b)
        assert r.startswith(b"-CROSSSLOT Keys in request don't hash to the same slot"), r
        # With a hash tag they live together.
        assert cn.call("SET", "{user1}:a", "1") == b"+OK\r\n"
        assert cn.call("RENAME", "{user1}:a", "{user1}:b") == b"+OK\r\n"
        assert cn.call("SORT", a, "BY", "w_*").startswith(b"-ERR BY option of SORT denied in Cluster mode")


# ---- failures ----------------------------------------------------------------------------------


def test_one_pool_store_killed_and_restarted_under_load(pool_proxy, pool_stores):
    proxy, stores = pool_proxy, pool_stores
    with proxy.connect() as c:
        c.call("FLUSHALL")
    per = keys_on_each_store(proxy, stores, count=20, prefix="load")
    dead, live = per[1], per[0] + per[2]
    stop = threading.Event()
    errors, done = [], [0]

    def load(seed):
        rnd = random.Random(seed)
        with proxy.connect(timeout=30) as c:
            while not stop.is_set():
                k = rnd.choice(live)
                r = c.call("EVAL", "redis.call('APPEND', KEYS[1], 'y'); return redis.call('SET', KEYS[1], 'x')",
                           "1", k)
                if r != b"+OK\r\n":
                    errors.append(r)
                done[0] += 1

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        stores[1].kill()
        time.sleep(0.5)
        with proxy.connect() as c:
            r = c.call("GET", dead[0])
            assert r.startswith(b"-ERR backend 127.0.0.1:%d" % stores[1].port), r
            # A script touching the dead store fails cleanly and holds no lock.
            r = c.call("EVAL", "redis.call('SET', KEYS[1], 'a'); return redis.call('SET', KEYS[2], 'b')", "2",
                       live[0], dead[0])
            assert r.startswith(b"-ERR") and b"127.0.0.1:%d" % stores[1].port in r, r
            assert c.call("GET", live[1]) == b"$1\r\nx\r\n"
            assert c.call("MGET", live[0], dead[0]).startswith(b"-ERR backend"), "MGET over a dead store"
        time.sleep(0.3)
        stores[1].restart()
        deadline = time.monotonic() + 15
        while True:
            with proxy.connect() as c:
                if c.call("SET", dead[0], "back") == b"+OK\r\n":
                    break
            assert time.monotonic() < deadline, "the restarted store never came back"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert done[0] > 50
    with proxy.connect() as c:
        assert c.call("EVAL", "return redis.call('SET', KEYS[1], 'ok')", "1", dead[0]) == b"+OK\r\n"
        info = harness.info_fields(c, "keysizes") if False else harness.info_fields(c, "backend")
        assert info["backend_status"] == "up"
    assert proxy.alive()


# ---- a cluster under change -----------------------------------------------------------------------

TRANSFER = """
local a = tonumber(redis.call('GET', KEYS[1]))
local amount = tonumber(ARGV[1])
if a < amount then return 0 end
redis.call('DECRBY', KEYS[1], amount)
redis.call('INCRBY', KEYS[2], amount)
return 1
"""
TOTAL = "local s = 0 for i, k in ipairs(KEYS) do s = s + tonumber(redis.call('GET', k) or '0') end return s"


def run_transfers(proxy, accounts, seconds_or_event, workers=8):
    """Transfer scripts between random accounts and readers of the total;
    returns (transfers, reads, violations, errors)."""
    stop = seconds_or_event
    stats = {"transfers": 0, "reads": 0, "violations": [], "errors": []}
    expected = 100 * len(accounts)
    lock = threading.Lock()

    def transfer(seed):
        rnd = random.Random(seed)
        with proxy.connect(timeout=30) as c:
            sha = harness.parse_reply(c.call("SCRIPT", "LOAD", TRANSFER))
            while not stop.is_set():
                a, b = rnd.sample(accounts, 2)
                r = c.call("EVALSHA", sha, "2", a, b, str(rnd.randint(1, 20)))
                with lock:
                    if r in (b":1\r\n", b":0\r\n"):
                        stats["transfers"] += 1
                    else:
                        stats["errors"].append(r)

    def read():
        with proxy.connect(timeout=30) as c:
            while not stop.is_set():
                r = c.call("EVAL", TOTAL, str(len(accounts)), *accounts)
                with lock:
                    if r == b":%d\r\n" % expected:
                        stats["reads"] += 1
                    elif r.startswith(b":"):
                        stats["violations"].append(r)
                    else:
                        stats["errors"].append(r)
                r = c.call("MGET", *accounts)
                vals = harness.parse_reply(r)
                with lock:
                    if isinstance(vals, list):
                        s = sum(int(v) for v in vals)
                        if s != expected:
                            stats["violations"].append(("MGET", s))
                    else:
                        stats["errors"].append(r)

    threads = [threading.Thread(target=transfer, args=(i,)) for i in range(workers)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    return threads, stats


def test_cluster_slot_migration_and_failover_under_transfers(cluster, cluster_proxy):
    proxy = cluster_proxy
    with proxy.connect() as c:
        c.call("FLUSHALL")
    # Accounts over many slots; a tenth of them share the slot that moves.
    moving = "{moving}"
    accounts = ["acct:%d" % i for i in range(40)] + ["%s:acct:%d" % (moving, i) for i in range(6)]
    with proxy.connect() as c:
        assert c.call("MSET", *[x for k in accounts for x in (k, "100")]) == b"+OK\r\n"
    slot = cluster_harness.key_slot(moving)
    src = cluster.slot_owner(slot)
    dst = [m for m in cluster.masters() if m is not src][0]
    stop = threading.Event()
    threads, stats = run_transfers(proxy, accounts, stop)
    try:
        time.sleep(0.5)
        # A slot moves key by key: for a while some of its keys are on each side (ASK).
        cluster.begin_slot_migration(slot, dst)
        time.sleep(0.3)
        cluster.move_slot_keys(slot, count=2)
        time.sleep(0.3)
        cluster.move_slot_keys(slot, count=2)
        # Two of the slot's keys are on the target now: a read of each of
        # them meets the source's ASK however slow this run is.
        with proxy.connect(timeout=30) as c:
            for k in accounts[-6:]:
                assert c.call("GET", k).startswith(b"$"), k
        time.sleep(0.3)
        cluster.finish_slot_migration(slot)
        time.sleep(0.5)
        # A master hands over to its replica while transfers run.
        victim = cluster.owner_of("acct:1")
        cluster.failover(victim)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    with proxy.connect() as c:
        vals = harness.parse_reply(c.call("MGET", *accounts))
        info = harness.info_fields(c, "backend")
    print("\ncluster under change: %d transfers, %d consistent reads, MOVED %s, ASK %s, retried %s"
          % (stats["transfers"], stats["reads"], info.get("backend_cluster_moved"),
             info.get("backend_cluster_asked"), info.get("backend_cluster_retried")))
    assert not stats["violations"], stats["violations"][:5]
    assert not stats["errors"], stats["errors"][:5]
    assert sum(int(v) for v in vals) == 100 * len(accounts)
    assert stats["transfers"] > 100 and stats["reads"] > 10, stats
    assert int(info["backend_cluster_moved"]) > 0 and int(info["backend_cluster_asked"]) > 0, info
    # The cluster itself holds the same total.
    total = 0
    for k in accounts:
        owner = cluster.owner_of(k)
        total += int(cluster.call(owner, "GET", k))
    assert total == 100 * len(accounts)


def test_pool_transfers_conserve_the_total(pool_proxy):
    proxy = pool_proxy
    with proxy.connect() as c:
        c.call("FLUSHALL")
    accounts = ["acct:%d" % i for i in range(30)]
    with proxy.connect() as c:
        assert c.call("MSET", *[x for k in accounts for x in (k, "100")]) == b"+OK\r\n"
    stop = threading.Event()
    threads, stats = run_transfers(proxy, accounts, stop, workers=6)
    try:
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not stats["violations"], stats["violations"][:5]
    assert not stats["errors"], stats["errors"][:5]
    assert stats["transfers"] > 100 and stats["reads"] > 10, stats


# ---- a pool of memcached servers --------------------------------------------------------------------


def test_memcached_pool(workdir, oracle):
    import test_memcached
    if not os.path.exists(test_memcached.MEMCACHED):
        pytest.skip("memcached is not installed")
    mcs = []
    proxy = None
    try:
        for _ in range(3):
            mcs.append(test_memcached.Memcached().start())
        args = []
        for m in mcs:
            args += ["--backend", "memcached://%s:%d" % (m.host, m.port)]
        proxy = harness.ProxyProcess(conftest.proxy_binary(), None, str(workdir / "spread-mc-proxy"),
                                     backend_args=args + ["--distribution", "ketama", "--hash", "md5"])
        proxy.start()
        keys = ["mk%d" % i for i in range(12)]
        d = harness.Differ(oracle, proxy)
        d.flushall()
        d.run([("MSET", *[x for k in keys for x in (k, "1")]),
               ("MGET", *keys),
               ("EVAL", "for i, k in ipairs(KEYS) do redis.call('INCRBY', k, i) end "
                        "return redis.call('MGET', unpack(KEYS))", str(len(keys)), *keys),
               ("EXISTS", *keys),
               ("MSETNX", keys[0], "x", "new", "y"),
               ("MULTI",), ("INCR", keys[1]), ("INCR", keys[5]), ("GET", keys[9]), ("EXEC",),
               ("DEL", *keys[:6]),
               ("DBSIZE",)])
        # The keys left are spread over the servers (ports differ from run
        # to run, and with them the placement: at least two of three).
        held = [m.raw(b"".join(b"mg %s v\r\n" % k.encode() for k in keys)).count(b"VA ") for m in mcs]
        assert sum(held) == 6 and sum(1 for h in held if h) >= 2, held
        # WATCH across servers: a write to any of them aborts.
        with proxy.connect() as w, proxy.connect() as other:
            assert w.call("WATCH", *keys[6:]) == b"+OK\r\n"
            assert other.call("SET", keys[11], "changed") == b"+OK\r\n"
            w.call("MULTI")
            w.call("SET", keys[6], "mine")
            assert w.call("EXEC") == b"*-1\r\n"
    finally:
        if proxy:
            conftest.stop_proxy(proxy)
        for m in mcs:
            m.stop()


def test_pool_auto_eject_hosts(workdir):
    """auto-eject-hosts: a store that fails server-failure-limit times in a
    row leaves the placement (its keys go to the others) for
    server-retry-timeout ms, then comes back, as with twemproxy."""
    stores, proxy = [], None
    try:
        for i in range(3):
            stores.append(harness.RedisServer("eject%d" % i, str(workdir / ("eject%d" % i)),
                                              rename_scripting=True).start())
        proxy = harness.ProxyProcess(conftest.proxy_binary(), None, str(workdir / "eject-proxy"),
                                     backend_args=pool_args(stores) + [
                                         "--auto-eject-hosts", "yes", "--server-failure-limit", "2",
                                         "--server-retry-timeout", "1500"])
        proxy.start()
        conftest.wait_store_learnt(proxy)
        per = keys_on_each_store(proxy, stores, count=3, prefix="ej")
        stores[1].kill()
        time.sleep(0.3)
        with proxy.connect() as c:
            answers = [c.call("SET", per[1][0], "again") for _ in range(4)]
            assert answers[0].startswith(b"-ERR backend"), answers
            assert answers[-1] == b"+OK\r\n", answers  # placed on another store now
            assert c.call("GET", per[1][0]) == b"$5\r\nagain\r\n"
            assert c.call("GET", per[0][0]) == b"$1\r\nx\r\n"  # the others' keys stay put
            assert c.call("PING") == b"+PONG\r\n"
            info = harness.info_fields(c, "backend")
            assert info["backend_stores_ejected"] == "1", info
            assert "state=ejected" in info["store1"], info
        assert holder([stores[0], stores[2]], per[1][0]) in (0, 1)
        stores[1].restart()
        deadline = time.monotonic() + 15
        while True:
            with proxy.connect() as c:
                info = harness.info_fields(c, "backend")
            if info["backend_stores_ejected"] == "0" and "state=up" in info["store1"]:
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.2)
            with proxy.connect() as c:
                c.call("GET", per[0][0])  # the placement is checked as commands come
        with proxy.connect() as c:
            assert c.call("SET", per[1][1], "home") == b"+OK\r\n"
        assert holder(stores, per[1][1]) == 1
    finally:
        if proxy:
            conftest.stop_proxy(proxy)
        for s in stores:
            s.stop()


def test_migration_into_a_pool(workdir, pool_stores):
    """migrate-from with a pool as the new store: every key is moved to its
    owner in the pool, with its value and time to live."""
    import test_memcached
    if not os.path.exists(test_memcached.MEMCACHED):
        pytest.skip("memcached is not installed")
    for s in pool_stores:
        with s.connect() as c:
            c.call("FLUSHALL")
    old = test_memcached.Memcached().start()
    proxy = None
    try:
        old.raw(b"".join(b"ms old%d 2 T%d\r\nv%d\r\n" % (i, 0 if i % 3 else 100, i % 10) for i in range(600)))
        proxy = harness.ProxyProcess(conftest.proxy_binary(), None, str(workdir / "spread-migrate-proxy"),
                                     backend_args=pool_args(pool_stores) + [
                                         "--migrate-from", "memcached://%s:%d" % (old.host, old.port)])
        proxy.start()
        with proxy.connect() as c:
            assert c.call("GET", "old5") == b"$2\r\nv5\r\n"  # moved on first touch
            deadline = time.monotonic() + 30
            while b"migration_state:done" not in c.call("MIGRATION", "STATUS"):
                assert time.monotonic() < deadline, c.call("MIGRATION", "STATUS")
                time.sleep(0.1)
            assert c.call("DBSIZE") == b":600\r\n"
            assert 90 <= int(c.call("TTL", "old3")[1:-2]) <= 100
            assert c.call("TTL", "old4") == b":-1\r\n"
            vals = harness.parse_reply(c.call("MGET", *["old%d" % i for i in range(600)]))
            assert vals == [b"v%d" % (i % 10) for i in range(600)]
        held = []
        for s in pool_stores:
            with s.connect() as c:
                held.append(int(c.call("DBSIZE")[1:-2]))
        assert sum(held) == 600, held
        # Each store holds the keys twemproxy's placement gives it (with
        # fnv1a_64, names this alike may all miss one store: no spread is
        # promised, only the placement).
        tool = os.environ.get("PLACEMENT_TOOL", os.path.join(harness.REPO_ROOT, "build", "release", "tests",
                                                             "placement_tool"))
        if os.path.exists(tool):
            import subprocess
            r = subprocess.run([tool, "ketama", "fnv1a_64", "-"] + ["%s:%d:1" % (s.host, s.port) for s in pool_stores],
                               input="".join("old%d\n" % i for i in range(600)), capture_output=True, text=True,
                               check=True)
            owners = [int(x) for x in r.stdout.split()]
            assert held == [owners.count(i) for i in range(3)], (held, [owners.count(i) for i in range(3)])
        assert holder(pool_stores, "old7") in (0, 1, 2)
        assert b"VA" not in old.raw(b"mg old7 v\r\n")
    finally:
        if proxy:
            conftest.stop_proxy(proxy)
        old.stop()


def test_cluster_multi_key_command_waits_out_a_slot_migration(cluster, cluster_proxy):
    """MGET of keys of a slot in the middle of a migration, some moved and
    one missing everywhere: the nodes answer ASK, then TRYAGAIN; the proxy
    keeps asking (with ASKING) until the slot has moved, and the client gets
    the reply, not TRYAGAIN."""
    proxy = cluster_proxy
    tag = "{waits}"
    slot = cluster_harness.key_slot(tag)
    with proxy.connect() as c:
        assert c.call("MSET", tag + "a", "1", tag + "b", "2") == b"+OK\r\n"
    src = cluster.slot_owner(slot)
    dst = [m for m in cluster.masters() if m is not src][0]
    cluster.begin_slot_migration(slot, dst)
    cluster.move_slot_keys(slot)
    got = []
    with proxy.connect(timeout=30) as c:
        t = threading.Thread(target=lambda: got.append(c.call("MGET", tag + "a", tag + "b", tag + "c")))
        t.start()
        time.sleep(0.5)
        cluster.finish_slot_migration(slot)
        t.join(30)
    assert got == [b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"], got
