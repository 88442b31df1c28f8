/*
 * test_units.c - the zmigrate tool's sizes, rates and durations: what
 * parses to what, what is refused and how, and how values print
 */
#include "test_util.h"
#include "tools/units.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define KI UINT64_C(1024)
#define MI (KI * KI)
#define GI (MI * KI)
#define TI (GI * KI)
#define EI (TI * KI * KI)

struct ok_case {
    const char *in;
    uint64_t want;
};

struct bad_case {
    const char *in;
    int ret;
    const char *msg; /* a piece the message must contain */
};

static void test_sizes(void)
{
    static const struct ok_case ok[] = {
        { "0", 0 },
        { "4096", 4096 },
        { "4096B", 4096 },
        { "64k", 64 * KI },
        { "64K", 64 * KI },
        { "64KB", 64 * KI },
        { "64KiB", 64 * KI },
        { "512M", 512 * MI },
        { "4G", 4 * GI },
        { "4g", 4 * GI },
        { "1.5GiB", 3 * GI / 2 },
        { "0.5k", 512 },
        { "1.1G", 1181116006 }, /* 1181116006.4, rounded */
        { "0.0009765625K", 1 },
        { "2TB", 2 * TI },
        { "1P", TI * KI },
        { "15E", 15 * EI },
        { "15.99999999999999999999E", UINT64_MAX },
        { "18446744073709551615", UINT64_MAX },
        { "007", 7 },
    };
    static const struct bad_case bad[] = {
        { "", -EINVAL, "empty size" },
        { "-1", -EINVAL, "negative" },
        { "-4G", -EINVAL, "negative" },
        { "+4G", -EINVAL, "expected a number" },
        { " 4G", -EINVAL, "expected a number" },
        { "4G ", -EINVAL, "unknown unit" },
        { "4 G", -EINVAL, "unknown unit" },
        { "G", -EINVAL, "expected a number" },
        { "4X", -EINVAL, "unknown unit 'X'" },
        { "4Gb", -EINVAL, "bits" },
        { "4b", -EINVAL, "bits" },
        { "4GiBs", -EINVAL, "unknown unit" },
        { "4iB", -EINVAL, "unknown unit" },
        { "4Gi", -EINVAL, "unknown unit" },
        { "1.", -EINVAL, "expected a number" },
        { ".5G", -EINVAL, "expected a number" },
        { "1.5", -EINVAL, "whole" },
        { "0x10", -EINVAL, "unknown unit" },
        { "1e6", -EINVAL, "unknown unit" },
        { "16E", -ERANGE, "too large" },
        { "18446744073709551616", -ERANGE, "too large" },
        { "99999999999999999999999", -ERANGE, "too large" },
        { "17179869184G", -ERANGE, "too large" },
        { "0.0001K", -ERANGE, "rounds to 0" }, /* 0.1 byte */
    };
    char err[256];

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 12345;
        int ret = zm_parse_size(ok[i].in, &v, err, sizeof(err));

        CHECK(ret == 0, "'%s': %d (%s)", ok[i].in, ret, err);
        CHECK(v == ok[i].want, "'%s': %llu, want %llu", ok[i].in,
              (unsigned long long)v, (unsigned long long)ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 12345;
        int ret;

        err[0] = '\0';
        ret = zm_parse_size(bad[i].in, &v, err, sizeof(err));
        CHECK(ret == bad[i].ret, "'%s': %d, want %d", bad[i].in, ret,
              bad[i].ret);
        CHECK(v == 12345, "'%s': output written on failure", bad[i].in);
        CHECK(strstr(err, bad[i].msg) != NULL, "'%s': message '%s'", bad[i].in,
              err);
    }
    zm_parse_size("4Q", &(uint64_t){ 0 }, err, sizeof(err));
    printf("size '4Q': %s\n", err);
}

static void test_rates(void)
{
    static const struct ok_case ok[] = {
        { "0", 0 },
        { "1000", 1000 },
        { "200M/s", 200 * MI },
        { "200M", 200 * MI },
        { "1G", GI },
        { "1GB/s", GI },
        { "1GiB/s", GI },
        { "1GBps", GI },
        { "1Gbit/s", GI / 8 },
        { "1Gbit", GI / 8 },
        { "1Gbps", GI / 8 },
        { "1GiBit/s", GI / 8 },
        { "800Mibit/s", 100 * MI },
        { "12bit/s", 2 }, /* 1.5 bytes, rounded */
        { "8bps", 1 },
        { "1.5k/s", 1536 },
        { "500B/s", 500 },
        { "unlimited", ZM_RATE_UNLIMITED },
        { "MAX", ZM_RATE_UNLIMITED },
        { "15E/s", 15 * EI },
    };
    static const struct bad_case bad[] = {
        { "", -EINVAL, "empty rate" },
        { "-1M/s", -EINVAL, "negative" },
        { "1Gb/s", -EINVAL, "ambiguous" },
        { "1Gps", -EINVAL, "unknown unit" },
        { "1G/h", -EINVAL, "unknown unit" },
        { "1Gbps/s", -EINVAL, "unknown unit" },
        { "1G/s/s", -EINVAL, "unknown unit" },
        { "1Gbyte/s", -EINVAL, "unknown unit" },
        { "fast", -EINVAL, "expected a number" },
        { "1.5/s", -EINVAL, "whole" },
        { "3bit/s", -ERANGE, "rounds to 0" },
        { "16E/s", -ERANGE, "too large" },
        { "99999999999999999999", -ERANGE, "too large" },
    };
    char err[256];

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 12345;
        int ret = zm_parse_rate(ok[i].in, &v, err, sizeof(err));

        CHECK(ret == 0, "'%s': %d (%s)", ok[i].in, ret, err);
        CHECK(v == ok[i].want, "'%s': %llu, want %llu", ok[i].in,
              (unsigned long long)v, (unsigned long long)ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 12345;
        int ret;

        err[0] = '\0';
        ret = zm_parse_rate(bad[i].in, &v, err, sizeof(err));
        CHECK(ret == bad[i].ret, "'%s': %d, want %d", bad[i].in, ret,
              bad[i].ret);
        CHECK(v == 12345, "'%s': output written on failure", bad[i].in);
        CHECK(strstr(err, bad[i].msg) != NULL, "'%s': message '%s'", bad[i].in,
              err);
    }
}

static void test_durations(void)
{
    static const struct ok_case ok_ms[] = {
        { "300", 300 * ZM_UNIT_MS },
        { "300ms", 300 * ZM_UNIT_MS },
        { "300MS", 300 * ZM_UNIT_MS },
        { "2s", 2 * ZM_UNIT_S },
        { "1.5s", 1500 * ZM_UNIT_MS },
        { "0.5", 500 * ZM_UNIT_US },
        { "500us", 500 * ZM_UNIT_US },
        { "500\xc2\xb5s", 500 * ZM_UNIT_US },
        { "100ns", 100 },
        { "1.5ns", 2 },
        { "2min", 120 * ZM_UNIT_S },
        { "1h", 3600 * ZM_UNIT_S },
        { "0", 0 },
        { "18446744073709551615ns", UINT64_MAX },
    };
    static const struct bad_case bad[] = {
        { "", -EINVAL, "empty duration" },
        { "-300ms", -EINVAL, "negative" },
        { "300 ms", -EINVAL, "unknown unit" },
        { "300m", -EINVAL, "unknown unit 'm'" },
        { "1d", -EINVAL, "unknown unit" },
        { "ms", -EINVAL, "expected a number" },
        { "0.1ns", -ERANGE, "rounds to 0" },
        { "18446744074s", -ERANGE, "too large" },
        { "5124096h", -ERANGE, "too large" },
    };
    char err[256];
    uint64_t v = 0;

    for (size_t i = 0; i < sizeof(ok_ms) / sizeof(ok_ms[0]); i++) {
        int ret;

        v = 12345;
        ret = zm_parse_duration(ok_ms[i].in, ZM_UNIT_MS, &v, err, sizeof(err));
        CHECK(ret == 0, "'%s': %d (%s)", ok_ms[i].in, ret, err);
        CHECK(v == ok_ms[i].want, "'%s': %llu, want %llu", ok_ms[i].in,
              (unsigned long long)v, (unsigned long long)ok_ms[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int ret;

        v = 12345;
        err[0] = '\0';
        ret = zm_parse_duration(bad[i].in, ZM_UNIT_MS, &v, err, sizeof(err));
        CHECK(ret == bad[i].ret, "'%s': %d, want %d", bad[i].in, ret,
              bad[i].ret);
        CHECK(v == 12345, "'%s': output written on failure", bad[i].in);
        CHECK(strstr(err, bad[i].msg) != NULL, "'%s': message '%s'", bad[i].in,
              err);
    }

    /* The default unit is the caller's. */
    CHECK(zm_parse_duration("3", ZM_UNIT_S, &v, NULL, 0) == 0 &&
              v == 3 * ZM_UNIT_S,
          "'3' in seconds: %llu", (unsigned long long)v);
    CHECK(zm_parse_duration("3", 250, &v, NULL, 0) == 0 && v == 750,
          "'3' in 250 ns units: %llu", (unsigned long long)v);
    CHECK(zm_parse_duration("3", 0, &v, NULL, 0) == -EINVAL,
          "a default unit of 0 is refused");
}

static void test_uint(void)
{
    char err[256];
    uint64_t v = 0;

    CHECK(zm_parse_uint("8", 1, 256, &v, err, sizeof(err)) == 0 && v == 8,
          "'8': %llu", (unsigned long long)v);
    CHECK(zm_parse_uint("256", 1, 256, &v, err, sizeof(err)) == 0 && v == 256,
          "'256': %llu", (unsigned long long)v);
    CHECK(zm_parse_uint("0", 1, 256, &v, err, sizeof(err)) == -ERANGE &&
              strstr(err, "1 to 256") != NULL,
          "'0' below the range: %s", err);
    CHECK(zm_parse_uint("257", 1, 256, &v, err, sizeof(err)) == -ERANGE,
          "'257' above the range");
    CHECK(zm_parse_uint("99999999999999999999", 0, UINT64_MAX, &v, err,
                        sizeof(err)) == -ERANGE,
          "overflow");
    CHECK(zm_parse_uint("8.0", 1, 256, &v, err, sizeof(err)) == -EINVAL &&
              strstr(err, "whole") != NULL,
          "'8.0': %s", err);
    CHECK(zm_parse_uint("8k", 1, 256, &v, err, sizeof(err)) == -EINVAL, "'8k'");
    CHECK(zm_parse_uint("-8", 0, 256, &v, err, sizeof(err)) == -EINVAL &&
              strstr(err, "negative") != NULL,
          "'-8': %s", err);
    CHECK(zm_parse_uint("", 0, 256, &v, err, sizeof(err)) == -EINVAL, "empty");
}

/* Messages are truncated to the caller's buffer, and NULL is allowed. */
static void test_error_buffers(void)
{
    char err[8];
    uint64_t v;

    memset(err, 'x', sizeof(err));
    CHECK(zm_parse_size("4X", &v, err, sizeof(err)) == -EINVAL, "'4X'");
    CHECK(memchr(err, '\0', sizeof(err)) != NULL, "message terminated");
    CHECK(zm_parse_size("4X", &v, NULL, 0) == -EINVAL, "no buffer");
    CHECK(zm_parse_size("4X", &v, err, 0) == -EINVAL, "empty buffer");
    CHECK(zm_parse_size(NULL, &v, NULL, 0) == -EINVAL, "NULL text");
    CHECK(zm_parse_rate("1G", NULL, NULL, 0) == -EINVAL, "NULL output");
}

static void test_format(void)
{
    static const struct {
        uint64_t v;
        const char *want;
    } bytes[] = {
        { 0, "0 B" },
        { 1023, "1023 B" },
        { 1024, "1.00 KiB" },
        { 1536, "1.50 KiB" },
        { 10 * KI, "10.0 KiB" },
        { 150 * KI, "150 KiB" },
        { MI - 1, "1.00 MiB" },
        { 3 * GI / 2, "1.50 GiB" },
        { 4 * GI, "4.00 GiB" },
        { 2 * TI, "2.00 TiB" },
        { UINT64_MAX, "16.0 EiB" },
    };
    static const struct {
        uint64_t ns;
        const char *want;
    } durations[] = {
        { 0, "0 ns" },
        { 250, "250 ns" },
        { 1500, "1.50 us" },
        { 500 * ZM_UNIT_US, "500 us" },
        { 300 * ZM_UNIT_MS, "300 ms" },
        { 999999999, "1.00 s" },
        { 1500 * ZM_UNIT_MS, "1.50 s" },
        { 12345 * ZM_UNIT_MS, "12.3 s" },
        { 59960 * ZM_UNIT_MS, "1m00s" },
        { 125 * ZM_UNIT_S, "2m05s" },
        { 3723 * ZM_UNIT_S, "1h02m03s" },
        { UINT64_MAX, "5124095h34m34s" },
    };
    char buf[ZM_FORMAT_MAX];

    for (size_t i = 0; i < sizeof(bytes) / sizeof(bytes[0]); i++) {
        CHECK(zm_format_bytes(buf, sizeof(buf), bytes[i].v) == 0, "bytes");
        CHECK(strcmp(buf, bytes[i].want) == 0, "%llu bytes: '%s', want '%s'",
              (unsigned long long)bytes[i].v, buf, bytes[i].want);
    }
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        CHECK(zm_format_duration(buf, sizeof(buf), durations[i].ns) == 0,
              "duration");
        CHECK(strcmp(buf, durations[i].want) == 0, "%llu ns: '%s', want '%s'",
              (unsigned long long)durations[i].ns, buf, durations[i].want);
    }

    CHECK(zm_format_rate(buf, sizeof(buf), 0) == 0 && strcmp(buf, "0 B/s") == 0,
          "0 B/s: '%s'", buf);
    CHECK(zm_format_rate(buf, sizeof(buf), 12.5 * MI) == 0 &&
              strcmp(buf, "12.5 MiB/s") == 0,
          "12.5 MiB/s: '%s'", buf);
    CHECK(zm_format_rate(buf, sizeof(buf), 1.0 * GI) == 0 &&
              strcmp(buf, "1.00 GiB/s") == 0,
          "1 GiB/s: '%s'", buf);
    CHECK(zm_format_rate(buf, sizeof(buf), INFINITY) == 0 &&
              strcmp(buf, "unlimited") == 0,
          "infinity: '%s'", buf);
    CHECK(zm_format_rate(buf, sizeof(buf), -1) == -EINVAL, "negative rate");
    CHECK(zm_format_rate(buf, sizeof(buf), NAN) == -EINVAL, "NaN rate");
    CHECK(zm_format_rate(buf, sizeof(buf), 1e300) == 0 &&
              strcmp(buf, "unlimited") == 0,
          "1e300: '%s'", buf);
    CHECK(zm_format_rate(buf, sizeof(buf), (double)ZM_RATE_UNLIMITED) == 0 &&
              strcmp(buf, "unlimited") == 0,
          "ZM_RATE_UNLIMITED: '%s'", buf);

    /* A buffer too small: -ERANGE, and still a string. */
    CHECK(zm_format_bytes(buf, 4, 3 * GI / 2) == -ERANGE, "short buffer");
    CHECK(strcmp(buf, "1.5") == 0, "truncated: '%s'", buf);
    CHECK(zm_format_bytes(NULL, 0, 1) == -EINVAL, "NULL buffer");

    /* What is printed parses back to about the same value. */
    for (uint64_t v = 1; v < UINT64_MAX / 3; v = v * 3 + 1) {
        uint64_t back = 0;
        char num[ZM_FORMAT_MAX];
        char unit[ZM_FORMAT_MAX];
        char joined[2 * ZM_FORMAT_MAX];

        zm_format_bytes(buf, sizeof(buf), v);
        CHECK(sscanf(buf, "%31s %31s", num, unit) == 2, "'%s'", buf);
        snprintf(joined, sizeof(joined), "%s%s", num, unit);
        CHECK(zm_parse_size(joined, &back, NULL, 0) == 0, "'%s'", joined);
        CHECK(fabs((double)back - (double)v) <= (double)v * 0.006,
              "%llu printed as '%s', read back as %llu", (unsigned long long)v,
              buf, (unsigned long long)back);
    }
}

int main(void)
{
    test_sizes();
    test_rates();
    test_durations();
    test_uint();
    test_error_buffers();
    test_format();
    return t_exit();
}
