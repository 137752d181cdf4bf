#!/usr/bin/env python3
"""Generate proxy/core/command_table.c from a real redis-server 7.0.

Starts redis-server on a free loopback port (no persistence, in a temporary
directory), reads COMMAND and COMMAND DOCS, and writes the command table as C
data. The raw RESP2 bytes of every entry are kept so that the proxy can answer
COMMAND INFO and COMMAND DOCS byte for byte as redis-server does.

    tools/gen_command_table.py [--out proxy/core/command_table.c]
    tools/gen_command_table.py --update-test tests/unit/test_command_table.c

--update-test asks the server's COMMAND GETKEYSANDFLAGS about every command
line in GETKEYS_CASES below and rewrites the expectation table between the
BEGIN/END markers of the unit test. Output is sorted, so re-running against
the same server version gives the same files.

Standard library only.
"""

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")

# ---------------------------------------------------------------------------
# Mappings from what COMMAND reports to the C constants of command_table.h.

CMD_FLAGS = {
    "write": "CMD_WRITE",
    "readonly": "CMD_READONLY",
    "denyoom": "CMD_DENYOOM",
    "module": "CMD_MODULE",
    "admin": "CMD_ADMIN",
    "pubsub": "CMD_PUBSUB",
    "noscript": "CMD_NOSCRIPT",
    "blocking": "CMD_BLOCKING",
    "loading": "CMD_LOADING",
    "stale": "CMD_STALE",
    "skip_monitor": "CMD_SKIP_MONITOR",
    "skip_slowlog": "CMD_SKIP_SLOWLOG",
    "fast": "CMD_FAST",
    "no_auth": "CMD_NO_AUTH",
    "may_replicate": "CMD_MAY_REPLICATE",
    "sentinel": "CMD_SENTINEL",
    "only_sentinel": "CMD_ONLY_SENTINEL",
    "no_mandatory_keys": "CMD_NO_MANDATORY_KEYS",
    "protected": "CMD_PROTECTED",
    "no_async_loading": "CMD_NO_ASYNC_LOADING",
    "no_multi": "CMD_NO_MULTI",
    "movablekeys": "CMD_MOVABLE_KEYS",
    "allow_busy": "CMD_ALLOW_BUSY",
    "asking": "CMD_ASKING",
}

KSPEC_FLAGS = {
    "RO": "KSPEC_RO",
    "RW": "KSPEC_RW",
    "OW": "KSPEC_OW",
    "RM": "KSPEC_RM",
    "access": "KSPEC_ACCESS",
    "update": "KSPEC_UPDATE",
    "insert": "KSPEC_INSERT",
    "delete": "KSPEC_DELETE",
    "not_key": "KSPEC_NOT_KEY",
    "incomplete": "KSPEC_INCOMPLETE",
    "variable_flags": "KSPEC_VARIABLE_FLAGS",
}

KSPEC_BIT = {name: 1 << i for i, name in enumerate(
    ["RO", "RW", "OW", "RM", "access", "update", "insert", "delete",
     "not_key", "incomplete", "variable_flags"])}

BEGIN_TYPES = {"unknown": "KSPEC_BS_UNKNOWN", "index": "KSPEC_BS_INDEX",
               "keyword": "KSPEC_BS_KEYWORD"}
FIND_TYPES = {"unknown": "KSPEC_FK_UNKNOWN", "range": "KSPEC_FK_RANGE",
              "keynum": "KSPEC_FK_KEYNUM"}

# COMMAND does not report getkeys_proc. These are the commands that have one
# in Redis 7.0's command table (src/commands.c); Redis falls back to it when
# the key specs cannot answer (incomplete, invalid or variable flags).
GETKEYS_PROCS = {
    "zunion": "CMD_GETKEYS_NUMKEYS_1", "zinter": "CMD_GETKEYS_NUMKEYS_1",
    "zdiff": "CMD_GETKEYS_NUMKEYS_1", "zintercard": "CMD_GETKEYS_NUMKEYS_1",
    "sintercard": "CMD_GETKEYS_NUMKEYS_1", "lmpop": "CMD_GETKEYS_NUMKEYS_1",
    "zmpop": "CMD_GETKEYS_NUMKEYS_1",
    "zunionstore": "CMD_GETKEYS_STORE_NUMKEYS_2",
    "zinterstore": "CMD_GETKEYS_STORE_NUMKEYS_2",
    "zdiffstore": "CMD_GETKEYS_STORE_NUMKEYS_2",
    "eval": "CMD_GETKEYS_NUMKEYS_2", "evalsha": "CMD_GETKEYS_NUMKEYS_2",
    "eval_ro": "CMD_GETKEYS_NUMKEYS_2", "evalsha_ro": "CMD_GETKEYS_NUMKEYS_2",
    "fcall": "CMD_GETKEYS_NUMKEYS_2", "fcall_ro": "CMD_GETKEYS_NUMKEYS_2",
    "blmpop": "CMD_GETKEYS_NUMKEYS_2", "bzmpop": "CMD_GETKEYS_NUMKEYS_2",
    "sort": "CMD_GETKEYS_SORT", "sort_ro": "CMD_GETKEYS_SORT_RO",
    "migrate": "CMD_GETKEYS_MIGRATE",
    "georadius": "CMD_GETKEYS_GEORADIUS",
    "georadiusbymember": "CMD_GETKEYS_GEORADIUS",
    "xread": "CMD_GETKEYS_XREAD", "xreadgroup": "CMD_GETKEYS_XREAD",
    "set": "CMD_GETKEYS_SET", "bitfield": "CMD_GETKEYS_BITFIELD",
}

# ---------------------------------------------------------------------------
# RESP


class Incomplete(Exception):
    pass


class Node:
    """A parsed RESP value with the byte span it came from."""
    __slots__ = ("kind", "value", "start", "end")

    def __init__(self, kind, value, start, end):
        self.kind, self.value, self.start, self.end = kind, value, start, end

    def py(self):
        if self.kind == "*":
            return None if self.value is None else [n.py() for n in self.value]
        if self.kind in "$+":
            return None if self.value is None else self.value.decode("latin-1")
        if self.kind == "-":
            return RespError(self.value.decode("latin-1"))
        return self.value


class RespError(Exception):
    pass


def parse(buf, pos=0):
    """Parse one RESP2 value at buf[pos:]; returns a Node."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise Incomplete()
    kind = chr(buf[pos])
    line = buf[pos + 1:nl]
    nxt = nl + 2
    if kind in "+-":
        return Node(kind, line, pos, nxt)
    if kind == ":":
        return Node(kind, int(line), pos, nxt)
    if kind == "$":
        n = int(line)
        if n < 0:
            return Node(kind, None, pos, nxt)
        if len(buf) < nxt + n + 2:
            raise Incomplete()
        return Node(kind, bytes(buf[nxt:nxt + n]), pos, nxt + n + 2)
    if kind == "*":
        n = int(line)
        if n < 0:
            return Node(kind, None, pos, nxt)
        items = []
        for _ in range(n):
            item = parse(buf, nxt)
            items.append(item)
            nxt = item.end
        return Node(kind, items, pos, nxt)
    raise ValueError("unexpected RESP type byte %r at %d" % (kind, pos))


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = bytearray()

    def call(self, *args):
        """Send one command; return (Node, bytes of the whole reply)."""
        self.sock.sendall(encode(args))
        while True:
            # Only try a parse when the data could be complete.
            if self.buf.endswith(b"\r\n"):
                try:
                    node = parse(self.buf, 0)
                    raw = bytes(self.buf[:node.end])
                    del self.buf[:node.end]
                    return node, raw
                except Incomplete:
                    pass
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            self.buf += chunk

    def close(self):
        self.sock.close()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gen_command_table.")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.time() + 10
        while True:
            try:
                self.conn = Conn(self.port)
                node, _ = self.conn.call("PING")
                if node.kind == "+":
                    break
                self.conn.close()
            except (OSError, ConnectionError):
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                sys.exit("redis-server did not start")
            time.sleep(0.05)

    def stop(self):
        try:
            if getattr(self, "conn", None):
                self.conn.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Command table


def flat_map(node):
    """A RESP2 map (flat array of key, value) as a dict of name -> Node."""
    items = node.value
    return {items[i].value.decode(): items[i + 1] for i in range(0, len(items), 2)}


class Cmd:
    pass


def read_entry(node):
    """One entry of the COMMAND reply."""
    f = node.value
    c = Cmd()
    c.name = f[0].value.decode()
    c.arity = f[1].value
    c.flags = [x.value.decode() for x in f[2].value]
    c.first, c.last, c.step = f[3].value, f[4].value, f[5].value
    c.specs = []
    for spec in f[8].value:
        m = flat_map(spec)
        s = {"flags": [x.value.decode() for x in m["flags"].value]}
        bs = flat_map(m["begin_search"])
        s["bs"] = bs["type"].value.decode()
        bss = {k: v.value for k, v in flat_map(bs["spec"]).items()}
        fk = flat_map(m["find_keys"])
        s["fk"] = fk["type"].value.decode()
        fks = {k: v.value for k, v in flat_map(fk["spec"]).items()}
        s["bss"], s["fks"] = bss, fks
        c.specs.append(s)
    c.subs = sorted((read_entry(x) for x in f[9].value), key=lambda s: s.name)
    c.info = None  # set by the caller from the raw reply
    c.raw_span = (node.start, node.end)
    c.sub_nodes = {x.value[0].value.decode(): x for x in f[9].value}
    c.docs = None
    return c


def c_string(data, indent="        "):
    """A C string literal (split over lines) for arbitrary bytes."""
    pieces, cur = [], []
    for b in data:
        ch = chr(b)
        if ch == "\\":
            cur.append("\\\\")
        elif ch == '"':
            cur.append('\\"')
        elif ch == "?":
            cur.append("\\?")  # never form a trigraph
        elif ch == "\r":
            cur.append("\\r")
        elif ch == "\n":
            cur.append("\\n")
        elif ch == "\t":
            cur.append("\\t")
        elif 32 <= b < 127:
            cur.append(ch)
        else:
            cur.append("\\%03o" % b)  # 3-digit octal never swallows what follows
        if ch == "\n" and sum(len(p) for p in cur) > 60:
            pieces.append("".join(cur))
            cur = []
    if cur or not pieces:
        pieces.append("".join(cur))
    return ("\n" + indent).join('"%s"' % p for p in pieces)


def ident(name):
    out = "".join(ch if ch.isalnum() else "_" for ch in name)
    return out


def spec_c(s):
    fl = []
    for f in s["flags"]:
        if f not in KSPEC_FLAGS:
            sys.exit("COMMAND reports key spec flag %r: add a KSPEC_ bit for it" % f)
        fl.append(KSPEC_FLAGS[f])
    if s["bs"] not in BEGIN_TYPES or s["fk"] not in FIND_TYPES:
        sys.exit("unknown key spec type %r/%r" % (s["bs"], s["fk"]))
    parts = [".flags = %s" % (" | ".join(fl) or "0"),
             ".begin_type = %s" % BEGIN_TYPES[s["bs"]]]
    bss, fks = s["bss"], s["fks"]
    if s["bs"] == "index":
        parts.append(".index = %d" % bss["index"])
    elif s["bs"] == "keyword":
        parts.append('.keyword = "%s"' % bss["keyword"].decode())
        parts.append(".startfrom = %d" % bss["startfrom"])
    parts.append(".find_type = %s" % FIND_TYPES[s["fk"]])
    if s["fk"] == "range":
        parts += [".lastkey = %d" % fks["lastkey"], ".keystep = %d" % fks["keystep"],
                  ".limit = %d" % fks["limit"]]
    elif s["fk"] == "keynum":
        parts += [".keynumidx = %d" % fks["keynumidx"],
                  ".firstkey = %d" % fks["firstkey"],
                  ".keynumstep = %d" % fks["keystep"]]
    return "{" + ", ".join(parts) + "}"


def def_c(c, out_specs, indent="    "):
    """command_def initializer; key spec arrays are appended to out_specs."""
    fl = []
    for f in c.flags:
        if f not in CMD_FLAGS:
            sys.exit("COMMAND reports flag %r: add a CMD_ bit for it" % f)
        fl.append(CMD_FLAGS[f])
    lines = ['.name = "%s"' % c.name, ".arity = %d" % c.arity,
             ".flags = %s" % (" | ".join(fl) or "0"),
             ".first_key = %d, .last_key = %d, .key_step = %d" % (c.first, c.last, c.step)]
    if c.specs:
        arr = "ks_" + ident(c.name)
        out_specs.append("static const command_key_spec %s[] = {\n%s\n};\n" % (
            arr, ",\n".join("    " + spec_c(s) for s in c.specs)))
        lines.append(".key_specs = %s, .key_spec_count = %d" % (arr, len(c.specs)))
    if c.subs:
        lines.append(".subcommands = sub_%s, .subcommand_count = %d" % (ident(c.name), len(c.subs)))
    proc = GETKEYS_PROCS.get(c.name)
    if proc:
        lines.append(".getkeys = %s" % proc)
    inner = indent + "    "
    lines.append(".info_len = %d, .info_resp =\n%s%s" % (
        len(c.info), inner + "    ", c_string(c.info, inner + "    ")))
    lines.append(".docs_len = %d, .docs_resp =\n%s%s" % (
        len(c.docs), inner + "    ", c_string(c.docs, inner + "    ")))
    return indent + "{\n" + "".join(inner + l + ",\n" for l in lines) + indent + "}"


def fetch(server):
    conn = server.conn
    ver_node, _ = conn.call("INFO", "server")
    version = "?"
    for line in ver_node.value.decode().splitlines():
        if line.startswith("redis_version:"):
            version = line.split(":", 1)[1]
    if not version.startswith("7.0."):
        print("warning: redis-server %s is not 7.0; the table follows the server" % version,
              file=sys.stderr)
    cmd_node, cmd_raw = conn.call("COMMAND")
    docs_node, docs_raw = conn.call("COMMAND", "DOCS")
    if cmd_node.kind != "*" or docs_node.kind != "*":
        sys.exit("unexpected COMMAND reply")

    # Redis lists a container's subcommands in hash table order, which
    # changes from run to run; sort them so that the output is stable (any
    # order is a reply redis-server could have sent).
    def attach_info(c, node, raw):
        for s in c.subs:
            attach_info(s, c.sub_nodes[s.name], raw)
        subs = node.value[9]
        c.info = raw[node.start:subs.start] + b"*%d\r\n" % len(c.subs) + \
            b"".join(s.info for s in c.subs)
        assert subs.end == node.end and len(c.info) == node.end - node.start

    cmds = []
    for node in cmd_node.value:
        c = read_entry(node)
        attach_info(c, node, cmd_raw)
        cmds.append(c)
    cmds.sort(key=lambda c: c.name)

    # COMMAND DOCS: name, map, name, map ...; containers nest their
    # subcommands in the map's "subcommands" field, same layout.
    def docs_index(items, raw):
        """name -> raw name bulk + docs map, subcommands sorted by name."""
        idx = {}
        for i in range(0, len(items), 2):
            name = items[i].value.decode()
            val = items[i + 1]
            m = flat_map(val)
            if "subcommands" in m:
                subs = m["subcommands"]
                sub_idx = docs_index(subs.value, raw)
                idx.update(sub_idx)
                entry = raw[items[i].start:subs.start] + b"*%d\r\n" % len(subs.value) + \
                    b"".join(sub_idx[k] for k in sorted(sub_idx)) + raw[subs.end:val.end]
                assert len(entry) == val.end - items[i].start
            else:
                entry = raw[items[i].start:val.end]
            idx[name] = entry
        return idx

    docs = docs_index(docs_node.value, docs_raw)

    def attach_docs(c):
        if c.name not in docs:
            sys.exit("no COMMAND DOCS entry for %s" % c.name)
        c.docs = docs[c.name]
        for s in c.subs:
            attach_docs(s)

    for c in cmds:
        attach_docs(c)
        for n in [c.name] + [s.name for s in c.subs]:
            if n != n.lower():
                sys.exit("command name %r is not lowercase" % n)
    return version, cmds


def generate(version, cmds):
    specs, subs, top = [], [], []
    for c in cmds:
        if c.subs:
            body = ",\n".join(def_c(s, specs) for s in c.subs)
            subs.append("static const command_def sub_%s[] = {\n%s\n};\n" % (ident(c.name), body))
        top.append(def_c(c, specs))
    names = [ident(c.name) for c in cmds] + [ident(s.name) for c in cmds for s in c.subs]
    if len(set(names)) != len(names):
        sys.exit("identifier collision")
    nsub = sum(len(c.subs) for c in cmds)
    out = []
    out.append("/* Generated by tools/gen_command_table.py from redis-server %s\n"
               " * (COMMAND and COMMAND DOCS): %d commands, %d subcommands.\n"
               " * Do not edit; re-run the generator instead. */\n" % (version, len(cmds), nsub))
    out.append('#include "proxy/core/command_table.h"\n\n#include <stddef.h>\n\n')
    out.append("/* Key specs */\n\n")
    out.append("\n".join(specs))
    out.append("\n/* Subcommands, sorted by name */\n\n")
    out.append("\n".join(subs))
    out.append("\n/* Top-level commands, sorted by name (command_lookup relies on it) */\n\n")
    out.append("const command_def command_table[] = {\n%s\n};\n\n" % ",\n".join(top))
    out.append("const int command_table_count = (int)(sizeof(command_table) / sizeof(command_table[0]));\n")
    return "".join(out)


# ---------------------------------------------------------------------------
# COMMAND GETKEYS expectations for the unit test.
#
# Each case is a command line (shlex syntax), optionally with an override of
# the expected command_get_keys() result and the reason. Key arguments are
# unique within their line so the key names GETKEYSANDFLAGS returns map back to
# argv indexes unambiguously.

GETKEYS_CASES = [
    # strings
    "GET k1", "SET k1 v", "SET k1 v GET", "SET k1 v EX 10 get", "SET k1 v NX",
    "SETNX k1 v", "SETEX k1 10 v", "PSETEX k1 100 v", "GETSET k1 v", "GETDEL k1",
    "GETEX k1 EX 10", "MGET k1 k2 k3", "MSET k1 v1 k2 v2", "MSETNX k1 v1 k2 v2 k3 v3",
    "APPEND k1 v", "STRLEN k1", "INCR k1", "DECR k1", "INCRBY k1 2", "DECRBY k1 2",
    "INCRBYFLOAT k1 1.5", "GETRANGE k1 0 1", "SETRANGE k1 0 v", "SUBSTR k1 0 1",
    "LCS k1 k2", "LCS k1 k2 LEN",
    # bits
    "SETBIT k1 7 1", "GETBIT k1 7", "BITCOUNT k1", "BITPOS k1 1",
    "BITOP AND dst k1 k2", "BITOP NOT dst k1",
    "BITFIELD k1 GET u8 0", "BITFIELD k1 SET u8 0 1", "BITFIELD k1 INCRBY u8 0 1",
    "BITFIELD k1 OVERFLOW SAT GET u8 0", "BITFIELD k1 GET u8", "BITFIELD k1",
    "BITFIELD_RO k1 GET u8 0",
    # generic keyspace
    "DEL k1", "DEL k1 k2 k3", "UNLINK k1 k2", "EXISTS k1 k2", "TOUCH k1 k2",
    "TYPE k1", "RENAME k1 k2", "RENAMENX k1 k2", "COPY k1 k2", "COPY k1 k2 DB 1 REPLACE",
    "MOVE k1 1", "EXPIRE k1 10", "EXPIRE k1 10 NX", "PEXPIRE k1 10", "EXPIREAT k1 10",
    "PEXPIREAT k1 10", "EXPIRETIME k1", "PEXPIRETIME k1", "TTL k1", "PTTL k1",
    "PERSIST k1", "DUMP k1", "RESTORE k1 0 payload", "RESTORE-ASKING k1 0 payload",
    "OBJECT ENCODING k1", "OBJECT FREQ k1", "OBJECT IDLETIME k1", "OBJECT REFCOUNT k1",
    "MEMORY USAGE k1", "MEMORY USAGE k1 SAMPLES 5",
    "SORT k1", "SORT k1 STORE dst", "SORT k1 BY w_* GET o_* STORE dst",
    "SORT k1 LIMIT 0 1 STORE dst", "SORT k1 STORE d1 STORE d2", "SORT k1 STORE",
    "SORT k1 LIMIT store d1", "SORT_RO k1", "SORT_RO k1 BY w_* GET o_*",
    "MIGRATE h 1 k1 0 1000", "MIGRATE h 1 '' 0 1000 KEYS k1 k2",
    "MIGRATE h 1 '' 0 1000 COPY REPLACE KEYS k1 k2 k3",
    "MIGRATE h 1 '' 0 1000 AUTH pw KEYS k1", "MIGRATE h 1 '' 0 1000 AUTH2 u pw KEYS k1",
    "MIGRATE h 1 k1 0 1000 KEYS k2", "MIGRATE h 1 '' 0 1000 AUTH keys KEYS k1",
    "WATCH k1 k2",
    # lists
    "LPUSH k1 a b", "RPUSH k1 a", "LPUSHX k1 a", "RPUSHX k1 a", "LPOP k1", "RPOP k1 2",
    "LLEN k1", "LRANGE k1 0 -1", "LINDEX k1 0", "LSET k1 0 v", "LREM k1 0 v",
    "LTRIM k1 0 1", "LINSERT k1 BEFORE a b", "LPOS k1 a", "RPOPLPUSH k1 k2",
    "LMOVE k1 k2 LEFT RIGHT", "BLMOVE k1 k2 LEFT RIGHT 0", "BRPOPLPUSH k1 k2 0",
    "BLPOP k1 k2 0", "BRPOP k1 0",
    "LMPOP 2 k1 k2 LEFT", "LMPOP 1 k1 RIGHT COUNT 2", "LMPOP 0 k1 LEFT", "LMPOP 3 k1 LEFT",
    "LMPOP -1 k1 LEFT", "LMPOP x k1 LEFT",
    "BLMPOP 0 2 k1 k2 LEFT", "BLMPOP 0 1 k1 LEFT COUNT 2", "BLMPOP 0 0 k1 LEFT",
    "BLMPOP 0 5 k1 LEFT",
    # hashes
    "HSET k1 f v", "HSETNX k1 f v", "HMSET k1 f v", "HGET k1 f", "HMGET k1 f g",
    "HDEL k1 f", "HLEN k1", "HSTRLEN k1 f", "HEXISTS k1 f", "HINCRBY k1 f 1",
    "HINCRBYFLOAT k1 f 1", "HKEYS k1", "HVALS k1", "HGETALL k1", "HSCAN k1 0",
    "HRANDFIELD k1",
    # sets
    "SADD k1 a", "SREM k1 a", "SMEMBERS k1", "SISMEMBER k1 a", "SMISMEMBER k1 a b",
    "SCARD k1", "SPOP k1", "SRANDMEMBER k1 2", "SMOVE k1 k2 a", "SINTER k1 k2",
    "SUNION k1 k2 k3", "SDIFF k1 k2", "SINTERSTORE dst k1 k2", "SUNIONSTORE dst k1",
    "SDIFFSTORE dst k1 k2", "SSCAN k1 0",
    "SINTERCARD 2 k1 k2", "SINTERCARD 2 k1 k2 LIMIT 1", "SINTERCARD 0 k1",
    "SINTERCARD 3 k1 k2",
    # sorted sets
    "ZADD k1 1 a", "ZINCRBY k1 1 a", "ZREM k1 a", "ZCARD k1", "ZCOUNT k1 0 1",
    "ZSCORE k1 a", "ZMSCORE k1 a b", "ZRANK k1 a", "ZREVRANK k1 a", "ZRANGE k1 0 -1",
    "ZRANGESTORE dst k1 0 -1", "ZREVRANGE k1 0 1", "ZRANGEBYSCORE k1 0 1",
    "ZREVRANGEBYSCORE k1 1 0", "ZRANGEBYLEX k1 - +", "ZREVRANGEBYLEX k1 + -",
    "ZLEXCOUNT k1 - +", "ZREMRANGEBYRANK k1 0 1", "ZREMRANGEBYSCORE k1 0 1",
    "ZREMRANGEBYLEX k1 - +", "ZPOPMIN k1", "ZPOPMAX k1 2", "BZPOPMIN k1 k2 0",
    "BZPOPMAX k1 0", "ZRANDMEMBER k1", "ZSCAN k1 0",
    "ZUNION 2 k1 k2", "ZUNION 2 k1 k2 WEIGHTS 1 2", "ZUNION 0 k1", "ZUNION 3 k1 k2",
    "ZUNION -1 k1", "ZUNION 1x k1",
    "ZINTER 2 k1 k2 WITHSCORES", "ZDIFF 2 k1 k2", "ZDIFF 3 k1 k2 k3",
    "ZUNIONSTORE dst 2 k1 k2", "ZUNIONSTORE dst 1 k1 AGGREGATE MAX",
    "ZINTERSTORE dst 2 k1 k2", "ZDIFFSTORE dst 2 k1 k2", "ZUNIONSTORE dst 0 k1",
    "ZUNIONSTORE dst 5 k1", "ZINTERSTORE dst 1x k1",
    "ZINTERCARD 2 k1 k2", "ZINTERCARD 1 k1 LIMIT 5", "ZINTERCARD 4 k1 k2",
    "ZMPOP 2 k1 k2 MIN", "ZMPOP 1 k1 MAX COUNT 2", "ZMPOP 0 k1 MIN",
    "BZMPOP 0 2 k1 k2 MIN", "BZMPOP 0 1 k1 MAX", "BZMPOP 0 3 k1 MIN",
    # hyperloglog
    "PFADD k1 a", "PFCOUNT k1 k2", "PFMERGE dst k1 k2", "PFDEBUG GETREG k1",
    # geo
    "GEOADD k1 1 2 m", "GEODIST k1 a b", "GEOHASH k1 a", "GEOPOS k1 a",
    "GEORADIUS k1 1 2 3 km", "GEORADIUS k1 1 2 3 km STORE dst",
    "GEORADIUS k1 1 2 3 km STOREDIST dst", "GEORADIUS k1 1 2 3 km STORE d1 STOREDIST d2",
    "GEORADIUS k1 1 2 3 km WITHDIST COUNT 1 STORE dst", "GEORADIUS k1 1 2 3 km STORE",
    "GEORADIUS_RO k1 1 2 3 km", "GEORADIUSBYMEMBER k1 m 3 km",
    "GEORADIUSBYMEMBER k1 m 3 km STORE dst", "GEORADIUSBYMEMBER_RO k1 m 3 km",
    "GEOSEARCH k1 FROMMEMBER m BYRADIUS 1 km", "GEOSEARCHSTORE dst k1 FROMMEMBER m BYRADIUS 1 km",
    # streams
    "XADD k1 * f v", "XLEN k1", "XRANGE k1 - +", "XREVRANGE k1 + -", "XDEL k1 1-1",
    "XTRIM k1 MAXLEN 10", "XACK k1 g 1-1", "XPENDING k1 g", "XCLAIM k1 g c 0 1-1",
    "XAUTOCLAIM k1 g c 0 0", "XSETID k1 1-1", "XINFO STREAM k1", "XINFO GROUPS k1",
    "XINFO CONSUMERS k1 g", "XGROUP CREATE k1 g $", "XGROUP DESTROY k1 g",
    "XGROUP CREATECONSUMER k1 g c", "XGROUP DELCONSUMER k1 g c", "XGROUP SETID k1 g $",
    "XREAD STREAMS k1 0", "XREAD COUNT 1 STREAMS k1 k2 0 0", "XREAD BLOCK 0 STREAMS k1 0",
    "XREAD COUNT 1 BLOCK 1 STREAMS streams 0", "XREAD STREAMS k1 k2 0",
    "XREAD COUNT 1 a b", "XREAD BLOCK 1 STREAMS k1",
    "XREADGROUP GROUP g c STREAMS k1 0", "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS k1 k2 0 0",
    "XREADGROUP GROUP streams c STREAMS k1 >",
    # scripting and functions
    "EVAL s 0", "EVAL s 1 k1", "EVAL s 2 k1 k2 a1", "EVAL s 1 k1 a1 a2",
    "EVALSHA sha 1 k1", "EVAL_RO s 1 k1", "EVALSHA_RO sha 2 k1 k2",
    "FCALL f 0", "FCALL f 1 k1 a1", "FCALL_RO f 2 k1 k2",
    ("EVAL s 3 k1", -1, "numkeys larger than the arguments: EVAL fails; GETKEYS answers []"),
    ("EVAL s -1", -1, "negative numkeys: EVAL fails; GETKEYS answers []"),
    ("FCALL f 2 k1", -1, "numkeys larger than the arguments: FCALL fails; GETKEYS answers []"),
    "EVAL s +1 k1", "EVAL s ' 1' k1",
    # misc with keys
    "PUBLISH ch msg", "SPUBLISH ch msg", "SSUBSCRIBE ch1 ch2", "SUNSUBSCRIBE ch",
    "DEBUG OBJECT k1",
    # no keys
    # (GETKEYS needs at least one argument after the name)
    "PING x", "ECHO x", "INFO server", "FLUSHALL ASYNC", "KEYS *", "SCAN 0",
    "CONFIG GET maxmemory", "CLIENT LIST", "SCRIPT FLUSH", "SUBSCRIBE ch", "SELECT 1",
    "SWAPDB 0 1", "WAIT 0 0", "OBJECT HELP x",
]


def case_line(case):
    if isinstance(case, tuple):
        return case[0], case[1], case[2]
    return case, None, None


def getkeys_expectations(server):
    rows = []
    for case in GETKEYS_CASES:
        line, override, why = case_line(case)
        argv = shlex.split(line)
        node, _ = server.conn.call("COMMAND", "GETKEYSANDFLAGS", *argv)
        if node.kind == "-":
            msg = node.value.decode()
            if "no key arguments" in msg:
                keys = 0
            elif "Invalid arguments specified" in msg:
                keys = -1
            else:
                sys.exit("%s: unexpected error %s" % (line, msg))
            oracle = msg
        else:
            keys = []
            for k in node.value:
                name = k.value[0].value
                flags = 0
                for f in k.value[1].value:
                    flags |= KSPEC_BIT[f.value.decode()]
                where = [i for i, a in enumerate(argv) if i > 0 and a.encode() == name]
                if len(where) != 1:
                    sys.exit("%s: key %r is ambiguous in the line" % (line, name))
                keys.append((where[0], flags))
            oracle = " ".join("%d:%#x" % k for k in keys) or "[]"
            if not keys:
                keys = 0
        rows.append((line, argv, keys, override, why, oracle))
    return rows


def c_quote(s):
    return c_string(s.encode(), "")


def render_cases(rows):
    out = []
    for line, argv, keys, override, why, oracle in rows:
        expect = override if override is not None else keys
        if isinstance(expect, list):
            idx = ", ".join(str(i) for i, _ in expect)
            fl = ", ".join("%#x" % f for _, f in expect)
            res = "%d, {%s}, {%s}" % (len(expect), idx, fl)
        else:
            res = "%d, {0}, {0}" % expect
        comment = ""
        if override is not None:
            comment = " /* %s (server: %s) */" % (why, oracle)
        out.append("    {%s, %d, {%s}, %s},%s" % (
            c_quote(line), len(argv), ", ".join(c_quote(a) for a in argv), res, comment))
    return "\n".join(out) + "\n"


BEGIN_MARK = "/* BEGIN GETKEYS CASES (tools/gen_command_table.py --update-test) */\n"
END_MARK = "/* END GETKEYS CASES */\n"


def update_test(path, rows):
    with open(path) as f:
        text = f.read()
    a = text.index(BEGIN_MARK) + len(BEGIN_MARK)
    b = text.index(END_MARK, a)
    text = text[:a] + render_cases(rows) + text[b:]
    with open(path, "w") as f:
        f.write(text)


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "proxy", "command_table.c"))
    ap.add_argument("--update-test", metavar="TEST_C",
                    help="rewrite the GETKEYS expectation table of this unit test")
    args = ap.parse_args()

    server = Server()
    try:
        if args.update_test:
            update_test(args.update_test, getkeys_expectations(server))
            print("updated %s (%d cases)" % (args.update_test, len(GETKEYS_CASES)))
            return
        version, cmds = fetch(server)
    finally:
        server.stop()
    text = generate(version, cmds)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print("wrote %s: %d commands, %d subcommands, %d bytes" % (
        args.out, len(cmds), sum(len(c.subs) for c in cmds), len(text)))


if __name__ == "__main__":
    main()
