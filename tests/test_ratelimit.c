/*
 * test_ratelimit.c - the shared token bucket (max-bandwidth)
 *
 * Behaviour only, no timings: unlimited never blocks; a stop wakes a wait
 * that would otherwise last about a day and makes it return false, as
 * every later wait does at once; a reset forgets both the stop and the
 * reservations.  A wait that should return but hangs is reported after a
 * generous limit rather than left to Meson's timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "channel/ratelimit.h"
#include "test_util.h"

/* Far more than any wait that should return may take. */
#define HANG_S 30

struct waiter {
    struct zm_ratelimit *rl;
    size_t bytes;
    atomic_bool done;
    bool ret;
    pthread_t thread;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;

    w->ret = zm_ratelimit_wait(w->rl, w->bytes);
    atomic_store(&w->done, true);
    return NULL;
}

static void waiter_start(struct waiter *w, struct zm_ratelimit *rl,
                         size_t bytes)
{
    w->rl = rl;
    w->bytes = bytes;
    w->ret = false;
    atomic_store(&w->done, false);
    if (pthread_create(&w->thread, NULL, wait_thread, w) != 0) {
        perror("pthread_create");
        exit(T_EXIT_FAIL);
    }
}

/*
 * Joins w; a wait still blocked after HANG_S cannot be ended from here
 * (the bucket is in use), so that is fatal.
 */
static bool waiter_join(struct waiter *w, const char *what)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HANG_S;
    int ret = pthread_timedjoin_np(w->thread, NULL, &until);
    if (ret == ETIMEDOUT) {
        fprintf(stderr, "%s: the wait still blocks after %d s\n", what, HANG_S);
        exit(T_EXIT_FAIL);
    }
    return w->ret;
}

/* In a thread, so that a wait that blocks fails the test, not hangs it. */
static bool wait_bounded(struct zm_ratelimit *rl, size_t bytes,
                         const char *what)
{
    struct waiter w;

    waiter_start(&w, rl, bytes);
    return waiter_join(&w, what);
}

static void test_unlimited(void)
{
    struct zm_ratelimit rl;

    zm_ratelimit_init(&rl, 0);
    /* Terabytes at rate 0 would take forever at any real rate. */
    bool all = true;
    for (int i = 0; i < 10; i++) {
        all &= wait_bounded(&rl, (size_t)1 << 40, "unlimited");
    }
    CHECK(all, "unlimited: a wait returned false");
    /* Many in a row on this thread: none blocks. */
    for (int i = 0; i < 100000; i++) {
        if (!zm_ratelimit_wait(&rl, SIZE_MAX / 2)) {
            CHECK(false, "unlimited: wait %d returned false", i);
            break;
        }
    }
    zm_ratelimit_reset(&rl);
    CHECK(wait_bounded(&rl, 4096, "unlimited after reset"),
          "unlimited after reset: false");
    zm_ratelimit_destroy(&rl);
    printf("unlimited: ok\n");
}

static void test_stop(void)
{
    struct zm_ratelimit rl;
    struct waiter w;

    /* 1 byte/s: 100000 bytes keep the link busy for about a day. */
    zm_ratelimit_init(&rl, 1);
    CHECK(wait_bounded(&rl, 100000, "first reservation"),
          "the first reservation, on an idle link, returned false");

    /* The next one waits behind it until the stop. */
    waiter_start(&w, &rl, 1);
    usleep(100 * 1000);
    CHECK(!atomic_load(&w.done),
          "a wait behind 100000 bytes at 1 B/s returned at once (%s)",
          w.ret ? "true" : "false");
    zm_ratelimit_stop(&rl);
    CHECK(!waiter_join(&w, "blocked wait, stopped"),
          "a wait ended by a stop returned true");

    /* Stopped: every wait returns false, at once. */
    CHECK(!wait_bounded(&rl, 1, "after stop"), "wait after stop: true");
    CHECK(!wait_bounded(&rl, 0, "after stop, 0 bytes"),
          "wait of 0 bytes after stop: true");
    /* A second stop is harmless. */
    zm_ratelimit_stop(&rl);
    CHECK(!wait_bounded(&rl, 1, "after two stops"),
          "wait after two stops: true");

    /*
     * Several waiters at once, all woken by one stop.  Reset first: the
     * bucket, at 1 B/s, then holds nothing; the first reserves a day.
     */
    zm_ratelimit_reset(&rl);
    CHECK(wait_bounded(&rl, 100000, "first after reset"),
          "first reservation after reset: false");
    struct waiter many[4];
    for (int i = 0; i < 4; i++) {
        waiter_start(&many[i], &rl, 10);
    }
    usleep(100 * 1000);
    zm_ratelimit_stop(&rl);
    for (int i = 0; i < 4; i++) {
        CHECK(!waiter_join(&many[i], "one of 4 waiters"),
              "waiter %d of 4: true after stop", i);
    }
    zm_ratelimit_destroy(&rl);
    printf("stop: ok\n");
}

static void test_reset(void)
{
    struct zm_ratelimit rl;

    /*
     * Stopped with a day's worth reserved at 1 B/s; then reset and a
     * higher rate: a tiny reservation goes (the earlier ones are
     * forgotten, the stop too).
     */
    zm_ratelimit_init(&rl, 1);
    CHECK(wait_bounded(&rl, 100000, "reserve a day"), "reserve a day: false");
    zm_ratelimit_stop(&rl);
    CHECK(!wait_bounded(&rl, 1, "stopped"), "stopped: true");
    zm_ratelimit_reset(&rl);
    CHECK(wait_bounded(&rl, 1, "after reset, 1 B/s, idle"),
          "after reset: the first wait returned false");
    zm_ratelimit_destroy(&rl);

    /* 1 GB/s: a few bytes at a time, all true, none blocked for long. */
    zm_ratelimit_init(&rl, 1000000000);
    zm_ratelimit_stop(&rl);
    zm_ratelimit_reset(&rl);
    bool all = true;
    for (int i = 0; i < 100; i++) {
        all &= wait_bounded(&rl, 64, "after reset, 1 GB/s");
    }
    CHECK(all, "after reset at 1 GB/s: a wait returned false");
    zm_ratelimit_destroy(&rl);
    printf("reset: ok\n");
}

int main(void)
{
    test_unlimited();
    test_stop();
    test_reset();
    return t_exit();
}
