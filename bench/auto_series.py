#!/usr/bin/env python3
"""`--compression auto` against every fixed method, per link and per kind of
guest data (issue 12, "Measured"), optionally beside QEMU 7.2.

A cell is one link and one kind of data; in each cell every method migrates
an idle guest of the link's size once per repetition:

    zmigrate recv --listen tcp:HOST:PORT --json --quiet [RECV_EXTRA]
    zmigrate send --to tcp:HOST:PORT --guest-ram SIZE --workload idle DATA \\
        --multifd-channels 8 --compression NAME [--compression-level N] \\
        --max-bandwidth unlimited [EXTRA] --json --quiet

* Links (--links): `unlimited` is loopback; any other name is a tc rate
  (10gbit, 1gbit, 100mbit, ...): both ends run in two network namespaces
  joined by a veth pair whose two ends are shaped with tc tbf at that rate
  (bench/vs_qemu.py's Link; needs root).  The link is the only limit: no
  --max-bandwidth.  The first time each link comes up, one TCP stream
  crosses it for --link-check seconds (a "link-check" record).  Guest RAM
  per link: --size-LINK SIZE (default 2G unlimited and 10gbit, 1G 1gbit,
  256M 100mbit: about 20 minutes a repetition on 2 cores).
* Data (--data): corpus = `--data corpus:DIR` (the Silesia files, tiled);
  random = `--data random` (incompressible); halfzero = the corpus with
  `--zero-percent 50`; generated = `--data generated`.
* Methods (--methods): `auto`, `none`, or NAME[:LEVEL], which becomes
  `--compression NAME [--compression-level LEVEL]`.
* --extra "ARGS" goes to every send (e.g. "--compress-threads 1" for a
  CPU-starved host); it is recorded, and the summary keeps series with
  different --extra apart.

Repetitions are interleaved: every cell of repetition 1, then of 2, ...;
inside a repetition a link is set up once for all its cells, and the method
order rotates by one from one repetition to the next.  Before repetition 1,
--verify first runs each data kind and method once, untimed, with `--verify`
at loopback and --verify-size.  Before every run, memory is touched and
freed (--prewarm; see vs_qemu.prewarm).

Measured as bench/vs_qemu.py measures, with its functions (imported):
* total time and downtime: the sender's JSON; guest throughput = guest RAM
  bytes * 8 / total time (Gbit/s);
* CPU: utime+stime of each process from the last 5 ms sample before the
  first data connection (the guest fill left out) to its JSON line;
* wire bytes: the loopback tx counter, or both veth ends' tx counters;
* the sender JSON's "compression-auto" object, passed through whole.

--qemu also migrates, in the same repetitions and for corpus data only, a
paused TCG QEMU 7.2 guest holding the same bytes, with multifd none, zlib
and zstd (vs_qemu.run_qemu; the level it sets, 1, is QEMU 7.2's default for
both), and the summary gives auto's median time over QEMU's best method's.

Output: one JSON object per run appended to --out, progress on stderr, then
a Markdown summary (stdout, and --summary FILE): per cell each method's
median total time, the best and worst fixed method, auto/best and
worst/auto, PASS/MISS for "auto within 5% of the best" and "auto at least
1.5x better than the worst".  --summarize FILE... rebuilds it from earlier
JSON lines; --dry-run prints the commands and runs nothing.

    bench/auto_series.py --reps 3 --qemu --out auto.jsonl --summary auto.md
    bench/auto_series.py --reps 3 --extra "--compress-threads 1" --out auto-ct1.jsonl
    bench/auto_series.py --summarize auto.jsonl auto-ct1.jsonl
"""

import argparse
import atexit
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_qemu as vq  # noqa: E402  (processes, /proc sampling, links, summary helpers)
import plot_auto  # noqa: E402  (reading "compression-auto")

DEFAULT_LINKS = "unlimited,10gbit,1gbit,100mbit"
DEFAULT_DATA = "corpus,random,halfzero,generated"
DEFAULT_METHODS = "auto,none,lz4,deflate:1,zstd:1,zstd:3,zstd:9"
DEFAULT_SIZES = {"unlimited": "2G", "10gbit": "2G", "1gbit": "1G", "100mbit": "256M"}
QEMU_METHODS = ("none", "zlib", "zstd")
WITHIN_BEST = 1.05        # auto's time at most 5% above the best fixed method's
OVER_WORST = 1.5          # the worst fixed method's time at least 1.5x auto's
QEMU_AIM = 0.6            # auto's time at most 0.6x QEMU's best, on links above 100 Mbit/s


def log(*a):
    print("[auto_series %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def parse_size(s):
    """zmigrate's sizes: binary units (256M = 256 MiB)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)(?:i?B)?", s.strip(), re.I)
    if not m:
        raise ValueError("bad size %r" % s)
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def link_bits(link):
    """A tc rate in bit/s (kbit, mbit, gbit, tbit, bit; bps = bytes), or
    None for unlimited."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)(bit|bps)", link.lower())
    if not m:
        return None
    v = float(m.group(1)) * 1000 ** " kmgt".index(m.group(2) or " ")
    return v * (8 if m.group(3) == "bps" else 1)


def method_args(method):
    name, _, level = method.partition(":")
    return ["--compression", name] + (["--compression-level", level] if level else [])


def data_args(kind, corpus_dir):
    kinds = {"corpus": ["--data", "corpus:" + corpus_dir],
             "random": ["--data", "random"],
             "halfzero": ["--data", "corpus:" + corpus_dir, "--zero-percent", "50"],
             "generated": ["--data", "generated"]}
    return kinds[kind]


def make_net(a, link):
    return vq.Loopback() if link == "unlimited" else \
        vq.Link(link, a.tbf_burst, a.tbf_latency)


# ------------------------------------------------------------------ one run
def run_send(a, net, send_args, recv_args):
    """One zmigrate migration over net, measured as vs_qemu.run_zmigrate
    measures (which builds its own send command line: --data corpus and one
    level for all methods).  send_args: everything after `send --to URI`."""
    port = net.port()
    uri = "tcp:%s:%d" % (net.dst_host, port)
    rec = {"tool": "zmigrate", "status": "error"}
    recv_cmd = [a.zmigrate, "recv", "--listen", uri, "--json", "--quiet"] + recv_args
    send_cmd = [a.zmigrate, "send", "--to", uri] + send_args
    rec["send_cmd"] = " ".join(map(shlex.quote, send_cmd))
    recv = vq.start(net.wrap("dst", ["stdbuf", "-oL"] + recv_cmd),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    send = None
    try:
        rr = vq.JsonLine(recv, net)
        rr.start()
        deadline = time.monotonic() + 10
        while not vq.tcp_count(recv.pid, port, "0A"):
            if time.monotonic() > deadline or recv.poll() is not None:
                raise RuntimeError("zmigrate recv did not listen: %s"
                                   % recv.stderr.read().decode(errors="replace")[-500:])
            time.sleep(0.01)
        c0 = net.counters()
        t_launch = time.monotonic()
        send = vq.start(net.wrap("src", ["stdbuf", "-oL"] + send_cmd),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sr = vq.JsonLine(send, net)
        sr.start()
        prev = (vq.proc_cpu_s(send.pid), vq.proc_cpu_s(recv.pid))
        begin = None
        while begin is None and send.poll() is None:
            if vq.tcp_count(recv.pid, port, "01"):
                begin = (time.monotonic(), prev[0], prev[1], vq.machine_cpu(), vq.self_cpu_s())
                break
            prev = (vq.proc_cpu_s(send.pid), vq.proc_cpu_s(recv.pid))
            time.sleep(0.005)
        # Until both JSON lines, the timeout, or: the sender ended without its
        # line (a usage error: the receiver would listen on) and 2 s passed,
        # or it ended with it and the receiver did not answer within 30 s.
        deadline = time.monotonic() + a.run_timeout
        send_end = None
        while (sr.line is None or rr.line is None) and time.monotonic() < deadline:
            if send.poll() is not None:
                send_end = send_end or time.monotonic()
                if recv.poll() is not None or \
                        time.monotonic() - send_end > (30 if sr.line else 2):
                    break
            time.sleep(0.005)
        vq.stop(send, 30)
        vq.stop(recv, 30 if rr.line else 1)
        sr.join(5)
        rr.join(5)
        rec["send_rc"], rec["recv_rc"] = send.returncode, recv.returncode
        if begin is None or sr.line is None or rr.line is None:
            rec["stderr"] = (send.stderr.read().decode(errors="replace")[-1000:]
                             + recv.stderr.read().decode(errors="replace")[-1000:])
            return rec
        s, r = json.loads(sr.line), json.loads(rr.line)
        t0, s_cpu0, r_cpu0, busy0, me0 = begin
        last = max(sr.at, rr.at, key=lambda at: at[0])
        c1 = {k: max(sr.at[2][k], rr.at[2][k]) for k in c0}
        s_cpu, r_cpu = sr.at[1] - s_cpu0, rr.at[1] - r_cpu0
        machine = vq.machine_delta(busy0, last[3])
        total_ms = s.get("total-time")
        ram = s.get("ram", {})
        rec.update({
            "status": s["status"] if r["status"] == s["status"] else
            "%s/%s" % (s["status"], r["status"]),
            "total_time_ms": total_ms, "downtime_ms": s.get("downtime"),
            "setup_time_ms": s.get("setup-time"), "iterations": s.get("iterations"),
            "ram_total_bytes": ram.get("total"), "ram_normal_pages": ram.get("normal"),
            "ram_duplicate_pages": ram.get("duplicate"),
            "sent_bytes_own_count": ram.get("transferred"),
            "compression_ratio": s.get("compression-ratio"),
            "guest_gbit_s": round(ram["total"] * 8 / total_ms / 1e6, 3)
            if total_ms and ram.get("total") else None,
            "src_cpu_s": round(s_cpu, 2), "dst_cpu_s": round(r_cpu, 2),
            "src_thread_cpu_s": s.get("cpu-seconds"), "dst_thread_cpu_s": r.get("cpu-seconds"),
            "fill_s": round(t0 - t_launch, 2),
            "wire_bytes": vq.wire(c0, c1), "wire_by_counter": {k: c1[k] - c0[k] for k in c0},
            "other_cpu_pct": round(100 * (sum(machine.values()) - s_cpu - r_cpu
                                          - (last[4] - me0)) / (last[0] - t0), 1),
            "machine_cpu_s": machine,
            "offload": s.get("offload"),
        })
        if "compression-auto" in s:
            rec["compression_auto"] = s["compression-auto"]
        return rec
    finally:
        for p in (send, recv):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                vq.stop(p, 5)


def run_qemu(a, qmb, net, method, size_bytes, src_imgs):
    """One QEMU migration of the corpus (vs_qemu.run_qemu, unverified); the
    source image of each guest size is filled once, as vs_qemu does it."""
    if size_bytes not in src_imgs:
        src_imgs[size_bytes] = os.path.join(
            qmb.SHM, "auto-series-%d-src-%dM.ram" % (os.getpid(), size_bytes // vq.MiB))
        qmb.fill_source(src_imgs[size_bytes], "silesia", size_bytes, argparse.Namespace(
            scratch_tmp=tempfile.gettempdir(), silesia_dir=a.corpus_dir, corpus_mib=256,
            mixed_dirs=None))
    qa = argparse.Namespace(qemu=a.qemu_binary, size_bytes=size_bytes, channels=a.channels,
                            level=1, downtime_limit=a.downtime_limit, run_timeout=a.run_timeout)
    rec = vq.run_qemu(qa, qmb, net, method, False, src_imgs[size_bytes])
    rec["level"] = 1 if method in qmb.LEVEL_PARAM else None      # QEMU 7.2's default
    return rec


def prewarm(a, size_bytes):
    """Touches and frees --prewarm GiB (default: both ends' RAM plus 1 GiB),
    leaving 3 GiB available."""
    want = a.prewarm * vq.GiB if a.prewarm is not None else 2 * size_bytes + vq.GiB
    n = int(min(want, vq.mem_available() - 3 * vq.GiB)) // (64 * vq.MiB) * (64 * vq.MiB)
    if n > 0:
        vq.prewarm(n)


# ------------------------------------------------------------------- summary
def series_name(r):
    """Runs with other --extra or --recv-extra arguments are another series."""
    parts = [("send `%s`" % r["extra"]) if r.get("extra") else "",
             ("recv `%s`" % r["recv_extra"]) if r.get("recv_extra") else ""]
    return ", ".join(p for p in parts if p) or "default"


def cell(r):
    return r["link"], r["data"], r["size"]


def ordered(values):
    return list(dict.fromkeys(values))


def scaled(v, div):
    return None if v is None else v / div


def auto_choices(runs):
    """Share of batches per method over all of auto's runs in a cell."""
    total = {}
    for r in runs:
        for m, n in plot_auto.batches(r.get("compression_auto") or {}).items():
            total[m] = total.get(m, 0) + n
    s = sum(total.values())
    if not s:
        return "-"
    return ", ".join("%s %.0f%%" % (m, 100 * n / s)
                     for m, n in sorted(total.items(), key=lambda kv: -kv[1]) if n)


def summarize(records):
    """Markdown: per series and cell, each method's median total time, the
    best and worst fixed method, auto/best, worst/auto and the two marks;
    then details per method, auto's choices, QEMU, link checks, failures."""
    med, fmt, ratio = vq.med, vq.fmt, vq.ratio
    all_runs = [r for r in records if r.get("type") == "run" and not r.get("verify_run")]
    runs = [r for r in all_runs if r.get("status") == "completed"]
    out = []
    for series in ordered(series_name(r) for r in all_runs):
        sr = [r for r in runs if series_name(r) == series]
        zm = [r for r in sr if r["tool"] == "zmigrate"]
        methods = ordered(r["method"] for r in all_runs
                          if series_name(r) == series and r["tool"] == "zmigrate")
        methods.sort(key=lambda m: m != "auto")            # auto first, the rest as given
        fixed = [m for m in methods if m != "auto"]
        cells = ordered((r["link"], r["data"], r["size"]) for r in zm)
        nreps = sorted({len([r for r in zm if cell(r) == c and r["method"] == m])
                        for c in cells for m in methods})
        out.append("### Series %s: %d channels, idle guest, median total time in s "
                   "(medians of %s)\n" % (
                       series if series == "default" else "with " + series,
                       zm[0]["channels"] if zm else 0, "/".join(map(str, nreps))))
        out.append("| link | data | size | " + " | ".join(methods) +
                   " | best fixed | auto/best | worst/auto | auto within 5% of best | "
                   "auto >= 1.5x better than worst |")
        out.append("|---|---|---|" + "---:|" * len(methods) + "---|---:|---:|---|---|")
        detail, choices = [], []
        for link, data, size in cells:
            cr = [r for r in zm if cell(r) == (link, data, size)]
            t = {m: med([r["total_time_ms"] for r in cr if r["method"] == m]) for m in methods}
            ft = {m: t[m] for m in fixed if t[m] is not None}
            best = min(ft, key=ft.get) if ft else None
            worst = max(ft, key=ft.get) if ft else None
            auto = t.get("auto")
            ok_best = ok_worst = "-"
            if auto is not None and best is not None:
                ok_best = "PASS" if auto <= WITHIN_BEST * ft[best] else "MISS"
                ok_worst = "PASS" if ft[worst] >= OVER_WORST * auto else "MISS"
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                link, data, size,
                " | ".join(fmt(scaled(t[m], 1e3)) for m in methods),
                best or "-", ratio(auto, best and ft[best]), ratio(worst and ft[worst], auto),
                ok_best, ok_worst))
            for m in methods:
                g = [r for r in cr if r["method"] == m]
                if not g:
                    continue
                detail.append("| %s | %s | %s | %d | %s | %s | %s (%s + %s) | %s | %s |" % (
                    link, data, m, len(g), fmt(t[m] / 1e3),
                    fmt(med([r.get("guest_gbit_s") for r in g])),
                    fmt(med([r["src_cpu_s"] + r["dst_cpu_s"] for r in g]), 1),
                    fmt(med([r["src_cpu_s"] for r in g]), 1),
                    fmt(med([r["dst_cpu_s"] for r in g]), 1),
                    fmt(scaled(med([r.get("wire_bytes") for r in g]), 1e6), 0),
                    fmt(med([r.get("downtime_ms") for r in g]), 0)))
            au = [r for r in cr if r["method"] == "auto"]
            if au:
                choices.append("| %s | %s | %s |" % (link, data, auto_choices(au)))
        out.append("\nPer method (medians): total time, guest RAM over total time, CPU "
                   "(sender + receiver, from the first data connection), bytes on the wire.\n")
        out.append("| link | data | method | n | total s | guest Gbit/s | CPU s (send + recv) "
                   "| wire MB | downtime ms |")
        out.append("|---|---|---|---:|---:|---:|---|---:|---:|")
        out += detail
        if choices:
            out.append("\nWhat auto chose (share of batches, all of its runs in the cell):\n")
            out.append("| link | data | batches |")
            out.append("|---|---|---|")
            out += choices
        out += qemu_table(sr)
        load = [r["loadavg"][0] for r in sr if r.get("loadavg")]
        other = [r["other_cpu_pct"] for r in sr if r.get("other_cpu_pct") is not None]
        if load and other:
            out.append("\nLoad: loadavg(1 min) %.2f-%.2f before the runs; other CPU %.0f-%.0f%% "
                       "during them.\n" % (min(load), max(load), min(other), max(other)))
    for rec in records:
        if rec.get("type") == "link-check":
            out.append("Link check (%s, tbf %s): one TCP stream %.1f Mbit/s over %g s." % (
                rec["setting"], " ".join("%s %s" % kv for kv in rec["tbf"].items()),
                rec["tcp_single_stream_mbit_s"], rec["seconds"]))
    verifies = [r for r in records if r.get("type") == "run" and r.get("verify_run")]
    if verifies:
        out.append("\nVerification runs (%s, `--verify`): %s.\n" % (
            verifies[0]["size"], ", ".join("%s %s %s" % (
                r["data"], r["method"], "ok" if r.get("verified") else "FAILED")
                for r in verifies)))
    failed = [r for r in all_runs if r.get("status") != "completed"]
    if failed:
        out.append("\nFailed runs (left out of the medians):\n")
        for r in failed:
            why = r.get("error") or (r.get("stderr") or "").strip().replace("\n", " ")
            out.append("- rep %s, %s, %s, %s %s, %s: %s" % (
                r["rep"], r["link"], r["data"], r["tool"], r["method"], r["status"],
                why[-200:]))
    return "\n".join(out) + "\n"


def qemu_table(runs):
    """Corpus cells where both zmigrate auto and QEMU ran."""
    med, fmt, ratio = vq.med, vq.fmt, vq.ratio
    rows = []
    for link, data, size in ordered(cell(r) for r in runs if r["tool"] == "qemu"):
        q = [r for r in runs if r["tool"] == "qemu" and cell(r) == (link, data, size)]
        au = [r for r in runs if r["tool"] == "zmigrate" and cell(r) == (link, data, size)
              and r["method"] == "auto"]
        t = {m: med([r["total_time_ms"] for r in q if r["method"] == m]) for m in QEMU_METHODS}
        t = {m: v for m, v in t.items() if v is not None}
        best = min(t, key=t.get) if t else None
        at = med([r["total_time_ms"] for r in au])
        aw = med([r.get("wire_bytes") for r in au])
        qw = best and med([r.get("wire_bytes") for r in q if r["method"] == best])
        mark = "-"
        if at is not None and best is not None:
            bits = link_bits(link)
            mark = "PASS" if at <= QEMU_AIM * t[best] else "MISS"
            if bits is not None and bits <= 100e6:
                mark = "(ratio only)"
        rows.append("| %s | %s | %s | %s | %s | %s | %s | **%s** | %s | %s | %s |" % (
            link, size, fmt(scaled(at, 1e3)),
            *(fmt(scaled(t.get(m), 1e3)) for m in QEMU_METHODS), best or "-",
            ratio(at, best and t[best]), mark, fmt(scaled(aw, 1e6), 0), fmt(scaled(qw, 1e6), 0)))
    if not rows:
        return []
    return ["\nauto against QEMU 7.2 (corpus data, median total time in s; QEMU's best "
            "chosen after the fact; aim: auto/QEMU best at most %.1f on links faster than "
            "100 Mbit/s):\n" % QEMU_AIM,
            "| link | size | zmigrate auto | QEMU none | QEMU zlib | QEMU zstd | QEMU best | "
            "auto/QEMU best | aim | auto wire MB | QEMU best wire MB |",
            "|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|"] + rows


# ---------------------------------------------------------------------- main
def pop_free_form(argv):
    """--size-LINK SIZE for any link, and --extra/--recv-extra whose value
    starts with "--" (argparse would take it for an option)."""
    sizes, rest, i = {}, [], 0
    while i < len(argv):
        arg = argv[i]
        name, eq, val = arg.partition("=")
        if name.startswith("--size-"):
            if not eq:
                if i + 1 >= len(argv):
                    sys.exit("auto_series: %s wants a size" % name)
                val, i = argv[i + 1], i + 1
            sizes[name[len("--size-"):]] = val
        elif name in ("--extra", "--recv-extra") and not eq and i + 1 < len(argv):
            rest.append("%s=%s" % (name, argv[i + 1]))
            i += 1
        else:
            rest.append(arg)
        i += 1
    return sizes, rest


def parse_args():
    sizes, argv = pop_free_form(sys.argv[1:])
    ap = argparse.ArgumentParser(
        description="zmigrate --compression auto against every fixed method, per link and "
                    "data kind, interleaved repetitions; JSON lines and a Markdown summary.",
        epilog="--size-LINK SIZE sets the guest RAM at one link (defaults: %s).  Example "
               "(root): bench/auto_series.py --reps 3 --out auto.jsonl --summary auto.md" %
               ", ".join("%s %s" % kv for kv in DEFAULT_SIZES.items()))
    ap.add_argument("--zmigrate", default=os.path.join(vq.REPO, "build", "cli", "zmigrate"),
                    help="zmigrate binary (default: build/cli/zmigrate of this repository)")
    ap.add_argument("--corpus", default=os.path.join(vq.REPO, "..", "shared", "corpus"),
                    help="directory of the Silesia files (default ../shared/corpus)")
    ap.add_argument("--links", default=DEFAULT_LINKS,
                    help="comma list: unlimited (loopback) or tc rates (default %s)"
                         % DEFAULT_LINKS)
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="comma list of corpus, random, halfzero, generated (default all)")
    ap.add_argument("--methods", default=DEFAULT_METHODS,
                    help="comma list of auto, none, NAME[:LEVEL] (default %s)" % DEFAULT_METHODS)
    ap.add_argument("--channels", type=int, default=8, help="multifd channels (default 8)")
    ap.add_argument("--extra", default="",
                    help='more arguments for every send, e.g. --extra "--compress-threads 1"')
    ap.add_argument("--recv-extra", default="",
                    help='more arguments for every recv, e.g. --recv-extra '
                         '"--decompress-threads 2"')
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (default 3)")
    ap.add_argument("--first-rep", type=int, default=1,
                    help="number of the first repetition, to add to an earlier series")
    ap.add_argument("--verify", choices=["first", "none"], default="first",
                    help="first (default): one untimed --verify run per data kind and method "
                         "at loopback with --verify-size before the timed runs")
    ap.add_argument("--verify-size", default="256M", help="guest RAM of those (default 256M)")
    ap.add_argument("--qemu", action="store_true",
                    help="for corpus data, also migrate QEMU 7.2 (multifd none, zlib, zstd)")
    ap.add_argument("--qemu-binary", default="qemu-system-x86_64", help="QEMU binary")
    ap.add_argument("--qemu-bench",
                    default=os.path.join(vq.REPO, "..", "shared", "reference", "qemu-peer",
                                         "qemu_mig_bench.py"),
                    help="qemu_mig_bench.py, loaded as a module by vs_qemu")
    ap.add_argument("--downtime-limit", type=int, default=300, help="QEMU's, ms (default 300)")
    ap.add_argument("--tbf-burst", default="256kb", help="tbf burst (default 256kb)")
    ap.add_argument("--tbf-latency", default="20ms", help="tbf latency (default 20ms)")
    ap.add_argument("--link-check", type=float, default=3, metavar="S",
                    help="seconds of one TCP stream over each shaped link when it first comes "
                         "up (default 3; 0: skip)")
    ap.add_argument("--prewarm", type=float, metavar="GIB",
                    help="touch and free this much memory before every run (default: twice "
                         "the guest plus 1 GiB; 0: off), leaving 3 GiB available")
    ap.add_argument("--run-timeout", type=int, default=600, help="s per migration (default 600)")
    ap.add_argument("--stop-on-failure", action="store_true",
                    help="stop at the first failed run (default: record it and go on)")
    ap.add_argument("--out", help="append the JSON lines to this file "
                                  "(default auto-series-DATE.jsonl)")
    ap.add_argument("--summary", help="also write the Markdown summary to this file")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--summarize", nargs="+", metavar="JSONL",
                    help="only print the summary of earlier JSON lines")
    a = ap.parse_args(argv)
    a.links = [x for x in a.links.split(",") if x]
    a.data = [x for x in a.data.split(",") if x]
    a.methods = [x for x in a.methods.split(",") if x]
    for d in a.data:
        if d not in ("corpus", "random", "halfzero", "generated"):
            ap.error("unknown data kind %r" % d)
    a.sizes = dict(DEFAULT_SIZES, **sizes)
    for link in a.links:
        if link not in a.sizes:
            ap.error("no guest size for link %s: give --size-%s SIZE" % (link, link))
        if link != "unlimited" and link_bits(link) is None:
            ap.error("link %r: unlimited or a tc rate (e.g. 1gbit)" % link)
    try:
        for s in [a.verify_size] + [a.sizes[x] for x in a.links]:
            parse_size(s)
    except ValueError as e:
        ap.error(str(e))
    return a


def plan(a):
    """(rep, link, data, tool, method): the verification runs (rep 0) at
    loopback, then the timed repetitions, rep-major, link by link."""
    steps = []
    if a.verify == "first":
        steps += [(0, "unlimited", d, "zmigrate", m) for d in a.data for m in a.methods]
    for rep in range(a.first_rep, a.first_rep + a.reps):
        k = (rep - a.first_rep) % len(a.methods)
        methods = a.methods[k:] + a.methods[:k]
        for link in a.links:
            for d in a.data:
                steps += [(rep, link, d, "zmigrate", m) for m in methods]
                if a.qemu and d == "corpus":
                    steps += [(rep, link, d, "qemu", m) for m in QEMU_METHODS]
    return steps


def send_args(a, data, method, size, verify):
    return (["--guest-ram", size, "--workload", "idle"] + data_args(data, a.corpus_dir)
            + ["--multifd-channels", str(a.channels)] + method_args(method)
            + ["--max-bandwidth", "unlimited"] + shlex.split(a.extra)
            + (["--verify"] if verify else []) + ["--json", "--quiet"])


def dry_run(a, steps):
    a.corpus_dir = a.corpus
    print("# corpus: the runs use a temporary directory of symbolic links to the data files "
          "of %s (README and dot files left out)" % a.corpus)
    cur = None
    for rep, link, data, tool, method in steps:
        if link != cur:
            net = make_net(a, link)
            if link != "unlimited":
                print("# link %s: ip netns add %s; ip netns add %s; veth %s <-> %s; "
                      "tc qdisc add dev ... root tbf rate %s burst %s latency %s (both ends)" % (
                          link, net.ns["src"], net.ns["dst"], net.dev["src"], net.dev["dst"],
                          link, a.tbf_burst, a.tbf_latency))
            cur = link
        size = a.verify_size if rep == 0 else a.sizes[link]
        print("# rep %d, %s, %s, %s %s%s" % (rep, link, data, tool, method,
                                            " (untimed, verified)" if rep == 0 else ""))
        uri = "tcp:%s:PORT" % net.dst_host
        if tool == "zmigrate":
            print(" ".join(map(shlex.quote, net.wrap("dst", [
                a.zmigrate, "recv", "--listen", uri, "--json", "--quiet"]
                + shlex.split(a.recv_extra)))) + " &")
            print(" ".join(map(shlex.quote, net.wrap("src", [
                a.zmigrate, "send", "--to", uri] + send_args(a, data, method, size, rep == 0)))))
        else:
            print("# QEMU %s (paused TCG guest, %s of the corpus in /dev/shm), over QMP: "
                  "multifd on, multifd-channels %d, multifd-compression %s%s, "
                  "max-bandwidth unlimited, migrate %s" % (
                      a.qemu_binary, size, a.channels, method,
                      ", level 1" if method != "none" else "", uri))


def emit(rec, outf):
    outf.write(json.dumps(rec) + "\n")
    outf.flush()


def main():
    a = parse_args()
    if a.summarize:
        print(summarize(vq.read_jsonl(a.summarize)), end="")
        return
    steps = plan(a)
    if a.dry_run:
        dry_run(a, steps)
        return
    if not os.path.isdir(a.corpus) and {"corpus", "halfzero"} & set(a.data):
        sys.exit("auto_series: corpus directory %s not found (give --corpus)" % a.corpus)
    if any(x != "unlimited" for x in a.links) and os.geteuid() != 0:
        sys.exit("auto_series: shaped links need root (network namespaces, veth, tc)")
    if not os.access(a.zmigrate, os.X_OK):
        sys.exit("auto_series: no zmigrate at %s (give --zmigrate)" % a.zmigrate)
    qmb = None
    if a.qemu:
        if not shutil.which(a.qemu_binary):
            sys.exit("auto_series: no %s (apt-get install qemu-system-x86)" % a.qemu_binary)
        qmb = vq.load_qemu_bench(a.qemu_bench)
    signal.signal(signal.SIGTERM, lambda sig, _f: sys.exit(128 + sig))
    a.corpus_dir, names = vq.corpus_staging(a.corpus) if os.path.isdir(a.corpus) \
        else (a.corpus, [])
    nets = []
    src_imgs = {}                       # guest size in bytes -> QEMU source image

    def cleanup():
        vq.reap_all()
        for n in nets:
            n.down()
        if a.corpus_dir != a.corpus:
            shutil.rmtree(a.corpus_dir, ignore_errors=True)
        for p in src_imgs.values():
            for f in (p, p + ".json"):
                if os.path.exists(f):
                    os.unlink(f)

    atexit.register(cleanup)
    a.out = a.out or "auto-series-%s.jsonl" % time.strftime("%Y%m%d-%H%M%S")
    outf = open(a.out, "a")
    log("%d runs; JSON lines to %s" % (len(steps), a.out))
    records, checked, net, cur = [], set(), None, None
    t_series = time.monotonic()
    for i, (rep, link, data, tool, method) in enumerate(steps):
        if link != cur:
            if net is not None:
                net.down()
                nets.remove(net)
            net, cur = make_net(a, link), link
            nets.append(net)
            net.up()
            if link != "unlimited" and a.link_check > 0 and link not in checked:
                rec = net.check(a.link_check)
                log("link %s: one TCP stream %.1f Mbit/s" % (link, rec["tcp_single_stream_mbit_s"]))
                checked.add(link)
                records.append(rec)
                emit(rec, outf)
        size = a.verify_size if rep == 0 else a.sizes[link]
        size_bytes = parse_size(size)
        if a.prewarm != 0:
            prewarm(a, size_bytes)
        rec = {"type": "run", "tool": tool, "method": method, "rep": rep,
               "verify_run": rep == 0, "link": link, "data": data, "size": size,
               "channels": a.channels, "extra": a.extra, "recv_extra": a.recv_extra,
               "corpus_files": names if data in ("corpus", "halfzero") else None,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "loadavg": os.getloadavg(),
               **net.describe()}
        log("[%d/%d] %s %s %s %s %s (%s)" % (i + 1, len(steps), "verify" if rep == 0 else
                                             "rep %d" % rep, link, data, tool, method, size))
        if tool == "zmigrate":
            rec.update(run_send(a, net, send_args(a, data, method, size, rep == 0),
                                shlex.split(a.recv_extra)))
            if rep == 0:
                rec["verified"] = rec.get("send_rc") == 0 and rec.get("recv_rc") == 0 \
                    and rec["status"] == "completed"
        else:
            rec.update(run_qemu(a, qmb, net, method, size_bytes, src_imgs))
        rec["loadavg_after"] = os.getloadavg()
        records.append(rec)
        emit(rec, outf)
        log("  %s total=%s ms wire=%.0f MB cpu=%s+%s other=%s%%%s" % (
            rec["status"], rec.get("total_time_ms"), (rec.get("wire_bytes") or 0) / 1e6,
            rec.get("src_cpu_s"), rec.get("dst_cpu_s"), rec.get("other_cpu_pct"),
            "" if "verified" not in rec else " verified=%s" % rec["verified"]))
        if rec["status"] != "completed" or rec.get("verified") is False:
            log("  FAILED: %s" % (rec.get("error") or rec.get("stderr") or "").strip()[-300:])
            if a.stop_on_failure:
                sys.exit("auto_series: stopped at the first failure")
    if net is not None:
        net.down()
        nets.remove(net)
    outf.close()
    log("series done in %.0f s" % (time.monotonic() - t_series))
    text = summarize(records)
    print(text, end="")
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
