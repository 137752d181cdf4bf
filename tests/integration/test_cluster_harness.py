"""Checks of the Redis Cluster test harness itself, with plain RESP
connections to the nodes (no proxy): the tests of the proxy in front of a
cluster rely on these behaviours."""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster_harness  # noqa: E402
from harness import parse_reply  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = cluster_harness.RedisCluster(str(tmp_path_factory.mktemp("cluster")), masters=3, replicas=1)
    c.start()
    yield c
    c.stop()


def call(node, *args):
    with node.connect() as c:
        return parse_reply(c.call(*args))


def slot_of_node(cluster, node):
    """A slot the node serves now."""
    for lo, hi, owner, _ in cluster.slot_map(node):
        if owner == node.node_id:
            return lo
    raise AssertionError("%r serves no slot" % node)


def key_in_slot(slot, prefix="k"):
    i = 0
    while cluster_harness.key_slot("%s%d" % (prefix, i)) != slot:
        i += 1
    return "%s%d" % (prefix, i)


def test_starts_quickly(tmp_path):
    t = time.monotonic()
    with cluster_harness.RedisCluster(str(tmp_path), masters=3, replicas=0) as c:
        assert time.monotonic() - t < 15
        assert len(c.masters()) == 3
        assert all(len(e[3]) == 0 for e in c.slot_map(c.nodes[0]))


def test_slots_covered_and_agreed(cluster):
    expected = None
    for n in cluster.nodes:
        info = call(n, "CLUSTER", "INFO").decode()
        assert "cluster_state:ok" in info
        assert "cluster_slots_assigned:16384" in info
        assert "cluster_known_nodes:6" in info
        m = cluster.slot_map(n)
        expected = expected or m
        assert m == expected, "%r disagrees" % n
    # Even ranges, one per master, each with one replica.
    assert [(lo, hi) for lo, hi, _, _ in expected] == [(0, 5460), (5461, 10921), (10922, 16383)]
    assert all(len(reps) == 1 for _, _, _, reps in expected)
    assert len(cluster.masters()) == 3
    # Every node knows its own address: no empty endpoints.
    for entry in call(cluster.nodes[0], "CLUSTER", "SLOTS"):
        for node in entry[2:]:
            assert node[0] == b"127.0.0.1" and len(node[2]) == 40
    url = cluster.seed_url()
    assert url.startswith("redis-cluster://")
    assert sorted(url[len("redis-cluster://"):].split(",")) == sorted(
        "127.0.0.1:%d" % n.port for n in cluster.nodes[:3])


def test_key_slots_match_the_nodes(cluster):
    for key in ("foo", "bar", "{user1000}.following", "{user1000}.followers", "foo{}{bar}",
                "foo{{bar}}zap", "", "{", "x" * 300, b"\xff\x00{\x01}"):
        assert cluster_harness.key_slot(key) == call(cluster.nodes[0], "CLUSTER", "KEYSLOT", key)


def test_scripting_is_renamed_away(cluster):
    r = call(cluster.nodes[0], "EVAL", "return 1", 0)
    assert isinstance(r, tuple) and r[1].startswith(b"ERR unknown command")


def test_write_on_owner_reads_back(cluster):
    for key in ("foo", "bar", "{user1000}.following"):
        owner = cluster.owner_of(key)
        assert call(owner, "SET", key, "v-" + key) == b"OK"
        assert call(owner, "GET", key) == ("v-" + key).encode()
        # And reaches the owner's replica.
        replica = cluster.replicas_of(owner)[0]
        with replica.connect() as c:
            assert parse_reply(c.call("READONLY")) == b"OK"
            deadline = time.monotonic() + 10
            while parse_reply(c.call("GET", key)) != ("v-" + key).encode():
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_moved_from_a_non_owner(cluster):
    key = "moved-key"
    slot = cluster_harness.key_slot(key)
    owner = cluster.owner_of(key)
    for n in cluster.masters():
        if n is owner:
            continue
        r = call(n, "GET", key)
        assert r == ("ERR", b"MOVED %d 127.0.0.1:%d" % (slot, owner.port))
    # A replica redirects too, unless the connection is READONLY.
    replica = cluster.replicas_of(owner)[0]
    assert call(replica, "GET", key) == ("ERR", b"MOVED %d 127.0.0.1:%d" % (slot, owner.port))


def test_ask_during_migration(cluster):
    src = cluster.masters()[0]
    dst = cluster.masters()[1]
    slot = slot_of_node(cluster, src)
    moved_key, staying_key, ghost = (key_in_slot(slot, p) for p in ("a", "b", "ghost"))
    assert call(src, "SET", moved_key, "1") == b"OK"
    assert call(src, "SET", staying_key, "2") == b"OK"
    for i in range(5):
        assert call(src, "SET", key_in_slot(slot, "c%d-" % i), i) == b"OK"

    assert cluster.begin_slot_migration(slot, dst) is src
    assert cluster.move_slot_keys(slot, keys=[moved_key]) == 1
    ask = ("ERR", b"ASK %d 127.0.0.1:%d" % (slot, dst.port))
    assert call(src, "GET", moved_key) == ask
    assert call(src, "GET", staying_key) == b"2"  # still served by the source
    assert call(src, "GET", ghost) == ask         # in neither: the source sends the client on
    assert call(src, "SET", ghost, "new") == ask  # a new key is created on the destination
    # The destination refuses without ASKING, serves with it, for one command.
    assert call(dst, "GET", moved_key) == ("ERR", b"MOVED %d 127.0.0.1:%d" % (slot, src.port))
    with dst.connect() as c:
        assert parse_reply(c.call("ASKING")) == b"OK"
        assert parse_reply(c.call("GET", moved_key)) == b"1"
        assert parse_reply(c.call("GET", moved_key))[0] == "ERR"
    # A multi-key command whose keys are split between the two nodes.
    r = call(src, "MGET", moved_key, staying_key)
    assert r[0] == "ERR" and r[1].startswith(b"TRYAGAIN"), r
    with dst.connect() as c:
        assert parse_reply(c.call("ASKING")) == b"OK"
        r = parse_reply(c.call("MGET", moved_key, staying_key))
        assert r[0] == "ERR" and r[1].startswith(b"TRYAGAIN"), r
    # Several keys, some moved: the count is honoured.
    assert call(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == 6
    assert cluster.move_slot_keys(slot, count=2) == 2
    assert call(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == 4

    cluster.finish_slot_migration(slot)
    assert call(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert call(dst, "CLUSTER", "COUNTKEYSINSLOT", slot) == 7
    assert cluster.slot_owner(slot) is dst
    assert cluster.owner_of(staying_key) is dst
    assert call(src, "GET", staying_key) == ("ERR", b"MOVED %d 127.0.0.1:%d" % (slot, dst.port))
    assert call(dst, "MGET", moved_key, staying_key) == [b"1", b"2"]
    for n in cluster.live_nodes():
        assert any(lo <= slot <= hi and owner == dst.node_id for lo, hi, owner, _ in cluster.slot_map(n))


def test_migrate_slot_in_one_call(cluster):
    key = "whole-move"
    src = cluster.owner_of(key)
    dst = [m for m in cluster.masters() if m is not src][0]
    assert call(src, "SET", key, "v") == b"OK"
    cluster.migrate_slot(cluster_harness.key_slot(key), dst)
    assert cluster.owner_of(key) is dst
    assert call(dst, "GET", key) == b"v"
    cluster.wait_until_ok()


def test_failover_moves_ownership(cluster):
    key = "failover-key"
    old = cluster.owner_of(key)
    assert call(old, "SET", key, "before") == b"OK"
    assert call(old, "WAIT", 1, 5000) == 1
    replica = cluster.replicas_of(old)[0]
    new = cluster.failover(old)
    assert new is replica
    assert cluster.owner_of(key) is new
    assert call(new, "GET", key) == b"before"
    slot = cluster_harness.key_slot(key)
    assert call(old, "GET", key) == ("ERR", b"MOVED %d 127.0.0.1:%d" % (slot, new.port))
    cluster.wait_until_ok()
    assert cluster.replicas_of(new) == [old]


def test_kill_and_restart(cluster):
    # A killed master is replaced by its replica without help; restarted,
    # it comes back as that replica's replica.
    key = "kill-key"
    master = cluster.owner_of(key)
    replica = cluster.replicas_of(master)[0]
    cluster.kill(master)
    assert not master.alive()
    cluster.wait_until("automatic failover", lambda: cluster.owner_of(key) is replica, timeout=30)
    cluster.wait_until_ok()
    cluster.restart(master)
    assert master.alive()
    assert cluster.replicas_of(replica) == [master]
    assert len(cluster.masters()) == 3
