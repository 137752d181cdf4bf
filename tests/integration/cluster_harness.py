"""A real Redis Cluster of redis-server 7.0 processes for the tests of the
proxy in front of one: nodes on free loopback ports, joined with CLUSTER
MEET, the 16384 slots spread evenly over the masters, replicas attached,
and the helpers a test needs to move slots (holding one in the ASK window),
fail a master over, kill and restart nodes. Everything waits by polling
what the nodes themselves report; nothing sleeps for a fixed time.

    cluster = RedisCluster(workdir, masters=3, replicas=1).start()
    ...
    cluster.stop()
"""

import os
import time

import harness

# Short, so a killed master is noticed (and failed over) within a few
# seconds; 1000 ms is far above what loopback gossip needs.
DEFAULT_NODE_TIMEOUT_MS = 1000
SLOTS = 16384


def crc16(data):
    """CRC16-CCITT (XMODEM), the checksum of Redis Cluster's key slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key):
    """The slot Redis Cluster gives a key, with the {hash tag} rule."""
    k = harness._to_bytes(key)
    open_at = k.find(b"{")
    if open_at >= 0:
        close_at = k.find(b"}", open_at + 1)
        if close_at > open_at + 1:
            k = k[open_at + 1:close_at]
    return crc16(k) % SLOTS


def even_ranges(n):
    """n (start, end) slot ranges of near-equal size covering every slot."""
    return [(i * SLOTS // n, (i + 1) * SLOTS // n - 1) for i in range(n)]


class ClusterError(RuntimeError):
    pass


class ClusterNode(harness.RedisServer):
    """A cluster-enabled redis-server; its bus port is chosen (and claimed)
    like the client port instead of being port + 10000, which could fall
    in the kernel's ephemeral range or on another test's port."""

    def __init__(self, name, workdir, rename_scripting=True, node_timeout_ms=DEFAULT_NODE_TIMEOUT_MS,
                 extra=()):
        self.bus_port = harness.free_port()
        lines = [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            "cluster-port %d" % self.bus_port,
            "cluster-node-timeout %d" % node_timeout_ms,
            "appendonly no",
            # A replica's first sync starts at once (the default waits 5 s
            # for more replicas to share one transfer).
            "repl-diskless-sync-delay 0",
            # 7.0 lists a replica in CLUSTER SLOTS only once its replication
            # offset is above 0; on an idle master that waits for the
            # master's next PING to its replicas (every 10 s by default).
            "repl-ping-replica-period 1",
        ] + list(extra)
        super().__init__(name, workdir, rename_scripting=rename_scripting, extra=lines)
        self.node_id = None

    def __repr__(self):
        return "<%s %s:%d %s>" % (self.name, self.host, self.port, (self.node_id or "?")[:8])


def _text(v):
    return v.decode("latin-1") if isinstance(v, bytes) else v


def _parse_nodes(text):
    """CLUSTER NODES as a list of dicts: id, host, port, flags (a set),
    master (id or None), slots (a set of slot numbers served), myself."""
    out = []
    for line in _text(text).splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split("@")[0].split(",")[0]
        host, _, port = addr.rpartition(":")
        flags = set(parts[2].split(","))
        slots = set()
        for s in parts[8:]:
            if s.startswith("["):  # a migrating or importing marker, not served here
                continue
            a, _, b = s.partition("-")
            slots.update(range(int(a), int(b or a) + 1))
        out.append({"id": parts[0], "host": host, "port": int(port) if port else 0, "flags": flags,
                    "master": None if parts[3] == "-" else parts[3], "slots": slots,
                    "myself": "myself" in flags})
    return out


class RedisCluster:
    """masters x (1 + replicas) cluster-enabled redis-servers in workdir.
    rename_scripting removes EVAL, FUNCTION and the rest from the nodes, as
    the proxy's stores have them removed; extra adds config lines; timeout
    bounds every wait."""

    def __init__(self, workdir, masters=3, replicas=0, rename_scripting=True,
                 node_timeout_ms=DEFAULT_NODE_TIMEOUT_MS, extra=(), timeout=30.0):
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs a master")
        self.workdir = workdir
        self.nmasters, self.nreplicas = masters, replicas
        self.timeout = timeout
        self.nodes = []
        for i in range(masters * (1 + replicas)):
            name = "cluster-node-%d" % i
            self.nodes.append(ClusterNode(name, os.path.join(workdir, name), rename_scripting,
                                          node_timeout_ms, extra))
        self._conns = {}
        self._migrations = {}  # slot -> (source, destination) while it moves

    # -- connections -------------------------------------------------------

    def call(self, node, *args, timeout=None):
        """One command on node (over a kept connection); the parsed reply,
        errors as ('ERR', text)."""
        c = self._conns.get(node.port)
        try:
            if c is None:
                c = self._conns[node.port] = node.connect(timeout=timeout or harness.REPLY_TIMEOUT,
                                                          connect_timeout=2.0)
            return harness.parse_reply(c.call(*args, timeout=timeout))
        except (OSError, harness.ReplyTimeout, harness.ConnectionClosed):
            self._drop(node)
            raise

    def ok(self, node, *args):
        """A command that must succeed; its reply."""
        r = self.call(node, *args)
        if isinstance(r, tuple) and r[:1] == ("ERR",):
            raise ClusterError("%r: %s -> %s" % (node, " ".join(map(str, args)), _text(r[1])))
        return r

    def _drop(self, node):
        c = self._conns.pop(node.port, None)
        if c is not None:
            c.close()

    def wait_until(self, what, check, timeout=None):
        """Calls check() every 50 ms until it returns something true, and
        returns that; raises ClusterError with the last reason (check may
        return (False, reason)) once timeout has passed. Errors of the
        nodes while checking count as "not yet"."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last = None
        while True:
            try:
                r = check()
            except (OSError, harness.ReplyTimeout, harness.ConnectionClosed, ClusterError) as e:
                r = (False, repr(e))
            if isinstance(r, tuple) and len(r) == 2 and r[0] is False:
                last = r[1]
            elif r:
                return r
            if time.monotonic() >= deadline:
                raise ClusterError("%s: not so after %.0fs (%s)" % (what, timeout or self.timeout, last))
            time.sleep(0.05)

    # -- start and stop ----------------------------------------------------

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        for n in self.nodes:
            n.start()
        for i, n in enumerate(self.nodes):
            n.node_id = _text(self.ok(n, "CLUSTER", "MYID"))
            # Distinct epochs from the start, so that no node has to wait for
            # the collision rule to tell the masters' claims apart.
            self.ok(n, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        # Every node meets every other: each learns its own address from a
        # MEET it receives, so no node lists itself with an empty endpoint,
        # and nobody waits for gossip to introduce the others.
        for a in self.nodes:
            for b in self.nodes:
                if a is not b:
                    self.ok(a, "CLUSTER", "MEET", b.host, b.port, b.bus_port)
        masters = self.nodes[:self.nmasters]
        for m, (lo, hi) in zip(masters, even_ranges(self.nmasters)):
            self.ok(m, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for i, r in enumerate(self.nodes[self.nmasters:]):
            m = masters[i % self.nmasters]
            # REPLICATE needs the master known (out of handshake) on the replica.
            self.wait_until("%r knows %r" % (r, m), lambda: any(
                e["id"] == m.node_id and "master" in e["flags"] and "handshake" not in e["flags"]
                for e in _parse_nodes(self.ok(r, "CLUSTER", "NODES"))))
            self.ok(r, "CLUSTER", "REPLICATE", m.node_id)
        self.wait_until_ok()

    def stop(self):
        for port in list(self._conns):
            c = self._conns.pop(port)
            c.close()
        for n in self.nodes:
            n.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what the nodes report ----------------------------------------------

    def live_nodes(self):
        return [n for n in self.nodes if n.alive()]

    def node_by_id(self, node_id):
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def node_by_address(self, host, port):
        for n in self.nodes:
            if n.host == host and n.port == int(port):
                return n
        raise KeyError("%s:%s" % (host, port))

    def view(self, node):
        """CLUSTER NODES of one node, parsed (see _parse_nodes)."""
        return _parse_nodes(self.ok(node, "CLUSTER", "NODES"))

    def myself(self, node):
        """The node's own line of its CLUSTER NODES: its role, its master,
        the slots it serves."""
        return [e for e in self.view(node) if e["myself"]][0]

    def slot_map(self, node):
        """CLUSTER SLOTS of one node as sorted (start, end, master id,
        (replica ids...)) tuples."""
        out = []
        for e in self.ok(node, "CLUSTER", "SLOTS"):
            out.append((e[0], e[1], _text(e[2][2]), tuple(sorted(_text(r[2]) for r in e[3:]))))
        return sorted(out)

    def masters(self):
        """The nodes serving slots now, by the view of the nodes themselves."""
        out = []
        for n in self.live_nodes():
            me = self.myself(n)
            if "master" in me["flags"] and me["slots"]:
                out.append(n)
        return out

    def replicas_of(self, master):
        """Live nodes that report themselves replicas of master."""
        out = []
        for n in self.live_nodes():
            if n is master:
                continue
            me = self.myself(n)
            if me["master"] == master.node_id:
                out.append(n)
        return out

    def seed_url(self):
        return "redis-cluster://" + ",".join("%s:%d" % (n.host, n.port) for n in self.masters())

    def slot_owner(self, slot):
        """The node that serves slot now: the live master whose own view
        lists it (during a migration, the source until it is finished)."""
        for n in self.live_nodes():
            me = self.myself(n)
            if "master" in me["flags"] and slot in me["slots"]:
                return n
        return None

    def owner_of(self, key):
        return self.slot_owner(key_slot(key))

    # -- waiting -------------------------------------------------------------

    def _agreement(self, expect_replicas=None):
        """(False, reason) or the slot map every live node agrees on."""
        live = self.live_nodes()
        maps = {}
        for n in live:
            info = self.ok(n, "CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return False, "%r: cluster_state is not ok" % n
            if "cluster_known_nodes:%d" % len(self.nodes) not in info:
                return False, "%r does not know every node yet" % n
            maps[n.port] = self.slot_map(n)
            me = self.myself(n)
            if "slave" in me["flags"]:
                if "master_link_status:up" not in self.ok(n, "INFO", "replication").decode():
                    return False, "%r: replication link not up" % n
        first = maps[live[0].port]
        for n in live[1:]:
            if maps[n.port] != first:
                return False, "%r and %r disagree on the slot map" % (live[0], n)
        covered = sum(e[1] - e[0] + 1 for e in first)
        if covered != SLOTS:
            return False, "%d slots served" % covered
        if expect_replicas is not None:
            for e in first:
                if len(e[3]) != expect_replicas:
                    return False, "master %s has %d replicas" % (e[2][:8], len(e[3]))
        return first

    def wait_until_ok(self, timeout=None, expect_replicas=None):
        """Until every live node says cluster_state:ok, knows every node,
        has its replication link up (replicas) and all agree on one slot
        map covering every slot; returns that map. At start each master
        must also list its replicas."""
        if expect_replicas is None and all(n.alive() for n in self.nodes):
            expect_replicas = self.nreplicas
        return self.wait_until("cluster agreement", lambda: self._agreement(expect_replicas), timeout)

    # -- moving slots --------------------------------------------------------

    def begin_slot_migration(self, slot, dst):
        """IMPORTING on dst, then MIGRATING on the owner: from now on the
        owner answers -ASK for keys of slot it no longer holds, and dst
        serves them after ASKING. Returns the source node."""
        src = self.slot_owner(slot)
        if src is None:
            raise ClusterError("slot %d has no owner" % slot)
        if src is dst:
            raise ClusterError("%r already serves slot %d" % (dst, slot))
        self.ok(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
        self.ok(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
        self._migrations[slot] = (src, dst)
        return src

    def move_slot_keys(self, slot, count=None, keys=None):
        """MIGRATEs count keys of a slot being migrated (all when None, or
        the given keys) from the source to the destination; returns how
        many were moved."""
        src, dst = self._migrations[slot]
        moved = 0
        while count is None or moved < count:
            if keys is not None:
                batch = [harness._to_bytes(k) for k in keys]
                keys = []
            else:
                want = 100 if count is None else min(100, count - moved)
                batch = self.ok(src, "CLUSTER", "GETKEYSINSLOT", slot, want)
            if not batch:
                break
            r = self.ok(src, "MIGRATE", dst.host, dst.port, "", 0, 5000, "KEYS", *batch)
            if r not in (b"OK", b"NOKEY"):
                raise ClusterError("MIGRATE answered %r" % (r,))
            moved += len(batch)
        return moved

    def finish_slot_migration(self, slot, timeout=None):
        """Moves the keys still on the source (Redis refuses to hand over a
        slot whose old owner holds keys), then SETSLOT NODE on the
        destination, the source and every other master (replicas refuse
        SETSLOT and learn from their masters), and waits until every node
        agrees."""
        src, dst = self._migrations[slot]
        self.move_slot_keys(slot)
        others = [n for n in self.masters() if n not in (src, dst)]
        for n in [dst, src] + others:
            self.ok(n, "CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
        del self._migrations[slot]
        self.wait_until("slot %d served by %r everywhere" % (slot, dst),
                   lambda: self._owner_everywhere(slot, dst), timeout)

    def migrate_slot(self, slot, dst, timeout=None):
        self.begin_slot_migration(slot, dst)
        self.finish_slot_migration(slot, timeout)

    def _owner_everywhere(self, slot, node):
        for n in self.live_nodes():
            if not any(e[0] <= slot <= e[1] and e[2] == node.node_id for e in self.slot_map(n)):
                return False, "%r does not list %r for slot %d yet" % (n, node, slot)
        return True

    # -- failures -----------------------------------------------------------

    def failover(self, master, timeout=None):
        """CLUSTER FAILOVER on a replica of master (FORCE when master is
        down); waits until every live node lists the replica for all the
        slots master served, and returns the new master."""
        replicas = self.replicas_of(master)
        if not replicas:
            raise ClusterError("%r has no live replica" % master)
        new = replicas[0]
        slots = [e for e in self.slot_map(new) if e[2] == master.node_id]
        if master.alive():
            self.ok(new, "CLUSTER", "FAILOVER")
        else:
            self.ok(new, "CLUSTER", "FAILOVER", "FORCE")

        def moved():
            for n in self.live_nodes():
                m = self.slot_map(n)
                for lo, hi, _, _ in slots:
                    if not any(e[0] <= lo and hi <= e[1] and e[2] == new.node_id for e in m):
                        return False, "%r still lists another master for %d-%d" % (n, lo, hi)
            return True

        self.wait_until("failover of %r to %r" % (master, new), moved, timeout)
        return new

    def kill(self, node):
        """SIGKILL, without waiting for the others to notice."""
        self._drop(node)
        node.kill()

    def restart(self, node, timeout=None):
        """Starts a stopped or killed node again with its nodes.conf (same id,
        same ports) and waits until the cluster agrees again."""
        self._drop(node)
        node.restart()
        self.wait_until_ok(timeout)
        return node
