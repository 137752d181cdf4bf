#!/usr/bin/env python3
"""Memory per idle connection and per in-flight script of one evalproxy process.

    scale.py PORT PID [--conns 10000] [--scripts 1000] [--seconds 4]

Run by bench/run.sh against an evalproxy it started for this alone (with
--maxclients above --conns), in front of a redis-server store. Reads VmRSS from
/proc/PID/status:

1. before: the proxy up, no client connected (one short connection loaded the
   script and went away before);
2. idle: --conns TCP connections open, each has answered one PING (so the proxy
   has really set it up), and INFO on one of them counts them;
3. scripts: --scripts of those connections each send an EVALSHA of a script that
   runs on its own key until a wall-clock deadline (a CPU loop, with TIME read
   between rounds), so all of them are started and suspended on their fibers at
   once; VmRSS and INFO's scripts_running are sampled while they run.

Prints metric,value lines (CSV, no header) on stdout; exits non-zero on any
failure (a connection refused or not answering, an error reply, fewer scripts
running than asked, ...), with the reason on stderr.
"""
import argparse
import resource
import selectors
import socket
import sys
import time

SCRIPT = """
local deadline = tonumber(ARGV[1])
local x = 0
while true do
  for i = 1, 20000 do x = (x + i) % 1000003 end
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000000 + tonumber(t[2]) >= deadline then break end
end
return x
"""


def fail(msg):
    sys.stderr.write("scale: %s\n" % msg)
    sys.exit(1)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Reader:
    """Just enough RESP2 parsing for the replies used here."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the proxy")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-", b":"):
            return line
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise ValueError("unexpected reply %r" % line[:80])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail("no VmRSS for pid %d" % pid)


def info_field(reader, field):
    reader.sock.sendall(resp("INFO"))
    text = reader.reply()
    if not isinstance(text, bytes) or text.startswith(b"-"):
        fail("INFO failed: %r" % (text,))
    for line in text.decode(errors="replace").splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    fail("INFO has no %s field" % field)


def settle(pid, seconds=1.0):
    """VmRSS once it stops moving (the proxy may still be finishing its work)."""
    last = rss_kb(pid)
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.2)
        now = rss_kb(pid)
        if now == last:
            break
        last = now
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--scripts", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=4.0,
                    help="how long the scripts run (from when the last one is sent)")
    args = ap.parse_args()
    if args.scripts >= args.conns:
        fail("--scripts must be below --conns (one connection polls INFO)")

    # Our own descriptor limit, as far as allowed.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.conns + 64
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < want:
        fail("open files limit is %d (hard %s), %d needed: raise ulimit -n"
             % (soft, hard, want))

    addr = ("127.0.0.1", args.port)
    # Load the script on a connection of its own, gone before the first sample.
    s = socket.create_connection(addr, timeout=10)
    r = Reader(s)
    s.sendall(resp("SCRIPT", "LOAD", SCRIPT))
    sha = r.reply()
    if not isinstance(sha, bytes) or len(sha) != 40:
        fail("SCRIPT LOAD failed: %r" % (sha,))
    s.close()
    time.sleep(0.3)

    before = settle(args.pid)
    print("rss_before_kb,%d" % before)

    # 1. idle connections, each answering one PING. Batches keep the accept
    # queue short.
    conns = []
    t0 = time.time()
    batch = 200
    try:
        for start in range(0, args.conns, batch):
            fresh = []
            for _ in range(min(batch, args.conns - start)):
                c = socket.create_connection(addr, timeout=30)
                c.sendall(b"*1\r\n$4\r\nPING\r\n")
                fresh.append(Reader(c))
            for rd in fresh:
                rep = rd.reply()
                if rep != b"+PONG":
                    fail("connection %d answered PING with %r" % (len(conns), rep))
                conns.append(rd)
    except (OSError, ConnectionError) as e:
        fail("connection %d: %s" % (len(conns) + 1, e))
    connect_s = time.time() - t0
    poller = conns[-1]
    clients = info_field(poller, "connected_clients")
    if clients < args.conns:
        fail("INFO connected_clients is %d with %d connections open" % (clients, args.conns))
    idle = settle(args.pid)
    print("idle_connections,%d" % len(conns))
    print("idle_connect_seconds,%.2f" % connect_s)
    print("rss_idle_kb,%d" % idle)
    print("kib_per_idle_connection,%.3f" % ((idle - before) / len(conns)))

    # 2. scripts in flight, on the first --scripts of those connections.
    # TIME comes from the store through the proxy, as the script sees it.
    poller.sock.sendall(resp("TIME"))
    t = poller.reply()
    if not isinstance(t, list) or len(t) != 2:
        fail("TIME failed: %r" % (t,))
    now_us = int(t[0]) * 1000000 + int(t[1])
    runners = conns[:args.scripts]
    send_start = time.time()
    deadline_us = None
    # The deadline leaves --seconds after the last EVALSHA is sent; sending
    # 1 000 small commands takes a few milliseconds, so it is fixed up front
    # with a margin.
    deadline_us = now_us + int((args.seconds + 0.5) * 1e6)
    for i, rd in enumerate(runners):
        rd.sock.sendall(resp("EVALSHA", sha, 1, "bench:scale:%d" % i, deadline_us))
    send_s = time.time() - send_start

    samples = []  # (scripts_running, rss_kb)
    end = time.time() + args.seconds + 60
    seen_running = False
    while time.time() < end:
        running = info_field(poller, "scripts_running")
        samples.append((running, rss_kb(args.pid)))
        if running:
            seen_running = True
        elif seen_running:
            break
        time.sleep(0.1)
    else:
        fail("scripts still running %ds after their deadline" % 60)

    sel = selectors.DefaultSelector()
    for rd in runners:
        rd.sock.settimeout(None)
    pending = set(range(len(runners)))
    for i in pending:
        sel.register(runners[i].sock, selectors.EVENT_READ, i)
    stop = time.time() + 60
    errors = []
    while pending and time.time() < stop:
        for key, _ in sel.select(timeout=1):
            i = key.data
            rd = runners[i]
            try:
                rep = rd.reply()
            except (OSError, ConnectionError) as e:
                fail("script connection %d: %s" % (i, e))
            if not rep.startswith(b":"):
                errors.append(rep)
            pending.discard(i)
            sel.unregister(rd.sock)
    if pending:
        fail("%d scripts never replied" % len(pending))
    if errors:
        fail("%d scripts failed, e.g. %r" % (len(errors), errors[0][:200]))

    peak_running = max(s[0] for s in samples)
    # The sample with the most scripts running (the highest RSS among those).
    at_peak = max(s for s in samples if s[0] == peak_running)
    rss_peak = max(s[1] for s in samples)
    print("scripts_sent,%d" % len(runners))
    print("scripts_send_seconds,%.3f" % send_s)
    print("scripts_running_peak,%d" % peak_running)
    print("rss_scripts_kb,%d" % at_peak[1])
    print("rss_scripts_max_kb,%d" % rss_peak)
    if peak_running < 0.9 * args.scripts:
        fail("only %d of %d scripts were running at once" % (peak_running, args.scripts))
    print("kib_per_script,%.3f" % ((at_peak[1] - idle) / peak_running))

    for rd in conns:
        rd.sock.close()
    after = settle(args.pid, 2.0)
    print("rss_closed_kb,%d" % after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
