#!/usr/bin/env python3
"""zmigrate against QEMU 7.2 multifd, same memory contents, interleaved.

Each repetition migrates, for every method, a zmigrate guest (`zmigrate recv`
and `zmigrate send --workload idle --data corpus:DIR`) and a paused TCG QEMU
guest whose RAM holds the same bytes (the corpus files, by name, concatenated
and tiled).  The QEMU side reuses the QMP client, the RAM fill and the
command line of ../shared/reference/qemu-peer/qemu_mig_bench.py, loaded as a
module; the destination QEMU uses anonymous memory (memory-backend-ram), as
zmigrate's receiver does.

Both tools are measured the same way:

* CPU: utime+stime of each process from /proc/PID/stat.  QEMU: from
  `migrate` until query-migrate reports completion on that side.  zmigrate:
  from the last 5 ms sample before the first data connection appears (the
  sender's guest fill is left out) until the process prints its JSON line.
* Wire bytes: loopback tx counter (/proc/net/dev), or with --link the tx
  counters of both veth ends (data plus ACKs and headers).
* Total time and downtime: the sender's JSON, QEMU's query-migrate.
* Machine load: 1-min loadavg before the run, and other_cpu_pct, the machine
  CPU used by neither migration process nor this script during the run.

--link RATE puts the two ends in two network namespaces joined by a veth
pair, each end's egress shaped by `tc tbf` (needs root; torn down on exit,
Ctrl-C or failure).  Both tools run with unlimited max-bandwidth, so the link
is the only limit.

Output: one JSON object per run (also appended to --out), then a Markdown
summary of medians and zmigrate/QEMU ratios; --summarize FILE... rebuilds the
summary from earlier JSON lines.
"""

import argparse
import atexit
import hashlib
import importlib.util
import json
import mmap
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20
GiB = 1 << 30
QEMU_UNLIMITED = 100 * 10 ** 9          # qemu_mig_bench.py's "unlimited"
LIVE = []                               # Popen objects this script started

SINK = """import socket,sys,time
s=socket.create_server((sys.argv[1],int(sys.argv[2])));c,_=s.accept();n=0
b=c.recv(1<<20);t=time.monotonic()
while b:
    n+=len(b);t1=time.monotonic();b=c.recv(1<<20)
print(n*8/(t1-t)/1e6)"""
BLAST = """import socket,sys,time
c=socket.create_connection((sys.argv[1],int(sys.argv[2])));b=bytes(1<<20);t=time.monotonic()
while time.monotonic()-t<float(sys.argv[3]): c.sendall(b)"""


def log(*a):
    print("[vs_qemu %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def sh(argv, check=True):
    """Runs a short command; returns its stdout."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.strip()))
    return p.stdout


def start(argv, **kw):
    """Starts a process in its own session and records it for clean-up."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    LIVE.append(p)
    return p


def stop(p, grace=10.0):
    """Waits for p, then terminates and kills it by PID if it lingers."""
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in LIVE:
        LIVE.remove(p)


def reap_all():
    for p in list(LIVE):
        if p.poll() is None:
            p.kill()
        stop(p, 0)


# --------------------------------------------------------------------- /proc
def proc_cpu_s(pid):
    """utime+stime of pid in seconds, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fld = s[s.rindex(")") + 2:].split()
    return (int(fld[11]) + int(fld[12])) / CLK_TCK


BUSY_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_cpu():
    """Machine-wide busy CPU seconds by /proc/stat field (idle, iowait left
    out; steal, the time the hypervisor ran something else, kept)."""
    with open("/proc/stat") as f:
        v = [int(x) / CLK_TCK for x in f.readline().split()[1:9]]
    return {k: x for k, x in zip(BUSY_FIELDS, v) if k not in ("idle", "iowait")}


def machine_delta(m0, m1):
    return {k: round(m1[k] - m0[k], 2) for k in m0}


def self_cpu_s():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def tcp_count(pid, port, state):
    """Sockets with local port `port` in TCP state `state` (hex, "0A" listen,
    "01" established) in the network namespace of process pid."""
    n = 0
    for fn in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, fn)) as f:
                next(f)
                for line in f:
                    fl = line.split()
                    if int(fl[1].rsplit(":", 1)[1], 16) == port and fl[3] == state:
                        n += 1
        except OSError:
            pass
    return n


def prewarm(nbytes):
    """Touches nbytes of anonymous MADV_HUGEPAGE memory and frees it, so that
    the next allocations find memory the host has backed (see
    doc/results/2026-11-24-vs-qemu-loopback.md: free-page reporting makes first touch expensive)."""
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_HUGEPAGE)
        chunk = bytes(64 * MiB)
        for off in range(0, nbytes - len(chunk) + 1, len(chunk)):
            m[off:off + len(chunk)] = chunk
    finally:
        m.close()


# ---------------------------------------------------------------- networks
class Loopback:
    """Both ends on 127.0.0.1; wire bytes from the loopback tx counter."""

    name = "loopback"
    dst_host = "127.0.0.1"

    def up(self):
        pass

    def down(self):
        pass

    def wrap(self, _role, argv):
        return argv

    def port(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def counters(self):
        with open("/proc/net/dev") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == "lo":
                    return {"lo": int(rest.split()[8])}
        return {"lo": 0}

    def describe(self):
        return {"setting": self.name}


class Link:
    """Two network namespaces joined by a veth pair; each end's egress is
    shaped with tc tbf, so data and ACKs both cross a RATE link."""

    dst_host = "10.77.0.2"
    src_host = "10.77.0.1"

    def __init__(self, rate, burst, latency):
        pid = os.getpid()
        self.rate, self.burst, self.latency = rate, burst, latency
        self.name = "link %s" % rate
        self.ns = {"src": "zmb-src-%d" % pid, "dst": "zmb-dst-%d" % pid}
        self.dev = {"src": "zmbs%d" % pid, "dst": "zmbd%d" % pid}
        self.addr = {"src": self.src_host, "dst": self.dst_host}
        self.created = []
        self.next_port = 20000

    def up(self):
        for role in ("src", "dst"):
            sh(["ip", "netns", "add", self.ns[role]])
            self.created.append(self.ns[role])
        sh(["ip", "link", "add", self.dev["src"], "netns", self.ns["src"], "type", "veth",
            "peer", "name", self.dev["dst"], "netns", self.ns["dst"]])
        for role in ("src", "dst"):
            n, d = self.ns[role], self.dev[role]
            sh(["ip", "-n", n, "addr", "add", self.addr[role] + "/30", "dev", d])
            sh(["ip", "-n", n, "link", "set", "lo", "up"])
            sh(["ip", "-n", n, "link", "set", d, "up"])
            sh(["tc", "-n", n, "qdisc", "add", "dev", d, "root", "tbf", "rate", self.rate,
                "burst", self.burst, "latency", self.latency])

    def down(self):
        while self.created:
            sh(["ip", "netns", "del", self.created.pop()], check=False)

    def wrap(self, role, argv):
        # ip netns exec execs the command without forking: the PID stays.
        return ["ip", "netns", "exec", self.ns[role]] + argv

    def port(self):
        self.next_port += 1
        return self.next_port

    def counters(self):
        return {role: int(sh(self.wrap(role, ["cat", "/sys/class/net/%s/statistics/tx_bytes"
                                                % self.dev[role]])))
                for role in ("src", "dst")}

    def describe(self):
        return {"setting": self.name, "tbf": {"rate": self.rate, "burst": self.burst,
                                              "latency": self.latency},
                "qdisc": {r: sh(["tc", "-n", self.ns[r], "qdisc", "show", "dev",
                                 self.dev[r]]).strip() for r in ("src", "dst")}}

    def check(self, seconds):
        """One TCP stream source -> destination for `seconds`; the receiver's
        Mbit/s from its first to its last byte."""
        port = self.port()
        sink = start(self.wrap("dst", [sys.executable, "-c", SINK, self.dst_host, str(port)]),
                     stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not tcp_count(sink.pid, port, "0A"):
            if time.monotonic() > deadline or sink.poll() is not None:
                raise RuntimeError("link check: sink did not listen")
            time.sleep(0.01)
        c0 = self.counters()
        sh(self.wrap("src", [sys.executable, "-c", BLAST, self.dst_host, str(port),
                             str(seconds)]))
        mbit_s = float(sink.communicate(timeout=30)[0])
        c1 = self.counters()
        stop(sink)
        return {"type": "link-check", "tcp_single_stream_mbit_s": round(mbit_s, 1),
                "seconds": seconds,
                "tx_bytes": {r: c1[r] - c0[r] for r in c1}, **self.describe()}


def wire(c0, c1):
    return sum(c1[k] - c0[k] for k in c0)


# ------------------------------------------------------------------ zmigrate
class JsonLine(threading.Thread):
    """Reads a process's stdout; at its JSON line, samples the process's CPU,
    the wire counters, machine CPU and this script's CPU at once."""

    def __init__(self, p, net):
        super().__init__(daemon=True)
        self.p, self.net = p, net
        self.line = self.at = None

    def run(self):
        for raw in self.p.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("{") and self.line is None:
                self.at = (time.monotonic(), proc_cpu_s(self.p.pid), self.net.counters(),
                           machine_cpu(), self_cpu_s())
                self.line = line


def run_zmigrate(a, net, method, verify):
    port = net.port()
    uri = "tcp:%s:%d" % (net.dst_host, port)
    rec = {"tool": "zmigrate", "status": "error"}
    recv = start(net.wrap("dst", ["stdbuf", "-oL", a.zmigrate, "recv", "--listen", uri,
                                  "--json", "--quiet"]),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    send = None
    try:
        rr = JsonLine(recv, net)
        rr.start()
        deadline = time.monotonic() + 10
        while not tcp_count(recv.pid, port, "0A"):
            if time.monotonic() > deadline or recv.poll() is not None:
                raise RuntimeError("zmigrate recv did not listen: %s"
                                   % recv.stderr.read().decode()[-500:])
            time.sleep(0.01)
        cmd = [a.zmigrate, "send", "--to", uri, "--guest-ram", a.size, "--workload", "idle",
               "--data", "corpus:" + a.corpus_dir, "--multifd-channels", str(a.channels),
               "--compression", method, "--max-bandwidth", "unlimited", "--json", "--quiet"]
        if method != "none":
            cmd += ["--compression-level", str(a.level)]
        if verify:
            cmd.append("--verify")
        rec["send_cmd"] = " ".join(cmd)
        c0 = net.counters()
        t_launch = time.monotonic()
        send = start(net.wrap("src", ["stdbuf", "-oL"] + cmd),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sr = JsonLine(send, net)
        sr.start()
        prev = (proc_cpu_s(send.pid), proc_cpu_s(recv.pid))
        begin = None
        while begin is None and send.poll() is None:
            if tcp_count(recv.pid, port, "01"):
                begin = (time.monotonic(), prev[0], prev[1], machine_cpu(), self_cpu_s())
                break
            prev = (proc_cpu_s(send.pid), proc_cpu_s(recv.pid))
            time.sleep(0.005)
        deadline = time.monotonic() + a.run_timeout
        while (sr.line is None or rr.line is None) and time.monotonic() < deadline:
            if send.poll() is not None and recv.poll() is not None:
                break
            time.sleep(0.005)
        for p in (send, recv):
            stop(p, 30)
        sr.join(5)
        rr.join(5)
        rec["send_rc"], rec["recv_rc"] = send.returncode, recv.returncode
        if begin is None or sr.line is None or rr.line is None:
            rec["stderr"] = (send.stderr.read().decode()[-1000:]
                             + recv.stderr.read().decode()[-1000:])
            return rec
        s, r = json.loads(sr.line), json.loads(rr.line)
        t0, s_cpu0, r_cpu0, busy0, me0 = begin
        t_end = max(sr.at[0], rr.at[0])
        c1 = {k: max(sr.at[2][k], rr.at[2][k]) for k in c0}
        s_cpu, r_cpu = sr.at[1] - s_cpu0, rr.at[1] - r_cpu0
        last = max(sr.at, rr.at, key=lambda at: at[0])
        machine = machine_delta(busy0, last[3])
        busy = sum(machine.values())
        me = last[4] - me0
        rec.update({
            "status": s["status"] if r["status"] == s["status"] else
            "%s/%s" % (s["status"], r["status"]),
            "total_time_ms": s["total-time"], "downtime_ms": s["downtime"],
            "setup_time_ms": s["setup-time"], "iterations": s["iterations"],
            "ram_total_bytes": s["ram"]["total"], "ram_normal_pages": s["ram"]["normal"],
            "ram_duplicate_pages": s["ram"]["duplicate"],
            "sent_bytes_own_count": s["ram"]["transferred"],
            "src_cpu_s": round(s_cpu, 2), "dst_cpu_s": round(r_cpu, 2),
            "src_thread_cpu_s": s["cpu-seconds"], "dst_thread_cpu_s": r["cpu-seconds"],
            "fill_s": round(t0 - t_launch, 2), "fill_cpu_s": s_cpu0,
            "wire_bytes": wire(c0, c1), "wire_by_counter": {k: c1[k] - c0[k] for k in c0},
            "other_cpu_pct": round(100 * (busy - s_cpu - r_cpu - me) / (t_end - t0), 1),
            "machine_cpu_s": machine,
        })
        if verify:
            rec["verified"] = send.returncode == 0 and recv.returncode == 0 and \
                rec["status"] == "completed"
        return rec
    finally:
        for p in (send, recv):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                stop(p, 5)


# ---------------------------------------------------------------------- QEMU
def settled_info(qmp, info):
    """query-migrate once total-time and downtime are set: QEMU 7.2 reports
    "completed" a moment before (migration_calculate_complete runs after
    the state change)."""
    for _ in range(100):
        if info.get("status") != "completed" or info.get("total-time"):
            break
        time.sleep(0.01)
        info = qmp.cmd("query-migrate")
    return info


def load_qemu_bench(path):
    spec = importlib.util.spec_from_file_location("qemu_mig_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def guest_ram_ranges(size):
    """Guest-physical ranges of a pc machine's RAM (QEMU 7.2 pc_piix: RAM
    below 4 GiB ends at 3 GiB when the guest has 3.5 GiB or more)."""
    below = size if size < 0xe0000000 else 0xc0000000
    return [(0, below)] + ([(1 << 32, size - below)] if size > below else [])


def guest_ram_hash(qmp, size, wd):
    """sha256 of a QEMU guest's RAM, read with pmemsave through a FIFO."""
    h = hashlib.sha256()
    for addr, n in guest_ram_ranges(size):
        fifo = os.path.join(wd, "ram.fifo")
        os.mkfifo(fifo)
        got = [0]

        def drain():
            with open(fifo, "rb") as f:
                while True:
                    b = f.read(8 * MiB)
                    if not b:
                        break
                    h.update(b)
                    got[0] += len(b)

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        qmp.cmd("pmemsave", {"val": addr, "size": n, "filename": fifo})
        t.join(60)
        os.unlink(fifo)
        if got[0] != n:
            raise RuntimeError("pmemsave gave %d of %d bytes" % (got[0], n))
    return h.hexdigest()


def run_qemu(a, qmb, net, method, verify, src_img):
    """One QEMU multifd migration, driven over QMP like qemu_mig_bench.py's
    one_run, with each QEMU started inside its end's network namespace."""
    wd = tempfile.mkdtemp(prefix="zmb-qemu-")
    qargs = argparse.Namespace(qemu=a.qemu, size_bytes=a.size_bytes, dst_backend="ram")
    uri = "tcp:%s:%d" % (net.dst_host, net.port())
    rec = {"tool": "qemu", "status": "error"}
    procs, qmps = [], []
    try:
        for role, mem in (("dst", None), ("src", src_img)):
            logf = open(os.path.join(wd, role + ".log"), "wb")
            argv = qmb.qemu_argv(qargs, role, mem, os.path.join(wd, role + ".qmp"))
            procs.append(start(net.wrap(role, argv), stdout=logf, stderr=subprocess.STDOUT))
            logf.close()
        dst, src = procs
        qd, qs = qmb.QMP(os.path.join(wd, "dst.qmp")), qmb.QMP(os.path.join(wd, "src.qmp"))
        qmps += [qd, qs]
        v = qs.version["qemu"]
        rec["qemu_version"] = "%d.%d.%d" % (v["major"], v["minor"], v["micro"])
        params = {"multifd-channels": a.channels, "multifd-compression": method}
        if method in qmb.LEVEL_PARAM:
            params[qmb.LEVEL_PARAM[method]] = a.level
        for q in (qs, qd):
            q.cmd("migrate-set-capabilities",
                  {"capabilities": [{"capability": "multifd", "state": True}]})
            q.cmd("migrate-set-parameters", params)
        qs.cmd("migrate-set-parameters", {"max-bandwidth": QEMU_UNLIMITED,
                                          "downtime-limit": a.downtime_limit})
        qd.cmd("migrate-incoming", {"uri": uri})
        c0 = net.counters()
        s_cpu0, d_cpu0 = proc_cpu_s(src.pid), proc_cpu_s(dst.pid)
        busy0, me0 = machine_cpu(), self_cpu_s()
        t0 = time.monotonic()
        qs.cmd("migrate", {"uri": uri})
        done = {}
        info = {}
        while len(done) < 2:
            if time.monotonic() - t0 > a.run_timeout:
                qs.cmd("migrate_cancel")
                raise RuntimeError("timeout after %d s" % a.run_timeout)
            for side, q, p in (("src", qs, src), ("dst", qd, dst)):
                if side in done:
                    continue
                info[side] = q.cmd("query-migrate")
                st = info[side].get("status")
                if st in ("completed", "failed", "cancelled") or \
                        (side == "dst" and info.get("src", {}).get("status") in
                         ("failed", "cancelled")):
                    done[side] = (time.monotonic(), proc_cpu_s(p.pid), net.counters())
            time.sleep(0.05)
        machine, me = machine_delta(busy0, machine_cpu()), self_cpu_s() - me0
        busy = sum(machine.values())
        s_info = settled_info(qs, info["src"])
        ram = s_info.get("ram", {})
        s_cpu, d_cpu = done["src"][1] - s_cpu0, done["dst"][1] - d_cpu0
        c1 = {k: max(done["src"][2][k], done["dst"][2][k]) for k in c0}
        window = max(done["src"][0], done["dst"][0]) - t0
        rec.update({
            "status": s_info.get("status") if info["dst"].get("status") == s_info.get("status")
            else "%s/%s" % (s_info.get("status"), info["dst"].get("status")),
            "total_time_ms": s_info.get("total-time"), "downtime_ms": s_info.get("downtime"),
            "setup_time_ms": s_info.get("setup-time"),
            "src_wall_s": round(done["src"][0] - t0, 3), "dst_wall_s": round(done["dst"][0] - t0, 3),
            "iterations": ram.get("dirty-sync-count"),
            "ram_total_bytes": ram.get("total"), "ram_normal_pages": ram.get("normal"),
            "ram_duplicate_pages": ram.get("duplicate"),
            "src_cpu_s": round(s_cpu, 2), "dst_cpu_s": round(d_cpu, 2),
            "wire_bytes": wire(c0, c1), "wire_by_counter": {k: c1[k] - c0[k] for k in c0},
            "other_cpu_pct": round(100 * (busy - s_cpu - d_cpu - me) / window, 1),
            "machine_cpu_s": machine,
        })
        if s_info.get("status") != "completed":
            rec["error"] = s_info.get("error-desc", "")
        elif verify:
            hs, hd = guest_ram_hash(qs, a.size_bytes, wd), guest_ram_hash(qd, a.size_bytes, wd)
            rec["verified"] = hs == hd
        for q in qmps:
            try:
                q.cmd("quit")
            except (OSError, EOFError, qmb.QMPError):
                pass
    except Exception as e:                          # recorded; the caller stops
        rec["error"] = "%s: %s" % (type(e).__name__, e)
        for role in ("src", "dst"):
            try:
                with open(os.path.join(wd, role + ".log"), "rb") as f:
                    rec.setdefault("logs", {})[role] = f.read()[-1000:].decode(errors="replace")
            except OSError:
                pass
    finally:
        for q in qmps:
            q.close()
        for p in procs:
            stop(p, 15)
        shutil.rmtree(wd, ignore_errors=True)
    return rec


# ------------------------------------------------------------------- summary
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=2):
    return "-" if v is None else "%.*f" % (nd, v)


def ratio(a, b, nd=2):
    return "-" if a is None or not b else "%.*f" % (nd, a / b)


def summarize(records):
    """Markdown: per setting, medians per tool and method, zmigrate/QEMU
    ratios, per-repetition ratios, load, and pipeline efficiency when a
    codecs record is present."""
    runs = [r for r in records if r.get("type") == "run" and r.get("status") == "completed"
            and not r.get("verify_run")]
    out = []
    for rec in records:
        if rec.get("type") == "link-check":
            out.append("Link check (%s, tbf %s): one TCP stream %.1f Mbit/s over %d s.\n" % (
                rec["setting"], " ".join("%s %s" % kv for kv in rec["tbf"].items()),
                rec["tcp_single_stream_mbit_s"], rec["seconds"]))
    verifies = [r for r in records if r.get("type") == "run" and r.get("verify_run")]
    if verifies:
        out.append("Verification runs: " + ", ".join(
            "%s %s %s" % (r["tool"], r["method"], "ok" if r.get("verified") else "FAILED")
            for r in verifies) + ".\n")
    for setting in sorted({r["setting"] for r in runs}):
        sr = [r for r in runs if r["setting"] == setting]
        methods = list(dict.fromkeys(r["method"] for r in sr))
        size = sr[0]["size"]
        out.append("### %s, %s, %d channels (medians of %s)\n" % (
            setting, size, sr[0]["channels"],
            "/".join(str(len([r for r in sr if r["method"] == m and r["tool"] == t]))
                     for m in methods for t in ("zmigrate", "qemu"))))
        out.append("| method | zmigrate total s | QEMU total s | ratio | zmigrate CPU s "
                   "(send + recv) | QEMU CPU s (send + recv) | ratio | zmigrate wire MB | "
                   "QEMU wire MB | ratio | downtime ms zm / QEMU |")
        out.append("|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|")
        per_rep = []
        for m in methods:
            g = {t: [r for r in sr if r["method"] == m and r["tool"] == t]
                 for t in ("zmigrate", "qemu")}
            md = {t: {k: med([r.get(k) for r in g[t]]) for k in
                      ("total_time_ms", "downtime_ms", "wire_bytes", "src_cpu_s", "dst_cpu_s")}
                  for t in g}
            for t in g:
                md[t]["cpu"] = med([r["src_cpu_s"] + r["dst_cpu_s"] for r in g[t]])
            z, q = md["zmigrate"], md["qemu"]

            def cpu(x):
                return "%s (%s + %s)" % (fmt(x["cpu"], 1), fmt(x["src_cpu_s"], 1),
                                         fmt(x["dst_cpu_s"], 1))

            out.append("| %s | %s | %s | **%s** | %s | %s | **%s** | %s | %s | %s | %s / %s |" % (
                m, fmt(z["total_time_ms"] and z["total_time_ms"] / 1e3),
                fmt(q["total_time_ms"] and q["total_time_ms"] / 1e3),
                ratio(z["total_time_ms"], q["total_time_ms"]), cpu(z), cpu(q),
                ratio(z["cpu"], q["cpu"]), fmt(z["wire_bytes"] and z["wire_bytes"] / 1e6, 0),
                fmt(q["wire_bytes"] and q["wire_bytes"] / 1e6, 0),
                ratio(z["wire_bytes"], q["wire_bytes"]), fmt(z["downtime_ms"], 0),
                fmt(q["downtime_ms"], 0)))
            reps = sorted({r["rep"] for r in g["zmigrate"]} & {r["rep"] for r in g["qemu"]})
            pairs = [({r["rep"]: r for r in g["zmigrate"]}[k], {r["rep"]: r for r in g["qemu"]}[k])
                     for k in reps]
            per_rep.append("| %s | %s | %s |" % (
                m, ", ".join(ratio(zr["total_time_ms"], qr["total_time_ms"]) for zr, qr in pairs),
                ", ".join(ratio(zr["src_cpu_s"] + zr["dst_cpu_s"], qr["src_cpu_s"] + qr["dst_cpu_s"])
                          for zr, qr in pairs)))
        out.append("\nPer-repetition zmigrate/QEMU ratios:\n")
        out.append("| method | total time | CPU |")
        out.append("|---|---|---|")
        out += per_rep
        load = [r["loadavg"][0] for r in sr]
        other = [r["other_cpu_pct"] for r in sr]
        out.append("\nLoad: loadavg(1 min) %.2f-%.2f before the runs; other CPU %.0f-%.0f%% "
                   "during them.\n" % (min(load), max(load), min(other), max(other)))
        out += efficiency(sr, records)
    return "\n".join(out) + "\n"


def efficiency(runs, records):
    """zmigrate sender MB of non-zero pages per sender CPU-second against the
    raw codec's MB/cpu-s from a zmigrate-bench codecs record."""
    raw = {(r["codec"], r["level"]): r for r in records if r.get("type") == "codec"}
    rows = []
    for m in dict.fromkeys(r["method"] for r in runs):
        zr = [r for r in runs if r["method"] == m and r["tool"] == "zmigrate"]
        key = (m, zr[0]["level"]) if zr else None
        if key not in raw:
            continue
        speed = med([r["ram_normal_pages"] * 4096 / 1e6 / r["src_cpu_s"] for r in zr])
        rows.append("| %s %d | %.0f | %.0f | **%.0f%%** | %.0f |" % (
            m, key[1], speed, raw[key]["raw_comp_mbcpus"],
            100 * speed / raw[key]["raw_comp_mbcpus"], raw[key]["live_comp_mbcpus"]))
    if not rows:
        return []
    return ["Pipeline efficiency (sender, per CPU-second):\n",
            "| method | zmigrate sender MB/cpu-s | raw codec MB/cpu-s | efficiency | "
            "engine alone (zm_encode live) MB/cpu-s |",
            "|---|---:|---:|---:|---:|"] + rows + [""]


# ---------------------------------------------------------------------- main
def corpus_staging(src_dir):
    """A directory of symbolic links to src_dir's data files (regular,
    non-empty, names not starting with '.' or 'readme'), the set both
    zmigrate's corpus: fill and qemu_mig_bench.py's silesia fill then use."""
    names = sorted(n for n in os.listdir(src_dir)
                   if os.path.isfile(os.path.join(src_dir, n))
                   and os.path.getsize(os.path.join(src_dir, n)) > 0
                   and not n.startswith(".") and not n.lower().startswith("readme"))
    d = tempfile.mkdtemp(prefix="zmb-corpus-")
    for n in names:
        os.symlink(os.path.abspath(os.path.join(src_dir, n)), os.path.join(d, n))
    return d, names


def parse_args():
    ap = argparse.ArgumentParser(
        description="zmigrate against QEMU 7.2 multifd on the same memory contents, "
                    "interleaved repetitions; JSON lines and a Markdown summary.",
        epilog="Example (root): bench/vs_qemu.py --zmigrate /tmp/b/cli/zmigrate --link 1gbit "
               "--reps 3 --out link.jsonl")
    ap.add_argument("--zmigrate", default=os.path.join(REPO, "build", "cli", "zmigrate"),
                    help="zmigrate binary (default: build/cli/zmigrate of this repository)")
    ap.add_argument("--zmigrate-bench",
                    help="zmigrate-bench binary: measure raw codec speed on the corpus at the "
                         "end, for the pipeline-efficiency table")
    ap.add_argument("--qemu-bench",
                    default=os.path.join(REPO, "..", "shared", "reference", "qemu-peer",
                                         "qemu_mig_bench.py"),
                    help="qemu_mig_bench.py, loaded as a module (default "
                         "../shared/reference/qemu-peer/qemu_mig_bench.py)")
    ap.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary")
    ap.add_argument("--corpus", default=os.path.join(REPO, "..", "shared", "corpus"),
                    help="directory of the Silesia files (default ../shared/corpus)")
    ap.add_argument("--methods", default="none,zstd,zlib", help="comma list (default none,zstd,zlib)")
    ap.add_argument("--level", type=int, default=1, help="zstd/zlib level (default 1)")
    ap.add_argument("--channels", type=int, default=8, help="multifd channels (default 8)")
    ap.add_argument("--size", default="4G", help="guest RAM (default 4G)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (default 3)")
    ap.add_argument("--first-rep", type=int, default=1,
                    help="number of the first repetition, to add repetitions to an earlier "
                         "series (default 1)")
    ap.add_argument("--tools", default="zmigrate,qemu", help="comma list (default both)")
    ap.add_argument("--verify", choices=["first", "none"], default="first",
                    help="first: one untimed verified run per tool and method before the "
                         "timed ones (zmigrate --verify; QEMU: hashes of both guests' RAM "
                         "read with pmemsave); default first")
    ap.add_argument("--link", metavar="RATE",
                    help="run the two ends in two network namespaces joined by a veth pair "
                         "shaped with tc tbf at RATE (e.g. 1gbit); needs root")
    ap.add_argument("--tbf-burst", default="256kb", help="tbf burst (default 256kb)")
    ap.add_argument("--tbf-latency", default="20ms", help="tbf latency (default 20ms)")
    ap.add_argument("--link-check", type=float, default=5, metavar="S",
                    help="seconds of one TCP stream over the link before the runs (0: skip)")
    ap.add_argument("--prewarm", type=float, default=13, metavar="GIB",
                    help="touch and free this much MADV_HUGEPAGE memory before every run, "
                         "capped to leave 3 GiB available (default 13; 0: off)")
    ap.add_argument("--downtime-limit", type=int, default=300, help="QEMU's, ms (default 300)")
    ap.add_argument("--run-timeout", type=int, default=900, help="s per migration")
    ap.add_argument("--out", help="append the JSON lines to this file")
    ap.add_argument("--summary", help="also write the Markdown summary to this file")
    ap.add_argument("--keep-src", action="store_true",
                    help="keep QEMU's filled source image in /dev/shm afterwards")
    ap.add_argument("--summarize", nargs="+", metavar="JSONL",
                    help="only print the summary of earlier JSON lines")
    return ap.parse_args()


def emit(rec, outf):
    line = json.dumps(rec)
    print(line, flush=True)
    if outf:
        outf.write(line + "\n")
        outf.flush()


def codec_records(a):
    codecs = ",".join("%s:%d" % (m, a.level) for m in a.methods if m != "none")
    if not codecs:
        return []
    out = sh([a.zmigrate_bench, "codecs", "--data", "corpus:" + a.corpus_dir,
              "--codec", codecs, "--runs", "3", "--json"])
    recs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    return [dict(r, loadavg=os.getloadavg()) for r in recs if r.get("type") == "codec"]


def read_jsonl(paths):
    """The JSON objects of these files, one per non-empty line."""
    recs = []
    for fn in paths:
        with open(fn) as f:
            recs += [json.loads(x) for x in f if x.strip()]
    return recs


def main():
    a = parse_args()
    if a.summarize:
        print(summarize(read_jsonl(a.summarize)), end="")
        return
    if not os.path.isdir(a.corpus):
        print("vs_qemu: corpus directory %s not found; skipping (give --corpus)" % a.corpus,
              file=sys.stderr)
        sys.exit(77)
    if a.link and os.geteuid() != 0:
        sys.exit("vs_qemu: --link needs root (network namespaces, veth, tc)")
    tools = [t for t in a.tools.split(",") if t]
    if "zmigrate" in tools and not os.access(a.zmigrate, os.X_OK):
        sys.exit("vs_qemu: no zmigrate at %s (give --zmigrate)" % a.zmigrate)
    if a.zmigrate_bench and not os.access(a.zmigrate_bench, os.X_OK):
        sys.exit("vs_qemu: no zmigrate-bench at %s" % a.zmigrate_bench)
    qmb = load_qemu_bench(a.qemu_bench)
    a.methods = [m for m in a.methods.split(",") if m]
    a.size_bytes = qmb.parse_size(a.size)

    signal.signal(signal.SIGTERM, lambda sig, _f: sys.exit(128 + sig))
    net = Link(a.link, a.tbf_burst, a.tbf_latency) if a.link else Loopback()
    a.corpus_dir, names = corpus_staging(a.corpus)
    src_img = os.path.join(qmb.SHM, "qemu-peer-src-silesia-%dM.ram" % (a.size_bytes // MiB))

    def cleanup():
        reap_all()
        net.down()
        shutil.rmtree(a.corpus_dir, ignore_errors=True)
        if not a.keep_src:
            for p in (src_img, src_img + ".json"):
                if os.path.exists(p):
                    os.unlink(p)

    atexit.register(cleanup)
    outf = open(a.out, "a") if a.out else None
    records = []
    net.up()
    if a.link and a.link_check > 0:
        rec = net.check(a.link_check)
        log("link check: one TCP stream %.1f Mbit/s" % rec["tcp_single_stream_mbit_s"])
        records.append(rec)
        emit(rec, outf)
    if "qemu" in tools:
        fill_args = argparse.Namespace(scratch_tmp=tempfile.gettempdir(),
                                       silesia_dir=a.corpus_dir, corpus_mib=256, mixed_dirs=None)
        qmb.fill_source(src_img, "silesia", a.size_bytes, fill_args)
    plan = [(0, m, t) for m in a.methods for t in tools] if a.verify == "first" else []
    plan += [(rep, m, t) for rep in range(a.first_rep, a.first_rep + a.reps)
             for m in a.methods for t in tools]
    for rep, method, tool in plan:
        if a.prewarm:
            n = int(min(a.prewarm * GiB, mem_available() - 3 * GiB)) // (64 * MiB) * (64 * MiB)
            if n > 0:
                prewarm(n)
        rec = {"type": "run", "tool": tool, "method": method, "rep": rep,
               "verify_run": rep == 0, "level": a.level if method != "none" else None,
               "channels": a.channels, "size": a.size, "corpus_files": names,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "loadavg": os.getloadavg(),
               "prewarm_gib": a.prewarm, **net.describe()}
        log("%s %s %s%s" % ("verify" if rep == 0 else "rep %d" % rep, tool, method,
                            "" if rep else " (untimed)"))
        if tool == "zmigrate":
            rec.update(run_zmigrate(a, net, method, rep == 0))
        else:
            rec.update(run_qemu(a, qmb, net, method, rep == 0, src_img))
        rec["loadavg_after"] = os.getloadavg()
        records.append(rec)
        emit(rec, outf)
        log("  %s total=%s ms downtime=%s ms wire=%.0f MB cpu=%s+%s other=%s%%%s" % (
            rec["status"], rec.get("total_time_ms"), rec.get("downtime_ms"),
            (rec.get("wire_bytes") or 0) / 1e6, rec.get("src_cpu_s"), rec.get("dst_cpu_s"),
            rec.get("other_cpu_pct"),
            "" if "verified" not in rec else " verified=%s" % rec["verified"]))
        if rec["status"] != "completed" or rec.get("verified") is False:
            sys.exit("vs_qemu: %s %s failed: %s" % (tool, method, json.dumps(rec)[-1500:]))
    if a.zmigrate_bench:
        for rec in codec_records(a):
            records.append(rec)
            emit(rec, outf)
    text = summarize(records)
    print(text, end="", file=sys.stderr)
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
