"""Session fixtures: a store (redis-server without scripting), an oracle
(ordinary redis-server 7.0) and the proxy in front of the store, all real
processes on free loopback ports with their data in a temporary directory.

EVALPROXY_BIN      proxy binary (default: ./evalproxy at the repo root)
EVALPROXY_TARGET   "store": the `proxy` fixture points at the store itself, to
                   check the suite (store vs. oracle) without a proxy
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def target_is_store():
    return os.environ.get("EVALPROXY_TARGET", "").strip().lower() == "store"


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


@pytest.fixture(scope="session")
def proxy(store, workdir):
    if target_is_store():
        yield harness.Endpoint("store-as-proxy", store.host, store.port)
        return
    p = harness.ProxyProcess(proxy_binary(), store, str(workdir / "proxy"))
    p.start()
    yield p
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
    d = harness.Differ(oracle, proxy)
    d.flushall()
    return d


def pytest_collection_modifyitems(session, config, items):
    # Tests that kill and restart the store run last, so that a proxy which
    # fails to recover cannot take every later test down with it.
    items.sort(key=lambda item: 1 if item.get_closest_marker("store_restart") else 0)


def pytest_configure(config):
    config.addinivalue_line("markers", "store_restart: kills and restarts the store")
