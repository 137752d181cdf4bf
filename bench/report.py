#!/usr/bin/env python3
"""Turn bench/run.sh's raw measurements into the results table.

    report.py RAW_CSV MEMORY_CSV RESULTS_CSV RESULTS_TXT [--scale SCALE_CSV] [--clients N] [--note TEXT]
              [--fleet-runs FLEET_RUNS_CSV --fleet-info FLEET_CSV --fleet-note TEXT]

RAW_CSV rows: rep,target,pipeline,test,rps,p50_ms,p99_ms,server_cpu_us,proxy_cpu_us,avg_ms
(one per redis-benchmark result; pipeline is 16, 1 or c1 = -c 1 -P 1; and one per
memcaslap run, test "memcaslap get/set 9:1", targets memcached and twemproxy-mc,
ops/s in rps and its mean latency in avg_ms; and one per bench/kvload run, test
"kvload get/set 9:1", targets memcached, twemproxy-mc and evalproxy-mc, pipeline
its depth).
SCALE_CSV: metric,value lines from bench/scale.py.
FLEET_RUNS_CSV: each fleet member's own redis-benchmark run (RAW has their sum);
FLEET_CSV: per fleet, its members' cores and what they forwarded.
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
TARGETS = ["store", "evalproxy", "twemproxy", "native", "evalproxy-mc", "evalproxy-pl", "evalproxy-rb"]
# evalproxy-pl: evalproxy with lua-script-pipelining yes, for these rows only.
PL_TESTS = {("EVALSHA incr", "16"), ("EVALSHA 3-call", "16")}
# evalproxy-rb: evalproxy with lua-rollback-on-error yes (every script run keeps
# an undo journal), for these rows only: the journal's cost on scripts that write.
RB_TESTS = {("EVALSHA incr", "16"), ("EVALSHA 3-call", "16"), ("EVALSHA incr", "1"), ("EVALSHA 3-call", "1")}
MC_TARGETS = ["memcached", "twemproxy-mc"]  # measured with memcaslap
MEMCASLAP_TEST = "memcaslap get/set 9:1"
# bench/kvload: one load generator for memcached direct, twemproxy-mc and
# evalproxy-mc, at these depths (requests outstanding per connection).
KV_TEST = "kvload get/set 9:1"
KV_DEPTHS = ["1", "16"]
# evalproxy-mc rows compared with memcached direct (memcaslap), at -P 1 only:
# one request outstanding per connection on both sides.
MC_VS_DIRECT = ["SET", "GET", "EVALSHA get", "EVALSHA incr"]
# Calls inside one script (bench/calls.lua): one client runs a script of
# CALLS_PER_RUN sequential redis.call's on evalproxy and on native, beside a
# GET at -c 1 straight to the store (CALLS_REF_TEST on target store).
CALLS_TEST = "calls 10000"
CALLS_REF_TEST = "GET beside calls"
CALLS_PER_RUN = 10000
# The same script beside 50 clients of GET load on the proxy (-P 1): its
# time per call against the p50 latency of those clients.
CALLS_LOADED_TEST = "calls 10000 beside GET load"
CALLS_LOAD_TEST = "GET load beside calls"
XCOLS = ("p50_ms", "p99_ms", "avg_ms", "server_cpu_us", "proxy_cpu_us")
# Targets of the benchmark issue for the scale rows, KiB each.
SCALE_TARGET_KIB = {"idle connection": 4, "script in flight": 32}
MC_TESTS = ["SET", "GET", "INCR", "MSET (10 keys)", "EVALSHA incr", "EVALSHA get"]
PIPELINES = ["16", "1", "c1"]
MODE_NAMES = {"16": "-P 16", "1": "-P 1", "c1": "-c 1"}
# Tests run with -c 1 (the others only with -c 50 at -P 16 and -P 1).
C1_TESTS = ["SET", "GET", "EVALSHA incr", "EVALSHA 3-call"]
# Scale-out rows (BENCH_SCALE_OUT=1): evalproxy in front of a pool of 1, 2 and 3
# stores (raw target evalproxy-poolN) beside twemproxy in front of the same pool
# (twemproxy-poolN) for relay and beside native EVALSHA on one redis-server 7.0
# (native-pools) for the script; and in front of a 3-master Redis Cluster
# (evalproxy-cluster) beside redis-benchmark --cluster on the cluster (cluster).
POOL_SIZES = [1, 2, 3]
SO_RELAY_TESTS = ["SET", "GET"]
SO_SCRIPT_TEST = "EVALSHA incr"
SO_PIPELINES = ["16", "1"]
# Fleet rows (BENCH_FLEET=1): one evalproxy without a fleet (raw target
# evalproxy-single) and fleets of 1, 2 and 3 members (evalproxy-fleetN) in front
# of one store, the clients spread over the members.
FLEET_SETUPS = [("evalproxy-single", "one proxy (no fleet)", 1)] + [
    ("evalproxy-fleet%d" % n, "fleet of %d member%s" % (n, "s" if n > 1 else ""), n) for n in (1, 2, 3)]
FLEET_TESTS = ["SET", "GET", "EVALSHA incr"]


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
    ap.add_argument("--scale", default=None)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--note", default="")
    ap.add_argument("--fleet-runs", default=None)
    ap.add_argument("--fleet-info", default=None)
    ap.add_argument("--fleet-note", default="")
    args = ap.parse_args()

    runs = defaultdict(list)  # (test, pipeline, target) -> [rps...]
    extra = defaultdict(lambda: defaultdict(list))  # (test, pipeline, target) -> column -> [v...]
    with open(args.raw, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["test"], row["pipeline"], row["target"])
            runs[key].append(float(row["rps"]))
            for col in XCOLS:
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
            if (test, p) in PL_TESTS:
                targets.append("evalproxy-pl")
            if (test, p) in RB_TESTS:
                targets.append("evalproxy-rb")
            r = {"test": test, "pipeline": p}
            for t in TARGETS + MC_TARGETS:
                r[t] = best(test, p, t)
                for col in XCOLS:
                    r[t + ":" + col] = med(test, p, t, col)
            for t in targets:
                if r[t] is None:
                    missing.append("%s -P %s on %s" % (test, p, t))
            r["evalproxy/store"] = ratio(r["evalproxy"], r["store"])
            r["evalproxy/twemproxy"] = ratio(r["evalproxy"], r["twemproxy"])
            r["evalproxy/native"] = ratio(r["evalproxy"], r["native"])
            r["pl/native"] = ratio(r["evalproxy-pl"], r["native"])
            r["rb/evalproxy"] = ratio(r["evalproxy-rb"], r["evalproxy"])
            # The reference: the store for relay, native redis for scripts.
            r["ref"] = "native" if test in SCRIPT_TESTS else "store"
            r["mc/evalproxy"] = ratio(r["evalproxy-mc"], r["evalproxy"])
            r["twemproxy-mc/memcached"] = None
            r["evalproxy-mc/memcached"] = None
            sp = [spread(test, p, t) for t in targets]
            sp = [s for s in sp if s is not None]
            r["min_spread"] = min(sp) if sp else None
            rows.append(r)

    # memcaslap: memcached direct and twemproxy in front of it.
    have_mcs = any(k[0] == MEMCASLAP_TEST for k in runs)
    mc_direct = best(MEMCASLAP_TEST, "1", "memcached")
    mcs_row = None
    if have_mcs:
        mcs_row = {"test": MEMCASLAP_TEST, "pipeline": "1", "ref": "memcached"}
        for t in TARGETS + MC_TARGETS:
            mcs_row[t] = best(MEMCASLAP_TEST, "1", t)
            for col in XCOLS:
                mcs_row[t + ":" + col] = med(MEMCASLAP_TEST, "1", t, col)
        for t in MC_TARGETS:
            if mcs_row[t] is None:
                missing.append("%s on %s" % (MEMCASLAP_TEST, t))
        for k in ("evalproxy/store", "evalproxy/twemproxy", "evalproxy/native", "mc/evalproxy",
                  "evalproxy-mc/memcached", "pl/native", "rb/evalproxy"):
            mcs_row[k] = None
        mcs_row["twemproxy-mc/memcached"] = ratio(mcs_row["twemproxy-mc"], mc_direct)
        sp = [spread(MEMCASLAP_TEST, "1", t) for t in MC_TARGETS]
        sp = [x for x in sp if x is not None]
        mcs_row["min_spread"] = min(sp) if sp else None
        for r in rows:
            if r["pipeline"] == "1" and r["test"] in MC_VS_DIRECT:
                r["evalproxy-mc/memcached"] = ratio(r["evalproxy-mc"], mc_direct)

    # bench/kvload: memcached, twemproxy-mc and evalproxy-mc under one load generator.
    have_kv = any(k[0] == KV_TEST for k in runs)
    if have_kv:
        for d in KV_DEPTHS:
            for t in ("memcached", "twemproxy-mc", "evalproxy-mc"):
                if best(KV_TEST, d, t) is None:
                    missing.append("%s depth %s on %s" % (KV_TEST, d, t))

    # Scale-out rows, in the columns their comparison means elsewhere: evalproxy,
    # twemproxy (same pool), store (the cluster direct), native (one redis-server
    # 7.0 for pools, the cluster's own EVALSHA for the cluster).
    have_so = any(k[2].startswith("evalproxy-pool") for k in runs)
    so_rows = []
    if have_so:
        for p in SO_PIPELINES:
            for test in SO_RELAY_TESTS + [SO_SCRIPT_TEST]:
                script = test == SO_SCRIPT_TEST
                setups = [("pool%d" % n, "pool of %d store%s" % (n, "s" if n > 1 else ""),
                           "evalproxy-pool%d" % n, "native-pools" if script else "twemproxy-pool%d" % n)
                          for n in POOL_SIZES]
                setups.append(("cluster", "cluster of 3 masters", "evalproxy-cluster", "cluster"))
                for setup, setup_name, ev, ref in setups:
                    col = "native" if script else ("store" if ref == "cluster" else "twemproxy")
                    r = {"test": "%s: %s" % (setup_name, test), "pipeline": p, "setup": setup,
                         "setup_name": setup_name, "so_test": test, "ref_target": ref, "ref_col": col}
                    for t in TARGETS + MC_TARGETS:
                        r[t] = None
                        for c in XCOLS:
                            r[t + ":" + c] = None
                    for t, c in ((ev, "evalproxy"), (ref, col)):
                        r[c] = best(test, p, t)
                        for x in XCOLS:
                            r[c + ":" + x] = med(test, p, t, x)
                        miss = "scale-out %s -P %s on %s" % (test, p, t)
                        if r[c] is None and miss not in missing:  # native-pools serves three rows
                            missing.append(miss)
                    for k in ("evalproxy/store", "evalproxy/twemproxy", "evalproxy/native"):
                        r[k] = None
                    r["evalproxy/" + col] = ratio(r["evalproxy"], r[col])
                    for k in ("mc/evalproxy", "twemproxy-mc/memcached", "evalproxy-mc/memcached",
                              "pl/native", "rb/evalproxy"):
                        r[k] = None
                    sp = [spread(test, p, t) for t in (ev, ref)]
                    sp = [x for x in sp if x is not None]
                    r["min_spread"] = min(sp) if sp else None
                    so_rows.append(r)
        # Throughput over the same row with one store (pools only; native does not change).
        one = {(r["so_test"], r["pipeline"]): r for r in so_rows if r["setup"] == "pool1"}
        for r in so_rows:
            base = one.get((r["so_test"], r["pipeline"]))
            pool = r["setup"].startswith("pool")
            r["evalproxy/1 store"] = ratio(r["evalproxy"], base["evalproxy"]) if pool and base else None
            r["ref/1 store"] = (ratio(r[r["ref_col"]], base[base["ref_col"]])
                                if pool and base and r["ref_col"] == "twemproxy" else None)

    # Fleet rows: the fleet's rate (the sum of its members') in the evalproxy column.
    have_fleet = args.fleet_runs is not None or any(k[2] == "evalproxy-single" for k in runs)
    fleet_rows = []
    if have_fleet:
        # 'all done': per run, the requests over the slowest member's time (a sum of
        # rates counts a member's rate also while the others had finished).
        # 'forwarded': the share of the requests the members sent on to another.
        walls = defaultdict(list)
        fwd_share = defaultdict(list)
        if args.fleet_runs:
            per_run = defaultdict(list)  # (test, pipeline, target, rep) -> [(requests, rps, forwarded)]
            with open(args.fleet_runs, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        fw = float(row["forwarded"]) if row.get("forwarded") else None
                        per_run[(row["test"], row["pipeline"], row["target"], row["rep"])].append(
                            (float(row["requests"]), float(row["rps"]), fw))
                    except ValueError:
                        pass
            for (test, p, target, _), ms in per_run.items():
                if all(x[1] > 0 for x in ms):
                    walls[(test, p, target)].append(sum(x[0] for x in ms) / max(x[0] / x[1] for x in ms))
                if all(x[2] is not None for x in ms):
                    fwd_share[(test, p, target)].append(sum(x[2] for x in ms) / sum(x[0] for x in ms))
        for p in SO_PIPELINES:
            for test in FLEET_TESTS:
                base = best(test, p, "evalproxy-single")
                for target, name, n in FLEET_SETUPS:
                    r = {"test": "%s: %s" % (name, test), "pipeline": p, "setup": target, "setup_name": name,
                         "fleet_test": test, "members": n}
                    for t in TARGETS + MC_TARGETS:
                        r[t] = None
                        for c in XCOLS:
                            r[t + ":" + c] = None
                    r["evalproxy"] = best(test, p, target)
                    for x in XCOLS:
                        r["evalproxy:" + x] = med(test, p, target, x)
                    if r["evalproxy"] is None:
                        missing.append("fleet %s -P %s on %s" % (test, p, target))
                    w = walls.get((test, p, target))
                    r["all_done"] = max(w) if w else None
                    fs = fwd_share.get((test, p, target))
                    r["forwarded"] = statistics.median(fs) if fs else None
                    r["fleet/one proxy"] = ratio(r["evalproxy"], base) if target != "evalproxy-single" else None
                    sp = [spread(test, p, t) for t in {target, "evalproxy-single"}]
                    sp = [x for x in sp if x is not None]
                    r["min_spread"] = min(sp) if sp else None
                    fleet_rows.append(r)
    fleet_info = {}
    if args.fleet_info:
        with open(args.fleet_info, newline="") as f:
            for row in csv.DictReader(f):
                fleet_info[row["target"]] = row

    scale = {}
    if args.scale:
        with open(args.scale, newline="") as f:
            for row in csv.reader(f):
                if len(row) == 2:
                    try:
                        scale[row[0]] = float(row[1])
                    except ValueError:
                        pass
        for k in ("kib_per_idle_connection", "kib_per_script"):
            if k not in scale:
                missing.append("scale: " + k)

    mem = defaultdict(dict)  # process -> when -> (hwm, rss)
    with open(args.memory, newline="") as f:
        for row in csv.DictReader(f):
            mem[row["process"]][row["when"]] = (row["vmhwm_kb"], row["vmrss_kb"])

    ratio_keys = ["evalproxy/store", "evalproxy/twemproxy", "evalproxy/native", "mc/evalproxy",
                  "twemproxy-mc/memcached", "evalproxy-mc/memcached", "pl/native", "rb/evalproxy",
                  "fleet/one proxy"]
    csv_targets = TARGETS + MC_TARGETS
    with open(args.results_csv, "w", newline="") as f:
        w = csv.writer(f)
        xcols = [(t, col) for col in XCOLS for t in csv_targets]
        # evalproxy_mc_per_memcached: redis-benchmark against evalproxy-mc over
        # memcaslap against memcached direct (different load generators).
        w.writerow(["metric", "pipeline", "unit"] + [t.replace("-", "_") for t in csv_targets]
                   + ["evalproxy_per_store", "evalproxy_per_twemproxy", "evalproxy_per_native",
                      "evalproxy_mc_per_evalproxy", "twemproxy_mc_per_memcached", "evalproxy_mc_per_memcached",
                      "evalproxy_pl_per_native", "evalproxy_rb_per_evalproxy", "evalproxy_fleet_per_one_proxy",
                      "target"]
                   + ["%s_%s" % (col, t.replace("-", "_")) for t, col in xcols])
        for r in rows + ([mcs_row] if mcs_row else []) + so_rows + fleet_rows:
            w.writerow([r["test"], r["pipeline"], "ops/s" if r is mcs_row else "req/s"]
                       + ["" if r[t] is None else "%.0f" % r[t] for t in csv_targets]
                       + ["" if r.get(k) is None else "%.3f" % r[k] for k in ratio_keys] + [""]
                       + ["" if r[t + ":" + c] is None else "%.3f" % r[t + ":" + c] for t, c in xcols])
        blank_ratios = [""] * (len(ratio_keys) + 1)
        procs = {"evalproxy-mc": "evalproxy_mc"}
        for when in ("start", "end"):
            for i, what in ((0, "peak_rss_vmhwm"), (1, "rss_vmrss")):
                w.writerow(["%s_%s" % (what, when), "", "kB"]
                           + [mem.get(procs.get(t, t), {}).get(when, ("", ""))[i] for t in csv_targets]
                           + blank_ratios + [""] * len(xcols))
        # Scale rows: the evalproxy column (an evalproxy started for them alone).
        ev = csv_targets.index("evalproxy")

        def scale_row(metric, unit, value, fmt, target=""):
            if value is None:
                return
            cells = [""] * len(csv_targets)
            cells[ev] = fmt % value
            w.writerow([metric, "", unit] + cells + [""] * len(ratio_keys) + [target] + [""] * len(xcols))

        if scale:
            scale_row("idle connection", "KiB each", scale.get("kib_per_idle_connection"), "%.3f",
                      "<= %d" % SCALE_TARGET_KIB["idle connection"])
            scale_row("script in flight", "KiB each", scale.get("kib_per_script"), "%.3f",
                      "<= %d" % SCALE_TARGET_KIB["script in flight"])
            scale_row("scale idle connections", "connections", scale.get("idle_connections"), "%.0f")
            scale_row("scale scripts_running peak", "scripts", scale.get("scripts_running_peak"), "%.0f")
            for k, label in (("rss_before_kb", "before"), ("rss_idle_kb", "idle connections open"),
                             ("rss_scripts_kb", "scripts in flight"), ("rss_closed_kb", "connections closed")):
                scale_row("scale rss_vmrss " + label, "kB", scale.get(k), "%.0f")

    # Calls: microseconds per redis.call (from the best run of the script)
    # and per GET at -c 1 on the store (from its best run), and the spread.
    calls = None
    if any(k[0] == CALLS_TEST for k in runs):
        calls = {}
        for t, test in (("evalproxy", CALLS_TEST), ("native", CALLS_TEST), ("store", CALLS_REF_TEST)):
            b = best(test, "c1", t)
            if b is None:
                missing.append("%s -c 1 on %s" % (test, t))
            per = CALLS_PER_RUN if test == CALLS_TEST else 1
            cpu = med(test, "c1", t, "proxy_cpu_us" if t == "evalproxy" else "server_cpu_us")
            scpu = med(test, "c1", t, "server_cpu_us") if t == "evalproxy" else None
            calls[t] = {"us": 1e6 / b / per if b else None, "spread": spread(test, "c1", t),
                        "cpu": cpu / per if cpu is not None else None,
                        "store_cpu": scpu / per if scpu is not None else None}
        calls["ratio"] = ratio(calls["evalproxy"]["us"], calls["store"]["us"])
        with open(args.results_csv, "a", newline="") as f:
            w = csv.writer(f)
            cells = [""] * len(csv_targets)
            for t in ("evalproxy", "native", "store"):
                if calls[t]["us"] is not None:
                    cells[csv_targets.index(t)] = "%.3f" % calls[t]["us"]
            w.writerow([CALLS_TEST + " (store: GET -c 1 beside it)", "c1", "us/call"] + cells
                       + [""] * len(ratio_keys) + ["evalproxy <= 1.0 x store"])
            w.writerow(["calls evalproxy/store GET", "c1", "ratio"] + [""] * len(csv_targets)
                       + [""] * len(ratio_keys)
                       + ["" if calls["ratio"] is None else "%.3f" % calls["ratio"]])

    loaded = None
    if any(k[0] == CALLS_LOADED_TEST for k in runs):
        b = best(CALLS_LOADED_TEST, "1", "evalproxy")
        p50s = extra.get((CALLS_LOAD_TEST, "1", "evalproxy"), {}).get("p50_ms")
        loaded = {"us": 1e6 / b / CALLS_PER_RUN if b else None,
                  "p50_us": statistics.median(p50s) * 1000 if p50s else None,
                  "spread": spread(CALLS_LOADED_TEST, "1", "evalproxy"),
                  "load_rps": best(CALLS_LOAD_TEST, "1", "evalproxy")}
        loaded["ratio"] = ratio(loaded["us"], loaded["p50_us"])
        with open(args.results_csv, "a", newline="") as f:
            w = csv.writer(f)
            cells = [""] * len(csv_targets)
            if loaded["us"] is not None:
                cells[csv_targets.index("evalproxy")] = "%.3f" % loaded["us"]
            w.writerow([CALLS_LOADED_TEST, "1", "us/call"] + cells + [""] * len(ratio_keys)
                       + ["<= 1.0 x the GET clients' p50"])
            w.writerow(["calls beside load / GET p50", "1", "ratio"] + [""] * len(csv_targets)
                       + [""] * len(ratio_keys) + ["" if loaded["ratio"] is None else "%.3f" % loaded["ratio"]])

    lines = []
    shown = TARGETS if have_mc else TARGETS[:-1]
    shown_ratios = ratio_keys[:4] if have_mc else ratio_keys[:3]
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
    pl = [r for r in rows if (r["test"], r["pipeline"]) in PL_TESTS and r["evalproxy-pl"]]
    if pl:
        lines.append("  lua-script-pipelining yes (evalproxy-pl), -P 16: "
                     + ", ".join("%s %s req/s = %s x native (default: %s)"
                                 % (r["test"], fmt_rps(r["evalproxy-pl"]), fmt_ratio(r["pl/native"]),
                                    fmt_ratio(r["evalproxy/native"])) for r in pl))
    rb = [r for r in rows if (r["test"], r["pipeline"]) in RB_TESTS and r["evalproxy-rb"]]
    if rb:
        lines.append("  undo journal (lua-rollback-on-error yes, evalproxy-rb) / rollback off (evalproxy): "
                     + ", ".join("%s %s %s" % (r["test"], MODE_NAMES[r["pipeline"]], fmt_ratio(r["rb/evalproxy"]))
                                 for r in rb))

    if calls:
        def us(v):
            return "-" if v is None else "{:.2f}".format(v)

        lines.append("")
        lines.append("Calls inside one script: bench/calls.lua, %d sequential redis.call's (SET, GET, HSET, DEL)"
                     % CALLS_PER_RUN)
        lines.append("run by one client (-c 1) alone, beside a GET at -c 1 straight to the store; microseconds per")
        lines.append("call from the best run (per GET for the store); target: evalproxy <= 1.0 x the store's GET.")
        chead = ["target", "us per call", "x store GET", "cpu proxy/call", "cpu store/call", "run spread"]
        ct = [chead]
        for t, name in (("evalproxy", "evalproxy"), ("native", "native(7.0)"), ("store", "store GET -c 1")):
            c = calls[t]
            ct.append([name, us(c["us"]), fmt_ratio(ratio(c["us"], calls["store"]["us"])),
                       us(c["cpu"]) if t == "evalproxy" else "",
                       us(c["store_cpu"]) if t == "evalproxy" else us(c["cpu"]) if t == "store" else "",
                       fmt_ratio(c["spread"])])
        cw = [max(len(row[i]) for row in ct) for i in range(len(chead))]
        for i, row in enumerate(ct):
            lines.append("  ".join(c.ljust(cw[j]) if j == 0 else c.rjust(cw[j]) for j, c in enumerate(row)))
            if i == 0:
                lines.append("  ".join("-" * x for x in cw))
        lines.append("cpu: microseconds of CPU per call (per GET for the store), medians of the runs.")
    if loaded:
        lines.append("Beside 50 clients of GET load on the proxy (-P 1, %s/s): %s us per call (best run; spread %s), "
                     "the GET clients' p50 %s us: %s x (target <= 1.0)"
                     % (fmt_rps(loaded["load_rps"]), "-" if loaded["us"] is None else "%.1f" % loaded["us"],
                        fmt_ratio(loaded["spread"]), "-" if loaded["p50_us"] is None else "%.0f" % loaded["p50_us"],
                        fmt_ratio(loaded["ratio"])))

    if so_rows:
        ref_names = {"twemproxy-pool": "twemproxy, same pool", "native-pools": "native EVALSHA, 1 redis",
                     "cluster": "cluster direct (--cluster)"}

        def ref_name(r):
            if r["ref_target"] == "cluster" and r["so_test"] == SO_SCRIPT_TEST:
                return "native EVALSHA, cluster (--cluster)"
            return ref_names.get(r["ref_target"].rstrip("123"), r["ref_target"])

        lines.append("")
        lines.append("Scale-out, requests/s (best of the repeated runs): evalproxy in front of pools of 1, 2 and 3")
        lines.append("redis-servers (ketama, fnv1a_64) and of a Redis Cluster of 3 masters, beside twemproxy in front")
        lines.append("of the same pool, native EVALSHA on one redis-server 7.0, and the cluster with a cluster-aware")
        lines.append("client. 'x 1 store': throughput over the same row with a pool of one store.")
        ohead = ["setup", "test", "mode", "evalproxy", "compared with", "its req/s", "evalproxy/it",
                 "evalproxy x 1 store", "it x 1 store", "run spread"]
        ot = [ohead]
        for r in so_rows:
            ot.append([r["setup_name"], r["so_test"], MODE_NAMES[r["pipeline"]], fmt_rps(r["evalproxy"]),
                       ref_name(r), fmt_rps(r[r["ref_col"]]),
                       fmt_ratio(r["evalproxy/" + r["ref_col"]]),
                       fmt_ratio(r["evalproxy/1 store"]) if r["setup"] != "cluster" else "",
                       fmt_ratio(r["ref/1 store"]) if r["ref_col"] == "twemproxy" else "",
                       fmt_ratio(r["min_spread"])])
        ow = [max(len(row[i]) for row in ot) for i in range(len(ohead))]

        def oline(row):
            return "  ".join(c.ljust(ow[j]) if j in (0, 1, 4) else c.rjust(ow[j]) for j, c in enumerate(row))

        lines.append(oline(ohead))
        lines.append(oline(["-" * x for x in ow]))
        for i, row in enumerate(ot[1:]):
            if i and (row[1], row[2]) != (ot[i][1], ot[i][2]):
                lines.append("")
            lines.append(oline(row))
        lines.append("Keys: redis-benchmark -r; through the proxies key:N and bench:incr:N, placed by the proxy;")
        lines.append("redis-benchmark --cluster puts a hash tag of its connection's master in each key instead.")
        lines.append("twemproxy forwards EVALSHA to a store without scripting, so pool EVALSHA compares with native.")
        lines.append("redis-benchmark --cluster (a thread per master) ends a run on its 250 ms timer: its req/s are low")
        lines.append("by up to 250 ms over the run, which is sized to last BENCH_CLUSTER_SECONDS (bench/README.md).")
        lines.append("Geometric means of evalproxy/it (-P 16 and -P 1):")
        for setup, name in [("pool%d" % n, "pool of %d" % n) for n in POOL_SIZES] + [("cluster", "cluster")]:
            rel = [r["evalproxy/" + r["ref_col"]] for r in so_rows
                   if r["setup"] == setup and r["so_test"] != SO_SCRIPT_TEST]
            scr = [r["evalproxy/" + r["ref_col"]] for r in so_rows
                   if r["setup"] == setup and r["so_test"] == SO_SCRIPT_TEST]
            lines.append("  %-10s  SET/GET: evalproxy/%s %s   EVALSHA: evalproxy/native %s"
                         % (name, "direct" if setup == "cluster" else "twemproxy", fmt_ratio(geomean(rel)),
                            fmt_ratio(geomean(scr))))

    if fleet_rows:
        lines.append("")
        lines.append("Fleet, requests/s (best of the repeated runs): evalproxy members sharing a fleet-name in front")
        lines.append("of one redis-server, beside one evalproxy without a fleet in front of the same store. The %d"
                     % args.clients)
        lines.append("clients are spread over the members, one redis-benchmark per member, all at once; req/s is the")
        lines.append("sum of their rates, 'all done' the requests over the slowest member's run; 'forwarded' the")
        lines.append("share of the requests the members sent on to the member owning the key's slot (INFO fleet).")
        fhead = ["setup", "test", "mode", "clients", "req/s", "all done", "forwarded", "x one proxy", "run spread"]
        ft = [fhead]
        for r in fleet_rows:
            n = r["members"]
            cs = [args.clients // n + (1 if i < args.clients % n else 0) for i in range(n)]
            ft.append([r["setup_name"], r["fleet_test"], MODE_NAMES[r["pipeline"]], "+".join(map(str, cs)),
                       fmt_rps(r["evalproxy"]), fmt_rps(r["all_done"]),
                       "-" if r["forwarded"] is None else "%.0f%%" % (100 * r["forwarded"]),
                       fmt_ratio(r["fleet/one proxy"]) if r["setup"] != "evalproxy-single" else "1",
                       fmt_ratio(r["min_spread"])])
        fw = [max(len(row[i]) for row in ft) for i in range(len(fhead))]

        def fline(row):
            return "  ".join(c.ljust(fw[j]) if j < 2 else c.rjust(fw[j]) for j, c in enumerate(row))

        lines.append(fline(fhead))
        lines.append(fline(["-" * x for x in fw]))
        for i, row in enumerate(ft[1:]):
            if i and (row[1], row[2]) != (ft[i][1], ft[i][2]):
                lines.append("")
            lines.append(fline(row))
        lines.append("x one proxy: the fleet's req/s over the one proxy's; run spread: worst/best run of the two.")
        lines.append("EVALSHA incr: the 1-call script, loaded on every member and on the one proxy.")
        unfwd = [r for r in fleet_rows if r["members"] > 1 and r["forwarded"] == 0]
        if unfwd:
            lines.append("Forwarded 0%% (%s): those requests ran on the member each client reached."
                         % ", ".join(sorted({"%s %s" % (r["fleet_test"], MODE_NAMES[r["pipeline"]]) for r in unfwd})))
        if args.fleet_note:
            lines.append(args.fleet_note[0].upper() + args.fleet_note[1:] + ".")
        fenced = ["%s: %s" % (name, fleet_info[t]["fences"]) for t, name, _ in FLEET_SETUPS[1:]
                  if fleet_info.get(t, {}).get("fences", "0") not in ("0", "")]
        if fenced:
            lines.append("Members fenced themselves during the run (INFO fleet_fences): " + ", ".join(fenced) + ".")
        lines.append("Geometric means of x one proxy (-P 16 and -P 1):")
        for target, name, n in FLEET_SETUPS[1:]:
            rel = [r["fleet/one proxy"] for r in fleet_rows if r["setup"] == target and r["fleet_test"] != "EVALSHA incr"]
            scr = [r["fleet/one proxy"] for r in fleet_rows if r["setup"] == target and r["fleet_test"] == "EVALSHA incr"]
            lines.append("  %-18s  SET/GET %s   EVALSHA %s" % (name, fmt_ratio(geomean(rel)), fmt_ratio(geomean(scr))))

    if have_mcs:
        def fa(v):
            return "-" if v is None else "{:.3f}".format(v)

        lines.append("")
        lines.append("memcached: memcaslap (memcache protocol, get/set 9:1, -c %d) against memcached direct and"
                     % args.clients)
        lines.append("twemproxy in front of it; evalproxy in front of memcached speaks RESP only, so it is")
        lines.append("measured with redis-benchmark (-P 1 rows of the table above), and compared with memcaslap's")
        lines.append("memcached direct figure: DIFFERENT LOAD GENERATORS, a rough indication only.")
        mhead = ["load generator", "target", "test", "ops/s", "avg ms", "cpu memcached", "cpu proxy",
                 "/ memcached direct", "run spread"]
        mt = [mhead]
        for t, name in (("memcached", "memcached direct"), ("twemproxy-mc", "twemproxy->memcached")):
            mt.append(["memcaslap", name, "get/set 9:1", fmt_rps(mcs_row[t]), fa(mcs_row[t + ":avg_ms"]),
                       fmt_ratio(mcs_row[t + ":server_cpu_us"]),
                       "" if t == "memcached" else fmt_ratio(mcs_row[t + ":proxy_cpu_us"]),
                       fmt_ratio(ratio(mcs_row[t], mc_direct)), fmt_ratio(spread(MEMCASLAP_TEST, "1", t))])
        for r in rows:
            if r["pipeline"] == "1" and r["test"] in MC_VS_DIRECT and r["evalproxy-mc"] is not None:
                t = "evalproxy-mc"
                mt.append(["redis-benchmark", "evalproxy->memcached", r["test"] + " -P 1", fmt_rps(r[t]),
                           fa(r[t + ":avg_ms"]), fmt_ratio(r[t + ":server_cpu_us"]),
                           fmt_ratio(r[t + ":proxy_cpu_us"]),
                           fmt_ratio(r["evalproxy-mc/memcached"]) + " *", fmt_ratio(spread(r["test"], "1", t))])
        mw = [max(len(row[i]) for row in mt) for i in range(len(mhead))]
        for i, row in enumerate(mt):
            lines.append("  ".join(c.ljust(mw[j]) if j < 3 else c.rjust(mw[j]) for j, c in enumerate(row)))
            if i == 0:
                lines.append("  ".join("-" * x for x in mw))
        lines.append("avg ms: mean latency (memcaslap prints no percentiles); cpu: microseconds per operation.")
        lines.append("* evalproxy->memcached by redis-benchmark over memcached direct by memcaslap.")

    if have_kv:
        lines.append("")
        lines.append("memcached under ONE load generator (bench/kvload: get/set 9:1, 3-byte values, -c %d, the"
                     % args.clients)
        lines.append("memcache text protocol to memcached and twemproxy, RESP to evalproxy; depth = requests")
        lines.append("outstanding per connection); ops/s best of the runs, cpu microseconds per operation.")
        kt = [["depth", "target", "ops/s", "avg ms", "cpu memcached", "cpu proxy", "/ memcached direct",
               "/ twemproxy", "run spread"]]
        for d in KV_DEPTHS:
            direct, twem = best(KV_TEST, d, "memcached"), best(KV_TEST, d, "twemproxy-mc")
            for t, name in (("memcached", "memcached direct"), ("twemproxy-mc", "twemproxy->memcached"),
                            ("evalproxy-mc", "evalproxy->memcached")):
                v = best(KV_TEST, d, t)
                a = med(KV_TEST, d, t, "avg_ms")
                kt.append([d, name, fmt_rps(v), "-" if a is None else "{:.3f}".format(a),
                           fmt_ratio(med(KV_TEST, d, t, "server_cpu_us")),
                           "" if t == "memcached" else fmt_ratio(med(KV_TEST, d, t, "proxy_cpu_us")),
                           fmt_ratio(ratio(v, direct)), fmt_ratio(ratio(v, twem)) if t == "evalproxy-mc" else "",
                           fmt_ratio(spread(KV_TEST, d, t))])
        kw = [max(len(row[i]) for row in kt) for i in range(len(kt[0]))]
        for i, row in enumerate(kt):
            lines.append("  ".join(c.ljust(kw[j]) if j < 2 else c.rjust(kw[j]) for j, c in enumerate(row)))
            if i == 0:
                lines.append("  ".join("-" * x for x in kw))

    if scale:
        def kb(k):
            v = scale.get(k)
            return "-" if v is None else "{:,.0f}".format(v)

        def kib(k):
            v = scale.get(k)
            return "-" if v is None else "{:.2f}".format(v)

        lines.append("")
        lines.append("Scale: VmRSS of an evalproxy started for this alone (/proc/PID/status), kB; targets from")
        lines.append("the benchmark issue (nothing is checked against them)")
        shead = ["measurement", "count", "VmRSS before", "VmRSS during", "KiB each", "target"]
        st = [shead,
              ["idle connections (each answered PING)", kb("idle_connections"), kb("rss_before_kb"),
               kb("rss_idle_kb"), kib("kib_per_idle_connection"),
               "<= %d KiB" % SCALE_TARGET_KIB["idle connection"]],
              ["scripts in flight (INFO scripts_running)", kb("scripts_running_peak"), kb("rss_idle_kb"),
               kb("rss_scripts_kb"), kib("kib_per_script"),
               "<= %d KiB" % SCALE_TARGET_KIB["script in flight"]]]
        sw = [max(len(row[i]) for row in st) for i in range(len(shead))]
        for i, row in enumerate(st):
            lines.append("  ".join(c.ljust(sw[j]) if j == 0 else c.rjust(sw[j]) for j, c in enumerate(row)))
            if i == 0:
                lines.append("  ".join("-" * x for x in sw))
        lines.append("Scripts: %s of the idle connections each run a script on its own key (a CPU loop, TIME"
                     % kb("scripts_sent"))
        lines.append("between rounds, until a common deadline), all started and suspended at once; KiB each =")
        lines.append("(VmRSS at the most scripts running - VmRSS with the idle connections) / scripts running.")
        lines.append("VmRSS after closing every connection: %s kB." % kb("rss_closed_kb"))

    lines.append("")
    lines.append("Memory, kB (VmHWM = peak RSS, VmRSS = current; at start = all processes up, before any load)")
    mhead = ["process", "VmHWM start", "VmHWM end", "VmRSS start", "VmRSS end"]
    mtable = [mhead]
    for t in ["evalproxy", "evalproxy_pl", "twemproxy", "store", "native", "evalproxy_mc", "memcached"]:
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
