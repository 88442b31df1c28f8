#!/usr/bin/env python3
"""A chart (PNG) of what `--compression auto` chose over a migration, from
the sender's JSON (issue 12).

    zmigrate send ... --compression auto --json > result.json
    bench/plot_auto.py result.json -o chart.png

Reads the last JSON object in RESULT that has a "compression-auto" member
(the sender's line of `zmigrate send --json`, pretty-printed or not; a
bench/auto_series.py record, whose member is "compression_auto", also
does).  Its "timeline" holds one point per controller window:

    {"time-ms": T, "method": "zstd:3", "raw-mbps": X, "wire-mbps": Y,
     "link-mbps": Z or null, "cores": C}

The chosen method is drawn as a step line on the right axis (the method
chosen at T holds until the next point); the delivered rate (raw-mbps,
guest bytes per second) and wire-mbps of the window ending at T, and the
link rate the controller estimated, on the left axis, in Mbit/s.  The
methods' order on the right axis is "methods" (the controller's list) when
present, else none, lz4, deflate, zlib, zstd by level.  The title gives the
share of batches per method ("methods"[].batches, or a "batches" object).
Missing keys are left out of the chart.

gnuplot draws it: the script goes to its stdin, the data through a
temporary file (tempfile.mkstemp), deleted afterwards.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

FAMILY = {"none": 0, "lz4": 1, "deflate": 2, "zlib": 3, "zstd": 4}


def find_result(text):
    """The last JSON object with compression-auto data: the file as one
    object, else line by line."""
    objs = []
    try:
        objs = [json.loads(text)]
    except ValueError:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    objs.append(json.loads(line))
                except ValueError:
                    pass
    for o in reversed(objs):
        if isinstance(o, dict):
            ca = o.get("compression-auto", o.get("compression_auto"))
            if isinstance(ca, dict):
                return o, ca
    return (objs[-1] if objs and isinstance(objs[-1], dict) else None), None


def num(v):
    """A finite number, or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v if math.isfinite(v) else None


def method_key(name):
    fam, _, level = name.partition(":")
    lv = int(level) if level.isdigit() else 0
    return (FAMILY.get(fam, len(FAMILY)), fam, lv)


def batches(ca):
    """{method: batches} from "methods" [{"method", "batches"}] or "batches"."""
    b = ca.get("batches")
    if isinstance(b, dict):
        return {str(k): v for k, v in b.items() if num(v) is not None}
    out = {}
    for m in ca.get("methods") or []:
        if isinstance(m, dict) and isinstance(m.get("method"), str) and num(m.get("batches")) \
                is not None:
            out[m["method"]] = m["batches"]
    return out


def same_method(a, b):
    """lz4 and lz4:1 name one method when one side gives no level."""
    return a == b or (":" not in a and b.startswith(a + ":")) or \
        (":" not in b and a.startswith(b + ":"))


def method_axis(ca, points):
    """Methods in the order of the right axis."""
    listed = [m["method"] for m in ca.get("methods") or []
              if isinstance(m, dict) and isinstance(m.get("method"), str)]
    if not listed:
        listed = sorted(batches(ca), key=method_key)
    seen = [p["method"] for p in points if p["method"] is not None]
    extra = sorted({m for m in seen if not any(same_method(m, x) for x in listed)},
                   key=method_key)
    return sorted(listed + extra, key=method_key) if extra else listed


def gp_str(s):
    """A gnuplot single-quoted string (no escapes inside but '')."""
    return "'" + str(s).replace("\n", " ").replace("'", "''") + "'"


def title(res, ca):
    """The chart's title lines: the run, then the share of batches per method."""
    parts = []
    if isinstance(res, dict):
        ram = res.get("ram") if isinstance(res.get("ram"), dict) else {}
        total = num(ram.get("total", res.get("ram_total_bytes")))
        if total:
            parts.append("%.0f MiB guest" % (total / 2 ** 20))
        t = num(res.get("total-time", res.get("total_time_ms")))   # auto_series: the latter
        if t is not None:
            parts.append("%.2f s" % (t / 1e3))
        ratio = num(res.get("compression-ratio", res.get("compression_ratio")))
        if ratio:
            parts.append("ratio %.2f" % ratio)
        if isinstance(res.get("status"), str):
            parts.append(res["status"])
    b = batches(ca)
    nb = sum(b.values())
    head = "--compression auto" + (": " + "; ".join(parts) if parts else "")
    return [head] + (["batches: " + ", ".join(
        "%s %.0f%%" % (m, 100 * n / nb)
        for m, n in sorted(b.items(), key=lambda kv: -kv[1]) if n)] if nb else [])


def main():
    ap = argparse.ArgumentParser(description="Chart of --compression auto's choices and "
                                             "delivered rate from zmigrate send's JSON.")
    ap.add_argument("result", help="the sender's JSON (zmigrate send --json)")
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    ap.add_argument("--size", default="1000,500", help="width,height in pixels")
    a = ap.parse_args()
    if not re.fullmatch(r"\d+,\d+", a.size):
        ap.error("--size wants WIDTH,HEIGHT")
    if "\n" in a.output:
        ap.error("the output path has a newline")
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("plot_auto: gnuplot is not installed (apt-get install gnuplot-nox)",
              file=sys.stderr)
        sys.exit(1)
    with open(a.result) as f:
        res, ca = find_result(f.read())
    if ca is None:
        sys.exit("plot_auto: no \"compression-auto\" object in %s (was it "
                 "zmigrate send --compression auto --json?)" % a.result)
    points = [p for p in ca.get("timeline") or []
              if isinstance(p, dict) and num(p.get("time-ms")) is not None]
    for p in points:
        p["method"] = p["method"] if isinstance(p.get("method"), str) else None
    if not points:
        sys.exit("plot_auto: the timeline in %s is empty (a migration shorter than one "
                 "window?)" % a.result)
    points.sort(key=lambda p: p["time-ms"])
    axis = method_axis(ca, points)

    def index(m):
        for i, x in enumerate(axis):
            if m is not None and same_method(m, x):
                return i
        return None

    fd, data = tempfile.mkstemp(prefix="plot-auto-", suffix=".dat")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("# time_s method_index raw_mbps wire_mbps link_mbps\n")
            # A first row at 0 s carries the first window's rates back to its start.
            for p in [dict(points[0], method=None, **{"time-ms": 0})] + points:
                link = num(p.get("link-mbps"))
                row = [p["time-ms"] / 1e3, index(p["method"]), num(p.get("raw-mbps")),
                       num(p.get("wire-mbps")), link if link else None]
                f.write(" ".join("?" if v is None else repr(v) for v in row) + "\n")
        plots = []
        cols = {3: ("delivered (raw-mbps)", "lc rgb '#1f77b4' lw 2"),
                4: ("wire-mbps", "lc rgb '#2ca02c' lw 1.5"),
                5: ("link estimate (link-mbps)", "lc rgb '#7f7f7f' dt 2 lw 1")}
        keys = {3: "raw-mbps", 4: "wire-mbps", 5: "link-mbps"}
        for col, (name, style) in cols.items():
            if any(num(p.get(keys[col])) for p in points):
                plots.append("%s using 1:%d axes x1y1 with fsteps %s title %s"
                             % (gp_str(data), col, style, gp_str(name)))
        plots.append("%s using 1:2 axes x1y2 with steps lc rgb '#d62728' lw 3 title %s"
                     % (gp_str(data), gp_str("method (right axis)")))
        w, h = a.size.split(",")
        script = "\n".join([
            "set terminal %s size %s,%s" % (
                "pngcairo" if "pngcairo" in terminals(gnuplot) else "png", w, h),
            "set termoption noenhanced",
            "set output %s" % gp_str(a.output),
            "set datafile missing '?'",
            "set title %s" % " . \"\\n\" . ".join(gp_str(x) for x in title(res, ca)),
            "set xlabel 'time since the migration began (s)'",
            "set ylabel 'Mbit/s'",
            "set yrange [0:*]",
            "set y2range [-0.5:%g]" % (len(axis) - 0.5),
            "set y2tics (%s)" % ", ".join("%s %d" % (gp_str(m), i) for i, m in enumerate(axis)),
            "set ytics nomirror",
            "set grid xtics ytics",
            "set key outside bottom center horizontal",
            "plot " + ", \\\n     ".join(plots),
            ""])
        p = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
        if p.returncode != 0:
            sys.exit("plot_auto: gnuplot failed: %s" % p.stderr.strip()[-1000:])
        if p.stderr.strip():
            print(p.stderr.strip(), file=sys.stderr)
    finally:
        os.unlink(data)
    print("plot_auto: %s (%d points, %d methods)" % (a.output, len(points), len(axis)),
          file=sys.stderr)


def terminals(gnuplot):
    """The names of the terminals this gnuplot has."""
    p = subprocess.run([gnuplot], input="print GPVAL_TERMINALS\n", text=True,
                       capture_output=True)
    return p.stderr.split() + p.stdout.split()


if __name__ == "__main__":
    main()
