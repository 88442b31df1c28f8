/*
 * emulated.c - the "emulated" backend: the worker pool as a device
 *
 * What an accelerator does to its caller, on purpose and on schedule, so
 * that tests can show each fallback rule:
 *   emulated:threads=N,depth=D,latency=200us,busy-every=1s,busy-for=100ms,
 *            fail-every=50,hang-every=200,lose-after=1000,min-pages=P
 * latency: no job completes sooner after its submit (default 50us);
 * depth: jobs in flight before submit answers busy; busy-every/-for: busy
 * periods; fail-every: every Nth job fails (-EIO); hang-every: every Nth
 * job never completes (it keeps its place in the queue's depth, as a
 * stuck job on a real device does); lose-after: after N jobs the device
 * is gone (-ENODEV from then on); host-percent: the share of its threads'
 * CPU that counts as the host's (default 100), so that a device whose
 * engines are not the host's cores can be told apart in cpu-seconds.
 */
#include "offload.h"
#include "pool.h"

static int emulated_open(const char *args, uint32_t page_size, void **dev)
{
    struct zm_pool_config cfg = { .threads = 2,
                                  .latency_ns = 50000,
                                  .host_percent = 100 };
    int ret = zm_pool_parse(args,
                            "threads,depth,latency,busy-every,busy-for,"
                            "fail-every,hang-every,lose-after,min-pages,"
                            "host-percent",
                            &cfg);

    return ret < 0 ? ret : zm_pool_open(&cfg, page_size, dev);
}

const struct zm_offload_ops zm_offload_emulated = {
    .version = ZM_OFFLOAD_VERSION,
    .sizeof_ops = sizeof(struct zm_offload_ops),
    .name = "emulated",
    .open = emulated_open,
    .close = zm_pool_close,
    .caps = zm_pool_caps,
    .queue_new = zm_pool_queue_new,
    .queue_free = zm_pool_queue_free,
    .submit = zm_pool_submit,
    .poll = zm_pool_poll,
    .cpu_seconds = zm_pool_cpu_seconds,
};
