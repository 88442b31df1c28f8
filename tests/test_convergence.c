/*
 * test_convergence.c - when pre-copy switches over
 *
 * Each rule of src/migrate/convergence.c on its own, with figures worked
 * out by hand in the comments: the link's speed, what a dirty page costs,
 * the expected downtime (queued bytes included), and the decision, with
 * the "one more round" rule at each of its three bounds.  Most figures are
 * chosen to be exact in binary so that the bounds can be hit exactly.
 */
#include <math.h>
#include <stdbool.h>

#include "migrate/convergence.h"
#include "test_util.h"

/* a == b within a relative 1e-9 (absolute 1e-9 near zero). */
static bool near(double a, double b)
{
    double scale = fabs(b) > 1 ? fabs(b) : 1;
    return fabs(a - b) <= 1e-9 * scale;
}

#define CHECK_NEAR(got, want, what)                                        \
    CHECK(near((got), (want)), "%s: got %.17g, want %.17g", (what), (got), \
          (double)(want))

static void test_bandwidth(void)
{
    struct zm_round_sample s = { 0 };

    /*
     * All rounds: 1e9 bytes in 10 s = 1e8 B/s.  This round, 2e8 bytes in
     * 1 s = 2e8 B/s, is faster: the average stands.
     */
    s.rounds_wire_bytes = 1000000000;
    s.rounds_s = 10;
    s.round_wire_bytes = 200000000;
    s.round_s = 1.0;
    CHECK_NEAR(zm_link_bandwidth(&s), 1e8, "faster round");

    /* Equal (1e8 bytes in 1 s): still the average, 1e8. */
    s.round_wire_bytes = 100000000;
    CHECK_NEAR(zm_link_bandwidth(&s), 1e8, "equal round");

    /* 25e6 bytes in 0.5 s = 5e7 B/s, slower, 0.5 s >= 0.1 s: 5e7. */
    s.round_wire_bytes = 25000000;
    s.round_s = 0.5;
    CHECK_NEAR(zm_link_bandwidth(&s), 5e7, "slower round");

    /* Exactly 0.1 s is long enough: 1e6 bytes / 0.1 s = 1e7 B/s. */
    s.round_wire_bytes = 1000000;
    s.round_s = 0.1;
    CHECK_NEAR(zm_link_bandwidth(&s), 1e7, "slower 0.1 s round");

    /* 1e6 bytes in 0.05 s = 2e7 B/s is slower, but too short: 1e8. */
    s.round_s = 0.05;
    CHECK_NEAR(zm_link_bandwidth(&s), 1e8, "slower 0.05 s round");

    /* 0.099 s: still too short, 1e8 (the round would say ~1.01e7). */
    s.round_s = 0.099;
    CHECK_NEAR(zm_link_bandwidth(&s), 1e8, "slower 0.099 s round");

    /*
     * rounds_s 0 (nothing timed yet): the divisor is held at 1e-6 s, so
     * 1e6 bytes give 1e12 B/s, not inf; nothing sent gives 0, not NaN.
     */
    s = (struct zm_round_sample){ .rounds_wire_bytes = 1000000 };
    double bw = zm_link_bandwidth(&s);
    CHECK(isfinite(bw), "rounds_s 0: %g", bw);
    CHECK_NEAR(bw, 1e12, "rounds_s 0, 1e6 bytes");
    s.rounds_wire_bytes = 0;
    bw = zm_link_bandwidth(&s);
    CHECK(bw == 0, "rounds_s 0, nothing sent: %g", bw);
}

static void test_bytes_per_page(void)
{
    struct zm_round_sample s = {
        .page_size = 4096,
        .payload_bytes = 1000000,
        .normal_bytes = 4000000, /* a ratio of 1/4: 4096 / 4 = 1024 */
    };

    /* A later round of >= 64 pages: its own 150000 / 100 = 1500. */
    s.round = 2;
    s.round_pages = 100;
    s.round_wire_bytes = 150000;
    CHECK_NEAR(zm_wire_bytes_per_page(&s), 1500, "round 2, 100 pages");

    /* Exactly 64 pages is enough: 64000 / 64 = 1000. */
    s.round = 1;
    s.round_pages = 64;
    s.round_wire_bytes = 64000;
    CHECK_NEAR(zm_wire_bytes_per_page(&s), 1000, "round 1, 64 pages");

    /* 63 pages are too few: the ratio, 4096 * 1e6 / 4e6 = 1024. */
    s.round_pages = 63;
    s.round_wire_bytes = 63000;
    CHECK_NEAR(zm_wire_bytes_per_page(&s), 1024, "round 1, 63 pages");

    /*
     * Round 0 sent all of RAM, zero pages too (1e6 bytes for 1000 pages
     * would say 1000): the ratio all the same, 1024.
     */
    s.round = 0;
    s.round_pages = 1000;
    s.round_wire_bytes = 1000000;
    CHECK_NEAR(zm_wire_bytes_per_page(&s), 1024, "round 0");

    /* A ratio of 3/4 on 64 KiB pages: 65536 * 3e6 / 4e6 = 49152. */
    s.page_size = 65536;
    s.payload_bytes = 3000000;
    CHECK_NEAR(zm_wire_bytes_per_page(&s), 49152, "round 0, 64 KiB pages");

    /* Nothing sent yet: a whole page, 65536; 0/0 must not be NaN. */
    s.payload_bytes = 0;
    s.normal_bytes = 0;
    CHECK_NEAR(zm_wire_bytes_per_page(&s), 65536, "nothing sent");
    /* Payload but no normal bytes: still no division by zero. */
    s.payload_bytes = 5000;
    double b = zm_wire_bytes_per_page(&s);
    CHECK(isfinite(b), "normal_bytes 0: %g", b);
    CHECK_NEAR(b, 65536, "normal_bytes 0");
    /* A later round of no pages: the same fallback, not 0/0. */
    s.round = 3;
    s.round_pages = 0;
    s.round_wire_bytes = 0;
    CHECK_NEAR(zm_wire_bytes_per_page(&s), 65536, "round 3, no pages");
}

/*
 * The base sample of the decision tests, in figures exact in binary:
 *   bandwidth   6.4e8 bytes / 10 s = 6.4e7 B/s (the round's 2e8 bytes in
 *               2 s = 1e8 B/s is faster, so the average stands)
 *   per page    2e8 bytes / 100000 pages = 2000 bytes (round 3)
 *   pages_ms    2000 pages * 2000 bytes = 4e6 bytes / 6.4e7 B/s
 *               = 0.0625 s = 62.5 ms
 *   queued      2e6 bytes / 6.4e7 B/s = 0.03125 s = 31.25 ms
 *   expected_ms 62.5 + 31.25 = 93.75 ms
 *   shrinking?  pages_ms * 4 = 250 < round_ms * 3 = 6000: the round took
 *               over a third longer than its dirty pages would.
 */
static struct zm_round_sample base_sample(void)
{
    return (struct zm_round_sample){
        .round = 3,
        .round_s = 2.0,
        .rounds_s = 10.0,
        .round_wire_bytes = 200000000,
        .rounds_wire_bytes = 640000000,
        .round_pages = 100000,
        .payload_bytes = 1000000000,
        .normal_bytes = 4000000000,
        .dirty_pages = 2000,
        .queued_bytes = 2000000,
        .page_size = 4096,
    };
}

static struct zm_convergence assess(const struct zm_round_sample *s,
                                    uint64_t limit_ms, unsigned max_iter)
{
    /* Garbage first: every field must be written. */
    struct zm_convergence c = { -1, -1, -1, -1, true };
    zm_convergence_assess(s, limit_ms, max_iter, &c);
    return c;
}

static void test_assess_figures(void)
{
    struct zm_round_sample s = base_sample();
    struct zm_convergence c = assess(&s, 1000, 30);

    CHECK_NEAR(c.bandwidth, 6.4e7, "bandwidth");
    CHECK_NEAR(c.bytes_per_page, 2000, "bytes_per_page");
    CHECK_NEAR(c.pages_ms, 62.5, "pages_ms");
    CHECK_NEAR(c.expected_ms, 93.75, "expected_ms with 2e6 queued");

    /* Nothing queued: expected_ms is pages_ms alone. */
    s.queued_bytes = 0;
    c = assess(&s, 1000, 30);
    CHECK_NEAR(c.expected_ms, 62.5, "expected_ms, nothing queued");

    /*
     * A slower round of 0.5 s: 1.6e7 bytes / 0.5 s = 3.2e7 B/s, below
     * the average's 6.4e7; its 8000 pages still cost 1.6e7 / 8000 = 2000
     * bytes each, so pages_ms = 4e6 / 3.2e7 = 0.125 s = 125 ms.
     */
    s.round_s = 0.5;
    s.round_wire_bytes = 16000000;
    s.round_pages = 8000;
    c = assess(&s, 1000, 30);
    CHECK_NEAR(c.bandwidth, 3.2e7, "slower round: bandwidth");
    CHECK_NEAR(c.bytes_per_page, 2000, "slower round: bytes_per_page");
    CHECK_NEAR(c.pages_ms, 125, "slower round: pages_ms");

    /*
     * Round 0: the ratio, 4096 * 1e9 / 4e9 = 1024 bytes a page, whatever
     * the round's own figure (2e8 / 100000 = 2000): 2000 * 1024 =
     * 2048000 bytes / 6.4e7 = 32 ms.
     */
    s = base_sample();
    s.round = 0;
    c = assess(&s, 1000, 30);
    CHECK_NEAR(c.bytes_per_page, 1024, "round 0: bytes_per_page");
    CHECK_NEAR(c.pages_ms, 32, "round 0: pages_ms");
}

static void test_assess_decision(void)
{
    struct zm_round_sample s = base_sample();
    struct zm_convergence c;

    /*
     * Fits and not shrinking: 93.75 <= 1000, and pages_ms * 10 = 625 is
     * not above 1000 (the dirty pages take under a tenth of the limit).
     */
    c = assess(&s, 1000, 30);
    CHECK(c.switch_over, "fits, small: %.2f ms of 1000", c.expected_ms);

    /*
     * Does not fit.  A short round (0.083 s: round_ms * 3 = 249, not
     * above pages_ms * 4 = 250) is not shrinking, so only the fit
     * decides: 93.75 > 93, 93.75 <= 94.
     */
    s.round_s = 0.083;
    c = assess(&s, 93, 30);
    CHECK(!c.switch_over, "93.75 ms does not fit 93");
    c = assess(&s, 94, 30);
    CHECK(c.switch_over, "93.75 ms fits 94 (short round)");

    /* An exact fit fits: 4e6 queued = 62.5 ms, 62.5 + 62.5 = 125. */
    s.queued_bytes = 4000000;
    c = assess(&s, 125, 30);
    CHECK(c.expected_ms == 125 && c.switch_over,
          "125 ms fits 125 exactly: %.17g", c.expected_ms);
    c = assess(&s, 124, 30);
    CHECK(!c.switch_over, "125 ms does not fit 124");
    s.queued_bytes = 2000000;

    /* The queued bytes count: without them 62.5 fits 63; with, not. */
    c = assess(&s, 63, 30);
    CHECK(!c.switch_over, "62.5 + 31.25 queued does not fit 63");
    s.queued_bytes = 0;
    c = assess(&s, 63, 30);
    CHECK(c.switch_over, "62.5, nothing queued, fits 63");
    s.queued_bytes = 2000000;

    /*
     * 0.084 s: round_ms * 3 = 252 > 250 (the first condition holds),
     * 625 > 94 and 3 + 2 < 30: shrinking, one more round.
     */
    s.round_s = 0.084;
    c = assess(&s, 94, 30);
    CHECK(!c.switch_over, "fits 94 but shrinking (0.084 s round)");

    /* Dirty pages far beyond the limit: 2e6 pages = 62500 ms. */
    s = base_sample();
    s.dirty_pages = 2000000;
    c = assess(&s, 1000, 30);
    CHECK_NEAR(c.pages_ms, 62500, "many dirty pages");
    CHECK(!c.switch_over, "62531.25 ms does not fit 1000");
    /* ... however few rounds remain: the limit is not max_iterations'. */
    c = assess(&s, 1000, 1);
    CHECK(!c.switch_over, "does not fit, no rounds left");
}

static void test_assess_shrinking(void)
{
    struct zm_round_sample s = base_sample();
    struct zm_convergence c;

    /*
     * Limit 300: 93.75 fits, but 250 < 6000, 625 > 300 and 5 < 30: the
     * next round would leave fewer pages for the stop.  One more.
     */
    c = assess(&s, 300, 30);
    CHECK(c.expected_ms <= 300 && !c.switch_over,
          "shrinking keeps a round: %.2f ms of 300", c.expected_ms);

    /* pages_ms <= limit / 10 ends it: 625 > 625 is false at 625 ms. */
    c = assess(&s, 625, 30);
    CHECK(c.switch_over, "62.5 ms is a tenth of 625: switch");
    c = assess(&s, 624, 30);
    CHECK(!c.switch_over, "62.5 ms is over a tenth of 624: one more");

    /*
     * round + 2 >= max_iterations ends it: round 3, 3 + 2 = 5, so 6 keeps
     * one more and 5 switches (the last round would be the stop's).
     */
    c = assess(&s, 300, 6);
    CHECK(!c.switch_over, "round 3 of max 6: one more");
    c = assess(&s, 300, 5);
    CHECK(c.switch_over, "round 3 of max 5: switch");
    c = assess(&s, 300, 4);
    CHECK(c.switch_over, "round 3 of max 4: switch");
    s.round = 0;
    c = assess(&s, 300, 3);
    CHECK(!c.switch_over, "round 0 of max 3: one more");
    c = assess(&s, 300, 2);
    CHECK(c.switch_over, "round 0 of max 2: switch");

    /*
     * Not shrinking: the round took no longer than its dirty pages would
     * (round_ms * 3 = 249 < 250 at 0.083 s): switch even at 300.
     */
    s = base_sample();
    s.round_s = 0.083;
    c = assess(&s, 300, 30);
    CHECK(c.switch_over, "not shrinking (0.083 s round): switch");
}

/* A zero-length round: finite figures, a sane decision. */
static void test_zero_round(void)
{
    struct zm_round_sample s = { .page_size = 4096, .dirty_pages = 1000 };
    struct zm_convergence c = assess(&s, 300, 30);

    /*
     * Nothing sent, nothing timed: bandwidth 0, the link held at 1 B/s,
     * a page costs 4096 bytes: 1000 * 4096 / 1 * 1000 = 4.096e9 ms.
     */
    CHECK(isfinite(c.bandwidth) && isfinite(c.bytes_per_page) &&
              isfinite(c.pages_ms) && isfinite(c.expected_ms),
          "all zero: %g %g %g %g", c.bandwidth, c.bytes_per_page, c.pages_ms,
          c.expected_ms);
    CHECK_NEAR(c.bytes_per_page, 4096, "all zero: bytes_per_page");
    CHECK_NEAR(c.pages_ms, 4.096e9, "all zero: pages_ms");
    CHECK(!c.switch_over, "all zero: switch over with 4e9 ms to send");

    /*
     * round_s and rounds_s 0 but bytes sent (a clock that did not move):
     * 6.4e8 bytes / 1e-6 s = 6.4e14 B/s, the round's own figure ignored
     * (0 s < 0.1 s).  Round 3, 100000 pages: 2000 bytes a page; 1000
     * pages: 2e6 / 6.4e14 * 1000 = 3.125e-6 ms; nothing queued.
     */
    s = base_sample();
    s.round_s = 0;
    s.rounds_s = 0;
    s.dirty_pages = 1000;
    s.queued_bytes = 0;
    c = assess(&s, 300, 30);
    CHECK(isfinite(c.bandwidth) && isfinite(c.pages_ms) &&
              isfinite(c.expected_ms),
          "zero-length rounds: %g %g %g", c.bandwidth, c.pages_ms,
          c.expected_ms);
    CHECK_NEAR(c.bandwidth, 6.4e14, "zero-length rounds: bandwidth");
    CHECK(fabs(c.pages_ms - 3.125e-6) < 1e-12, "zero-length rounds: %g ms",
          c.pages_ms);
    CHECK(c.switch_over, "zero-length rounds: 3e-6 ms fits 300");

    /* No dirty pages: 0 ms, switch (0 * 10 > 300 is false). */
    s.dirty_pages = 0;
    c = assess(&s, 300, 30);
    CHECK(c.pages_ms == 0 && c.expected_ms == 0 && c.switch_over,
          "no dirty pages: %g ms, switch %d", c.expected_ms, c.switch_over);
}

int main(void)
{
    test_bandwidth();
    test_bytes_per_page();
    test_assess_figures();
    test_assess_decision();
    test_assess_shrinking();
    test_zero_round();
    return t_exit();
}
