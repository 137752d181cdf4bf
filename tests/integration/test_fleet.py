"""A fleet of proxies (fleet-name) in front of one store: one lock domain.

Three members, 50 clients spread over them, transfer scripts (declared
keys, and keys built inside the script), MULTI/WATCH transfers and MULTI
INCRBY pairs over accounts whose slots belong to different members, while
readers check the total with a script and with MGET. 0 violations, on a
redis store and on memcached; then the same while one member is SIGKILLed
(scripts and transactions running on it die half way) and started again,
printing how long its slots were unserved and what the fleet undid.
"""

import random
import threading
import time

import pytest
import redis

import harness
from conftest import proxy_binary, stop_proxy
from test_memcached import Memcached
from test_migration import TRANSFER

LEASE_MS = 1000
# memcached expires items on whole seconds: a seat may go up to a second
# early, and the lease must leave room for that.
MEMCACHED_LEASE_MS = 3000
CLIENTS = 50
ACCOUNTS = 30
BALANCE = 1000
RUN_SECONDS = 5.0

# The same with its keys built inside the script: locked as it touches them.
TRANSFER_UNDECLARED = (TRANSFER.replace("ARGV[1]", "ARGV[3]").replace("KEYS[1]", "ARGV[1]")
                       .replace("KEYS[2]", "ARGV[2]"))

TOTAL = "local s = 0 for _, k in ipairs(KEYS) do s = s + tonumber(redis.call('GET', k) or '0') end return s"


def accounts():
    return ["acct:%d" % i for i in range(ACCOUNTS)]


def fleet_info(member):
    with member.connect(timeout=10) as c:
        return harness.info_fields(c, "fleet")


def wait_serving(members, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        infos = [fleet_info(m) for m in members]
        if all(i.get("fleet_state") == "serving" and int(i.get("fleet_members", 0)) == len(members) for i in infos):
            owned = sum(int(i["fleet_owned_slots"]) for i in infos)
            assert owned == 16384, infos
            return infos
        if time.monotonic() > deadline:
            raise AssertionError("the fleet did not settle: %r" % infos)
        time.sleep(0.1)


def start_member(workdir, name, backend_url, i):
    lease = MEMCACHED_LEASE_MS if backend_url.startswith("memcached") else LEASE_MS
    p = harness.ProxyProcess(proxy_binary(), None, str(workdir / ("member%d-%d" % (i, time.monotonic_ns()))),
                             backend_url=backend_url,
                             extra_args=["--fleet-name", name, "--fleet-lease-ms", str(lease)])
    p.start()
    return p


@pytest.fixture(params=["redis", "memcached"])
def fleet(request, tmp_path):
    if request.param == "redis":
        store = harness.RedisServer("store", str(tmp_path / "store"), rename_scripting=True)
        store.start()
        url = "redis://%s:%d" % (store.host, store.port)
    else:
        store = Memcached()
        store.start()
        url = "memcached://%s:%d" % (store.host, store.port)
    name = "f%d" % random.randrange(1 << 30)
    members = [start_member(tmp_path, name, url, i) for i in range(3)]
    try:
        wait_serving(members)
        yield {"members": members, "url": url, "name": name, "dir": tmp_path, "kind": request.param}
    finally:
        for m in members:
            if m.alive():
                stop_proxy(m)
        store.stop()


def client_for(members, i):
    live = [m for m in members if m.alive()]
    m = live[i % len(live)]
    return redis.Redis(host=m.host, port=m.port, socket_timeout=30, decode_responses=True)


def run_workload(fleet, seconds, during=None):
    members = fleet["members"]
    names = accounts()
    expected = BALANCE * len(names)
    r = client_for(members, 0)
    r.mset({k: BALANCE for k in names})
    stop = threading.Event()
    stats = {"transfers": 0, "reads": 0, "violations": [], "errors": [], "reconnects": 0}
    lock = threading.Lock()

    def record(kind, value):
        with lock:
            if kind == "ok":
                stats["transfers"] += 1
            else:
                stats[kind].append(value)

    def worker(i):
        rnd = random.Random(i)
        c = client_for(members, i)
        kind = i % 5
        while not stop.is_set():
            a, b = rnd.sample(names, 2)
            amt = rnd.randint(1, 20)
            try:
                if kind == 0:
                    res = c.eval(TRANSFER, 2, a, b, amt)
                    record("ok", res) if res in (0, 1) else record("errors", res)
                elif kind == 1:
                    res = c.eval(TRANSFER_UNDECLARED, 0, a, b, amt)
                    record("ok", res) if res in (0, 1) else record("errors", res)
                elif kind == 2:
                    with c.pipeline(transaction=True) as p:
                        while True:
                            try:
                                p.watch(a, b)
                                va = int(p.get(a))
                                p.multi()
                                if va >= amt:
                                    p.decrby(a, amt)
                                    p.incrby(b, amt)
                                p.execute()
                                break
                            except redis.WatchError:
                                continue
                    record("ok", None)
                elif kind == 3:
                    with c.pipeline(transaction=True) as p:
                        p.incrby(a, -amt)
                        p.incrby(b, amt)
                        p.execute()
                    record("ok", None)
                else:
                    total = c.eval(TOTAL, len(names), *names)
                    with lock:
                        stats["reads"] += 1
                    if total != expected:
                        record("violations", ("script", total))
                    vals = c.mget(names)
                    s = sum(int(v) for v in vals)
                    if s != expected:
                        record("violations", ("mget", s))
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if during is None:
                    record("errors", repr(e))
                # Its member was killed: go on with another one.
                with lock:
                    stats["reconnects"] += 1
                time.sleep(0.05)
                c = client_for(members, i + stats["reconnects"])
            except redis.ResponseError as e:
                if during is not None and "connection lost" in str(e):
                    # Forwarded to the member being killed: its fate is
                    # unknown to the client, as with a connection error.
                    with lock:
                        stats["reconnects"] += 1
                    continue
                record("errors", str(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    extra = {}
    try:
        if during:
            extra = during(fleet) or {}
        else:
            time.sleep(seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    final = client_for(members, 0)
    total = sum(int(v) for v in final.mget(names))
    return stats, total, expected, extra


def assert_clean(stats, total, expected):
    assert not stats["violations"], stats["violations"][:10]
    assert not stats["errors"], stats["errors"][:10]
    assert total == expected
    assert stats["transfers"] > 200 and stats["reads"] > 20, stats


def test_fleet_members_agree_on_owners(fleet):
    infos = [fleet_info(m) for m in fleet["members"]]
    ids = sorted(i["fleet_myid"] for i in infos)
    views = []
    for i in infos:
        members = [v for k, v in i.items() if k.startswith("fleet_member") and k[12:].isdigit()]
        assert sorted(v.split(",")[0][3:] for v in members) == ids, i
        # Who owns how much, without the self flag: the same on every member.
        views.append(sorted(v.rsplit(",", 1)[0] for v in members))
    assert views[0] == views[1] == views[2], views


def test_fleet_forwards_to_owners(fleet):
    members = fleet["members"]
    names = ["k:%d" % i for i in range(200)]
    c0 = client_for(members, 0)
    for i, k in enumerate(names):
        assert client_for(members, i).set(k, "v%d" % i)
    for m in range(3):
        vals = client_for(members, m).mget(names)
        assert vals == ["v%d" % i for i in range(len(names))]
    forwarded = sum(int(fleet_info(m)["fleet_forwarded"]) for m in members)
    assert forwarded > 100, forwarded
    assert c0.delete(*names) == len(names)


def test_fleet_conserves_the_total(fleet):
    stats, total, expected, _ = run_workload(fleet, RUN_SECONDS)
    print("\nfleet on %s: %d transfers, %d consistent reads" % (fleet["kind"], stats["transfers"], stats["reads"]))
    assert_clean(stats, total, expected)


def test_fleet_conserves_the_total_through_a_member_kill(fleet):
    members = fleet["members"]

    def kill_and_restart(fleet):
        time.sleep(2.0)
        victim = members[2]
        victim.proc.kill()
        victim.proc.wait(10)
        killed = time.monotonic()
        # Until its slots are served again, a key it owned waits.
        survivor = client_for(members[:2], 0)
        served = None
        # About a third of these are the victim's: the last one answered
        # tells when its slots are served again.
        probes = ["probe:%d" % i for i in range(60)]
        pending = list(probes)
        while pending and time.monotonic() - killed < 60:
            try:
                survivor.set(pending[0], "1")
                pending.pop(0)
            except redis.ResponseError:
                time.sleep(0.05)
        if not pending:
            served = time.monotonic() - killed
        survivor.delete(*probes)
        time.sleep(1.0)
        back = start_member(fleet["dir"], fleet["name"], fleet["url"], 9)
        members.append(back)
        infos = wait_serving([m for m in members if m.alive()])
        time.sleep(1.0)
        return {"served_after_s": served,
                "runs_undone": sum(int(i.get("fleet_runs_undone", 0)) for i in infos),
                "keys_put_back": sum(int(i.get("fleet_keys_put_back", 0)) for i in infos)}

    stats, total, expected, extra = run_workload(fleet, None, during=kill_and_restart)
    print("\nfleet on %s through a kill: %d transfers, %d consistent reads, %d reconnects, slots served again %.2f s "
          "after the kill, %d runs of the dead member undone (%d keys put back)"
          % (fleet["kind"], stats["transfers"], stats["reads"], stats["reconnects"],
             extra.get("served_after_s") or -1, extra.get("runs_undone", -1), extra.get("keys_put_back", -1)))
    assert extra.get("served_after_s") is not None
    assert_clean(stats, total, expected)


def wait_busy(member):
    """Until member runs a script past busy-reply-threshold."""
    deadline = time.monotonic() + 20
    while True:
        with member.connect(timeout=10) as c:
            if harness.info_fields(c, "scripting").get("scripts_busy") == "1":
                return
        assert time.monotonic() < deadline, "the script did not get busy"
        time.sleep(0.05)


def owner_port(client, key):
    """The port of the member that owns key's slot (CLUSTER SLOTS)."""
    slot = client.execute_command("CLUSTER", "KEYSLOT", key)
    for start, end, node, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(node[1])
    raise AssertionError("no owner for slot %d" % slot)


def test_fleet_undoes_the_script_of_a_killed_member(fleet):
    """A script that wrote a key its own member owns and a key another
    member owns, then runs on (busy), when its member is SIGKILLed: the
    member holding the other key's lock puts it back before letting go of
    it, and the member that takes the dead one's slots puts back the
    other before it serves them."""
    members = fleet["members"]
    victim, others = members[0], members[1:]
    c = client_for([victim], 0)
    ports = {m.port: m for m in members}
    own = next(k for k in ("own:%d" % i for i in range(1000)) if owner_port(c, k) == victim.port)
    remote = next(k for k in ("remote:%d" % i for i in range(1000)) if owner_port(c, k) != victim.port)
    holder = ports[owner_port(c, remote)]
    c.set(own, "before-own")
    c.set(remote, "before-remote")
    busy = ("redis.call('SET', KEYS[1], 'half') redis.call('SET', KEYS[2], 'half') "
            "local i = 0 while true do i = i + 1 end")
    c.config_set("busy-reply-threshold", "100")
    t = threading.Thread(target=lambda: pytest.raises(redis.RedisError, c.eval, busy, 2, own, remote), daemon=True)
    t.start()
    # Busy: past both writes, and running on.
    wait_busy(victim)
    victim.proc.kill()
    victim.proc.wait(10)
    killed = time.monotonic()
    h = client_for([holder], 0)
    got = {}
    while time.monotonic() - killed < 60 and len(got) < 2:
        for k in (own, remote):
            if k in got:
                continue
            try:
                v = h.get(k)
            except redis.ResponseError:
                continue  # its slot is not served yet
            got[k] = (v, time.monotonic() - killed)
        time.sleep(0.05)
    print("\nfleet on %s: the killed member's script undone: %r" % (fleet["kind"], got))
    assert got[remote][0] == "before-remote", got
    assert got[own][0] == "before-own", got
    undone = sum(int(fleet_info(m).get("fleet_keys_put_back", 0)) for m in others)
    assert undone == 2, undone


def test_fleet_an_undeclared_key_of_a_killed_member_waits_for_its_undo(fleet):
    """A script on another member touching, undeclared, a key the killed
    member's script left half done: it waits until the key's slot is
    served again, so it sees the key put back, and the put-back does not
    erase its write."""
    members = fleet["members"]
    victim, others = members[0], members[1:]
    c = client_for([victim], 0)
    own = next(k for k in ("own:%d" % i for i in range(1000)) if owner_port(c, k) == victim.port)
    c.set(own, "100")
    busy = "redis.call('INCRBY', KEYS[1], 1000) local i = 0 while true do i = i + 1 end"
    c.config_set("busy-reply-threshold", "100")
    t = threading.Thread(target=lambda: pytest.raises(redis.RedisError, c.eval, busy, 1, own), daemon=True)
    t.start()
    wait_busy(victim)
    victim.proc.kill()
    victim.proc.wait(10)
    s = client_for(others, 0)
    got = s.eval("return redis.call('INCRBY', ARGV[1], 5)", 0, own)
    assert got == 105, got
    assert client_for(others, 1).get(own) == "105"


def test_fleet_member_stops_with_a_script_waiting_at_another(fleet):
    """SIGTERM to a member whose script waits for a key's lock at the
    member owning it: past shutdown-timeout it lets go of the request and
    exits cleanly (the teardown checks the exit status)."""
    members = fleet["members"]
    owner, waiter = members[0], members[1]
    c = client_for([owner], 0)
    key = next(k for k in ("held:%d" % i for i in range(1000)) if owner_port(c, k) == owner.port)
    c.config_set("busy-reply-threshold", "100")
    spin = threading.Thread(target=lambda: pytest.raises(redis.RedisError, c.eval,
                                                         "local i = 0 while true do i = i + 1 end", 1, key),
                            daemon=True)
    spin.start()
    wait_busy(owner)
    w = client_for([waiter], 0)
    w.config_set("shutdown-timeout", "1")
    blocked = threading.Thread(target=lambda: pytest.raises(redis.RedisError, w.eval,
                                                            "return redis.call('GET', KEYS[1])", 1, key),
                               daemon=True)
    blocked.start()
    deadline = time.monotonic() + 20
    # Its FLEET LOCK waits at the owner, behind the spinning script.
    while int(harness.info_fields(owner.connect(timeout=10), "scripting").get("lock_sets_waiting", 0)) < 1:
        assert time.monotonic() < deadline, "the script did not wait"
        time.sleep(0.05)
    stop_proxy(waiter)
    blocked.join(10)
    redis.Redis(host=owner.host, port=owner.port).script_kill()
    spin.join(10)


def test_fleet_a_frozen_member_writes_nothing_more(fleet):
    """A member frozen (SIGSTOP) in the middle of a script, for longer than
    its lease: the others take its slots and put back what the script
    wrote there; woken up, the member has fenced itself: the script's next
    write is refused, its client gets an error, and the member holding the
    script's other key puts that one back when the member lets go of it."""
    if fleet["kind"] != "redis":
        pytest.skip("the gate key is set straight on the store")
    import signal
    members = fleet["members"]
    victim = members[0]
    c = client_for([victim], 0)
    ports = {m.port: m for m in members}
    own = next(k for k in ("own:%d" % i for i in range(1000)) if owner_port(c, k) == victim.port)
    remote = next(k for k in ("remote:%d" % i for i in range(1000)) if owner_port(c, k) != victim.port)
    gate = next(k for k in ("gate:%d" % i for i in range(1000)) if owner_port(c, k) == victim.port)
    holder = ports[owner_port(c, remote)]
    survivors = [m for m in members if m is not victim]
    c.set(own, "before-own")
    c.set(remote, "before-remote")
    c.set(gate, "wait")
    script = ("redis.call('SET', KEYS[1], 'half') redis.call('SET', KEYS[2], 'half') "
              "while redis.call('GET', KEYS[3]) ~= 'go' do end "
              "redis.call('SET', KEYS[1], 'late') return 'done'")
    c.config_set("busy-reply-threshold", "100")
    outcome = []

    def run():
        try:
            outcome.append(c.eval(script, 3, own, remote, gate))
        except redis.RedisError as e:
            outcome.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_busy(victim)
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        h = client_for(survivors, 0)
        deadline = time.monotonic() + 60
        while True:
            try:
                if h.get(own) == "before-own":
                    break
            except redis.ResponseError:
                pass  # its slot is not served yet
            assert time.monotonic() < deadline, "the frozen member's slots were not taken"
            time.sleep(0.05)
        host, port = fleet["url"][len("redis://"):].rsplit(":", 1)
        redis.Redis(host=host, port=int(port)).set(gate, "go")
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    t.join(30)
    assert outcome and isinstance(outcome[0], redis.ResponseError), outcome
    assert "lost its lease" in str(outcome[0]), outcome
    h = client_for([holder], 0)
    deadline = time.monotonic() + 30
    while h.get(remote) != "before-remote":
        assert time.monotonic() < deadline, h.get(remote)
        time.sleep(0.05)
    assert client_for(survivors, 0).get(own) == "before-own"
