/*
 * convergence.c - when pre-copy should stop the guest
 */
#include "convergence.h"

double zm_link_bandwidth(const struct zm_round_sample *s)
{
    double all = s->rounds_s > 1e-6 ? s->rounds_s : 1e-6;
    double bw = (double)s->rounds_wire_bytes / all;

    if (s->round_s >= 0.1 && (double)s->round_wire_bytes / s->round_s < bw) {
        bw = (double)s->round_wire_bytes / s->round_s;
    }
    return bw;
}

double zm_wire_bytes_per_page(const struct zm_round_sample *s)
{
    if (s->round > 0 && s->round_pages >= 64) {
        return (double)s->round_wire_bytes / (double)s->round_pages;
    }
    if (s->payload_bytes == 0 || s->normal_bytes == 0) {
        return (double)s->page_size;
    }
    return (double)s->page_size * (double)s->payload_bytes /
           (double)s->normal_bytes;
}

void zm_convergence_assess(const struct zm_round_sample *s,
                           uint64_t downtime_limit_ms, unsigned max_iterations,
                           struct zm_convergence *out)
{
    double bw = zm_link_bandwidth(s);
    double per_page = zm_wire_bytes_per_page(s);
    double link = bw > 1 ? bw : 1;
    double pages_ms = (double)s->dirty_pages * per_page / link * 1000;
    /* What the link has yet to carry of this round goes first. */
    double expected_ms = pages_ms + (double)s->queued_bytes / link * 1000;
    double limit = (double)downtime_limit_ms;
    bool shrinking = pages_ms * 4 < s->round_s * 1000 * 3 &&
                     pages_ms * 10 > limit &&
                     (uint64_t)s->round + 2 < max_iterations;

    *out = (struct zm_convergence){
        .bandwidth = bw,
        .bytes_per_page = per_page,
        .pages_ms = pages_ms,
        .expected_ms = expected_ms,
        .switch_over = expected_ms <= limit && !shrinking,
    };
}
