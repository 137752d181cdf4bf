#!/usr/bin/env python3
"""Generate proxy/core/resp3_shapes.c: the RESP3 shape of each command's reply.

Reads the reply_schema of every command from the Redis commands JSON archive
(one JSON file per command), translates each schema into a shape descriptor
(the language is described in proxy/core/resp3.h), then applies OVERRIDES
where redis-server 7.0.15 answers differently from the 7.2 schema, and RULES
for shapes that depend on the arguments. Only commands whose shape is not
the generic one get an entry; the table is sorted by name.

    tools/gen_resp3_shapes.py [--archive PATH] [--out proxy/core/resp3_shapes.c]

The archive defaults to $STORES_SRC/redis-7.2.6-commands-json.tar.gz
(STORES_SRC: ../shared/stores from the repository root). Standard library only.
"""

import argparse
import glob
import json
import os
import re
import tarfile
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ARCHIVE = "redis-7.2.6-commands-json.tar.gz"

# ---------------------------------------------------------------------------
# Where 7.0.15 differs from the 7.2 schema, or the schema cannot say
# (checked against redis-server 7.0.15 with HELLO 3; CLUSTER on a one-node
# cluster).

GENERIC = "."

# A COMMAND INFO entry: flags, ACL categories, tips and key specs are sets,
# each key spec a map whose begin_search/find_keys specs are maps; then the
# subcommands, each an entry itself (none: an empty set).
CMDINFO = ("(..~....~.~.~{flags:~.,begin_search:{spec:%..},find_keys:{spec:%..}}"
           "?*@#cmdinfo;)")
# A COMMAND DOCS entry: a map, its flags and history sets; arguments
# (nested) are maps; subcommands a map of name to entry.
CMDDOCS = "{doc_flags:~.,history:~.,arguments:*@#cmdarg;,subcommands:%.@#cmddocs;}"
CMDARG = "{flags:~.,arguments:*@#cmdarg;}"

NAMED = {
    "#cmdinfo": CMDINFO,
    "#cmddocs": CMDDOCS,
    "#cmdarg": CMDARG,
}

OVERRIDES = {
    # 7.0 sends sorted-set ranges as arrays (the schema's uniqueItems is
    # about their content); WITHSCORES forms are decided by RULES.
    "zrange": GENERIC, "zrangebyscore": GENERIC, "zrevrange": GENERIC,
    "zrevrangebyscore": GENERIC, "zrangebylex": GENERIC, "zrevrangebylex": GENERIC,
    "zunion": GENERIC, "zinter": GENERIC, "zdiff": GENERIC,
    "zrandmember": GENERIC, "hrandfield": GENERIC,
    # SRANDMEMBER with a count is an array in 7.0, SPOP with a count a set.
    "srandmember": GENERIC, "spop": GENERIC,
    # Without a count, a flat [member, score]; with one, RULES.
    "zpopmin": "(.d)", "zpopmax": "(.d)",
    "bzpopmin": "(..d)", "bzpopmax": "(..d)",
    # RESP2 already nests ZMPOP's pairs.
    "zmpop": "(.*(.d))", "bzmpop": "(.*(.d))",
    "zincrby": "d", "zadd": "d", "zscore": "d", "zmscore": "*d",
    # 7.0 keeps GEODIST and WITHDIST as bulk strings; coordinates are doubles.
    "geodist": GENERIC, "geopos": "**d",
    "georadius": GENERIC, "georadius_ro": GENERIC, "georadiusbymember": GENERIC,
    "georadiusbymember_ro": GENERIC, "geosearch": GENERIC,
    # RESP2's [[stream, entries], ...] becomes the map stream -> entries.
    "xread": "m..", "xreadgroup": "m..",
    "xinfo|stream": "{}",
    "xinfo|groups": "*{}", "xinfo|consumers": "*{}",
    "command|info": "*@#cmdinfo;",
    "command|docs": "%.@#cmddocs;",
    "command|getkeysandflags": "*(.~.)",
    "command|list": GENERIC, "command|getkeys": GENERIC,
    "config|get": "%..",
    "hgetall": "%..",
    "function|list": "*{functions:*{flags:~.}}",
    "function|stats": "{running_script:{},engines:%.{}}",
    "latency|histogram": "%.{histogram_usec:%..}",
    "client|trackinginfo": "{flags:~.}",
    "acl|getuser": "{flags:~.,selectors:*{}}",
    "lcs": GENERIC,
    "hello": "{modules:*{}}",
    # Arrays in 7.0 where the 7.2 schema says set (uniqueItems), or a
    # 7.2-only form (ZRANK ... WITHSCORE).
    "hkeys": GENERIC, "lpos": GENERIC, "slowlog|get": GENERIC, "xclaim": GENERIC,
    "xrange": GENERIC, "xrevrange": GENERIC, "xautoclaim": GENERIC,
    "zrank": GENERIC, "zrevrank": GENERIC, "pubsub|channels": GENERIC,
    "pubsub|shardchannels": GENERIC,
    # Text replies sent as verbatim strings (format txt).
    "info": "v", "client|info": "v", "client|list": "v", "latency|doctor": "v",
    "latency|graph": "v", "memory|doctor": "v", "memory|malloc-stats": "v", "lolwut": "v",
    "cluster|info": "v", "cluster|nodes": "v",
    # Each slot range lists its master and then every replica, all alike.
    "cluster|slots": "*(..(...{})+)",
}

# name -> [(kind, from, keyword, descriptor)]; the first that holds wins.
# KEYWORD: some argv[i] with i >= from equals the keyword (any case);
# NUMKEYS: the same, searching after the keys counted by argv[from];
# ARGC: argc >= from.
WITHSCORES = "P.d"
RULES = {
    "zrange": [("KEYWORD", 4, "withscores", WITHSCORES)],
    "zrevrange": [("KEYWORD", 4, "withscores", WITHSCORES)],
    "zrangebyscore": [("KEYWORD", 4, "withscores", WITHSCORES)],
    "zrevrangebyscore": [("KEYWORD", 4, "withscores", WITHSCORES)],
    "zunion": [("NUMKEYS", 1, "withscores", WITHSCORES)],
    "zinter": [("NUMKEYS", 1, "withscores", WITHSCORES)],
    "zdiff": [("NUMKEYS", 1, "withscores", WITHSCORES)],
    "zrandmember": [("KEYWORD", 3, "withscores", WITHSCORES)],
    "hrandfield": [("KEYWORD", 3, "withvalues", "P..")],
    "zpopmin": [("ARGC", 3, None, WITHSCORES)],
    "zpopmax": [("ARGC", 3, None, WITHSCORES)],
    "spop": [("ARGC", 3, None, "~.")],
    "georadius": [("KEYWORD", 6, "withcoord", "*<*d")],
    "georadius_ro": [("KEYWORD", 6, "withcoord", "*<*d")],
    "georadiusbymember": [("KEYWORD", 5, "withcoord", "*<*d")],
    "georadiusbymember_ro": [("KEYWORD", 5, "withcoord", "*<*d")],
    "geosearch": [("KEYWORD", 2, "withcoord", "*<*d")],
    "xinfo|stream": [("KEYWORD", 3, "full",
                      "{groups:*{pending:.,consumers:*{}},entries:.}")],
    "lcs": [("KEYWORD", 3, "idx", "{}")],
}

# ---------------------------------------------------------------------------
# Schema -> descriptor


def simplify(d):
    if d in ("*.", "()"):
        return GENERIC
    m = re.fullmatch(r"\((\.*)\)", d)
    if m:
        return GENERIC
    return d


def translate(s):
    if not isinstance(s, dict):
        return GENERIC
    for alt in ("anyOf", "oneOf"):
        if alt in s:
            shapes = {translate(a) for a in s[alt]} - {GENERIC}
            # Several distinct shapes: the arguments decide (RULES).
            return shapes.pop() if len(shapes) == 1 else GENERIC
    t = s.get("type")
    if t == "number":
        return "d"
    if t == "array":
        items = s.get("items")
        if isinstance(items, list):
            parts = [translate(i) for i in items]
            while parts and parts[-1] == GENERIC:
                parts.pop()
            d = simplify("(" + "".join(parts) + ")")
        else:
            d = simplify("*" + translate(items))
        if s.get("uniqueItems"):
            d = "~" + (d[1:] if d.startswith("*") else GENERIC)
        return d
    if t == "object":
        fields = []
        for k, v in sorted(s.get("properties", {}).items()):
            d = translate(v)
            if d != GENERIC:
                fields.append("%s:%s" % (k, d))
        pat = dict(s.get("patternProperties") or {})
        addl = s.get("additionalProperties")
        extra = None
        if isinstance(addl, dict):
            extra = translate(addl)
        elif "^.*$" in pat:
            extra = translate(pat.pop("^.*$"))
        # A prefix pattern ("^db.") becomes a key ending in '*'.
        for p, v in sorted(pat.items()):
            d = translate(v)
            if d != GENERIC:
                fields.append("%s*:%s" % (p.lstrip("^").rstrip("."), d))
        if extra is not None and not fields:
            return "%." + extra
        return "{" + ",".join(fields) + "}"
    return GENERIC


def load_schemas(archive):
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp)
        for path in glob.glob(os.path.join(tmp, "**", "*.json"), recursive=True):
            with open(path) as f:
                doc = json.load(f)
            for name, cmd in doc.items():
                full = name.lower()
                if cmd.get("container"):
                    full = cmd["container"].lower() + "|" + full
                out[full] = cmd.get("reply_schema")
    return out


def known_commands():
    """The commands of Redis 7.0 (proxy/core/command_table.c): 7.2's others
    (WAITAOF, SENTINEL ...) get no entry."""
    with open(os.path.join(ROOT, "proxy", "core", "command_table.c")) as f:
        return set(re.findall(r'\.name = "([^"]+)"', f.read()))


def c_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def generate(archive):
    schemas = load_schemas(archive)
    shapes = {}
    for name, schema in schemas.items():
        if schema is None:
            continue
        d = translate(schema)
        if d != GENERIC:
            shapes[name] = d
    shapes.update(OVERRIDES)
    known = known_commands()
    shapes = {n: d for n, d in shapes.items() if n in known}
    shapes.update(NAMED)
    names = sorted(n for n in set(shapes) | set(RULES) if shapes.get(n, GENERIC) != GENERIC or n in RULES)

    lines = ["/* Generated by tools/gen_resp3_shapes.py from the reply schemas of",
             " * %s, with redis-server 7.0.15's differences; do not" % ARCHIVE,
             " * edit. */",
             '#include "proxy/core/resp3.h"',
             "",
             "#include <stddef.h>",
             ""]
    ident = lambda n: re.sub(r"[^a-z0-9]", "_", n)
    kinds = {"KEYWORD": "RESP3_RULE_KEYWORD", "NUMKEYS": "RESP3_RULE_KEYWORD_NUMKEYS",
             "ARGC": "RESP3_RULE_ARGC"}
    for n in names:
        rules = RULES.get(n)
        if not rules:
            continue
        for i, (kind, frm, kw, d) in enumerate(rules):
            lines.append("static const resp3_shape v_%s_%d = {%s, %s, NULL, 0};"
                         % (ident(n), i, c_str(n), c_str(d)))
        lines.append("static const resp3_rule r_%s[] = {" % ident(n))
        for i, (kind, frm, kw, d) in enumerate(rules):
            lines.append("    {%s, %d, %s, &v_%s_%d}," % (kinds[kind], frm, c_str(kw or ""), ident(n), i))
        lines.append("};")
    lines.append("")
    lines.append("const resp3_shape resp3_shapes[] = {")
    for n in names:
        rules = RULES.get(n)
        lines.append("    {%s, %s, %s, %d}," % (c_str(n), c_str(shapes.get(n, GENERIC)),
                                               "r_" + ident(n) if rules else "NULL",
                                               len(rules) if rules else 0))
    lines.append("};")
    lines.append("const int resp3_shapes_count = (int)(sizeof(resp3_shapes) / sizeof(resp3_shapes[0]));")
    lines.append('const resp3_shape resp3_generic_shape = {"", ".", NULL, 0};')
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    stores = os.environ.get("STORES_SRC") or "../shared/stores"
    ap.add_argument("--archive", default=os.path.join(ROOT, stores, ARCHIVE))
    ap.add_argument("--out", default=os.path.join(ROOT, "proxy", "core", "resp3_shapes.c"))
    a = ap.parse_args()
    text = generate(a.archive)
    with open(a.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
