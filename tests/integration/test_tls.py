"""TLS on both sides of the proxy, against real processes: clients on
tls-port (handshakes, client certificates, protocol versions, certificate
reload, plain clients cut off), and stores behind rediss:// and
memcacheds:// (certificate and host name checks, client certificates,
dedicated connections). Every certificate is made here with the openssl
command line tool, in a temporary directory.
"""

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import harness
from harness import HOST, ConnectionClosed, ReplyTimeout, RespConnection, Step
from test_memcached import MEMCACHED, Memcached

OPENSSL = shutil.which("openssl")
REDIS_CLI = shutil.which("redis-cli")

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command line tool is not installed")

SECRET = "Tls-St0re-Secret-9f3a"


def proxy_binary():
    b = os.environ.get("EVALPROXY_BIN") or os.path.join(harness.REPO_ROOT, "evalproxy")
    return os.path.abspath(b)


# ---------------------------------------------------------------------------
# Certificates

class Certs:
    """A directory of CAs, certificates and keys made with the openssl tool."""

    def __init__(self, directory):
        self.dir = directory
        os.chmod(directory, 0o755)  # memcached reads them as 'nobody'
        self.serial = 1000

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        r = subprocess.run([OPENSSL] + list(args), cwd=self.dir, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), r.stderr))

    def ca(self, name):
        self._openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-keyout", name + ".key", "-out", name + ".crt",
                      "-days", "30", "-subj", "/CN=%s" % name)
        return self.path(name + ".crt")

    def leaf(self, name, ca, cn="localhost", san="DNS:localhost,IP:127.0.0.1", expired=False):
        """name.crt and name.key, signed by ca; expired: valid only in 2020."""
        self._openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s" % cn)
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
            if san:
                f.write("subjectAltName=%s\n" % san)
        self.serial += 1
        if not expired:
            self._openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                          "-set_serial", str(self.serial), "-days", "30", "-extfile", ext, "-out", name + ".crt")
        else:
            # `openssl ca` is the tool that takes explicit validity dates.
            db = self.path(name + "-ca")
            os.makedirs(db, exist_ok=True)
            open(os.path.join(db, "index.txt"), "w").close()
            with open(os.path.join(db, "serial"), "w") as f:
                f.write("%04X\n" % self.serial)
            conf = os.path.join(db, "ca.cnf")
            with open(conf, "w") as f:
                f.write("[ca]\ndefault_ca=cadef\n[cadef]\ndatabase=%s/index.txt\nnew_certs_dir=%s\n"
                        "serial=%s/serial\ndefault_md=sha256\npolicy=anything\nunique_subject=no\n"
                        "[anything]\ncommonName=supplied\n" % (db, db, db))
            self._openssl("ca", "-batch", "-config", conf, "-cert", ca + ".crt", "-keyfile", ca + ".key",
                          "-in", name + ".csr", "-out", name + ".crt", "-startdate", "20200101000000Z",
                          "-enddate", "20200201000000Z", "-extfile", ext, "-notext")
        for f in (name + ".crt", name + ".key"):
            os.chmod(self.path(f), 0o644)
        return self.path(name + ".crt"), self.path(name + ".key")

    def encrypt_key(self, name, passphrase):
        self._openssl("pkey", "-in", name + ".key", "-out", name + ".enc.key", "-aes256",
                      "-passout", "pass:" + passphrase)
        return self.path(name + ".enc.key")

    def der(self, name):
        with open(self.path(name + ".crt")) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="evalproxy-tls-")
    try:
        c = Certs(d)
        c.ca("ca")
        c.ca("otherca")
        c.leaf("server", "ca")
        c.leaf("server2", "ca", cn="reloaded")
        c.leaf("expired", "ca", expired=True)
        c.leaf("client", "ca", cn="client", san=None)
        c.leaf("wrongclient", "otherca", cn="intruder", san=None)
        c.encrypt_key("server", "key-pass-123")
        yield c
    finally:
        shutil.rmtree(d, ignore_errors=True)


def client_ctx(certs, cert="client", ca="ca", min_version=None, max_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs.path(ca + ".crt"))
    if cert:
        ctx.load_cert_chain(certs.path(cert + ".crt"), certs.path(cert + ".key"))
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def tls_conn(port, ctx, **kw):
    return RespConnection(HOST, port, ssl_context=ctx, server_hostname="localhost", **kw)


def tls_ping(port, ctx):
    """b'+PONG\\r\\n' when a TLS client gets through, else 'refused: ...'."""
    try:
        with tls_conn(port, ctx, timeout=5.0) as c:
            return c.call("PING")
    except (ssl.SSLError, OSError, ConnectionClosed) as e:
        return "refused: %r" % (e,)


# ---------------------------------------------------------------------------
# Processes

class _Addr:
    def __init__(self, host, port):
        self.host, self.port = host, port


class TlsProxy(harness.ProxyProcess):
    """The proxy with a TLS port; ready once a PING gets through (over TLS
    when it has no plain port)."""

    def __init__(self, workdir, backend_url, tls_args=(), extra=(), plain=True, ready_ctx=None):
        super().__init__(proxy_binary(), _Addr(HOST, 1), workdir)
        self.args[self.args.index("--backend") + 1] = backend_url
        self.tls_port = harness.free_port()
        self.plain = plain
        if not plain:
            self.args += ["--port", "0"]
        self.args += ["--tls-port", str(self.tls_port)] + list(tls_args) + list(extra)
        self.ready_ctx = ready_ctx

    def start(self, timeout=30.0):
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self._stderr, stderr=self._stderr,
                                     cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("proxy exited with status %s\n%s" % (self.proc.returncode, self.diagnostics()))
            try:
                if self.plain:
                    with RespConnection(HOST, self.port, timeout=1.0, connect_timeout=1.0) as c:
                        last = c.call("PING")
                else:
                    with tls_conn(self.tls_port, self.ready_ctx, timeout=1.0, connect_timeout=1.0) as c:
                        last = c.call("PING")
                if last == b"+PONG\r\n":
                    return self
            except (OSError, ReplyTimeout, ConnectionClosed) as e:
                last = e
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("proxy not ready (last: %r)\n%s" % (last, self.diagnostics()))

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()


def check_exit(p):
    status = p.stop()
    report = p.sanitizer_report()
    assert not report, "the proxy printed a sanitizer report:\n" + report
    assert status in (0, -15), "the proxy exited with status %s\n%s" % (status, p.diagnostics())


@contextlib.contextmanager
def running(p):
    p.start()
    ok = False
    try:
        yield p
        ok = True
    finally:
        if ok:
            check_exit(p)
        else:
            p.stop()


def server_tls_args(certs, cert="server", auth="yes"):
    return ["--tls-cert-file", certs.path(cert + ".crt"), "--tls-key-file", certs.path(cert + ".key"),
            "--tls-ca-cert-file", certs.path("ca.crt"), "--tls-auth-clients", auth]


class TlsRedis(harness.RedisServer):
    """A redis-server that speaks only TLS (scripting renamed away, as for
    every store), listening on 127.0.0.1 and 127.0.0.2."""

    def __init__(self, name, workdir, certs, auth_clients="no", extra=()):
        port = harness.free_port()
        lines = ["bind 127.0.0.1 127.0.0.2 -::1", "port 0", "tls-port %d" % port,
                 "tls-cert-file %s" % certs.path("server.crt"), "tls-key-file %s" % certs.path("server.key"),
                 "tls-ca-cert-file %s" % certs.path("ca.crt"), "tls-auth-clients %s" % auth_clients]
        super().__init__(name, workdir, rename_scripting=True, port=port, extra=lines + list(extra))
        self.ctx = client_ctx(certs)

    def connect(self, **kw):
        return tls_conn(self.port, self.ctx, **kw)

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([harness.REDIS_SERVER, self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                with self.connect(timeout=1.0, connect_timeout=1.0) as c:
                    last = c.call("PING")
                    if last == b"+PONG\r\n" or last.startswith(b"-NOAUTH"):
                        return self
            except (OSError, ReplyTimeout, ConnectionClosed) as e:
                last = e
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("TLS redis-server not ready on %d (last: %r)" % (self.port, last))


def connected_clients(port):
    """None while the proxy is still full (its closes are not instant)."""
    with RespConnection(HOST, port) as c:
        info = c.call("INFO", "clients").decode()
    if "connected_clients:" not in info:
        return None
    return int(info.split("connected_clients:")[1].split("\r\n")[0])


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def wait_store_up(p, timeout=30.0):
    """The proxy answers PING before its store connections are up (a TLS
    handshake away): relayed commands fail until then."""
    def up():
        with RespConnection(HOST, p.port) as c:
            return b"backend_status:up\r\n" in c.call("INFO", "backend")
    wait_for(up, timeout=timeout, what="the store connections up")


# ---------------------------------------------------------------------------
# Client side

@pytest.fixture(scope="module")
def tls_proxy(certs, store, tmp_path_factory):
    """A proxy in front of the plain store with a plain port and a TLS port
    that requires client certificates (tls-auth-clients yes)."""
    p = TlsProxy(str(tmp_path_factory.mktemp("tls-proxy")), "redis://%s:%d" % (store.host, store.port),
                 tls_args=server_tls_args(certs))
    with running(p):
        yield p


def test_good_certificate_with_redis_py_and_redis_cli(tls_proxy, certs):
    assert tls_ping(tls_proxy.tls_port, client_ctx(certs)) == b"+PONG\r\n"
    import redis
    r = redis.Redis(host="localhost", port=tls_proxy.tls_port, ssl=True, ssl_ca_certs=certs.path("ca.crt"),
                    ssl_certfile=certs.path("client.crt"), ssl_keyfile=certs.path("client.key"))
    try:
        assert r.set("tls:py", "v1") is True
        assert r.get("tls:py") == b"v1"
        assert r.eval("return redis.call('GET', KEYS[1])", 1, "tls:py") == b"v1"
        assert r.eval("return {1, 'two', {3}}", 0) == [1, b"two", [3]]
    finally:
        r.close()
    if REDIS_CLI:
        out = subprocess.run([REDIS_CLI, "--tls", "--cacert", certs.path("ca.crt"), "--cert",
                              certs.path("client.crt"), "--key", certs.path("client.key"), "-h", HOST,
                              "-p", str(tls_proxy.tls_port), "EVAL", "return redis.call('GET', KEYS[1])", "1",
                              "tls:py"], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "v1", out.stderr


def test_info_shows_tls_port(tls_proxy):
    with RespConnection(HOST, tls_proxy.port) as c:
        info = c.call("INFO", "server").decode()
    assert "tls_port:%d\r\n" % tls_proxy.tls_port in info
    assert "tcp_port:%d\r\n" % tls_proxy.port in info


def test_expired_server_certificate_is_refused(certs, store, tmp_path):
    p = TlsProxy(str(tmp_path), "redis://%s:%d" % (store.host, store.port),
                 tls_args=server_tls_args(certs, cert="expired", auth="no"))
    with running(p):
        r = tls_ping(p.tls_port, client_ctx(certs, cert=None))
        assert r.startswith("refused") and "expired" in r, r
        # The same client trusts a current certificate from the same CA.
        with RespConnection(HOST, p.port) as c:
            assert c.call("CONFIG", "SET", "tls-cert-file", certs.path("server.crt"),
                          "tls-key-file", certs.path("server.key")) == b"+OK\r\n"
        assert tls_ping(p.tls_port, client_ctx(certs, cert=None)) == b"+PONG\r\n"


def test_client_certificate_from_another_ca_is_refused(tls_proxy, certs):
    before = connected_clients(tls_proxy.port)
    r = tls_ping(tls_proxy.tls_port, client_ctx(certs, cert="wrongclient"))
    assert r.startswith("refused"), r
    wait_for(lambda: connected_clients(tls_proxy.port) == before, what="the refused client to be gone")
    wait_for(lambda: "Error accepting a client connection" in tls_proxy.log(), what="the log line")
    assert tls_ping(tls_proxy.tls_port, client_ctx(certs)) == b"+PONG\r\n"


def test_client_certificate_required_optional_or_not(tls_proxy, certs):
    port = tls_proxy.tls_port
    no_cert = client_ctx(certs, cert=None)
    with RespConnection(HOST, tls_proxy.port) as admin:
        try:
            assert admin.call("CONFIG", "GET", "tls-auth-clients") == \
                b"*2\r\n$16\r\ntls-auth-clients\r\n$3\r\nyes\r\n"
            assert tls_ping(port, no_cert).startswith("refused")
            assert admin.call("CONFIG", "SET", "tls-auth-clients", "optional") == b"+OK\r\n"
            assert tls_ping(port, no_cert) == b"+PONG\r\n"
            assert tls_ping(port, client_ctx(certs)) == b"+PONG\r\n"
            # optional still checks a certificate that is presented.
            assert tls_ping(port, client_ctx(certs, cert="wrongclient")).startswith("refused")
            assert admin.call("CONFIG", "SET", "tls-auth-clients", "no") == b"+OK\r\n"
            assert tls_ping(port, no_cert) == b"+PONG\r\n"
        finally:
            assert admin.call("CONFIG", "SET", "tls-auth-clients", "yes") == b"+OK\r\n"
    assert tls_ping(port, no_cert).startswith("refused")


def test_protocol_versions(tls_proxy, certs):
    port = tls_proxy.tls_port
    only12 = client_ctx(certs, max_version=ssl.TLSVersion.TLSv1_2)
    only13 = client_ctx(certs, min_version=ssl.TLSVersion.TLSv1_3)
    with RespConnection(HOST, tls_proxy.port) as admin:
        try:
            assert tls_ping(port, only12) == b"+PONG\r\n"
            assert tls_ping(port, only13) == b"+PONG\r\n"
            assert admin.call("CONFIG", "SET", "tls-protocols", "TLSv1.3") == b"+OK\r\n"
            assert tls_ping(port, only12).startswith("refused")
            assert tls_ping(port, only13) == b"+PONG\r\n"
            assert admin.call("CONFIG", "SET", "tls-protocols", "TLSv1.2") == b"+OK\r\n"
            assert tls_ping(port, only13).startswith("refused")
            assert tls_ping(port, only12) == b"+PONG\r\n"
            assert admin.call("CONFIG", "GET", "tls-protocols") == \
                b"*2\r\n$13\r\ntls-protocols\r\n$7\r\nTLSv1.2\r\n"
            assert admin.call("CONFIG", "SET", "tls-protocols", "TLSv9") == (
                b"-ERR CONFIG SET failed (possibly related to argument 'tls-protocols') - "
                b"Unable to update TLS configuration. Check server logs.\r\n")
            # The failed change left value and context as they were.
            assert admin.call("CONFIG", "GET", "tls-protocols") == \
                b"*2\r\n$13\r\ntls-protocols\r\n$7\r\nTLSv1.2\r\n"
            assert tls_ping(port, only13).startswith("refused")
        finally:
            assert admin.call("CONFIG", "SET", "tls-protocols", "") == b"+OK\r\n"
    assert tls_ping(port, only13) == b"+PONG\r\n"
    assert "Invalid tls-protocols specified" in tls_proxy.log()


def test_ciphers_and_ciphersuites(tls_proxy, certs):
    only12 = client_ctx(certs, max_version=ssl.TLSVersion.TLSv1_2)
    only13 = client_ctx(certs, min_version=ssl.TLSVersion.TLSv1_3)

    def cipher(ctx):
        with tls_conn(tls_proxy.tls_port, ctx) as c:
            assert c.call("PING") == b"+PONG\r\n"
            return c.sock.cipher()[0]

    with RespConnection(HOST, tls_proxy.port) as admin:
        try:
            for suite in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
                assert admin.call("CONFIG", "SET", "tls-ciphersuites", suite) == b"+OK\r\n"
                assert cipher(only13) == suite
            for name in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"):
                assert admin.call("CONFIG", "SET", "tls-ciphers", name) == b"+OK\r\n"
                assert cipher(only12) == name
            assert admin.call("CONFIG", "SET", "tls-ciphers", "NO-SUCH-CIPHER").startswith(
                b"-ERR CONFIG SET failed (possibly related to argument 'tls-ciphers') - Unable to update TLS")
            assert cipher(only12) == "ECDHE-ECDSA-CHACHA20-POLY1305"
        finally:
            assert admin.call("CONFIG", "SET", "tls-ciphers", "", "tls-ciphersuites", "") == b"+OK\r\n"


def test_plain_client_on_tls_port_is_cut_off(tls_proxy, certs):
    before = connected_clients(tls_proxy.port)
    for payload in (b"PING\r\n", b"*1\r\n$4\r\nPING\r\n" * 100, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection((HOST, tls_proxy.tls_port), timeout=10) as s:
            s.sendall(payload)
            got = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                got += chunk
            assert b"PONG" not in got
    # A client that starts a handshake and vanishes half-way.
    with socket.create_connection((HOST, tls_proxy.tls_port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + b"\x00" * 20)
    wait_for(lambda: connected_clients(tls_proxy.port) == before, what="cut-off clients to be gone")
    assert tls_ping(tls_proxy.tls_port, client_ctx(certs)) == b"+PONG\r\n"
    assert tls_proxy.alive()


def test_tls_only_with_port_0(certs, store, tmp_path):
    ctx = client_ctx(certs, cert=None)
    p = TlsProxy(str(tmp_path), "redis://%s:%d" % (store.host, store.port),
                 tls_args=server_tls_args(certs, auth="no"), plain=False, ready_ctx=ctx)
    with running(p):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, p.port), timeout=5).close()
        with tls_conn(p.tls_port, ctx) as c:
            assert c.call("SET", "tls:only", "1") == b"+OK\r\n"
            assert c.call("EVAL", "return redis.call('INCR', KEYS[1])", "1", "tls:only") == b":2\r\n"
            info = c.call("INFO", "server").decode()
            assert "tcp_port:0\r\n" in info and "tls_port:%d\r\n" % p.tls_port in info
            # Protocol errors close a TLS client just as a plain one.
            c.send(b"*1\r\n$x\r\n")
            assert c.read_until_close().startswith(b"-ERR Protocol error")


def test_maxclients_reply_reaches_a_tls_client(certs, store, tmp_path):
    ctx = client_ctx(certs, cert=None)
    p = TlsProxy(str(tmp_path), "redis://%s:%d" % (store.host, store.port),
                 tls_args=server_tls_args(certs, auth="no"), extra=["--maxclients", "2"])
    with running(p):
        with RespConnection(HOST, p.port) as first, tls_conn(p.tls_port, ctx) as second:
            assert second.call("PING") == b"+PONG\r\n"
            with tls_conn(p.tls_port, ctx) as third:
                assert third.read_until_close() == b"-ERR max number of clients reached\r\n"
            assert first.call("PING") == b"+PONG\r\n"
            stats = first.call("INFO", "stats").decode()
            assert "rejected_connections:1\r\n" in stats
        wait_for(lambda: connected_clients(p.port) == 1, what="the clients to be gone")
        assert tls_ping(p.tls_port, ctx) == b"+PONG\r\n"


def test_certificate_reload_keeps_open_connections(certs, store, tmp_path):
    ctx = client_ctx(certs, cert=None)
    p = TlsProxy(str(tmp_path), "redis://%s:%d" % (store.host, store.port),
                 tls_args=server_tls_args(certs, auth="no"))
    with running(p), RespConnection(HOST, p.port) as admin:
        old = tls_conn(p.tls_port, ctx)
        try:
            assert old.sock.getpeercert(binary_form=True) == certs.der("server")
            # A certificate without its key fails as a whole: nothing changes.
            r = admin.call("CONFIG", "SET", "tls-cert-file", certs.path("server2.crt"))
            assert r == (b"-ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - "
                         b"Unable to update TLS configuration. Check server logs.\r\n")
            assert admin.call("CONFIG", "GET", "tls-cert-file") == harness.encode_command(
                "tls-cert-file", certs.path("server.crt"))
            with tls_conn(p.tls_port, ctx) as c:
                assert c.sock.getpeercert(binary_form=True) == certs.der("server")
            # Both together: new connections get the new certificate.
            assert admin.call("CONFIG", "SET", "tls-cert-file", certs.path("server2.crt"),
                              "tls-key-file", certs.path("server2.key")) == b"+OK\r\n"
            assert old.call("SET", "reload:k", "v") == b"+OK\r\n"
            with tls_conn(p.tls_port, ctx) as c:
                assert c.sock.getpeercert(binary_form=True) == certs.der("server2")
                assert c.call("GET", "reload:k") == b"$1\r\nv\r\n"
            # A path that does not exist: the error, and the current context stays.
            r = admin.call("CONFIG", "SET", "tls-cert-file", "/nonexistent/cert.pem")
            assert r == (b"-ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - "
                         b"Unable to update TLS configuration. Check server logs.\r\n")
            assert admin.call("CONFIG", "GET", "tls-cert-file") == harness.encode_command(
                "tls-cert-file", certs.path("server2.crt"))
            with tls_conn(p.tls_port, ctx) as c:
                assert c.sock.getpeercert(binary_form=True) == certs.der("server2")
            assert old.call("GET", "reload:k") == b"$1\r\nv\r\n"
            assert old.sock.getpeercert(binary_form=True) == certs.der("server")
        finally:
            old.close()
        assert "/nonexistent/cert.pem" in p.log()


def test_tls_port_replies_match_plain_port(tls_proxy, certs):
    """The same requests through the plain port and the TLS port of one
    proxy, each from an empty store, give byte-identical replies."""
    big = "x" * (1 << 20)
    steps = [harness.as_step(s) for s in [
        ("SET", "d:s", "hello"), ("GET", "d:s"), ("INCR", "d:n"), ("INCRBY", "d:n", "41"),
        ("RPUSH", "d:l", "a", "b", "c"), ("LRANGE", "d:l", "0", "-1"),
        ("HSET", "d:h", "f", "v"), ("HGETALL", "d:h"), ("GET", "d:missing"),
        ("SET", "d:big", big), ("GET", "d:big"), ("STRLEN", "d:big"),
        ("EVAL", "return {redis.call('GET', KEYS[1]), tonumber(ARGV[1]) * 2, {ok='fine'}, false}",
         "1", "d:s", "21"),
        ("EVAL", "return redis.error_reply('custom failure')", "0"),
        ("EVAL", "return redis.call('NOSUCHCOMMAND')", "0"),
        ("EVAL", "return redis.pcall('INCR', KEYS[1])", "1", "d:s"),
        ("NOSUCHCOMMAND", "x"),
        ("MULTI",), ("INCR", "d:n"), ("GET", "d:s"), ("EXEC",),
        Step(raw=b"".join(harness.encode_command("INCR", "d:p") for _ in range(200)), replies=200),
    ]]
    results = []
    for connect in (lambda: RespConnection(HOST, tls_proxy.port),
                    lambda: tls_conn(tls_proxy.tls_port, client_ctx(certs))):
        with connect() as c:
            assert c.call("FLUSHALL") == b"+OK\r\n"
            results.append(harness.run_steps(c, steps))
    plain, tls = results
    assert len(plain) == len(steps) and all(isinstance(r, bytes) for r in plain), plain
    for i, st in enumerate(steps):
        assert plain[i] == tls[i], "step %d (%s): plain %r, TLS %r" % (
            i, st.describe(), plain[i][:200], tls[i][:200] if isinstance(tls[i], bytes) else tls[i])


def test_config_get_rewrite_and_test_config(certs, store, tmp_path):
    conf = tmp_path / "proxy.conf"
    conf.write_text("# TLS settings\ntls-session-cache-size 1000\n")
    p = TlsProxy(str(tmp_path), "redis://%s:%d" % (store.host, store.port),
                 tls_args=server_tls_args(certs, auth="optional") + ["--tls-ciphersuites",
                                                                     "TLS_AES_256_GCM_SHA384"])
    p.args.insert(1, str(conf))
    with running(p), RespConnection(HOST, p.port) as c:
        got = dict(zip(*[iter(harness.parse_reply(c.call("CONFIG", "GET", "tls-*")))] * 2))
        assert got[b"tls-port"] == str(p.tls_port).encode()
        assert got[b"tls-cert-file"] == certs.path("server.crt").encode()
        assert got[b"tls-auth-clients"] == b"optional"
        assert got[b"tls-session-cache-size"] == b"1000"
        assert got[b"tls-session-cache-timeout"] == b"300"
        assert got[b"tls-session-caching"] == b"yes"
        assert got[b"tls-prefer-server-ciphers"] == b"no"
        assert got[b"tls-ciphersuites"] == b"TLS_AES_256_GCM_SHA384"
        assert got[b"tls-protocols"] == b""
        assert c.call("CONFIG", "SET", "tls-session-cache-timeout", "60") == b"+OK\r\n"
        assert c.call("CONFIG", "REWRITE") == b"+OK\r\n"
    text = conf.read_text()
    assert "tls-session-cache-size 1000\n" in text
    assert "tls-session-cache-timeout 60\n" in text
    assert "tls-port %d\n" % p.tls_port in text
    assert "tls-cert-file %s\n" % certs.path("server.crt") in text
    assert "tls-auth-clients optional\n" in text
    # The rewritten file starts a proxy with the same TLS setup.
    r = subprocess.run([proxy_binary(), "--test-config", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text(text.replace(certs.path("server.crt"), "/nonexistent/server.crt"))
    r = subprocess.run([proxy_binary(), "--test-config", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "/nonexistent/server.crt" in r.stderr, r.stdout + r.stderr


def test_encrypted_key_file_with_pass(certs, store, tmp_path):
    enc = certs.path("server.enc.key")
    base = ["--tls-port", "1", "--tls-cert-file", certs.path("server.crt"), "--tls-key-file", enc,
            "--tls-auth-clients", "no"]
    r = subprocess.run([proxy_binary(), "--test-config"] + base, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "Failed to load private key" in r.stderr, r.stderr
    r = subprocess.run([proxy_binary(), "--test-config"] + base + ["--tls-key-file-pass", "wrong"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stderr
    p = TlsProxy(str(tmp_path), "redis://%s:%d" % (store.host, store.port),
                 tls_args=["--tls-cert-file", certs.path("server.crt"), "--tls-key-file", enc,
                           "--tls-key-file-pass", "key-pass-123", "--tls-auth-clients", "no"])
    with running(p):
        assert tls_ping(p.tls_port, client_ctx(certs, cert=None)) == b"+PONG\r\n"
    assert "key-pass-123" not in p.log()


# ---------------------------------------------------------------------------
# Store side

@pytest.fixture(scope="module")
def tls_store(certs, tmp_path_factory):
    s = TlsRedis("tls-store", str(tmp_path_factory.mktemp("tls-store")), certs)
    s.start()
    yield s
    s.stop()


def store_proxy(workdir, url, certs, ca="ca", extra=()):
    return TlsProxy(str(workdir), url, tls_args=server_tls_args(certs),
                    extra=["--backend-tls-ca-cert-file", certs.path(ca + ".crt")] + list(extra))


def _blpop_after_push(p, key):
    """BLPOP on one client while another pushes a moment later."""
    result = {}

    def pop():
        with RespConnection(HOST, p.port) as c:
            result["reply"] = c.call("BLPOP", key, "10")

    t = threading.Thread(target=pop)
    t.start()
    time.sleep(0.3)
    with RespConnection(HOST, p.port) as c:
        assert c.call("RPUSH", key, "item") == b":1\r\n"
    t.join(20)
    return result.get("reply")


def test_rediss_store(tls_store, certs, tmp_path):
    p = store_proxy(tmp_path, "rediss://localhost:%d" % tls_store.port, certs)
    with running(p):
        wait_store_up(p)
        with RespConnection(HOST, p.port) as c:
            assert c.call("FLUSHALL") == b"+OK\r\n"
            assert c.call("SET", "s:k", "v") == b"+OK\r\n"
            assert c.call("GET", "s:k") == b"$1\r\nv\r\n"
            assert c.call("EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])",
                          "1", "s:e", "via-script") == b"$10\r\nvia-script\r\n"
            assert c.call("MULTI") == b"+OK\r\n"
            assert c.call("INCR", "s:n") == b"+QUEUED\r\n"
            assert c.call("INCR", "s:n") == b"+QUEUED\r\n"
            assert c.call("EXEC") == b"*2\r\n:1\r\n:2\r\n"
            # WATCH runs on a dedicated store connection.
            assert c.call("WATCH", "s:w") == b"+OK\r\n"
            with RespConnection(HOST, p.port) as other:
                assert other.call("SET", "s:w", "changed") == b"+OK\r\n"
            assert c.call("MULTI") == b"+OK\r\n"
            assert c.call("SET", "s:w", "mine") == b"+QUEUED\r\n"
            assert c.call("EXEC") == b"*-1\r\n"
            info = c.call("INFO", "backend").decode()
            assert "backend_tls:yes" in info and "backend_status:up" in info
        assert _blpop_after_push(p, "s:q") == b"*2\r\n$3\r\ns:q\r\n$4\r\nitem\r\n"
        with RespConnection(HOST, p.port) as sub:
            assert sub.call("SUBSCRIBE", "s:ch") == b"*3\r\n$9\r\nsubscribe\r\n$4\r\ns:ch\r\n:1\r\n"
            with RespConnection(HOST, p.port) as pub:
                assert pub.call("PUBLISH", "s:ch", "hello") == b":1\r\n"
            assert sub.read_reply() == b"*3\r\n$7\r\nmessage\r\n$4\r\ns:ch\r\n$5\r\nhello\r\n"
        # The same through the proxy's own TLS port: TLS on both sides.
        with tls_conn(p.tls_port, client_ctx(certs)) as c:
            assert c.call("EVAL", "return redis.call('GET', KEYS[1])", "1", "s:e") == b"$10\r\nvia-script\r\n"
    # The store itself saw the writes.
    with tls_store.connect() as c:
        assert c.call("GET", "s:w") == b"$7\r\nchanged\r\n"


def _unavailable(p, key="u:k"):
    with RespConnection(HOST, p.port) as c:
        return c.call("GET", key).decode()


@pytest.mark.parametrize("case", ["wrong-ca", "wrong-ip", "wrong-name"])
def test_rediss_store_certificate_checks(tls_store, certs, tmp_path, case):
    if case == "wrong-ca":
        p = store_proxy(tmp_path, "rediss://127.0.0.1:%d" % tls_store.port, certs, ca="otherca")
    elif case == "wrong-ip":
        # The certificate names 127.0.0.1, not 127.0.0.2 (the store listens on both).
        p = store_proxy(tmp_path, "rediss://127.0.0.2:%d" % tls_store.port, certs)
    else:
        # A name that resolves (to 127.0.0.1) but that the certificate does not carry.
        host = socket.gethostname()
        try:
            addr = socket.gethostbyname(host)
        except OSError:
            addr = None
        if addr is None or not addr.startswith("127.") or host == "localhost":
            pytest.skip("no second loopback host name on this machine")
        p = store_proxy(tmp_path, "rediss://%s:%d" % (host, tls_store.port), certs)
    with running(p):
        wait_for(lambda: "certificate verify failed" in p.log(), what="the verify failure in the log")
        err = _unavailable(p)
        assert err.startswith("-ERR backend ") and " is unavailable: " in err, err
        assert "certificate verify failed" in err, err
        expected = "certificate verify failed (" if case == "wrong-ca" else "(hostname mismatch)" if case == "wrong-name" else "(IP address mismatch)"
        assert expected in err, err
        log = p.log()
        assert "# backend" in log and expected in log  # at warning level ('#')
    # The same store and CA with verification off connects.
    if case != "wrong-name":
        p2 = store_proxy(tmp_path / "noverify", p.args[p.args.index("--backend") + 1], certs,
                         ca="otherca" if case == "wrong-ca" else "ca", extra=["--backend-tls-verify", "no"])
        with running(p2):
            wait_for(lambda: _unavailable(p2, "u:nv") == "$-1\r\n", what="an unverified connection")


def test_rediss_store_that_never_answers_the_handshake(certs, tmp_path):
    """A listener that accepts and stays silent: the handshake times out
    (backend connect timeout), the store is unavailable, the proxy serves on."""
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(64)
    accepted = []
    stop = threading.Event()

    def accept_loop():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept_loop)
    t.start()
    try:
        p = store_proxy(tmp_path, "rediss://localhost:%d" % silent.getsockname()[1], certs)
        with running(p):
            wait_for(lambda: "connection timed out" in p.log(), timeout=20, what="the handshake timeout")
            err = _unavailable(p)
            assert err.startswith("-ERR backend ") and "is unavailable" in err, err
            assert tls_ping(p.tls_port, client_ctx(certs)) == b"+PONG\r\n"
    finally:
        stop.set()
        t.join(5)
        for c in accepted:
            c.close()
        silent.close()


def test_rediss_store_that_requires_a_client_certificate(certs, tmp_path):
    s = TlsRedis("tls-store-auth", str(tmp_path / "store"), certs, auth_clients="yes")
    s.start()
    try:
        url = "rediss://localhost:%d" % s.port
        p = store_proxy(tmp_path / "with", url, certs, extra=[
            "--backend-tls-cert-file", certs.path("client.crt"),
            "--backend-tls-key-file", certs.path("client.key")])
        with running(p), RespConnection(HOST, p.port) as c:
            wait_store_up(p)
            assert c.call("SET", "cc:k", "v") == b"+OK\r\n"
            assert c.call("EVAL", "return redis.call('GET', KEYS[1])", "1", "cc:k") == b"$1\r\nv\r\n"
            assert _blpop_after_push(p, "cc:q") == b"*2\r\n$4\r\ncc:q\r\n$4\r\nitem\r\n"
        p = store_proxy(tmp_path / "without", url, certs)
        with running(p):
            for _ in range(3):
                err = _unavailable(p, "cc:k")
                assert err.startswith("-ERR backend "), err
                time.sleep(0.1)
    finally:
        s.stop()


def test_store_credentials_never_leak(certs, tmp_path):
    s = TlsRedis("tls-store-acl", str(tmp_path / "store"), certs,
                 extra=["user app on >%s ~* &* +@all" % SECRET])
    s.start()
    try:
        url = "rediss://app:%s@localhost:%d" % (SECRET, s.port)
        p = store_proxy(tmp_path / "good", url, certs)
        with running(p):
            wait_store_up(p)
            with RespConnection(HOST, p.port) as c:
                assert c.call("SET", "cred:k", "v") == b"+OK\r\n"
                texts = [c.call("INFO", "everything"), c.call("CONFIG", "GET", "*"),
                         c.call("CONFIG", "GET", "backend"), c.call("CLIENT", "LIST")]
            assert b"app:****@localhost" in texts[2]
            for t in texts:
                assert SECRET.encode() not in t
            with tls_conn(p.tls_port, client_ctx(certs)) as c:
                assert c.call("GET", "cred:k") == b"$1\r\nv\r\n"
        bad_secret = SECRET + "-wrong"
        p2 = store_proxy(tmp_path / "bad", "rediss://app:%s@localhost:%d" % (bad_secret, s.port), certs)
        with running(p2):
            wait_for(lambda: "AUTH failed" in p2.log(), what="the AUTH failure in the log")
            with RespConnection(HOST, p2.port) as c:
                errs = [c.call("GET", "cred:k"), c.call("INFO", "backend"), c.call("CONFIG", "GET", "*")]
            assert errs[0].startswith(b"-ERR backend "), errs[0]
            for t in errs:
                assert SECRET.encode() not in t
        for proc in (p, p2):
            for path in (proc.logfile, proc.stderr_path):
                with open(path, errors="replace") as f:
                    assert SECRET not in f.read(), path
    finally:
        s.stop()


# ---------------------------------------------------------------------------
# memcached over TLS

class TlsMemcached(Memcached):
    """memcached -Z with the tests' server certificate."""

    def __init__(self, certs):
        super().__init__()
        self.name = "memcached-tls"
        self.certs = certs
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.load_verify_locations(certs.path("ca.crt"))

    def extra_args(self):
        return ["-Z", "-o", "ssl_chain_cert=%s,ssl_key=%s" % (self.certs.path("server.crt"),
                                                              self.certs.path("server.key"))]

    def probe_socket(self, raw):
        return self.ctx.wrap_socket(raw, server_hostname="localhost")


def _memcached_has_tls():
    if not os.path.exists(MEMCACHED):
        return False
    out = subprocess.run([MEMCACHED, "-h"], capture_output=True, text=True).stdout
    return "--enable-ssl" in out


@pytest.mark.skipif(not _memcached_has_tls(), reason="memcached without TLS support")
def test_memcached_over_tls(certs, tmp_path):
    mc = TlsMemcached(certs).start()
    try:
        p = store_proxy(tmp_path, "memcacheds://localhost:%d" % mc.port, certs)
        with running(p):
            wait_store_up(p)
            with RespConnection(HOST, p.port) as c:
                assert c.call("SET", "m:k", "value") == b"+OK\r\n"
                assert c.call("GET", "m:k") == b"$5\r\nvalue\r\n"
                assert c.call("INCRBY", "m:n", "5") == b":5\r\n"
                assert c.call("EVAL", "redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])",
                              "1", "m:n") == b"$1\r\n6\r\n"
                info = c.call("INFO", "backend").decode()
                assert "backend_type:memcached" in info and "backend_tls:yes" in info
            with tls_conn(p.tls_port, client_ctx(certs)) as c:
                assert c.call("GET", "m:k") == b"$5\r\nvalue\r\n"
        # A CA that did not sign memcached's certificate: unavailable.
        p = store_proxy(tmp_path / "wrongca", "memcacheds://localhost:%d" % mc.port, certs, ca="otherca")
        with running(p):
            wait_for(lambda: "certificate verify failed" in p.log(), what="the verify failure in the log")
            err = _unavailable(p, "m:k")
            assert err.startswith("-ERR backend ") and "is unavailable" in err, err
    finally:
        mc.stop()
