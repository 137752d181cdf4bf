#!/usr/bin/env python3
"""Turn bench/run.sh's raw measurements into the results table.

    report.py RAW_CSV MEMORY_CSV RESULTS_CSV RESULTS_TXT [--note TEXT]

RAW_CSV rows: rep,target,pipeline,test,rps,p50_ms,p99_ms,server_cpu_us,proxy_cpu_us
(one per redis-benchmark result; pipeline is 16, 1 or c1 = -c 1 -P 1).
Each throughput cell is the best of the repeated runs; the spread between runs
(worst/best) is shown too. Latencies and CPU per request are medians of the runs.
Exits non-zero if a cell has no measurement.
"""
import argparse
import csv
import statistics
import sys
from collections import defaultdict

RELAY_TESTS = ["SET", "GET", "INCR", "LPUSH", "LPOP", "SADD", "HSET", "MSET (10 keys)", "LRANGE_100"]
SCRIPT_TESTS = ["EVALSHA incr", "EVALSHA get", "EVALSHA 3-call", "EVAL incr"]
TARGETS = ["store", "evalproxy", "twemproxy", "native", "evalproxy-mc"]
MC_TESTS = ["SET", "GET", "INCR", "MSET (10 keys)", "EVALSHA incr", "EVALSHA get"]
PIPELINES = ["16", "1", "c1"]
MODE_NAMES = {"16": "-P 16", "1": "-P 1", "c1": "-c 1"}
# Tests run with -c 1 (the others only with -c 50 at -P 16 and -P 1).
C1_TESTS = ["SET", "GET", "EVALSHA incr"]


def tests_for(p):
    return [t for t in RELAY_TESTS + SCRIPT_TESTS if p != "c1" or t in C1_TESTS]


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
    extra = defaultdict(lambda: defaultdict(list))  # (test, pipeline, target) -> column -> [v...]
    with open(args.raw, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["test"], row["pipeline"], row["target"])
            runs[key].append(float(row["rps"]))
            for col in ("p50_ms", "p99_ms", "server_cpu_us", "proxy_cpu_us"):
                try:
                    extra[key][col].append(float(row.get(col) or ""))
                except ValueError:
                    pass

    def med(test, p, target, col):
        v = extra.get((test, p, target), {}).get(col)
        return statistics.median(v) if v else None

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
        for test in tests_for(p):
            targets = ["evalproxy", "native"] if test in SCRIPT_TESTS else ["store", "evalproxy", "twemproxy"]
            if have_mc and test in MC_TESTS and p != "c1":
                targets.append("evalproxy-mc")
            r = {"test": test, "pipeline": p}
            for t in TARGETS:
                r[t] = best(test, p, t)
                for col in ("p50_ms", "p99_ms", "server_cpu_us", "proxy_cpu_us"):
                    r[t + ":" + col] = med(test, p, t, col)
            for t in targets:
                if r[t] is None:
                    missing.append("%s -P %s on %s" % (test, p, t))
            r["evalproxy/store"] = ratio(r["evalproxy"], r["store"])
            r["evalproxy/twemproxy"] = ratio(r["evalproxy"], r["twemproxy"])
            r["evalproxy/native"] = ratio(r["evalproxy"], r["native"])
            # The reference: the store for relay, native redis for scripts.
            r["ref"] = "native" if test in SCRIPT_TESTS else "store"
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
        xcols = [(t, col) for col in ("p50_ms", "p99_ms", "server_cpu_us", "proxy_cpu_us") for t in TARGETS]
        w.writerow(["metric", "pipeline", "unit", "store", "evalproxy", "twemproxy", "native", "evalproxy_mc",
                    "evalproxy_per_store", "evalproxy_per_twemproxy", "evalproxy_per_native",
                    "evalproxy_mc_per_evalproxy"]
                   + ["%s_%s" % (col, t.replace("-", "_")) for t, col in xcols])
        for r in rows:
            w.writerow([r["test"], r["pipeline"], "req/s"]
                       + ["" if r[t] is None else "%.0f" % r[t] for t in TARGETS]
                       + ["" if r[k] is None else "%.3f" % r[k] for k in ratio_keys]
                       + ["" if r[t + ":" + c] is None else "%.3f" % r[t + ":" + c] for t, c in xcols])
        procs = {"evalproxy-mc": "evalproxy_mc"}
        for when in ("start", "end"):
            for i, what in ((0, "peak_rss_vmhwm"), (1, "rss_vmrss")):
                w.writerow(["%s_%s" % (what, when), "", "kB"]
                           + [mem.get(procs.get(t, t), {}).get(when, ("", ""))[i] for t in TARGETS]
                           + ["", "", "", ""] + [""] * len(xcols))

    lines = []
    shown = TARGETS if have_mc else TARGETS[:-1]
    shown_ratios = ratio_keys if have_mc else ratio_keys[:-1]
    names = {"native": "native(7.0)", "evalproxy-mc": "evalproxy->memcached", "mc/evalproxy": "mc/redis"}
    head = (["test", "mode"] + [names.get(t, t) for t in shown] + [names.get(k, k) for k in shown_ratios]
            + ["run spread"])
    table = [head]
    for r in rows:
        table.append([r["test"], MODE_NAMES[r["pipeline"]]]
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
    lines.append("EVALSHA/EVAL rows: evalproxy runs the script and sends the commands to the store;")
    lines.append("'native' is redis-server 7.0 running the same script itself. -c 1: one client, -P 1.")
    lines.append("EVALSHA 3-call: SET, INCR, GET on KEYS[1]; EVAL incr: EVAL with the full script text.")

    # Latency and CPU table: evalproxy against its reference (and twemproxy for relay).
    def f2(v):
        return "-" if v is None else "{:.3f}".format(v)

    def f1(v):
        return "-" if v is None else "{:.2f}".format(v)

    lhead = ["test", "mode", "p50 ref", "p50 evalproxy", "p50 twem", "p99 ref", "p99 evalproxy", "p99 twem",
             "cpu ref", "cpu store@evalproxy", "cpu evalproxy", "cpu store@twem", "cpu twem"]
    ltable = [lhead]
    for r in rows:
        ref = r["ref"]
        relay = ref == "store"
        ltable.append([r["test"] + ("" if relay else " (ref native)"), MODE_NAMES[r["pipeline"]],
                       f2(r[ref + ":p50_ms"]), f2(r["evalproxy:p50_ms"]),
                       f2(r["twemproxy:p50_ms"]) if relay else "",
                       f2(r[ref + ":p99_ms"]), f2(r["evalproxy:p99_ms"]),
                       f2(r["twemproxy:p99_ms"]) if relay else "",
                       f1(r[ref + ":server_cpu_us"]), f1(r["evalproxy:server_cpu_us"]),
                       f1(r["evalproxy:proxy_cpu_us"]),
                       f1(r["twemproxy:server_cpu_us"]) if relay else "",
                       f1(r["twemproxy:proxy_cpu_us"]) if relay else ""])
    lw = [max(len(row[i]) for row in ltable) for i in range(len(lhead))]

    def lline(row):
        return "  ".join(c.ljust(lw[i]) if i == 0 else c.rjust(lw[i]) for i, c in enumerate(row))

    lines.append("")
    lines.append("Latency, ms (p50/p99 from redis-benchmark) and CPU, microseconds per request (utime+stime")
    lines.append("from /proc/PID/stat around each run, all threads); medians of the repeated runs.")
    lines.append("ref = the store direct for relay rows, native redis-server for script rows;")
    lines.append("store@X = the store's CPU when the requests go through X.")
    lines.append(lline(lhead))
    lines.append(lline(["-" * w for w in lw]))
    for i, row in enumerate(ltable[1:]):
        if i and row[1] != ltable[i][1]:
            lines.append("")
        lines.append(lline(row))
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
        lines.append("  %-5s  relay: evalproxy/store %s  evalproxy/twemproxy %s   EVALSHA: evalproxy/native %s"
                     % (MODE_NAMES[p], fmt_ratio(geomean([r["evalproxy/store"] for r in rel])),
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
