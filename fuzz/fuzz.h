/*
 * fuzz.h - what every fuzz target shares
 *
 * A target is one LLVMFuzzerTestOneInput().  Built with -fsanitize=fuzzer
 * it runs under libFuzzer; linked with replay.c it replays files, which is
 * how `meson test` runs the checked-in corpora without libFuzzer.
 */
#ifndef ZM_FUZZ_H
#define ZM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A property of the library does not hold: say which, then abort, which
 * libFuzzer (and the replay driver's test) reports as a crash.  Unlike
 * assert(), it stays in release builds.
 */
#define FUZZ_CHECK(cond, ...)                                                \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)

#endif /* ZM_FUZZ_H */
