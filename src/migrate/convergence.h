/*
 * convergence.h - when pre-copy should stop the guest
 *
 * Pure functions of what a round measured: how fast the link is, what a
 * dirty page costs on it, how long the guest would stay stopped, and
 * whether one more live round is worth it.  No clocks, locks or sockets,
 * so tests/test_convergence.c checks each rule on its own.
 */
#ifndef ZM_CONVERGENCE_H
#define ZM_CONVERGENCE_H

#include <stdbool.h>
#include <stdint.h>

/* What the source knows at the end of a live round. */
struct zm_round_sample {
    unsigned round;             /* 0: the first, which sent all of RAM */
    double round_s;             /* this round's length */
    double rounds_s;            /* since round 0 began */
    uint64_t round_wire_bytes;  /* sent this round */
    uint64_t rounds_wire_bytes; /* sent since round 0 began */
    uint64_t round_pages;       /* sent this round, zero pages included */
    uint64_t payload_bytes;     /* every packet's payload so far */
    uint64_t normal_bytes;      /* the uncompressed bytes of that payload */
    uint64_t dirty_pages;       /* dirty now: the next round's */
    uint64_t queued_bytes;      /* written, not yet taken by the link */
    uint32_t page_size;
};

struct zm_convergence {
    double bandwidth;      /* bytes/s the link carries */
    double bytes_per_page; /* wire bytes a dirty page costs */
    double pages_ms;       /* to send the dirty pages */
    double expected_ms;    /* the downtime, were the guest stopped now */
    bool switch_over;      /* stop the guest and send the rest now */
};

/*
 * The link's speed: that of all rounds so far, or this round's when it is
 * slower and long enough to say (a short round's overheads and
 * buffer-filling first writes say little about the link).
 */
double zm_link_bandwidth(const struct zm_round_sample *s);

/*
 * Wire bytes per dirty page.  A later round sent dirty pages only, zero
 * ones among them, so its own figure says it best; round 0 sent all of
 * RAM, whose zero pages say nothing of the dirty ones: count every dirty
 * page as a normal page, at the compression ratio so far, then.
 */
double zm_wire_bytes_per_page(const struct zm_round_sample *s);

/*
 * Everything above, and the decision: switch over once the expected
 * downtime fits downtime_limit_ms, unless one more round is worth it.
 * It is while the round just sent took a third longer than sending its
 * dirty pages would: one more round sends them live and leaves at most
 * three quarters as many for the stop, until they take a tenth of the
 * limit, and while rounds remain under max_iterations.
 */
void zm_convergence_assess(const struct zm_round_sample *s,
                           uint64_t downtime_limit_ms, unsigned max_iterations,
                           struct zm_convergence *out);

#endif /* ZM_CONVERGENCE_H */
