/*
 * cpu.c - the "cpu" backend: a pool of compression workers
 *
 * QEMU's compress-threads done behind the offload interface: channels only
 * move bytes, workers only compress, so the number of channels and the
 * number of cores spent compressing are chosen apart.
 *   cpu:threads=N,depth=D,min-pages=P
 */
#include "offload.h"
#include "pool.h"

static int cpu_open(const char *args, uint32_t page_size, void **dev)
{
    /* Deep enough that the channels never compress: that is the point. */
    struct zm_pool_config cfg = { .threads = 2,
                                  .depth = 1024,
                                  .host_percent = 100 };
    int ret = zm_pool_parse(args, "threads,depth,min-pages", &cfg);

    return ret < 0 ? ret : zm_pool_open(&cfg, page_size, dev);
}

const struct zm_offload_ops zm_offload_cpu = {
    .version = ZM_OFFLOAD_VERSION,
    .sizeof_ops = sizeof(struct zm_offload_ops),
    .name = "cpu",
    .open = cpu_open,
    .close = zm_pool_close,
    .caps = zm_pool_caps,
    .queue_new = zm_pool_queue_new,
    .queue_free = zm_pool_queue_free,
    .submit = zm_pool_submit,
    .poll = zm_pool_poll,
    .cpu_seconds = zm_pool_cpu_seconds,
};
