#!/usr/bin/env python3
"""Runs every program of this directory on lowpause's Lox VM and on clox, side by side, and
prints a Markdown table: median wall time of N runs each (runs interleaved, so both see the
same machine), the ratio, peak RSS, and the longest collector-caused pause or stall.

    examples/lox/bench/compare.py CLOX_DIR [--runs N]

CLOX_DIR holds `clox` and `clox-gcstat`, the book's C interpreter built with gcc -O2 (the second
prints its stop-the-world collections at exit: "GCSTAT cycles=.. max_ms=.. sum_ms=..").
lowpause's stall is the "longest stall" its `--gc-stats` report prints (mark assists, allocation
waits, handshake waits); its scope wait is how long a cycle waited for the VM's safepoint.
"""
import math
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def timed(cmd):
    """Wall seconds, peak RSS in KiB, and stderr of one run."""
    r = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    m = re.findall(r"TIME ([0-9.]+) ([0-9]+)", r.stderr)[-1]
    return float(m[0]), int(m[1]), r.stderr


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    clox_dir = args[0]
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else 3
    subprocess.run(["cargo", "build", "--release", "--example", "lox"], cwd=ROOT, check=True)
    lox = os.path.join(ROOT, "target", "release", "examples", "lox")
    clox = os.path.join(clox_dir, "clox")
    programs = sorted(p for p in os.listdir(HERE) if p.endswith(".lox"))
    print("| program | lowpause | clox | ratio | peak RSS lowpause / clox | longest stall lowpause (cause) | longest pause clox | cycle's wait on the VM |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for p in programs:
        path = os.path.join(HERE, p)
        ours, theirs, rss_ours, rss_theirs = [], [], [], []
        for _ in range(runs):
            t, rss, _ = timed([lox, path])
            ours.append(t)
            rss_ours.append(rss)
            t, rss, _ = timed([clox, path])
            theirs.append(t)
            rss_theirs.append(rss)
        _, _, report = timed([lox, "--gc-stats", path])
        _, _, gcstat = timed([os.path.join(clox_dir, "clox-gcstat"), path])
        stall = re.search(r"longest stall: ([0-9.]+) µs \(([^)]*)\)", report)
        stall = f"{float(stall.group(1)) / 1000:.2f} ms ({stall.group(2)})" if stall else "none"
        wait = re.search(r"longest wait of a cycle on a thread's scope: ([0-9.]+) µs", report)
        wait = f"{float(wait.group(1)) / 1000:.2f} ms" if wait else "none"
        pause = re.search(r"max_ms=([0-9.]+)", gcstat)
        pause = f"{float(pause.group(1)):.2f} ms" if pause else "no collection"
        a, b = statistics.median(ours), statistics.median(theirs)
        ratios.append(a / b)
        print(
            f"| {p} | {a:.2f} s | {b:.2f} s | {a / b:.2f} | {statistics.median(rss_ours) / 1024:.1f} / "
            f"{statistics.median(rss_theirs) / 1024:.1f} MiB | {stall} | {pause} | {wait} |"
        )
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\ngeometric mean of the ratios: {geo:.2f} (medians of {runs} runs each, interleaved)")


if __name__ == "__main__":
    main()
