"""node-redis 5 (the npm package) speaking RESP3 through the proxy: the
scripts of the seeds (a lock, a rate limiter, a counter), RESP3 reply
shapes, pub/sub on a RESP3 connection and client-side caching, compared with
the same program run against a redis-server 7.0 oracle. `make clients`
installs the package (tests/clients/node)."""

import json
import os
import shutil
import subprocess

import pytest

import harness
from conftest import proxy_binary, stop_proxy

NODE_DIR = os.path.join(harness.REPO_ROOT, "tests", "clients", "node")
pytestmark = pytest.mark.skipif(
    not shutil.which("node") or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "redis")),
    reason="node-redis is not installed (make clients)")


def run(ep):
    p = subprocess.run(["node", os.path.join(NODE_DIR, "resp3.mjs"), "redis://%s:%d" % (ep.host, ep.port)],
                       capture_output=True, text=True, timeout=120, cwd=NODE_DIR)
    assert p.returncode == 0, "%s: %s" % (ep.name, p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A store, a proxy and an oracle of this test's own: the program flushes
    them and leaves clients tracking."""
    work = tmp_path_factory.mktemp("node-client")
    oracle = harness.RedisServer("oracle-node", str(work / "oracle")).start()
    store = harness.RedisServer("store-node", str(work / "store"), rename_scripting=True).start()
    proxy = harness.ProxyProcess(proxy_binary(), store, str(work / "proxy"))
    proxy.start()
    yield oracle, proxy
    stop_proxy(proxy)
    store.stop()
    oracle.stop()


def test_node_redis_resp3(pair):
    oracle, proxy = pair
    want = run(oracle)
    got = run(proxy)
    assert want["cacheAfterWrite"] == "two" and want["message"] == ["node-ch", "hello"], want
    assert got == want
