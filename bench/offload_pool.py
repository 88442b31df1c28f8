#!/usr/bin/env python3
"""The cpu offload pool against compression on the channel threads.

    bench/offload_pool.py [--reps 3] [--ram 1G] [--build build]

Runs `zmigrate demo` (loopback, an idle guest, zstd) with 8 and with 2
channels, each compressing on its own threads and with `--compress-threads
2`, in rotation, each run after touching and freeing 4 GiB (free-page
reporting: see bench/vs_qemu.py's prewarm).  Prints medians of the total
time and of each side's CPU seconds (the sender's includes the pool's
workers), and how many batches went to the pool.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vs_qemu import prewarm  # noqa: E402

CASES = [("8 channels", ["--multifd-channels", "8"]),
         ("8 channels + 2 workers",
          ["--multifd-channels", "8", "--compress-threads", "2"]),
         ("2 channels", ["--multifd-channels", "2"]),
         ("2 channels + 2 workers",
          ["--multifd-channels", "2", "--compress-threads", "2"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ram", default="1G")
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    runs = {name: [] for name, _ in CASES}
    for _ in range(args.reps):
        for name, extra in CASES:
            prewarm(4 << 30)
            out = subprocess.run(
                [os.path.join(args.build, "cli", "zmigrate"), "demo",
                 "--guest-ram", args.ram, "--compression", "zstd",
                 "--workload", "idle", "--json", "--quiet"] + extra,
                check=True, capture_output=True, text=True).stdout
            sides = {r["side"]: r for r in
                     (json.loads(line) for line in out.splitlines()
                      if line.startswith("{"))}
            runs[name].append(sides)
    print(f"{args.ram} idle guest, zstd, loopback; medians of {args.reps}.\n")
    print("| setting | total ms | sender CPU-s | receiver CPU-s | "
          "batches to the pool | times |")
    print("|---|---:|---:|---:|---:|---|")
    for name, sides in runs.items():
        def med(f):
            return statistics.median(f(s) for s in sides)
        print(f"| {name} | {med(lambda s: s['send']['total-time']):.0f} | "
              f"{med(lambda s: s['send']['cpu-seconds']):.2f} | "
              f"{med(lambda s: s['recv']['cpu-seconds']):.2f} | "
              f"{sides[0]['send']['offload']['offloaded']} | "
              f"{', '.join(str(s['send']['total-time']) for s in sides)} |")


if __name__ == "__main__":
    main()
