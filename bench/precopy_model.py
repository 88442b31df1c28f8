#!/usr/bin/env python3
"""How fast can pre-copy be for zmguest's workload on a given link?

The guest rewrites uniformly random 64 KiB regions at a fixed rate; a link
carries B bytes/s of page data.  Two answers, in seconds and bytes:

* the bound: any pre-copy that always sends a stale page at the link's
  rate.  The stale bytes s obey ds/dt = D (1 - s/M) - B (D: bytes the guest
  writes per second, M: bytes of data it keeps), which does not depend on
  the order pages go in; the migration can stop once s fits the downtime
  limit.
* zmigrate's rounds, simulated page by page: each round sends the pages
  dirty at its start in address order, skipping those seen written again
  (the dirty log is read every 50 ms; `--peek 0` never reads it, as QEMU
  7.2, which sends every page dirty at a round's start), and the stop comes
  after the first round whose dirty pages fit the limit (the "three
  quarters" rule of doc/design-migration.md is left out).

Neither counts the link's start-up or the stop's fixed costs.  Example, the
1 Gbit/s none run of doc/performance.md (13 of a region's 16 pages carry
data, 14,715 regions, 117 MB/s of payload):

    bench/precopy_model.py --regions 14715 --data-pages 13 --link 117e6
"""

import argparse
import math
import random

PAGE = 4096


def bound(m, d, b, limit):
    """Seconds until the stale bytes fit limit seconds of link time."""
    if d <= 0:
        return (m - b * limit) / b
    s_inf = m * (d - b) / d  # where s would settle (< 0 when B > D)
    target = b * limit
    if target >= m:
        return 0.0
    if s_inf >= target:
        return math.inf
    return m / d * math.log((m - s_inf) / (target - s_inf))


def rounds(regions, region_bytes, writes_per_s, b, limit, peek=0.05, seed=1):
    """Simulates the rounds; returns (seconds, bytes sent, rounds)."""
    rng = random.Random(seed)
    t = sent = 0.0
    todo = list(range(regions))
    log, carry = set(), set()
    next_write, next_peek, n = 0.0, peek, 0
    while True:
        n += 1
        again = set()
        for r in todo:
            if r in again:
                continue
            done = t + region_bytes / b
            while next_write < done:
                log.add(rng.randrange(regions))
                next_write += 1 / writes_per_s
                if next_write >= next_peek:
                    again |= log
                    carry |= log
                    log = set()
                    next_peek += peek
            t = done
            sent += region_bytes
        todo = sorted(log | carry)
        log, carry = set(), set()
        stop = len(todo) * region_bytes / b
        if stop <= limit:
            return t + stop, sent + len(todo) * region_bytes, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regions", type=int, default=14715)
    ap.add_argument("--region-kib", type=int, default=64)
    ap.add_argument("--data-pages", type=int, default=13,
                    help="pages of a region that are not zero (zmguest: 13 of 16)")
    ap.add_argument("--rate", type=float, default=100 * 2 ** 20,
                    help="bytes/s the guest writes (default 100 MiB/s)")
    ap.add_argument("--link", type=float, default=117e6,
                    help="page-data bytes/s the link carries")
    ap.add_argument("--ratio", type=float, default=1.0,
                    help="compression ratio of the data pages (none: 1)")
    ap.add_argument("--limit", type=float, default=0.3, help="downtime limit, s")
    ap.add_argument("--peek", type=float, default=0.05,
                    help="seconds between reads of the dirty log during a "
                         "round (0: never, as QEMU 7.2)")
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()

    region_bytes = a.data_pages * PAGE
    writes = a.rate / (a.region_kib * 1024)
    b = a.link * a.ratio  # data bytes/s the link carries once compressed
    m = a.regions * region_bytes
    d = writes * region_bytes
    t = bound(m, d, b, a.limit)
    print("data %.1f MB, guest writes %.1f MB/s of it, link %.1f MB/s of it"
          % (m / 1e6, d / 1e6, b / 1e6))
    print("bound: %.2f s, %.0f MB of data" % (t, t * b / 1e6))
    for seed in range(1, a.seeds + 1):
        secs, sent, n = rounds(a.regions, region_bytes, writes, b, a.limit,
                               peek=a.peek if a.peek > 0 else math.inf, seed=seed)
        print("rounds (seed %d): %.2f s, %.0f MB of data, %d rounds"
              % (seed, secs, sent / 1e6, n))


if __name__ == "__main__":
    main()
