#!/usr/bin/env python3
"""Two builds of zmigrate on the same data, interleaved: is B as fast as A?

Runs, for each repetition, in A-B then B-A order (so drift and warm-up
fall on both alike):
  - `zmigrate-bench codecs` on the corpus (engine/raw ratios, MB/cpu-s);
  - `zmigrate demo`: a loopback migration of an idle guest (default 2 GiB,
    zstd, 4 channels), its total time, throughput and both sides' CPU.
Prints medians per build and B/A in Markdown.  Speed is shown, not
asserted: read the ratios against the run-to-run spread it also prints.

    bench/compare_builds.py BUILD_A BUILD_B [--reps 5] [--ram 2G]

BUILD_x is a Meson build directory (bench/zmigrate-bench, cli/zmigrate).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vs_qemu import prewarm  # noqa: E402  (free-page reporting, see there)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("ZM_CORPUS",
                        os.path.join(REPO, "..", "shared", "corpus"))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         cwd=REPO).stdout
    return [json.loads(line) for line in out.splitlines()
            if line.startswith("{")]


def codecs(build, codec_list):
    rows = run_json([os.path.join(build, "bench", "zmigrate-bench"), "codecs",
                     "--data", "corpus:" + CORPUS, "--codec", codec_list,
                     "--runs", "3",
                     "--json"])
    return {f"{r['codec']}:{r['level']}": r for r in rows
            if r.get("type") == "codec"}


def demo(build, ram, codec, warm):
    if warm:
        prewarm(warm)
    rows = run_json([os.path.join(build, "cli", "zmigrate"), "demo",
                     "--guest-ram", ram, "--compression", codec,
                     "--workload", "idle", "--json", "--quiet"])
    sides = {r["side"]: r for r in rows}
    if any(s["status"] != "completed" for s in sides.values()):
        sys.exit(f"{build}: the migration did not complete: {sides}")
    return sides


def spread(values):
    return (max(values) - min(values)) / statistics.median(values) * 100


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ram", default="2G")
    ap.add_argument("--codec", default="zstd")
    ap.add_argument("--codecs", default="none,lz4:1,zstd:1,zlib:1,deflate:1")
    ap.add_argument("--prewarm", type=float, default=6,
                    help="GiB to touch and free before each migration, so "
                    "that both builds find memory the host has backed "
                    "(0: none)")
    args = ap.parse_args()
    builds = {"A": args.a, "B": args.b}
    cod = {"A": [], "B": []}
    mig = {"A": [], "B": []}
    for rep in range(args.reps):
        order = "AB" if rep % 2 == 0 else "BA"
        for key in order:
            cod[key].append(codecs(builds[key], args.codecs))
        for key in order:
            mig[key].append(demo(builds[key], args.ram, args.codec,
                                 int(args.prewarm * (1 << 30))))
        print(f"repetition {rep + 1} of {args.reps} done", file=sys.stderr)

    print(f"A = `{args.a}`, B = `{args.b}`; {args.reps} repetitions, "
          "medians; spread = (max - min) / median.\n")
    print("Engine/raw: the engine's CPU time against the raw codec call's "
          "on the same batches in the same pass (the robust figure on a "
          "shared machine); MB/cpu-s: the engine's own speed.\n")
    print("| codec | stage | A engine/raw | B engine/raw | B/A | "
          "A MB/cpu-s | B MB/cpu-s | B/A |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    stages = [("live compress", "live_vs_raw", "live_comp_mbcpus"),
              ("stable compress", "stable_vs_raw", "stable_comp_mbcpus"),
              ("decode", "dec_vs_raw", "eng_dec_mbcpus")]
    for name in cod["A"][0]:
        for stage, ratio, speed in stages:
            ra = statistics.median(run[name][ratio] for run in cod["A"])
            rb = statistics.median(run[name][ratio] for run in cod["B"])
            sa = statistics.median(run[name][speed] for run in cod["A"])
            sb = statistics.median(run[name][speed] for run in cod["B"])
            print(f"| {name} | {stage} | {ra:.3f} | {rb:.3f} | {rb / ra:.3f} "
                  f"| {sa:.1f} | {sb:.1f} | {sb / sa:.3f} |")
    print(f"\n{args.ram} idle guest, {args.codec}, `zmigrate demo` "
          "(loopback UNIX socket, 4 channels):\n")
    print("| figure | A | B | B/A | spread A | spread B |")
    print("|---|---:|---:|---:|---:|---:|")
    figures = [("total time, ms", lambda s: s["send"]["total-time"]),
               ("throughput, Mbit/s", lambda s: s["send"]["ram"]["mbps"]),
               ("sender CPU-s", lambda s: s["send"]["cpu-seconds"]),
               ("receiver CPU-s", lambda s: s["recv"]["cpu-seconds"])]
    for label, get in figures:
        a = [get(s) for s in mig["A"]]
        b = [get(s) for s in mig["B"]]
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {label} | {ma:.1f} | {mb:.1f} | {mb / ma:.3f} | "
              f"{spread(a):.1f}% | {spread(b):.1f}% |")


if __name__ == "__main__":
    main()
