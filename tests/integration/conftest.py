"""Session fixtures: a store (redis-server without scripting), an oracle
(ordinary redis-server 7.0) and the proxy in front of the store, all real
processes on free loopback ports with their data in a temporary directory.

EVALPROXY_BIN      proxy binary (default: ./evalproxy at the repo root)
EVALPROXY_TARGET   "store": the `proxy` fixture points at the store itself, to
                   check the suite (store vs. oracle) without a proxy
STORES_SRC         the old Redis releases' source archives (default
                   ../shared/stores from the repo root), built by
                   tools/build_stores.sh into build/stores/

Old stores: `old_release` is parametrized over OLD_RELEASES (session scope,
so each release's store and proxy start once); `old_store` is that
release's redis-server (scripting renamed away where it exists),
`old_proxy` the proxy in front of it, and `old_diff` a Differ of the
Redis 7.0 oracle against old_proxy, both flushed. Without the archives
these tests skip, saying why.
"""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def target_is_store():
    return os.environ.get("EVALPROXY_TARGET", "").strip().lower() == "store"


def stores_mode():
    """EVALPROXY_STORES: "pool" puts the `proxy` fixture in front of a pool of
    three stores (the `store` fixture and two more, ketama); "cluster" in
    front of a Redis Cluster of three masters; "" one store."""
    return os.environ.get("EVALPROXY_STORES", "").strip().lower()


def proxy_binary():
    b = os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy")
    return os.path.abspath(b)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("evalproxy-it")


@pytest.fixture(scope="session")
def store(workdir):
    s = harness.RedisServer("store", str(workdir / "store"), rename_scripting=True)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def oracle(workdir):
    s = harness.RedisServer("oracle", str(workdir / "oracle"))
    s.start()
    yield s
    s.stop()


def stop_proxy(p):
    """Stops a proxy fixture's process and fails on a sanitizer report or an
    unclean exit."""
    status = p.stop()
    report = p.sanitizer_report()
    if report:
        pytest.fail("the proxy printed a sanitizer report:\n" + report, pytrace=False)
    if status is None:
        pytest.fail("the proxy did not exit within 20s of SIGTERM\n" + p.diagnostics(),
                    pytrace=False)
    if status not in (0, -15):
        pytest.fail("the proxy exited with status %d after SIGTERM\n%s"
                    % (status, p.diagnostics()), pytrace=False)


@pytest.fixture(scope="session")
def proxy(store, workdir):
    if target_is_store():
        yield harness.Endpoint("store-as-proxy", store.host, store.port)
        return
    extra, more, url, cluster = [], [], None, None
    if stores_mode() == "cluster":
        import cluster_harness
        cluster = cluster_harness.RedisCluster(str(workdir / "cluster"), masters=3, replicas=0).start()
        url = cluster.seed_url()
    if stores_mode() == "pool":
        for i in (2, 3):
            s = harness.RedisServer("store%d" % i, str(workdir / ("store%d" % i)), rename_scripting=True)
            more.append(s.start())
            extra += ["--backend", "redis://%s:%d" % (s.host, s.port)]
        extra += ["--distribution", "ketama"]
    p = harness.ProxyProcess(proxy_binary(), store, str(workdir / "proxy"), extra_args=extra, backend_url=url)
    p.start()
    if cluster:
        wait_cluster_map(p)
    yield p
    stop_proxy(p)
    for s in more:
        s.stop()
    if cluster:
        cluster.stop()


def wait_cluster_map(proxy, timeout=20.0):
    """Until the proxy in front of a Redis Cluster has its whole slot map."""
    import time
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with proxy.connect() as c:
            last = harness.info_fields(c, "backend")
        if last.get("backend_cluster_state") == "ok" and last.get("backend_version", "unknown") != "unknown":
            return last
        time.sleep(0.05)
    raise AssertionError("the proxy did not learn the slot map within %.0fs: %r" % (timeout, last))


@pytest.fixture(scope="session")
def real_proxy(proxy):
    """The proxy process itself; skips the test when running against the store."""
    if target_is_store():
        pytest.skip("EVALPROXY_TARGET=store: this checks the proxy process itself")
    return proxy


@pytest.fixture
def diff(oracle, proxy):
    """A Differ with both sides flushed."""
    if isinstance(proxy, harness.ProxyProcess) and not proxy.alive():
        pytest.fail("the proxy is no longer running (exit status %s)\n%s"
                    % (proxy.proc.returncode, proxy.diagnostics()), pytrace=False)
    d = harness.Differ(oracle, proxy, spread=bool(stores_mode()))
    d.flushall()
    return d


def pytest_collection_modifyitems(session, config, items):
    # Tests that kill and restart the store run last, so that a proxy which
    # fails to recover cannot take every later test down with it.
    items.sort(key=lambda item: 1 if item.get_closest_marker("store_restart") else 0)


def pytest_configure(config):
    config.addinivalue_line("markers", "store_restart: kills and restarts the store")


# ---------------------------------------------------------------------------
# Old Redis releases as stores

OLD_RELEASES = ("2.4.18", "2.8.24", "3.2.13", "5.0.14", "6.0.20")


def stores_source():
    # Relative to the repository root, as in the Makefile.
    return os.path.abspath(os.path.join(harness.REPO_ROOT, os.environ.get("STORES_SRC") or "../shared/stores"))


def old_redis_binary(release):
    """build/stores/redis-<release>/src/redis-server, built now when missing
    (make test builds them all first); skips when the archives are absent."""
    path = os.path.join(harness.REPO_ROOT, "build", "stores", "redis-" + release, "src", "redis-server")
    if os.access(path, os.X_OK):
        return path
    src = stores_source()
    if not os.path.isdir(src):
        pytest.skip("redis %s is not built and its source archive is not there: %s is absent "
                    "(set STORES_SRC to the folder of redis-<version>.tar.gz)" % (release, src))
    env = dict(os.environ, STORES_SRC=src, STORES_RELEASES=release)
    r = subprocess.run([os.path.join(harness.REPO_ROOT, "tools", "build_stores.sh")], env=env,
                       capture_output=True, text=True)
    if not os.access(path, os.X_OK):
        pytest.fail("redis %s did not build:\n%s%s" % (release, r.stdout, r.stderr), pytrace=False)
    return path


def wait_store_learnt(proxy, timeout=20.0):
    """Until the proxy has learnt its store and every store connection is
    ready (the first connect waits for the learning)."""
    import time
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with proxy.connect() as c:
            last = harness.info_fields(c, "backend")
        if (last.get("backend_version", "unknown") != "unknown"
                and last.get("backend_connections_ready") == last.get("backend_connections")):
            return last
        time.sleep(0.05)
    raise AssertionError("the proxy did not learn its store within %.0fs: %r" % (timeout, last))


@pytest.fixture(scope="session", params=OLD_RELEASES)
def old_release(request):
    """One of the old Redis releases, as a string ("2.8.24")."""
    return request.param


@pytest.fixture(scope="session")
def old_store(old_release, workdir):
    binary = old_redis_binary(old_release)
    s = harness.RedisServer("store-" + old_release, str(workdir / ("store-" + old_release)),
                            rename_scripting=True, binary=binary)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def old_proxy(old_store, old_release, workdir):
    p = harness.ProxyProcess(proxy_binary(), old_store, str(workdir / ("proxy-" + old_release)))
    p.name = "proxy-on-%s" % old_release
    p.start()
    try:
        wait_store_learnt(p)
    except AssertionError as e:
        p.stop()
        pytest.fail("%s\n%s" % (e, p.diagnostics()), pytrace=False)
    yield p
    stop_proxy(p)


@pytest.fixture
def old_diff(oracle, old_proxy):
    """A Differ of the Redis 7.0 oracle against the proxy in front of an old
    release, both flushed."""
    if not old_proxy.alive():
        pytest.fail("the proxy is no longer running (exit status %s)\n%s"
                    % (old_proxy.proc.returncode, old_proxy.diagnostics()), pytrace=False)
    d = harness.Differ(oracle, old_proxy)
    d.flushall()
    return d
