#!/usr/bin/env python3
"""Runs the same scenarios against Hubbub and its peers, interleaved, and writes
docs/benchmarks.md (a table of medians and spreads, ratios against the peer, and an SVG
chart) with the exact commands to reproduce.

    python3 bench/compare.py [--repeats 3] [--conns 10000] [--subs 1000] [--secs 8]

Servers run pinned to CPU 0 and the generator (hubbub-bench) to CPU 1; each repeat runs
every server once (A B C D, A B C D, ...), so drift on a shared machine hits all alike.
Peers: a Node `ws` broadcast server and a Node `socket.io` 4.8 server from bench/peers
(npm install there). Everything targets loopback and stops by itself.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release", "hubbub")
GEN = os.path.join(TARGET, "release", "hubbub-bench")
PEERS = os.path.join(ROOT, "bench", "peers")

SERVERS = {
    # name: (command, port, proto for the generator, url, peer of)
    "hubbub /ws": ([BIN, "--bind", "127.0.0.1:3100"], 3100, "v1", "ws://127.0.0.1:3100/ws", None),
    "node ws": (["node", "ws-broadcast.js"], 3101, "raw", "ws://127.0.0.1:3101/", "hubbub /ws"),
    "hubbub socket.io": ([BIN, "--bind", "127.0.0.1:3102"], 3102, "sio",
                         "ws://127.0.0.1:3102/socket.io/?EIO=4&transport=websocket", None),
    "node socket.io": (["node", "socketio-server.js"], 3103, "sio",
                       "ws://127.0.0.1:3103/socket.io/?EIO=4&transport=websocket", "hubbub socket.io"),
}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def start(name):
    cmd, port, _, _, _ = SERVERS[name]
    env = dict(os.environ, PORT=str(port), RUST_LOG="warn")
    cwd = PEERS if cmd[0] == "node" else tempfile.mkdtemp()
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if cmd[0] == "node":
                import socket
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            else:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/rooms",
                    data=b'{"name":"bench","presence":false}',
                    headers={"content-type": "application/json"})
                urllib.request.urlopen(req, timeout=2)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    time.sleep(0.5)


def generate(name, proc, scenario_args):
    _, _, proto, url, _ = SERVERS[name]
    cmd = ["taskset", "-c", "1", GEN, "--proto", proto, "--url", url,
           "--server-pid", str(proc.pid), *scenario_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    line = next((l for l in out.splitlines() if l.startswith("RESULT")), None)
    if not line:
        raise RuntimeError(f"{name}: no result\n{out}")
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+|nan)", line) if v != "nan"}


def median_spread(xs):
    return statistics.median(xs), (min(xs), max(xs))


def svg_chart(rows, path):
    """Horizontal bars: Hubbub's advantage as a ratio over its peer, per measure."""
    width, bar_h, gap, left = 720, 26, 12, 320
    height = 40 + len(rows) * (bar_h + gap)
    top = max(r[1] for r in rows) or 1
    scale = (width - left - 80) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="13">',
             f'<text x="10" y="22" font-weight="bold">Hubbub vs peer (higher is better for Hubbub)</text>']
    for i, (label, ratio) in enumerate(rows):
        y = 40 + i * (bar_h + gap)
        w = max(2, ratio * scale)
        parts.append(f'<text x="10" y="{y + 17}">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.0f}" height="{bar_h}" fill="#3b7dd8"/>')
        parts.append(f'<text x="{left + w + 6:.0f}" y="{y + 17}">{ratio:.1f}x</text>')
    x1 = left + scale
    parts.append(f'<line x1="{x1:.0f}" y1="34" x2="{x1:.0f}" y2="{height - 4}" stroke="#999" '
                 f'stroke-dasharray="4"/>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--secs", type=int, default=8)
    a = ap.parse_args()
    run(["cargo", "build", "--release", "-p", "hubbub", "-p", "hubbub-bench"], cwd=ROOT)
    if not os.path.isdir(os.path.join(PEERS, "node_modules")):
        run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=PEERS)
    for tool in ("taskset", "node"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required")
    scenarios = {
        "idle": ["idle", "--conns", str(a.conns)],
        "fanout": ["fanout", "--subs", str(a.subs), "--secs", str(a.secs)],
    }
    results = {(s, n): [] for s in scenarios for n in SERVERS}
    for rep in range(a.repeats):
        for scen, sargs in scenarios.items():
            for name in SERVERS:
                proc = start(name)
                try:
                    r = generate(name, proc, sargs)
                finally:
                    stop(proc)
                results[(scen, name)].append(r)
                print(f"[{rep + 1}/{a.repeats}] {scen:6} {name:18} {r}", flush=True)

    lines = ["# Benchmarks", "",
             "Generated by `bench/compare.py` from one run; every figure is the median of "
             f"{a.repeats} interleaved repeats, with the spread (min-max). Server on CPU 0, "
             "generator (`hubbub-bench`) on CPU 1, loopback, one generator process (the "
             "open-files limit here is about 20,000, so one process holds at most about "
             "19,000 connections). Ratios compare Hubbub with the peer measured in the same "
             "run; absolute figures move 20 % or more on these shared machines.", "",
             f"Machine: {os.cpu_count()} cores; `{sys.version.split()[0]}` Python, "
             f"{subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()} Node.", "",
             "| measure | server | median | spread | generator CPU | ratio vs peer |",
             "| --- | --- | --- | --- | --- | --- |"]
    chart = []
    measures = [
        ("idle", "bytes_per_conn", f"idle memory per connection ({a.conns} connections)", "bytes", False),
        ("fanout", "deliveries_per_s", f"fan-out to {a.subs} subscribers, max rate", "deliveries/s", True),
        ("fanout", "p99_ms", f"fan-out p99 latency ({a.subs} subscribers, max rate)", "ms", False),
    ]
    for scen, key, label, unit, higher_better in measures:
        for name, (_, _, _, _, peer_of) in SERVERS.items():
            xs = [r[key] for r in results[(scen, name)] if key in r]
            if not xs:
                continue
            med, (lo, hi) = median_spread(xs)
            gens = [r.get("gen_cpu") for r in results[(scen, name)] if r.get("gen_cpu") is not None]
            gen = f"{statistics.median(gens):.0f} %" if gens else "n/a"
            ratio = ""
            if peer_of is None:
                peer = next(n for n, v in SERVERS.items() if v[4] == name)
                pxs = [r[key] for r in results[(scen, peer)] if key in r]
                if pxs:
                    pm = statistics.median(pxs)
                    adv = (med / pm) if higher_better else (pm / med if med else 0)
                    word = "better" if adv >= 1 else "worse"
                    ratio = f"{adv:.2f}x ({word}) vs {peer}"
                    chart.append((f"{label.split(' (')[0]}: {name}", adv))
            lines.append(f"| {label} | {name} | {med:,.0f} {unit} | {lo:,.0f}-{hi:,.0f} | {gen} | {ratio} |")
    lines += ["", "![Hubbub vs peer](benchmarks.svg)", "",
              "A generator CPU at 90 % or more means the figure is a lower bound for the server.",
              "Latency at maximal rate is queueing at each server's own saturation point (Hubbub "
              "then moves many times more messages than its peer, through a saturated generator): "
              "it is reported, not compared fairly; latency at a fixed, equal rate is the fair "
              "comparison and is still to be added to this script.", "",
              "## Reproduce", "", "```sh", "(cd bench/peers && npm install)",
              f"python3 bench/compare.py --repeats {a.repeats} --conns {a.conns} --subs {a.subs} --secs {a.secs}",
              "```", ""]
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    import json
    with open(os.path.join(ROOT, "docs", "benchmarks.json"), "w") as f:
        json.dump({f"{s}|{n}": v for (s, n), v in results.items()}, f, indent=1)
    with open(os.path.join(ROOT, "docs", "benchmarks.md"), "w") as f:
        f.write("\n".join(lines))
    svg_chart(chart, os.path.join(ROOT, "docs", "benchmarks.svg"))
    print("wrote docs/benchmarks.md and docs/benchmarks.svg")


if __name__ == "__main__":
    main()
