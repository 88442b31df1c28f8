#!/usr/bin/env python3
"""Migrate the same running KVM guest with `zmigrate vm` and with QEMU 7.2.

Both tools boot the project's guest ELF (build/vm/guest/zmguest.elf) with the
same RAM, vCPUs and dirty rate, wait until the guest has filled its RAM,
migrate it live to a second process on this machine (loopback, or a shaped
veth link with --link), and report total time, downtime, bytes on the wire
and the CPU seconds of each side.  vCPU threads are left out of the CPU
figures: they run the guest, not the migration.  After each run the
destination's serial output must show the heartbeat counter continuing and
the guest's own verification passing.

One JSON object per migration goes to --out; a Markdown summary (medians,
zmigrate/QEMU ratios) is printed at the end.  Standard library only; QEMU's
QMP client comes from ../shared/reference/qemu-peer/qemu_mig_bench.py.
"""

import argparse
import atexit
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
LIVE = []  # processes to kill if the harness dies


def log(*a):
    print("[vm-bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The network set-ups, prewarm and QMP helpers of the process benchmark.
NET = load_module("vs_qemu", os.path.join(HERE, "vs_qemu.py"))


# ------------------------------------------------------------------ /proc
class CpuWatch:
    """CPU of a process apart from its vCPU threads.  The process's own
    utime+stime counts threads that have ended (QEMU's multifd threads end
    with the migration); the vCPU threads' last samples are taken off it.
    After the process exits, sample it once more before it is reaped: a
    zombie's stat still holds the whole total."""

    def __init__(self, pid, vcpu_re):
        self.pid, self.vcpu_re, self.vcpus, self.proc = pid, vcpu_re, {}, 0.0

    @staticmethod
    def _ticks(path):
        with open(path) as f:
            s = f.read()
        fld = s[s.rindex(")") + 2:].split()
        return s[s.index("(") + 1:s.rindex(")")], (int(fld[11]) + int(fld[12])) / CLK_TCK

    def sample(self):
        base = "/proc/%d" % self.pid
        try:
            tids = os.listdir(base + "/task")
        except OSError:
            tids = []
        for tid in tids:
            try:
                name, cpu = self._ticks("%s/task/%s/stat" % (base, tid))
            except OSError:
                continue
            if self.vcpu_re.match(name):
                self.vcpus[tid] = cpu
        try:
            self.proc = self._ticks(base + "/stat")[1]
        except OSError:
            pass

    def total(self):
        return self.proc - self.vcpu_total()

    def vcpu_total(self):
        return sum(self.vcpus.values())


def exited(p):
    """Whether p has exited, leaving it unreaped (so CpuWatch can read it)."""
    try:
        return os.waitid(os.P_PID, p.pid,
                         os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


# ------------------------------------------------------------------ serial logs
HEARTBEAT = re.compile(r"^heartbeat (\d+) ")
VERIFY = re.compile(r"^verify epoch=\S+ regions=(\d+) bad=(\d+) (ok|FAILED)")


def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def wait_for_line(path, pattern, timeout, procs):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in read_lines(path):
            if line.startswith(pattern):
                return line
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("process %d exited (%s) before '%s'" %
                                   (p.pid, p.returncode, pattern))
        time.sleep(0.05)
    raise RuntimeError("no '%s' in %s after %d s" % (pattern, path, timeout))


def guest_check(src_log, dst_log):
    """Heartbeat continuity and the guest's verify lines on the destination."""
    src_hb = [int(m.group(1)) for m in map(HEARTBEAT.match, read_lines(src_log)) if m]
    dst_lines = read_lines(dst_log)
    dst_hb = [int(m.group(1)) for m in map(HEARTBEAT.match, dst_lines) if m]
    verifies = [m for m in map(VERIFY.match, dst_lines) if m]
    out = {"src_last_heartbeat": src_hb[-1] if src_hb else None,
           "dst_first_heartbeat": dst_hb[0] if dst_hb else None,
           "dst_verifies": len(verifies),
           "dst_verify_ok": bool(verifies) and all(v.group(3) == "ok" for v in verifies)}
    out["heartbeat_continuous"] = (out["src_last_heartbeat"] is not None and
                                   out["dst_first_heartbeat"] == out["src_last_heartbeat"] + 1)
    return out


def count_verifies(path):
    return sum(1 for line in read_lines(path) if VERIFY.match(line))


def after_completion(a, wd, src_verifies0):
    """Let the destination run, until it has verified the guest's RAM (QEMU's
    guest does so only every --verify-every heartbeats); returns how many
    verify passes the source ran while it migrated."""
    during = count_verifies("%s/src.serial" % wd) - src_verifies0
    time.sleep(a.after)
    deadline = time.monotonic() + a.verify_every + 10
    while count_verifies("%s/dst.serial" % wd) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return {"src_verifies_during": during}


# ------------------------------------------------------------------ processes
def spawn(argv, logpath, stdout=None):
    logf = open(logpath, "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                         stdout=stdout if stdout is not None else logf,
                         stderr=logf if stdout is not None else subprocess.STDOUT,
                         start_new_session=True)
    p.logf = logf
    LIVE.append(p)
    return p


def reap(p, grace=10):
    if p is None:
        return
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    p.logf.close()
    if p in LIVE:
        LIVE.remove(p)


@atexit.register
def _reap_all():
    for p in list(LIVE):
        try:
            p.kill()
        except OSError:
            pass


def append_line(a):
    """The guest command line: the bench's settings."""
    line = "rate=%s smp=%d verify_every=%d" % (a.rate, a.vcpus, a.verify_every)
    return line + (" " + a.guest_args if a.guest_args else "")


# ------------------------------------------------------------------ QEMU
def run_qemu(a, link, method, wd):
    qmp_mod = load_module("qemu_mig_bench", a.qemu_script)
    uri = "tcp:%s:%d" % (link.dst_host, link.port())
    rec = {"tool": "qemu", "method": method, "status": "error"}
    accel = "kvm,dirty-ring-size=%d" % a.dirty_ring if a.dirty_ring else "kvm"
    common = ["-accel", accel, "-m", a.ram, "-smp", str(a.vcpus),
              "-kernel", a.kernel, "-append", append_line(a), "-nodefaults",
              "-no-user-config", "-display", "none"]
    src = dst = qs = qd = None
    try:
        dst = spawn(link.wrap("dst", [a.qemu] + common +
                    ["-name", "qdst,debug-threads=on", "-serial", "file:%s/dst.serial" % wd,
                     "-qmp", "unix:%s/dst.qmp,server=on,wait=off" % wd,
                     "-incoming", "defer"] + (["-mem-prealloc"] if a.mem_prealloc else [])),
                    "%s/dst.log" % wd)
        src = spawn(link.wrap("src", [a.qemu] + common +
                    ["-name", "qsrc,debug-threads=on", "-serial", "file:%s/src.serial" % wd,
                     "-qmp", "unix:%s/src.qmp,server=on,wait=off" % wd]),
                    "%s/src.log" % wd)
        qd = qmp_mod.QMP("%s/dst.qmp" % wd)
        qs = qmp_mod.QMP("%s/src.qmp" % wd)
        wait_for_line("%s/src.serial" % wd, "zmguest: filled", a.fill_timeout, [src, dst])
        time.sleep(a.settle)
        caps = [{"capability": "multifd", "state": True}]
        params = {"multifd-channels": a.channels, "multifd-compression": method}
        if method == "zstd":
            params["multifd-zstd-level"] = a.level
        elif method == "zlib":
            params["multifd-zlib-level"] = a.level
        for q in (qs, qd):
            q.cmd("migrate-set-capabilities", {"capabilities": caps})
            q.cmd("migrate-set-parameters", params)
        qs.cmd("migrate-set-parameters", {"max-bandwidth": 100 * 10 ** 9,
                                          "downtime-limit": a.downtime_limit})
        qd.cmd("migrate-incoming", {"uri": uri})
        vcpu = re.compile(r"^CPU \d+/KVM$")
        sw, dw = CpuWatch(src.pid, vcpu), CpuWatch(dst.pid, vcpu)
        sw.sample(), dw.sample()
        s0, d0, v0 = sw.total(), dw.total(), sw.vcpu_total()
        wire0, t0 = link.counters(), time.monotonic()
        v0 = count_verifies("%s/src.serial" % wd)
        qs.cmd("migrate", {"uri": uri})
        s_info = d_info = None
        while True:
            if time.monotonic() - t0 > a.run_timeout:
                qs.cmd("migrate_cancel")
                raise RuntimeError("no convergence after %d s" % a.run_timeout)
            sw.sample(), dw.sample()
            s_info = qs.cmd("query-migrate")
            d_info = qd.cmd("query-migrate")
            if s_info.get("status") in ("completed", "failed", "cancelled") and \
                    d_info.get("status") in ("completed", "failed", "cancelled"):
                break
            if s_info.get("status") in ("failed", "cancelled"):
                break
            time.sleep(0.02)
        sw.sample(), dw.sample()
        wire = sum(c - wire0[k] for k, c in link.counters().items())
        s_info = NET.settled_info(qs, s_info)
        ram = s_info.get("ram", {})
        rec.update({
            "status": s_info.get("status"), "dst_status": d_info.get("status"),
            "total_time_ms": s_info.get("total-time"), "downtime_ms": s_info.get("downtime"),
            "iterations": ram.get("dirty-sync-count"), "ram_total": ram.get("total"),
            "wire_bytes": wire, "src_cpu_s": round(sw.total() - s0, 2),
            "dst_cpu_s": round(dw.total() - d0, 2), "src_vcpu_s": round(sw.vcpu_total() - v0, 2),
            "qemu_ram": ram,
        })
        rec.update(after_completion(a, wd, v0))
        qs.cmd("quit")
        qd.cmd("quit")
        rec.update(guest_check("%s/src.serial" % wd, "%s/dst.serial" % wd))
    except Exception as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        for q in (qs, qd):
            if q is not None:
                q.close()
        reap(src)
        reap(dst)
    return rec


# ------------------------------------------------------------------ zmigrate
def run_zmigrate(a, link, method, wd):
    uri = "tcp:%s:%d" % (link.dst_host, link.port())
    rec = {"tool": "zmigrate", "method": method, "status": "error"}
    flags = ["--multifd-channels", str(a.channels), "--compression", method,
             "--downtime-limit", "%dms" % a.downtime_limit, "--json", "--quiet"]
    flags += a.zm_flags.split()
    if method != "none":
        flags += ["--compression-level", str(a.level)]
    src = dst = None
    try:
        dst_out = open("%s/dst.serial" % wd, "wb")
        # The destination's VM exists before the migration, as QEMU's does.
        dst = spawn(link.wrap("dst", [a.zmigrate, "vm", "--incoming", uri,
                                      "--ram", a.ram, "--vcpus", str(a.vcpus)] + flags +
                                     (["--mem-prealloc"] if a.mem_prealloc else [])),
                    "%s/dst.log" % wd, stdout=dst_out)
        src_out = open("%s/src.serial" % wd, "wb")
        src = spawn(link.wrap("src", [a.zmigrate, "vm", "--kernel", a.kernel,
                                      "--ram", a.ram, "--vcpus", str(a.vcpus),
                                      "--append", append_line(a),
                                      "--migrate-to", uri, "--migrate-after", "1h"] + flags +
                                     (["--dirty-ring", str(a.dirty_ring)] if a.dirty_ring else [])),
                    "%s/src.log" % wd, stdout=src_out)
        wait_for_line("%s/src.serial" % wd, "zmguest: filled", a.fill_timeout, [src, dst])
        time.sleep(a.settle)
        vcpu = re.compile(r"^vcpu\d+$")
        sw, dw = CpuWatch(src.pid, vcpu), CpuWatch(dst.pid, vcpu)
        sw.sample(), dw.sample()
        s0, d0, v0 = sw.total(), dw.total(), sw.vcpu_total()
        wire0 = link.counters()
        v0 = count_verifies("%s/src.serial" % wd)
        src.send_signal(signal.SIGUSR2)
        t0 = time.monotonic()
        while not exited(src):
            if time.monotonic() - t0 > a.run_timeout:
                raise RuntimeError("no convergence after %d s" % a.run_timeout)
            sw.sample(), dw.sample()
            time.sleep(0.02)
        sw.sample(), dw.sample()
        src.poll()
        wire = sum(c - wire0[k] for k, c in link.counters().items())
        src_out.close()
        result = None
        for line in reversed(read_lines("%s/src.serial" % wd) + read_lines("%s/src.log" % wd)):
            if line.startswith("{"):
                result = json.loads(line)
                break
        if result is None:
            raise RuntimeError("source exited %s without a JSON result: %s" %
                               (src.returncode, read_lines("%s/src.log" % wd)[-5:]))
        ram = result.get("ram", {})
        rec.update({
            "status": result.get("status"), "total_time_ms": result.get("total-time"),
            "downtime_ms": result.get("downtime"), "iterations": result.get("iterations"),
            "ram_total": ram.get("total"), "wire_bytes": wire,
            "src_cpu_s": round(sw.total() - s0, 2), "dst_cpu_s": round(dw.total() - d0, 2),
            "src_vcpu_s": round(sw.vcpu_total() - v0, 2), "zm_result": result,
        })
        rec.update(after_completion(a, wd, v0))
        rec.update(guest_check("%s/src.serial" % wd, "%s/dst.serial" % wd))
    except Exception as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        reap(src)
        reap(dst)
    return rec


# ------------------------------------------------------------------ summary
def median(recs, key):
    v = [r[key] for r in recs if r.get(key) is not None]
    return statistics.median(v) if v else None


def rep_pairs(recs, link, method):
    """(zmigrate, QEMU) records of the same repetition, both completed."""
    by = {}
    for r in recs:
        if (r["link"], r["method"]) == (link, method) and \
                r.get("status") == "completed" and r.get("total_time_ms"):
            by.setdefault((r.get("series"), r["rep"]), {})[r["tool"]] = r
    return [(p["zmigrate"], p["qemu"]) for _, p in sorted(by.items(), key=lambda kv: str(kv[0]))
            if "zmigrate" in p and "qemu" in p]


def summary(recs):
    rows = ["| link | method | tool | n | total ms | downtime ms | wire MB | send CPU s | "
            "recv CPU s | heartbeat continuous | guest verify |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    ratios = ["", "| link | method | time zm/QEMU | per repetition | downtime zm/QEMU | "
              "per repetition | CPU zm/QEMU |",
              "|---|---|---:|---|---:|---|---:|"]
    keys = sorted({(r["link"], r["method"]) for r in recs})
    for link, method in keys:
        med = {}
        for tool in ("zmigrate", "qemu"):
            rs = [r for r in recs if (r["link"], r["method"], r["tool"]) == (link, method, tool)
                  and r.get("status") == "completed" and r.get("total_time_ms")]
            if not rs:
                continue
            m = {k: median(rs, k) for k in ("total_time_ms", "downtime_ms", "wire_bytes",
                                            "src_cpu_s", "dst_cpu_s")}
            med[tool] = m
            rows.append("| %s | %s | %s | %d | %.0f | %.0f | %.1f | %.2f | %.2f | %s | %s |" % (
                link, method, tool, len(rs), m["total_time_ms"], m["downtime_ms"],
                m["wire_bytes"] / 1e6, m["src_cpu_s"], m["dst_cpu_s"],
                "%d/%d" % (sum(bool(r.get("heartbeat_continuous")) for r in rs), len(rs)),
                "%d/%d" % (sum(bool(r.get("dst_verify_ok")) for r in rs), len(rs))))
        if len(med) == 2:
            z, q = med["zmigrate"], med["qemu"]
            pairs = rep_pairs(recs, link, method)
            ratios.append("| %s | %s | %.2f | %s | %.2f | %s | %.2f |" % (
                link, method, z["total_time_ms"] / q["total_time_ms"],
                ", ".join("%.2f" % (a["total_time_ms"] / b["total_time_ms"])
                          for a, b in pairs),
                z["downtime_ms"] / max(q["downtime_ms"], 1),
                ", ".join("%.2f" % (a["downtime_ms"] / max(b["downtime_ms"], 1))
                          for a, b in pairs),
                (z["src_cpu_s"] + z["dst_cpu_s"]) / max(q["src_cpu_s"] + q["dst_cpu_s"], 0.01)))
    return "\n".join(rows + ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zmigrate", default=os.path.join(TOP, "build/cli/zmigrate"))
    ap.add_argument("--kernel", default=os.path.join(TOP, "build/vm/guest/zmguest.elf"))
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--qemu-script", default=os.path.join(
        TOP, "..", "shared", "reference", "qemu-peer", "qemu_mig_bench.py"))
    ap.add_argument("--ram", default="1G", help="guest RAM, QEMU syntax (default 1G)")
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--rate", default="100M",
                    help="guest dirty rate, bytes/s, binary suffix (default 100M)")
    ap.add_argument("--guest-args", default="",
                    help="more of the guest's command line, for both tools, "
                         "e.g. 'hot=20' (vm/guest/README.md)")
    ap.add_argument("--verify-every", type=int, default=30,
                    help="the guest verifies all its regions every N heartbeats "
                         "(default 30: not while it migrates, since on this host a "
                         "pass that reads all RAM adds pages to KVM's dirty log; "
                         "zmigrate's destination also verifies as it resumes)")
    ap.add_argument("--methods", default="none,zstd")
    ap.add_argument("--level", type=int, default=1)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--downtime-limit", type=int, default=300, help="ms (default 300)")
    ap.add_argument("--link", default="loopback",
                    help="loopback, or a rate for a veth link between two network "
                         "namespaces shaped with tc tbf, e.g. 1gbit (root only)")
    ap.add_argument("--zm-flags", default="", metavar="FLAGS",
                    help="more flags for both zmigrate ends, e.g. '--batch-pages 512'")
    ap.add_argument("--tbf-burst", default="256kb", help="tbf burst (default 256kb)")
    ap.add_argument("--tbf-latency", default="20ms", help="tbf latency (default 20ms)")
    ap.add_argument("--tools", default="zmigrate,qemu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds of steady writing after the fill, before migrating")
    ap.add_argument("--after", type=float, default=3.0,
                    help="seconds the destination runs after completion, at least; "
                         "then until it has verified (up to --verify-every + 10 s)")
    ap.add_argument("--prewarm", type=int, default=6, metavar="GIB",
                    help="before each run, touch and free this much memory so that "
                         "both tools start on memory the host has backed (default 6; "
                         "0: off; see doc/performance.md)")
    ap.add_argument("--mem-prealloc", action="store_true",
                    help="back the destination's RAM before the migration, for both "
                         "tools (QEMU -mem-prealloc, zmigrate vm --mem-prealloc); "
                         "the sources stay as they are, so that their zero checks "
                         "still read never-touched pages as the shared zero page")
    ap.add_argument("--dirty-ring", type=int, default=0, metavar="N",
                    help="track dirty pages with KVM dirty rings of N entries per vCPU, "
                         "in both tools (QEMU -accel kvm,dirty-ring-size=N, zmigrate vm "
                         "--dirty-ring N); default: the dirty log")
    ap.add_argument("--fill-timeout", type=int, default=120)
    ap.add_argument("--run-timeout", type=int, default=300)
    ap.add_argument("--out", help="JSON lines, appended (required to run)")
    ap.add_argument("--summarize", nargs="+", metavar="JSONL",
                    help="print the summary of earlier runs and exit")
    a = ap.parse_args()
    if a.summarize:
        recs = []
        for path in a.summarize:
            with open(path) as f:
                recs += [dict(json.loads(line), series=path) for line in f if line.strip()]
        print(summary(recs))
        return
    if not a.out:
        ap.error("--out is required")

    for path, what in ((a.zmigrate, "zmigrate (build it: make)"),
                       (a.kernel, "the guest ELF (build it: make)")):
        if not os.path.exists(path):
            sys.exit("vm_vs_qemu: %s not found: %s" % (what, path))
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        sys.exit("vm_vs_qemu: /dev/kvm is not usable")
    if a.link == "loopback":
        link = NET.Loopback()
    elif os.geteuid() != 0:
        sys.exit("vm_vs_qemu: --link needs root (network namespaces, veth, tc)")
    else:
        link = NET.Link(a.link, a.tbf_burst, a.tbf_latency)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    recs = []
    link.up()
    try:
        with open(a.out, "a") as out:
            for rep in range(1, a.reps + 1):
                for method in a.methods.split(","):
                    for tool in a.tools.split(","):
                        wd = tempfile.mkdtemp(prefix="vmbench-")
                        if a.prewarm:
                            NET.prewarm(a.prewarm << 30)
                        log("rep %d %s %s %s" % (rep, link.name, tool, method))
                        run = run_zmigrate if tool == "zmigrate" else run_qemu
                        rec = run(a, link, method, wd)
                        rec.update({"rep": rep, "link": link.name, "ram": a.ram,
                                    "vcpus": a.vcpus, "rate": a.rate,
                                    "guest_args": a.guest_args,
                                    "channels": a.channels, "level": a.level,
                                    "prewarm_gib": a.prewarm, "zm_flags": a.zm_flags,
                                    "mem_prealloc": a.mem_prealloc, "dirty_ring": a.dirty_ring,
                                    "loadavg": os.getloadavg()[0], "workdir": wd})
                        out.write(json.dumps(rec) + "\n")
                        out.flush()
                        recs.append(rec)
                        log("  %s" % json.dumps({k: rec.get(k) for k in (
                            "status", "total_time_ms", "downtime_ms", "wire_bytes",
                            "src_cpu_s", "dst_cpu_s", "heartbeat_continuous",
                            "dst_verify_ok", "error")}))
    finally:
        link.down()
    print(summary(recs))


if __name__ == "__main__":
    main()
