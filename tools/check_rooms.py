#!/usr/bin/env python3
"""Checks the rooms of the source tree against what the object files use.

Each .c file belongs to a room (its folder). Rooms are layered: a file may
call functions and use data of its own room and of lower rooms only, and no
files may use each other in a circle (two ways or round several files),
except the few pairs listed in ONE_MODULE: one module kept in two files. "Uses" is read from the
object files (nm: a symbol one file leaves undefined and another defines),
so it sees calls, not #includes.

    tools/check_rooms.py [BUILD_DIR]     (default build/release)

Prints the edges that break a rule and exits 1, or prints a one-line summary
and exits 0. --graph prints every file's uses.
"""

import os
import subprocess
import sys

# (folder prefix, room, layer): the first matching prefix wins; a file may
# use rooms of a lower layer and its own room.
ROOMS = [
    ("util/", "util", 0),
    ("lua/", "lua", 1),
    ("backends/", "backends", 1),
    ("fleet/", "fleet", 2),
    ("proxy/core/", "core", 3),
    ("proxy/commands/", "commands", 4),
    ("proxy/", "main", 5),
]


# Pairs that are one module split in two files, each needing the other: the
# memcached connection layer and its command translations share the request
# object; the engine and its FUNCTION registry share the Lua state.
ONE_MODULE = {
    ("backends/memcached", "backends/memcached_cmds"),
    ("lua/script_engine", "lua/script_functions"),
}


def circles(files, uses):
    """Strongly connected groups of more than one file (Tarjan), as sorted lists."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in uses.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for f in files:
        if f not in index:
            visit(f)
    return out


def room_of(path):
    for prefix, room, layer in ROOMS:
        if path.startswith(prefix):
            return room, layer
    return None, None


def nm(obj, *flags):
    out = subprocess.run(["nm", *flags, obj], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def build_graph(build_dir):
    objs = []
    for root, _dirs, files in os.walk(build_dir):
        rel = os.path.relpath(root, build_dir)
        if rel.startswith("tests") or rel.startswith("fuzz"):
            continue
        for f in files:
            if f.endswith(".o"):
                objs.append(os.path.join(root, f))
    defined = {}
    for o in objs:
        src = os.path.relpath(o, build_dir)[:-2]
        for line in nm(o, "--defined-only", "-g"):
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBRV":
                defined[parts[2]] = src
    uses = {}
    for o in objs:
        src = os.path.relpath(o, build_dir)[:-2]
        for line in nm(o, "-u"):
            sym = line.split()[-1]
            dst = defined.get(sym)
            if dst and dst != src:
                uses.setdefault(src, {}).setdefault(dst, []).append(sym)
    return sorted({os.path.relpath(o, build_dir)[:-2] for o in objs}), uses


def main(argv):
    graph = "--graph" in argv
    args = [a for a in argv if not a.startswith("--")]
    build_dir = args[0] if args else "build/release"
    if not os.path.isdir(build_dir):
        print("check_rooms: %s is not built" % build_dir, file=sys.stderr)
        return 2
    files, uses = build_graph(build_dir)
    problems = []
    for f in files:
        room, layer = room_of(f)
        if room is None:
            problems.append("%s is in no room" % f)
    for src, dsts in sorted(uses.items()):
        sroom, slayer = room_of(src)
        for dst, syms in sorted(dsts.items()):
            droom, dlayer = room_of(dst)
            if sroom is None or droom is None:
                continue
            if droom != sroom and dlayer >= slayer:
                problems.append("%s (%s) uses %s (%s), a room at its level or above: %s"
                                % (src, sroom, dst, droom, ", ".join(sorted(syms)[:4])))
    for group in circles(files, uses):
        if len(group) == 2 and tuple(group) in ONE_MODULE:
            continue
        problems.append("these files use each other in a circle: " + ", ".join(group))
    if graph:
        for src in files:
            print("%-32s -> %s" % (src, ", ".join(sorted(uses.get(src, {})))))
    if problems:
        for p in problems:
            print("check_rooms: " + p)
        return 1
    edges = sum(len(d) for d in uses.values())
    print("check_rooms: %d files in %d rooms, %d uses, no circles, no use of a higher room"
          % (len(files), len({room_of(f)[0] for f in files}), edges))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
