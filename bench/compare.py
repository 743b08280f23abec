#!/usr/bin/env python3
"""Runs the same scenarios against Hubbub and its peers, interleaved, and writes
docs/benchmarks.md (tables of medians and spreads, the targets with their ratios, and an
SVG chart) with the exact commands to reproduce.

    python3 bench/compare.py [--repeats 3] [--quick]

Servers run pinned to CPU 0 and the generator (hubbub-bench) to CPU 1; within a repeat,
every scenario runs once against every server (A B C ..., A B C ...), so drift on a shared
machine hits all alike, and each run gets a freshly started server. Peers, all doing the
same work (broadcast to a room or to all, echo to the sender):
- Node `ws` 8.18 (bench/peers/ws-broadcast.js, npm),
- Node `socket.io` 4.8 (bench/peers/socketio-server.js, npm),
- socketioxide 0.18 (bench/peers/socketioxide, crates.io).
Everything targets loopback and stops by itself.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def target_dir():
    """Cargo's target directory (CARGO_TARGET_DIR, a config's `build.target-dir`, or ./target)."""
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.environ["CARGO_TARGET_DIR"]
    try:
        meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                              cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return json.loads(meta)["target_directory"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return os.path.join(ROOT, "target")


TARGET = target_dir()
BIN = os.path.join(TARGET, "release", "hubbub")
GEN = os.path.join(TARGET, "release", "hubbub-bench")
PEERS = os.path.join(ROOT, "bench", "peers")
SIOX_DIR = os.path.join(PEERS, "socketioxide")
SIOX = os.path.join(SIOX_DIR, "target", "release", "socketioxide-peer")
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"

# name: (command, port)
SERVERS = {
    "hubbub": ([BIN, "--bind", "127.0.0.1:3100"], 3100),
    "node ws": (["node", "ws-broadcast.js"], 3101),
    "node socket.io": (["node", "socketio-server.js"], 3102),
    "socketioxide": ([SIOX], 3103),
    # The same servers with permessage-deflate offered to every client (Hubbub compresses
    # messages of 1 KiB or more by default; Node `ws` with its perMessageDeflate defaults).
    "node ws deflate": (["node", "ws-broadcast.js"], 3104),
}
# Extra environment per server.
SERVER_ENV = {"node ws deflate": {"DEFLATE": "1"}}

# An endpoint: (label, server, generator protocol, URL path).
WS = ("hubbub /ws", "hubbub", "v1", "/ws")
WS_ECHO = ("hubbub /ws/echo", "hubbub", "raw", "/ws/echo")
HSIO = ("hubbub socket.io", "hubbub", "sio", SIO_PATH)
NWS = ("node ws", "node ws", "raw", "/")
NWS_ECHO = ("node ws", "node ws", "raw", "/echo")
NSIO = ("node socket.io", "node socket.io", "sio", SIO_PATH)
SIOX_EP = ("socketioxide", "socketioxide", "sio", SIO_PATH)
NWS_DEFLATE = ("node ws deflate", "node ws deflate", "raw", "/")
ALL = [WS, NWS, HSIO, NSIO, SIOX_EP]

# How a scenario runs when it is not the default (server on CPU 0, one generator on CPU 1).
ON_BOTH_CORES = {"server_cpus": "0,1", "gen_cpus": "0,1", "gen_procs": 2}


def scenarios(a):
    """(key, title, endpoints, generator arguments, source addresses)."""
    fan = ["fanout", "--subs", str(a.subs), "--secs", str(a.secs)]
    return [
        ("idle", f"Idle memory per connection, {a.conns:,} connections", ALL,
         ["idle", "--conns", str(a.conns)], 1),
        ("idle19k", f"Idle memory per connection, {a.conns_max:,} connections", ALL,
         ["idle", "--conns", str(a.conns_max)], 1),
        ("connect", f"Handshakes per second ({a.handshakes:,} connections, 200 in flight)", ALL,
         ["connect", "--conns", str(a.handshakes)], 1),
        ("fanout", f"Fan-out to {a.subs:,} subscribers at maximal rate (~100-byte JSON)", ALL,
         fan, 1),
        ("fanout_w8", f"Fan-out to {a.subs:,} subscribers with 8 messages in flight "
                      "(~100-byte JSON)", ALL, fan + ["--window", "8"], 1),
        ("fanout_fixed", f"Fan-out to {a.subs:,} subscribers at an equal fixed rate "
                         f"({a.fixed_rate} msg/s = {a.fixed_rate * a.subs:,} deliveries/s)", ALL,
         fan + ["--rate", str(a.fixed_rate)], 1),
        ("echo", f"Echo with {a.echo_conns:,} connections (closed loop, ~100-byte JSON)",
         [WS_ECHO, NWS_ECHO, WS, HSIO, NSIO, SIOX_EP],
         ["echo", "--conns", str(a.echo_conns), "--secs", str(a.secs)], 1),
        ("echo_mc", f"Echo with {a.echo_conns:,} connections, server and two generator "
                    "processes on both cores (fairness)", [WS_ECHO, WS, HSIO, SIOX_EP],
         ["echo", "--conns", str(a.echo_conns // 2), "--secs", str(a.secs)], 1, ON_BOTH_CORES),
        ("deflate", f"Compressed fan-out: 4 KB JSON text to {a.deflate_subs:,} subscribers that "
                    "negotiated permessage-deflate, maximal rate", [WS, NWS_DEFLATE],
         ["--deflate", "fanout", "--subs", str(a.deflate_subs), "--size", "4000", "--words",
          "--secs", str(a.secs)], 1),
        ("idle_burst", f"Idle memory after traffic: {a.conns:,} connections, then 20 messages "
                       "of 100 bytes to each, then idle again", [WS, NWS, HSIO],
         ["idle", "--conns", str(a.conns), "--burst", "20", "--burst-size", "100"], 1),
        ("slow", f"Slow consumers: {a.slow_subs} subscribers, 20 % never read, "
                 f"{a.slow_rate} msg/s of 2 KB", ALL,
         ["fanout", "--subs", str(a.slow_subs), "--rate", str(a.slow_rate), "--size", "2000",
          "--secs", str(a.slow_secs), "--slow-share", "0.2"], 1),
        ("jitter", f"Jitter: {a.jitter_subs} subscribers cut off every 0.5-1.5 s (down 100 ms), "
                   "100 msg/s, resume with `join since`", [WS, HSIO],
         ["jitter", "--subs", str(a.jitter_subs), "--rate", "100", "--secs", str(a.secs),
          "--period-ms", "1500", "--down-ms", "100"], 1),
    ]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def wait_port(port, deadline):
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def start(server, cpus="0"):
    cmd, port = SERVERS[server]
    env = dict(os.environ, PORT=str(port), RUST_LOG="warn", **SERVER_ENV.get(server, {}))
    cwd = PEERS if cmd[0] == "node" else tempfile.mkdtemp()
    proc = subprocess.Popen(["taskset", "-c", cpus, *cmd], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port, time.time() + 15):
        proc.kill()
        raise RuntimeError(f"{server} did not start")
    if server == "hubbub":
        # The benchmark rooms: no presence (a 10,000-member room would send 10,000^2
        # presence frames while filling), and a history room for the jitter scenario.
        post(port, "/api/rooms", {"name": "bench", "presence": False, "history": 0})
        post(port, "/api/rooms", {"name": "jitter", "presence": False, "history": 5000})
    return proc


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    time.sleep(1)


def generate(endpoint, proc, args, source_ips, how=None):
    """Runs the generator (or several at once, `how["gen_procs"]`) and parses its RESULT
    line. Several generators' results are merged: rates add up, latencies take the worst
    of the processes (p50 their mean), CPU figures add up."""
    how = how or {}
    _, server, proto, path = endpoint
    url = f"ws://127.0.0.1:{SERVERS[server][1]}{path}"
    cmd = ["taskset", "-c", how.get("gen_cpus", "1"), GEN, "--proto", proto, "--url", url,
           "--server-pid", str(proc.pid), "--source-ips", str(source_ips), *args]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(how.get("gen_procs", 1))]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        line = next((l for l in out.splitlines() if l.startswith("RESULT")), None)
        if not line:
            print(f"  {endpoint[0]}: no result\n{out}\n{err}", flush=True)
            return None
        results.append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)})
    if len(results) == 1:
        return results[0]
    merged = {}
    for k in results[0]:
        xs = [r[k] for r in results if k in r]
        if k.startswith("p") and k.endswith("_ms") and k != "p50_ms":
            merged[k] = max(xs)
        elif k == "p50_ms":
            merged[k] = sum(xs) / len(xs)
        elif k == "server_cpu":
            merged[k] = xs[0]
        else:
            merged[k] = sum(xs)
    if "p50_ms" in merged and "p99_ms" in merged and merged["p50_ms"]:
        merged["p99_over_p50"] = merged["p99_ms"] / merged["p50_ms"]
    return merged


def med(xs):
    return statistics.median(xs) if xs else None


# What each scenario's table shows: (metric, column title, format).
COLUMNS = {
    "idle": [("bytes_per_conn", "bytes per connection", "{:,.0f}")],
    "idle19k": [("bytes_per_conn", "bytes per connection", "{:,.0f}"),
                ("conns", "connections held", "{:,.0f}")],
    "connect": [("handshakes_per_s", "handshakes/s", "{:,.0f}"), ("p99_ms", "p99 ms", "{:.1f}")],
    "fanout": [("deliveries_per_s", "deliveries/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:.1f}"),
               ("p99_ms", "p99 ms", "{:.1f}"), ("lost", "lost", "{:,.0f}")],
    "fanout_fixed": [("deliveries_per_s", "deliveries/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:.1f}"),
                     ("p99_ms", "p99 ms", "{:.1f}"), ("p999_ms", "p999 ms", "{:.1f}"),
                     ("lost", "lost", "{:,.0f}")],
    "half": [("deliveries_per_s", "deliveries/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:.1f}"),
             ("p99_ms", "p99 ms", "{:.1f}"), ("p999_ms", "p999 ms", "{:.1f}"),
             ("lost", "lost", "{:,.0f}")],
    "echo": [("round_trips_per_s", "round trips/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:.2f}"),
             ("p99_ms", "p99 ms", "{:.2f}")],
    "echo_mc": [("round_trips_per_s", "round trips/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:.2f}"),
                ("p99_ms", "p99 ms", "{:.2f}"), ("p99_over_p50", "p99 / p50", "{:.1f}")],
    "fanout_w8": [("deliveries_per_s", "deliveries/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:.1f}"),
                  ("p99_ms", "p99 ms", "{:.1f}"), ("lost", "lost", "{:,.0f}")],
    "deflate": [("deliveries_per_s", "deliveries/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:.1f}"),
                ("p99_ms", "p99 ms", "{:.1f}"), ("lost", "lost", "{:,.0f}")],
    "idle_burst": [("bytes_per_conn", "idle bytes per connection", "{:,.0f}"),
                   ("after_burst_per_conn", "after the burst", "{:,.0f}"),
                   ("after_burst_pct", "after / idle %", "{:.1f}")],
    "slow": [("rss_growth_kib", "server RSS growth KiB", "{:,.0f}"),
             ("slow_cut", "slow ones cut off", "{:.0f}"), ("p99_ms", "others' p99 ms", "{:.1f}"),
             ("lost", "others' losses", "{:,.0f}")],
    "jitter": [("min_share", "min share %", "{:.2f}"), ("complete", "clients complete", "{:.0f}"),
               ("reconnects", "reconnects", "{:,.0f}"), ("duplicates", "duplicates", "{:.0f}")],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--conns-max", type=int, default=19000)
    ap.add_argument("--handshakes", type=int, default=5000)
    ap.add_argument("--subs", type=int, default=10000)
    ap.add_argument("--fixed-rate", type=int, default=5)
    ap.add_argument("--echo-conns", type=int, default=1000)
    ap.add_argument("--deflate-subs", type=int, default=1000)
    ap.add_argument("--slow-subs", type=int, default=200)
    ap.add_argument("--slow-rate", type=int, default=500)
    ap.add_argument("--slow-secs", type=int, default=15)
    ap.add_argument("--jitter-subs", type=int, default=200)
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--only", help="comma-separated scenario keys")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite benchmarks.md and the chart from benchmarks.json (after editing "
                         "bench/notes.md), without measuring")
    a = ap.parse_args()
    if a.report_only:
        with open(os.path.join(a.out, "benchmarks.json")) as f:
            raw = json.load(f)
        results = {tuple(k.split("|", 1)): v for k, v in raw.items()}
        took = raw_minutes(a.out) * 60
        machine = run_machine(a.out)
        a.report_only = False
        write_report(a, scenarios(a), results, took, machine)
        return
    for tool in ("taskset", "node", "cargo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required")
    run(["cargo", "build", "--release", "-p", "hubbub", "-p", "hubbub-bench"], cwd=ROOT)
    run(["cargo", "build", "--release", "--target-dir", os.path.join(SIOX_DIR, "target")],
        cwd=SIOX_DIR)
    if not os.path.isdir(os.path.join(PEERS, "node_modules")):
        run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=PEERS)

    plan = scenarios(a)
    if a.only:
        keep = set(a.only.split(","))
        plan = [s for s in plan if s[0] in keep]
    results = {}  # (scenario key, endpoint label) -> [result dicts]
    started = time.time()
    for rep in range(a.repeats):
        for key, _, endpoints, gargs, ips, *how in plan:
            how = how[0] if how else {}
            for ep in endpoints:
                proc = start(ep[1], how.get("server_cpus", "0"))
                try:
                    r = generate(ep, proc, gargs, ips, how)
                finally:
                    stop(proc)
                if r is not None:
                    results.setdefault((key, ep[0]), []).append(r)
                print(f"[{rep + 1}/{a.repeats} {time.time() - started:5.0f}s] {key:12} {ep[0]:18} {r}",
                      flush=True)
            if key == "fanout":
                # Hubbub's p99 at half of its own saturation rate (this repeat's maximal rate).
                for ep in (WS, HSIO):
                    sat = results.get(("fanout", ep[0]), [{}])[-1].get("deliveries_per_s")
                    if not sat:
                        continue
                    rate = max(1, round(sat / 2 / a.subs))
                    proc = start(ep[1])
                    try:
                        r = generate(ep, proc, ["fanout", "--subs", str(a.subs), "--secs",
                                                str(a.secs), "--rate", str(rate)], 1)
                    finally:
                        stop(proc)
                    if r is not None:
                        r["rate"] = rate
                        results.setdefault(("half", ep[0]), []).append(r)
                    print(f"[{rep + 1}/{a.repeats}] half-sat     {ep[0]:18} rate {rate}: {r}", flush=True)
    write_report(a, plan, results, time.time() - started)


def raw_minutes(out):
    """The run's duration, as the existing report states it."""
    try:
        with open(os.path.join(out, "benchmarks.md")) as f:
            m = re.search(r"one run \((\d+) minutes\)", f.read())
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def run_machine(out):
    """The machine the run was made on, as the existing report states it."""
    try:
        with open(os.path.join(out, "benchmarks.md")) as f:
            m = re.search(r"Machine: ([^;]*; \S+ Node)\.", f.read())
        return m.group(1) if m else None
    except OSError:
        return None


def this_machine():
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores, Linux {os.uname().release}; {node} Node"


def stat(results, key, label, metric):
    xs = [r[metric] for r in results.get((key, label), []) if metric in r]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def write_report(a, plan, results, took, machine=None):
    lines = [
        "# Benchmarks", "",
        f"Generated by `bench/compare.py` from one run ({took / 60:.0f} minutes); every figure is the "
        f"median of {a.repeats} interleaved repeats, with the spread (min-max) where it matters. "
        "Server on CPU 0, generator (`hubbub-bench`, one thread) on CPU 1, loopback, a freshly "
        "started server for every run. Ratios compare Hubbub with peers measured in the same run; "
        "absolute figures move 20 % or more on these shared, virtualised machines.", "",
        f"Machine: {machine or this_machine()}. "
        "The open-files limit here is 20,000 per process, so one generator process (and one "
        "server) holds at most about 19,900 connections; beyond that, run several generator "
        "processes and raise the server's limit.", "",
        "A generator CPU of 90 % or more means the figure is a lower bound for the server: "
        "the generator, not the server, was the limit.", "",
    ]
    # Targets first.
    targets = []
    chart = []

    def ratio_row(title, key, metric, ours, peer, higher_better, need, fmt="{:,.0f}", unit=""):
        o, p = stat(results, key, ours, metric), stat(results, key, peer, metric)
        if not o or not p:
            return
        adv = (o[0] / p[0] if p[0] else float("inf")) if higher_better else \
            (p[0] / o[0] if o[0] else float("inf"))
        met = adv >= need
        targets.append(f"| {title} | {ours}: {fmt.format(o[0])}{unit} | {peer}: {fmt.format(p[0])}{unit} "
                       f"| {adv:.2f}x | {need:g}x | {'met' if met else '**not met**'} |")
        chart.append((f"{title.split(' (')[0]} vs {peer}", adv, need))

    lines += ["## Targets (issues 3 and 14)", "",
              "Advantage: how many times better Hubbub is (higher deliveries or round trips, "
              "lower memory or latency).", "",
              "| target | Hubbub | peer | advantage | needed | |", "| --- | --- | --- | --- | --- | --- |"]
    for ep in (WS, HSIO):
        ratio_row(f"fan-out {a.subs:,} subs, deliveries/s ({ep[0]})", "fanout", "deliveries_per_s",
                  ep[0], "socketioxide", True, 2)
    ratio_row(f"idle memory at {a.conns:,}", "idle", "bytes_per_conn", WS[0], "node ws", False, 2,
              unit=" B")
    ratio_row(f"idle memory at {a.conns_max:,}", "idle19k", "bytes_per_conn", WS[0], "node ws",
              False, 2, unit=" B")
    ratio_row("echo round trips/s", "echo", "round_trips_per_s", HSIO[0], "socketioxide", True, 1.3)
    ratio_row("echo p99", "echo", "p99_ms", HSIO[0], "socketioxide", False, 3, fmt="{:.2f}",
              unit=" ms")
    ratio_row("handshakes/s (Socket.IO)", "connect", "handshakes_per_s", HSIO[0], "socketioxide",
              True, 1)
    ratio_row("handshakes/s (/ws)", "connect", "handshakes_per_s", WS[0], "socketioxide", True, 1)
    ratio_row(f"fan-out, 8 in flight, deliveries/s ({WS[0]})", "fanout_w8", "deliveries_per_s",
              WS[0], "socketioxide", True, 2)
    ratio_row(f"fan-out, 8 in flight, deliveries/s ({HSIO[0]})", "fanout_w8", "deliveries_per_s",
              HSIO[0], "socketioxide", True, 2)
    ratio_row("echo on both cores, round trips/s", "echo_mc", "round_trips_per_s", HSIO[0],
              "socketioxide", True, 1.3)
    ratio_row("compressed 4 KB fan-out, deliveries/s", "deflate", "deliveries_per_s", WS[0],
              NWS_DEFLATE[0], True, 3)
    lines += targets

    def limit_row(title, shown, limit, met):
        lines.append(f"| {title} | {shown} | limit {limit} | | | {'met' if met else '**not met**'} |")

    for ep, limit in ((WS, 2048), (HSIO, 4096)):
        s = stat(results, "idle", ep[0], "bytes_per_conn")
        if s:
            limit_row(f"idle memory per connection ({ep[0]}, issue 14)", f"{s[0]:,.0f} B",
                      f"{limit:,} B", s[0] <= limit)
        s = stat(results, "idle_burst", ep[0], "after_burst_pct")
        if s:
            limit_row(f"idle memory after a burst ({ep[0]})", f"{s[0]:.1f} % of idle", "110 %",
                      s[0] <= 110)
    for ep in (WS, HSIO):
        s = stat(results, "echo_mc", ep[0], "p99_over_p50")
        if s:
            limit_row(f"echo on both cores, p99 / p50 ({ep[0]})", f"{s[0]:.1f}", "3", s[0] <= 3)
    for key, limit in (("idle", 6144), ("idle19k", 6144)):
        s = stat(results, key, HSIO[0], "bytes_per_conn")
        if s:
            limit_row(f"Socket.IO idle memory ({key})", f"{s[0]:,.0f} B", f"{limit:,} B",
                      s[0] <= limit)
    for ep in (WS, HSIO):
        s = stat(results, "half", ep[0], "p99_ms")
        r = stat(results, "half", ep[0], "rate")
        if s and r:
            limit_row(f"fan-out p99 at half saturation ({ep[0]}, {r[0]:.0f} msg/s)",
                      f"{s[0]:.1f} ms", "50 ms", s[0] < 50)
        s = stat(results, "jitter", ep[0], "min_share")
        if s:
            limit_row(f"jitter: every message to every client ({ep[0]})",
                      f"min share {s[1]:.2f} %", "100 %", s[1] >= 100)
    lines += ["", "![Hubbub's advantage over each peer](benchmarks.svg)", ""]

    for key, title, endpoints, gargs, ips, *how in plan + [("half", "Fan-out at half of Hubbub's own "
                                                      "saturation rate (measured in each repeat)",
                                                      [WS, HSIO], None, 1)]:
        cols = COLUMNS[key]
        rows = []
        for ep in endpoints:
            cells = []
            for metric, _, fmt in cols:
                s = stat(results, key, ep[0], metric)
                if not s:
                    cells.append("n/a")
                elif s[1] == s[2] or metric in ("lost", "conns", "complete"):
                    cells.append(fmt.format(s[0]))
                else:
                    cells.append(f"{fmt.format(s[0])} ({fmt.format(s[1])}-{fmt.format(s[2])})")
            g = stat(results, key, ep[0], "gen_cpu")
            sv = stat(results, key, ep[0], "server_cpu")
            if any(c != "n/a" for c in cells):
                rows.append(f"| {ep[0]} | " + " | ".join(cells) +
                            f" | {g[0]:.0f} % | {sv[0]:.0f} % |" if g and sv else
                            f"| {ep[0]} | " + " | ".join(cells) + " | | |")
        if not rows:
            continue
        lines += [f"## {title}", ""]
        if gargs:
            how = how[0] if how else {}
            if how:
                lines += [f"Server on CPUs {how['server_cpus']}, {how['gen_procs']} generator "
                          f"processes on CPUs {how['gen_cpus']}, each: "
                          f"`hubbub-bench --source-ips {ips} {' '.join(gargs)}`", ""]
            else:
                lines += [f"`hubbub-bench --source-ips {ips} {' '.join(gargs)}`", ""]
        lines += ["| server | " + " | ".join(c[1] for c in cols) + " | generator CPU | server CPU |",
                  "| --- " * (len(cols) + 3) + "|"] + rows + [""]

    notes = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            lines += [f.read().rstrip(), ""]
    lines += ["## Reproduce", "", "```sh", "(cd bench/peers && npm install)",
              "python3 bench/compare.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in sorted(vars(a).items())
                  if v is not None and v is not False and k not in ("out", "only", "report_only")),
              "```", "",
              "One scenario by hand: start a server pinned to CPU 0 (`taskset -c 0 "
              "target/release/hubbub --bind 127.0.0.1:3100`), create the room (`curl -XPOST "
              "127.0.0.1:3100/api/rooms -H 'content-type: application/json' -d "
              "'{\"name\":\"bench\",\"presence\":false}'`), then `taskset -c 1 "
              "target/release/hubbub-bench --url ws://127.0.0.1:3100/ws --server-pid PID fanout "
              "--subs 10000 --rate 5`.", ""]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "benchmarks.json"), "w") as f:
        json.dump({f"{k}|{n}": v for (k, n), v in sorted(results.items())}, f, indent=1)
    with open(os.path.join(a.out, "benchmarks.md"), "w") as f:
        f.write("\n".join(lines))
    svg_chart(chart, os.path.join(a.out, "benchmarks.svg"))
    print(f"wrote {a.out}/benchmarks.md, .svg and .json")


def svg_chart(rows, path):
    """Horizontal bars on a log scale: Hubbub's advantage over a peer, with the target."""
    import math
    width, bar_h, gap, left = 860, 24, 10, 380
    height = 50 + len(rows) * (bar_h + gap)
    top = max([r[1] for r in rows] + [2])
    span = math.log10(top) + 0.3
    scale = (width - left - 70) / span

    def x(v):
        return left + max(0.0, math.log10(max(v, 1e-3)) + 0.3) * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             '<text x="10" y="20" font-weight="bold">Hubbub\'s advantage over each peer '
             '(log scale; | = 1x, red tick = target)</text>']
    for i, (label, adv, need) in enumerate(rows):
        y = 36 + i * (bar_h + gap)
        color = "#3b7dd8" if adv >= need else "#d8843b"
        parts.append(f'<text x="10" y="{y + 16}">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(2, x(adv) - left):.0f}" height="{bar_h}" '
                     f'fill="{color}"/>')
        parts.append(f'<line x1="{x(need):.0f}" y1="{y - 2}" x2="{x(need):.0f}" y2="{y + bar_h + 2}" '
                     'stroke="#c00" stroke-width="2"/>')
        parts.append(f'<text x="{x(adv) + 6:.0f}" y="{y + 16}">{adv:.2f}x</text>')
    parts.append(f'<line x1="{x(1):.0f}" y1="30" x2="{x(1):.0f}" y2="{height - 4}" stroke="#999" '
                 'stroke-dasharray="4"/>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
