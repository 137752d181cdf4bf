#!/usr/bin/env python3
"""Turn bench/run.sh's raw measurements into the results table.

    report.py RAW_CSV MEMORY_CSV RESULTS_CSV RESULTS_TXT [--note TEXT]

RAW_CSV rows: rep,target,pipeline,test,rps (one per redis-benchmark result).
Each cell of the table is the best of the repeated runs; the spread between
runs (worst/best) is shown too. Exits non-zero if a cell has no measurement.
"""
import argparse
import csv
import sys
from collections import defaultdict

RELAY_TESTS = ["SET", "GET", "INCR", "LPUSH", "LPOP", "SADD", "HSET", "MSET (10 keys)"]
SCRIPT_TESTS = ["EVALSHA incr", "EVALSHA get"]
TARGETS = ["store", "evalproxy", "twemproxy", "native", "evalproxy-mc"]
MC_TESTS = ["SET", "GET", "INCR", "MSET (10 keys)"] + SCRIPT_TESTS
PIPELINES = ["16", "1"]


def ratio(a, b):
    return a / b if a and b else None


def fmt_rps(v):
    return "-" if v is None else "{:,.0f}".format(v)


def fmt_ratio(v):
    return "-" if v is None else "{:.2f}".format(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("memory")
    ap.add_argument("results_csv")
    ap.add_argument("results_txt")
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    runs = defaultdict(list)  # (test, pipeline, target) -> [rps...]
    with open(args.raw, newline="") as f:
        for row in csv.DictReader(f):
            runs[(row["test"], row["pipeline"], row["target"])].append(float(row["rps"]))

    def best(test, p, target):
        v = runs.get((test, p, target))
        return max(v) if v else None

    def spread(test, p, target):
        v = runs.get((test, p, target))
        return min(v) / max(v) if v and len(v) > 1 and max(v) > 0 else None

    have_mc = any(k[2] == "evalproxy-mc" for k in runs)
    missing = []
    rows = []  # dicts for the CSV and the table
    for p in PIPELINES:
        for test in RELAY_TESTS + SCRIPT_TESTS:
            targets = ["evalproxy", "native"] if test in SCRIPT_TESTS else ["store", "evalproxy", "twemproxy"]
            if have_mc and test in MC_TESTS:
                targets.append("evalproxy-mc")
            r = {"test": test, "pipeline": p}
            for t in TARGETS:
                r[t] = best(test, p, t)
            for t in targets:
                if r[t] is None:
                    missing.append("%s -P %s on %s" % (test, p, t))
            r["evalproxy/store"] = ratio(r["evalproxy"], r["store"])
            r["evalproxy/twemproxy"] = ratio(r["evalproxy"], r["twemproxy"])
            r["evalproxy/native"] = ratio(r["evalproxy"], r["native"])
            r["mc/evalproxy"] = ratio(r["evalproxy-mc"], r["evalproxy"])
            sp = [spread(test, p, t) for t in targets]
            sp = [s for s in sp if s is not None]
            r["min_spread"] = min(sp) if sp else None
            rows.append(r)

    mem = defaultdict(dict)  # process -> when -> (hwm, rss)
    with open(args.memory, newline="") as f:
        for row in csv.DictReader(f):
            mem[row["process"]][row["when"]] = (row["vmhwm_kb"], row["vmrss_kb"])

    ratio_keys = ["evalproxy/store", "evalproxy/twemproxy", "evalproxy/native", "mc/evalproxy"]
    with open(args.results_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "pipeline", "unit", "store", "evalproxy", "twemproxy", "native", "evalproxy_mc",
                    "evalproxy_per_store", "evalproxy_per_twemproxy", "evalproxy_per_native",
                    "evalproxy_mc_per_evalproxy"])
        for r in rows:
            w.writerow([r["test"], r["pipeline"], "req/s"]
                       + ["" if r[t] is None else "%.0f" % r[t] for t in TARGETS]
                       + ["" if r[k] is None else "%.3f" % r[k] for k in ratio_keys])
        procs = {"evalproxy-mc": "evalproxy_mc"}
        for when in ("start", "end"):
            for i, what in ((0, "peak_rss_vmhwm"), (1, "rss_vmrss")):
                w.writerow(["%s_%s" % (what, when), "", "kB"]
                           + [mem.get(procs.get(t, t), {}).get(when, ("", ""))[i] for t in TARGETS]
                           + ["", "", "", ""])

    lines = []
    shown = TARGETS if have_mc else TARGETS[:-1]
    shown_ratios = ratio_keys if have_mc else ratio_keys[:-1]
    names = {"native": "native(7.0)", "evalproxy-mc": "evalproxy->memcached", "mc/evalproxy": "mc/redis"}
    head = (["test", "-P"] + [names.get(t, t) for t in shown] + [names.get(k, k) for k in shown_ratios]
            + ["run spread"])
    table = [head]
    for r in rows:
        table.append([r["test"], r["pipeline"]]
                     + [fmt_rps(r[t]) for t in shown]
                     + [fmt_ratio(r[k]) for k in shown_ratios]
                     + [fmt_ratio(r["min_spread"])])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]

    def line(row):
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))

    lines.append("Throughput, requests/s (best of the repeated runs; ratios > 1 mean evalproxy is faster)")
    lines.append(line(head))
    lines.append(line(["-" * w for w in widths]))
    for i, row in enumerate(table[1:]):
        if i and row[1] != table[i][1]:
            lines.append("")
        lines.append(line(row))
    lines.append("")
    lines.append("'run spread' = worst/best run of the cells in that row (1.00 = identical runs).")
    lines.append("EVALSHA rows: evalproxy runs the script and sends the command to the store;")
    lines.append("'native' is redis-server 7.0 running the same script itself.")
    if have_mc:
        lines.append("evalproxy->memcached: evalproxy with a memcached backend; mc/redis = it over evalproxy")
        lines.append("in front of the redis-server store.")

    def geomean(vals):
        vals = [v for v in vals if v]
        if not vals:
            return None
        prod = 1.0
        for v in vals:
            prod *= v
        return prod ** (1.0 / len(vals))

    lines.append("")
    lines.append("Geometric mean of the ratios:")
    for p in PIPELINES:
        rel = [r for r in rows if r["pipeline"] == p and r["test"] in RELAY_TESTS]
        scr = [r for r in rows if r["pipeline"] == p and r["test"] in SCRIPT_TESTS]
        lines.append("  -P %-2s  relay: evalproxy/store %s  evalproxy/twemproxy %s   EVALSHA: evalproxy/native %s"
                     % (p, fmt_ratio(geomean([r["evalproxy/store"] for r in rel])),
                        fmt_ratio(geomean([r["evalproxy/twemproxy"] for r in rel])),
                        fmt_ratio(geomean([r["evalproxy/native"] for r in scr]))))

    lines.append("")
    lines.append("Memory, kB (VmHWM = peak RSS, VmRSS = current; at start = all processes up, before any load)")
    mhead = ["process", "VmHWM start", "VmHWM end", "VmRSS start", "VmRSS end"]
    mtable = [mhead]
    for t in ["evalproxy", "twemproxy", "store", "native", "evalproxy_mc", "memcached"]:
        if t not in mem:
            continue
        m = mem.get(t, {})
        mtable.append([t, m.get("start", ("", ""))[0], m.get("end", ("", ""))[0],
                       m.get("start", ("", ""))[1], m.get("end", ("", ""))[1]])
    mw = [max(len(r[i]) for r in mtable) for i in range(len(mhead))]
    for r in mtable:
        lines.append("  ".join(c.ljust(mw[i]) if i == 0 else c.rjust(mw[i]) for i, c in enumerate(r)))
    if args.note:
        lines.append("")
        lines.append(args.note)

    text = "\n".join(lines) + "\n"
    with open(args.results_txt, "w") as f:
        f.write(text)
    sys.stdout.write(text)

    if missing:
        sys.stderr.write("report: no measurement for: %s\n" % ", ".join(missing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
