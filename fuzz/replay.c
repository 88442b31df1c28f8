/*
 * replay.c - runs a fuzz target on files, without libFuzzer
 *
 *   replay_<target> FILE_OR_DIR...
 *
 * Calls LLVMFuzzerTestOneInput() once per file named, and once per regular
 * file in each directory named (in name order, dot files skipped), then
 * prints how many inputs it ran.  A failed property aborts, as it does
 * under libFuzzer; a path that cannot be read fails the run.  `meson test`
 * uses it to replay fuzz/corpora/<target>/ (lz4's standaloneengine.c).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Reads path into an allocation of exactly its size and runs it. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;

    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    /* malloc(0) still gives a distinct pointer that ASan guards. */
    uint8_t *data = malloc(size);
    if ((!data && size) || fread(data, 1, size, f) != size) {
        fprintf(stderr, "replay: %s: cannot read %zu bytes\n", path, size);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int skip_dot(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Runs every regular file in dir; returns how many, or -1. */
static long run_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dot, alphasort);
    long ran = 0;
    int failed = 0;

    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]->d_name) + 2;
        char *path = malloc(len);
        struct stat st;

        if (!path) {
            failed = 1;
        } else {
            snprintf(path, len, "%s/%s", dir, names[i]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                if (run_file(path) == 0) {
                    ran++;
                } else {
                    failed = 1;
                }
            }
        }
        free(path);
        free(names[i]);
    }
    free(names);
    return failed ? -1 : ran;
}

int main(int argc, char **argv)
{
    long total = 0;
    int failed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed = 1;
        } else if (S_ISDIR(st.st_mode)) {
            long n = run_dir(argv[i]);
            if (n < 0) {
                failed = 1;
            } else {
                total += n;
            }
        } else if (run_file(argv[i]) == 0) {
            total++;
        } else {
            failed = 1;
        }
    }
    printf("replayed %ld input%s\n", total, total == 1 ? "" : "s");
    return failed ? 1 : 0;
}
