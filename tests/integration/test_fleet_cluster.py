"""A fleet of three proxies answers as a Redis Cluster of proxies: CLUSTER
SLOTS/SHARDS/NODES/INFO/MYID agree across the members, cover every slot
with the owners the routing uses (a key's MOVED names the member CLUSTER
SLOTS names), and have the reply shapes of a real Redis 7.0 cluster.
Cluster-aware clients (redis-py's RedisCluster, ioredis's Cluster) run a
script corpus against the fleet in redirect mode and get what a plain
redis-server 7.0 gives; plain clients get the same through any member
(forwarding). Out of a fleet, CLUSTER, READONLY, READWRITE and ASKING are
refused or relayed as they always were."""

import json
import os
import shutil
import subprocess
import time

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

import cluster_harness
import harness
from conftest import proxy_binary, stop_proxy
from harness import info_fields, parse_reply

NODE_DIR = os.path.join(harness.REPO_ROOT, "tests", "clients", "node")
HAVE_IOREDIS = bool(shutil.which("node")) and os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ioredis"))
SLOTS = 16384
LEASE_MS = 1000
ADMIN_REFUSAL = (b"-ERR command 'cluster' administers the store and is not relayed by evalproxy "
                 b"(set backend-admin-commands yes to allow it)\r\n")


def call(ep, *args):
    with ep.connect() as c:
        return parse_reply(c.call(*args))


def fleet_info(ep):
    with ep.connect() as c:
        return info_fields(c, "fleet")


def wait_serving(members, timeout=30.0):
    """Every member sees all the members and serves the slots it owns."""
    deadline = time.monotonic() + timeout
    while True:
        infos = [fleet_info(m) for m in members]
        if all(i.get("fleet_state") == "serving" and i.get("fleet_members") == str(len(members)) and
               i.get("fleet_serving_slots") == i.get("fleet_owned_slots") for i in infos):
            return
        if time.monotonic() > deadline:
            pytest.fail("the fleet does not serve: %r\n%s" % (infos, members[0].diagnostics()), pytrace=False)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A store without scripting, a redis-server 7.0 oracle, and three
    members of one fleet answering -MOVED for slots owned elsewhere."""
    work = tmp_path_factory.mktemp("fleet-cluster")
    store = harness.RedisServer("store-fleet", str(work / "store"), rename_scripting=True).start()
    oracle = harness.RedisServer("oracle-fleet", str(work / "oracle")).start()
    members = []
    try:
        for i in range(3):
            p = harness.ProxyProcess(proxy_binary(), store, str(work / ("member%d" % i)), extra_args=[
                "--fleet-name", "clustered", "--fleet-lease-ms", str(LEASE_MS), "--fleet-redirect", "yes"])
            members.append(p.start())
        wait_serving(members)
        yield store, oracle, members
    finally:
        for p in members:
            stop_proxy(p)
        store.stop()
        oracle.stop()


@pytest.fixture
def flushed(fleet):
    store, oracle, members = fleet
    for ep in (store, oracle):
        assert call(ep, "FLUSHALL") == b"OK"
    for m in members:
        call(m, "SCRIPT", "FLUSH")
    wait_serving(members)
    return fleet


@pytest.fixture
def forwarding(flushed):
    """The members forward instead of answering -MOVED, for plain clients."""
    store, oracle, members = flushed
    for m in members:
        assert call(m, "CONFIG", "SET", "fleet-redirect", "no") == b"OK"
    try:
        yield flushed
    finally:
        for m in members:
            call(m, "CONFIG", "SET", "fleet-redirect", "yes")


def addr(ep):
    return "%s:%d" % (ep.host, ep.port)


def slot_table(reply):
    """CLUSTER SLOTS as a list of (start, end, host:port, id), checked for shape."""
    out = []
    for entry in reply:
        assert len(entry) == 3, entry  # one master, no replicas
        start, end, node = entry
        assert len(node) == 4 and node[3] == [], node
        out.append((start, end, "%s:%d" % (node[0].decode(), node[1]), node[2].decode()))
    return out


def owners_by_slot(table):
    owner = [None] * SLOTS
    for start, end, where, node_id in table:
        for s in range(start, end + 1):
            assert owner[s] is None, "slot %d listed twice" % s
            owner[s] = (where, node_id)
    return owner


def counters(members):
    infos = [fleet_info(m) for m in members]
    return (sum(int(i["fleet_forwarded"]) for i in infos), sum(int(i["fleet_redirected"]) for i in infos),
            [i["fleet_epoch"] for i in infos])


# ---- the replies -------------------------------------------------------------------------------


def test_cluster_replies_agree_and_cover_every_slot(fleet):
    store, oracle, members = fleet
    wait_serving(members)
    ids = {addr(m): call(m, "CLUSTER", "MYID").decode() for m in members}
    assert len(set(ids.values())) == 3 and all(len(i) == 40 for i in ids.values()), ids
    for m in members:
        assert fleet_info(m)["fleet_myid"] == ids[addr(m)]

    tables = [slot_table(call(m, "CLUSTER", "SLOTS")) for m in members]
    assert tables[0] == tables[1] == tables[2]
    table = tables[0]
    owner = owners_by_slot(table)
    assert None not in owner, "slots nobody owns: %r" % [s for s in range(SLOTS) if owner[s] is None][:10]
    assert sorted(t[0] for t in table) == [t[0] for t in table]
    # Consecutive slots with one owner are one range.
    for a, b in zip(table, table[1:]):
        assert a[1] + 1 == b[0] and a[3] != b[3], (a, b)
    assert {(w, i) for _, _, w, i in table} == {(a, i) for a, i in ids.items()}
    # The routing's own count of each member's slots.
    per_id = {}
    for start, end, _, node_id in table:
        per_id[node_id] = per_id.get(node_id, 0) + end - start + 1
    for m in members:
        info = fleet_info(m)
        for k in range(3):
            fields = dict(kv.split("=") for kv in info["fleet_member%d" % k].split(","))
            assert per_id[fields["id"]] == int(fields["slots"]), (fields, per_id)
        assert int(info["fleet_owned_slots"]) == per_id[ids[addr(m)]]

    ranges_of = {}
    for start, end, _, node_id in table:
        ranges_of.setdefault(node_id, []).extend([start, end])

    for m in members:
        shards = call(m, "CLUSTER", "SHARDS")
        assert len(shards) == 3
        seen = {}
        for shard in shards:
            assert shard[0] == b"slots" and shard[2] == b"nodes" and len(shard) == 4, shard
            assert len(shard[3]) == 1
            node = shard[3][0]
            keys = node[0::2]
            assert keys == [b"id", b"port", b"ip", b"endpoint", b"role", b"replication-offset", b"health"], keys
            f = dict(zip(node[0::2], node[1::2]))
            assert f[b"role"] == b"master" and f[b"health"] == b"online" and f[b"replication-offset"] == 0
            where = "%s:%d" % (f[b"ip"].decode(), f[b"port"])
            assert f[b"endpoint"] == f[b"ip"] and ids[where] == f[b"id"].decode()
            seen[f[b"id"].decode()] = shard[1]
        assert seen == ranges_of

        lines = call(m, "CLUSTER", "NODES").decode().splitlines()
        assert len(lines) == 3
        nodes_ranges = {}
        for line in lines:
            f = line.split(" ")
            node_id, where, flags, master, ping, pong, epoch, link = f[:8]
            assert where.split("@")[0] in ids and ids[where.split("@")[0]] == node_id, line
            assert flags == ("myself,master" if node_id == ids[addr(m)] else "master"), line
            assert master == "-" and ping == "0" and int(pong) > 0 and link == "connected", line
            assert epoch == fleet_info(m)["fleet_epoch"]
            rs = []
            for r in f[8:]:
                lo, _, hi = r.partition("-")
                rs += [int(lo), int(hi or lo)]
            nodes_ranges[node_id] = rs
        assert nodes_ranges == ranges_of

        text = call(m, "CLUSTER", "INFO").decode()
        assert text.endswith("\r\n")
        info = dict(line.split(":", 1) for line in text.split("\r\n") if line)
        epoch = fleet_info(m)["fleet_epoch"]
        assert info == {
            "cluster_state": "ok", "cluster_slots_assigned": "16384", "cluster_slots_ok": "16384",
            "cluster_slots_pfail": "0", "cluster_slots_fail": "0", "cluster_known_nodes": "3",
            "cluster_size": "3", "cluster_current_epoch": epoch, "cluster_my_epoch": epoch,
            "cluster_stats_messages_sent": "0", "cluster_stats_messages_received": "0",
            "total_cluster_links_buffer_limit_exceeded": "0"}, info


def test_other_cluster_commands(fleet):
    store, oracle, members = fleet
    m = members[1]
    for key in (b"foo", b"{user1000}.following", b"", b"\xff\x00k"):
        assert call(m, "CLUSTER", "KEYSLOT", key) == cluster_harness.key_slot(key)
    with m.connect() as c:
        for cmd in ("READONLY", "READWRITE", "ASKING"):
            assert c.call(cmd) == b"+OK\r\n"
        for sub in ("COUNTKEYSINSLOT", "GETKEYSINSLOT"):
            args = ("CLUSTER", sub, "1") + (("10",) if sub == "GETKEYSINSLOT" else ())
            r = c.call(*args)
            assert r.startswith(b"-ERR CLUSTER %s is not supported by an evalproxy fleet" % sub.encode()), r
        # The store's administration stays refused.
        assert c.call("CLUSTER", "RESET") == ADMIN_REFUSAL
        # RESP3: the core converts the replies by the commands' shapes.
        c.call("HELLO", "3")
        shards = c.call("CLUSTER", "SHARDS")
        assert shards.startswith(b"*3\r\n%2\r\n$5\r\nslots\r\n"), shards[:40]
        assert b"%7\r\n$2\r\nid\r\n" in shards
        assert c.call("CLUSTER", "SLOTS").count(b"%0\r\n") >= 3
        assert c.call("CLUSTER", "INFO").startswith(b"=")


def shape(v):
    """A reply with its values dropped (strings kept where they are names)."""
    if isinstance(v, list):
        return [shape(x) for x in v]
    return type(v).__name__


def test_reply_shapes_are_redis_cluster_7(fleet, tmp_path):
    """The same commands on a real Redis 7.0 cluster of three masters."""
    store, oracle, members = fleet
    cluster = cluster_harness.RedisCluster(str(tmp_path / "cluster"), masters=3, replicas=0).start()
    try:
        node = cluster.masters()[0]
        real = {sub: call(node, "CLUSTER", sub) for sub in ("SLOTS", "SHARDS", "NODES", "INFO", "MYID")}
        ours = {sub: call(members[0], "CLUSTER", sub) for sub in ("SLOTS", "SHARDS", "NODES", "INFO", "MYID")}
        with node.connect() as c:
            real_modes = [c.call(cmd) for cmd in ("READONLY", "READWRITE", "ASKING")]
            real_slot = parse_reply(c.call("CLUSTER", "KEYSLOT", "somekey"))
    finally:
        cluster.stop()
    assert [shape(e) for e in ours["SLOTS"]][0] == shape(real["SLOTS"][0])
    # Keys of a shard and of its node, in order, with the types of their values.
    real_shard, our_shard = real["SHARDS"][0], ours["SHARDS"][0]
    assert real_shard[0::2] == our_shard[0::2]
    real_node, our_node = real_shard[3][0], our_shard[3][0]
    assert real_node[0::2] == our_node[0::2]
    assert shape(real_node) == shape(our_node)
    assert shape(real["MYID"]) == shape(ours["MYID"]) and len(real["MYID"]) == len(ours["MYID"])
    real_lines = real["NODES"].decode().splitlines()
    our_lines = ours["NODES"].decode().splitlines()
    for a, b in zip(real_lines, our_lines):
        fa, fb = a.split(" "), b.split(" ")
        assert len(fa) >= 9 and len(fb) >= 9
        assert [x.isdigit() for x in fa[4:7]] == [x.isdigit() for x in fb[4:7]]
        assert "@" in fa[1] and "@" in fb[1]
    # Every field Redis prints always (not the per-type bus counters, which
    # it prints only when they are not 0), in its order.
    real_fields = [line.split(":")[0] for line in real["INFO"].decode().split("\r\n") if line]
    always = [f for f in real_fields if not (f.startswith("cluster_stats_messages_") and
                                             f.count("_") > 3 and not f.endswith(("s_sent", "s_received")))]
    our_fields = [line.split(":")[0] for line in ours["INFO"].decode().split("\r\n") if line]
    assert our_fields == always
    assert real_modes == [b"+OK\r\n"] * 3
    assert call(members[0], "CLUSTER", "KEYSLOT", "somekey") == real_slot


def test_moved_names_the_owner_cluster_slots_names(fleet):
    store, oracle, members = fleet
    wait_serving(members)
    owner = owners_by_slot(slot_table(call(members[0], "CLUSTER", "SLOTS")))
    by_addr = {addr(m): m for m in members}
    keys = ["key:%d" % i for i in range(150)] + ["{tag%d}:x" % i for i in range(50)]
    conns = {addr(m): m.connect() for m in members}
    try:
        moved = 0
        for key in keys:
            slot = cluster_harness.key_slot(key)
            where = owner[slot][0]
            for a, c in conns.items():
                r = c.call("SET", key, "v")
                if a == where:
                    assert r == b"+OK\r\n", (key, a, r)
                else:
                    assert r == b"-MOVED %d %s\r\n" % (slot, where.encode()), (key, a, r)
                    moved += 1
            assert call(by_addr[where], "GET", key) == b"v"
        assert moved == 2 * len(keys)
    finally:
        for c in conns.values():
            c.close()


def test_a_member_cut_off_from_the_store_says_the_cluster_is_down(tmp_path):
    """A member that cannot renew its lease fences itself: it owns nothing,
    and its CLUSTER replies say so instead of naming stale owners."""
    store = harness.RedisServer("store-cut", str(tmp_path / "store"), rename_scripting=True).start()
    member = harness.ProxyProcess(proxy_binary(), store, str(tmp_path / "member"), extra_args=[
        "--fleet-name", "alone", "--fleet-lease-ms", str(LEASE_MS), "--fleet-redirect", "yes"])
    try:
        member.start()
        wait_serving([member])
        info = dict(line.split(":", 1) for line in call(member, "CLUSTER", "INFO").decode().split("\r\n") if line)
        assert (info["cluster_state"], info["cluster_known_nodes"], info["cluster_size"]) == ("ok", "1", "1")
        assert slot_table(call(member, "CLUSTER", "SLOTS")) == [
            (0, SLOTS - 1, addr(member), call(member, "CLUSTER", "MYID").decode())]
        store.kill()
        deadline = time.monotonic() + 10 * LEASE_MS / 1000
        while fleet_info(member)["fleet_members"] != "0":
            assert time.monotonic() < deadline, fleet_info(member)
            time.sleep(0.05)
        info = dict(line.split(":", 1) for line in call(member, "CLUSTER", "INFO").decode().split("\r\n") if line)
        assert (info["cluster_state"], info["cluster_slots_assigned"], info["cluster_known_nodes"],
                info["cluster_size"]) == ("fail", "0", "0", "0"), info
        assert call(member, "CLUSTER", "SLOTS") == [] and call(member, "CLUSTER", "SHARDS") == []
        assert call(member, "CLUSTER", "NODES") == b""
    finally:
        stop_proxy(member)
        store.stop()


# ---- clients -----------------------------------------------------------------------------------

INCR = "return {KEYS[1], redis.call('incrby', KEYS[1], ARGV[1])}"
TRANSFER = ("local a = tonumber(redis.call('get', KEYS[1]) or '0') local n = tonumber(ARGV[1]) "
            "if a < n then return {a, tonumber(redis.call('get', KEYS[2]) or '0'), 0} end "
            "return {redis.call('decrby', KEYS[1], n), redis.call('incrby', KEYS[2], n), 1}")
HSET = "redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) return redis.call('hgetall', KEYS[1])"


def corpus(r, pipeline):
    """The same work through a client; returns what it saw."""
    out = []
    for i in range(80):
        out.append(r.eval(INCR, 1, "ev:%d" % i, i))
    for i in range(30):
        r.set("{acct%d}:a" % i, 100 + i)
        out.append(r.eval(TRANSFER, 2, "{acct%d}:a" % i, "{acct%d}:b" % i, 40))
        out.append(r.eval(TRANSFER, 2, "{acct%d}:a" % i, "{acct%d}:b" % i, 90))
    for i in range(10):
        out.append(r.eval(HSET, 1, "h:%d" % i, "f", "v%d" % i))
    try:
        r.eval("return redis.call('incr', KEYS[1])", 1, "h:0")
        out.append("no error")
    except redis.ResponseError as e:
        out.append("error: " + str(e).split(" ")[0])
    sha = r.script_load(INCR)
    out.append(sha)
    out.append(r.script_exists(sha))
    for i in range(40):
        out.append(r.evalsha(sha, 1, "ev:%d" % i, 1000))
    for g in range(20):
        t = "{grp%d}" % g
        out.append(r.mset({t + ":x": "x%d" % g, t + ":y": "y%d" % g, t + ":z": g}))
        out.append(r.mget([t + ":x", t + ":y", t + ":z", t + ":none"]))
    p = pipeline()
    for i in range(60):
        p.set("pl:%d" % i, i)
        p.incrby("pl:%d" % i, 7)
        p.execute_command("EVAL", INCR, 1, "pe:%d" % i, i)
        p.get("pl:%d" % i)
    out.append(p.execute())
    for g in range(10):
        p = pipeline()
        t = "{pg%d}" % g
        p.set(t + ":a", g)
        p.execute_command("EVAL", TRANSFER, 2, t + ":a", t + ":b", 1)
        p.execute_command("MGET", t + ":a", t + ":b")
        out.append(p.execute())
    out.append([r.get("ev:%d" % i) for i in range(80)])
    out.append([r.mget(["{acct%d}:a" % i, "{acct%d}:b" % i]) for i in range(30)])
    return out


def oracle_corpus(oracle):
    r = redis.Redis(host=oracle.host, port=oracle.port, decode_responses=True)
    try:
        return corpus(r, lambda: r.pipeline(transaction=False))
    finally:
        r.close()


def test_redis_py_cluster_client(flushed):
    store, oracle, members = flushed
    want = oracle_corpus(oracle)
    before = counters(members)
    rc = RedisCluster(startup_nodes=[ClusterNode(members[2].host, members[2].port)], decode_responses=True)
    try:
        assert {"%s:%d" % (n.host, n.port) for n in rc.get_nodes()} == {addr(m) for m in members}
        got = corpus(rc, rc.pipeline)
        assert rc.cluster_info()["cluster_state"] == "ok"
    finally:
        rc.close()
    assert got == want
    after = counters(members)
    # A client routed by CLUSTER SLOTS reaches every owner directly.
    assert after[0] == before[0]
    if after[2] == before[2]:
        assert after[1] == before[1], "MOVED replies with an unchanged view"


def test_cluster_client_after_a_member_is_killed(tmp_path):
    """SIGKILL one member: once its lease has run out the others own its
    slots, say so in CLUSTER SLOTS, and a cluster client that keeps
    retrying reads every key again."""
    store = harness.RedisServer("store-kill", str(tmp_path / "store"), rename_scripting=True).start()
    members = []
    try:
        for i in range(3):
            members.append(harness.ProxyProcess(proxy_binary(), store, str(tmp_path / ("m%d" % i)), extra_args=[
                "--fleet-name", "killed", "--fleet-lease-ms", str(LEASE_MS), "--fleet-redirect", "yes"]).start())
        wait_serving(members)
        rc = RedisCluster(startup_nodes=[ClusterNode(members[0].host, members[0].port)], decode_responses=True)
        try:
            keys = ["kill:%d" % i for i in range(200)]
            for i, k in enumerate(keys):
                assert rc.set(k, i)
            victim = members[2]
            owned = int(fleet_info(victim)["fleet_owned_slots"])
            assert owned > 0
            victim.proc.kill()
            victim.stop()
            assert not victim.sanitizer_report()
            survivors = members[:2]
            started = time.monotonic()
            for i, k in enumerate(keys):
                while True:
                    try:
                        assert rc.get(k) == str(i)
                        break
                    except redis.RedisError:
                        assert time.monotonic() - started < 20, "key %s unreadable" % k
                        time.sleep(0.05)
                    # redis-py 4.3 may fail its own deepcopy of its connection
                    # options (AttributeError, or "cannot pickle" wrapped in a
                    # RedisClusterException) whenever it meets the dead member
                    # first among its startup nodes, and then never recovers:
                    # a new client, as an application would make, once the
                    # survivors no longer list the dead member.
                    except (RedisClusterException, AttributeError):
                        assert time.monotonic() - started < 20, "key %s unreadable" % k
                        rc.close()
                        wait_serving(survivors)
                        rc = RedisCluster(startup_nodes=[ClusterNode(m.host, m.port) for m in survivors],
                                          decode_responses=True)
            print("every key read again %.2f s after the kill" % (time.monotonic() - started))
        finally:
            rc.close()
        wait_serving(survivors)
        tables = [slot_table(call(m, "CLUSTER", "SLOTS")) for m in survivors]
        assert tables[0] == tables[1]
        owner = owners_by_slot(tables[0])
        assert None not in owner and {w for w, _ in owner} == {addr(m) for m in survivors}
        info = call(survivors[0], "CLUSTER", "INFO").decode()
        assert "cluster_state:ok\r\n" in info and "cluster_known_nodes:2\r\n" in info
    finally:
        for p in members:
            if p.proc.returncode is None:
                stop_proxy(p)
        store.stop()


def run_node(*args):
    p = subprocess.run(["node", os.path.join(NODE_DIR, "fleet_cluster.mjs")] + list(args),
                       capture_output=True, text=True, timeout=150, cwd=NODE_DIR)
    assert p.returncode == 0, "%s: %s" % (args, p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAVE_IOREDIS, reason="ioredis is not installed (make clients)")
def test_ioredis_cluster_client(flushed):
    store, oracle, members = flushed
    want = run_node("plain", addr(oracle))
    assert want["transfers"][:2] == [[70, 30, 1], [70, 30, 0]] and len(want["pipelines"]) == 25, want
    before = counters(members)
    got = run_node("cluster", *[addr(m) for m in members])
    assert got == want
    after = counters(members)
    assert after[0] == before[0]
    if after[2] == before[2]:
        assert after[1] == before[1], "MOVED replies with an unchanged view"


def test_plain_clients_through_any_member(forwarding):
    store, oracle, members = forwarding
    want = oracle_corpus(oracle)
    forwarded = counters(members)[0]
    for m in members:
        assert call(store, "FLUSHALL") == b"OK"
        r = redis.Redis(host=m.host, port=m.port, decode_responses=True)
        try:
            got = corpus(r, lambda: r.pipeline(transaction=False))
        finally:
            r.close()
        assert got == want, addr(m)
    assert counters(members)[0] > forwarded
    if HAVE_IOREDIS:
        assert call(oracle, "FLUSHALL") == b"OK"
        want = run_node("plain", addr(oracle))
        for m in members:
            assert call(store, "FLUSHALL") == b"OK"
            assert run_node("plain", addr(m)) == want, addr(m)


# ---- out of a fleet ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lone(fleet, tmp_path_factory):
    """Two proxies that are in no fleet, before the fleet's store: one with
    the default backend-admin-commands no, one with yes."""
    store = fleet[0]
    work = tmp_path_factory.mktemp("no-fleet")
    plain = harness.ProxyProcess(proxy_binary(), store, str(work / "plain")).start()
    admin = harness.ProxyProcess(proxy_binary(), store, str(work / "admin"),
                                 extra_args=["--backend-admin-commands", "yes"])
    try:
        admin.start()
        yield store, plain, admin
    finally:
        stop_proxy(plain)
        if admin.proc:
            stop_proxy(admin)


def test_out_of_a_fleet_nothing_changes(lone):
    store, plain, admin = lone
    with store.connect() as s, plain.connect() as p, admin.connect() as a:
        for sub in (("SLOTS",), ("INFO",), ("MYID",), ("KEYSLOT", "foo"), ("SHARDS",), ("NODES",)):
            assert p.call("CLUSTER", *sub) == ADMIN_REFUSAL
            # Relayed: the store's own answer (a store without cluster support).
            want = s.call("CLUSTER", *sub)
            assert a.call("CLUSTER", *sub) == want
        assert want.startswith(b"-ERR This instance has cluster support disabled")
        for cmd in ("READONLY", "READWRITE", "ASKING"):
            want = s.call(cmd)
            assert want.startswith(b"-ERR This instance has cluster support disabled"), want
            assert p.call(cmd) == want and a.call(cmd) == want
        # Inside MULTI: READONLY is queued for the store, CLUSTER runs in EXEC
        # as outside it (refused without backend-admin-commands).
        assert p.call("MULTI") == b"+OK\r\n"
        assert p.call("READONLY") == b"+QUEUED\r\n"
        assert p.call("CLUSTER", "INFO") == b"+QUEUED\r\n"
        got = p.call("EXEC")
        assert got.startswith(b"*2\r\n-ERR This instance has cluster support disabled") and \
            got.endswith(ADMIN_REFUSAL), got
        assert p.call("MULTI") == b"+OK\r\n"
        assert p.call("READWRITE") == b"+QUEUED\r\n"
        assert p.call("EXEC").startswith(b"*1\r\n-ERR This instance has cluster support disabled")
        # COMMAND lists them as before (the store has them).
        info = parse_reply(p.call("COMMAND", "INFO", "cluster", "readonly", "asking"))
        assert [e[0] for e in info] == [b"cluster", b"readonly", b"asking"]
        assert info_fields(p, "fleet").get("fleet_enabled", "0") == "0"
