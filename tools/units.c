/*
 * units.c - sizes, rates and durations with units, for the zmigrate tool
 *
 * A value is a decimal number, parsed exactly (a whole part and up to 18
 * digits of fraction), times a unit.  The fraction is scaled by long
 * division, so "1.1G" is the nearest byte to 1.1 * 2^30 without floating
 * point and without 128-bit arithmetic.
 */
#include "errbuf.h"
#include "units.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Fraction digits kept; further ones are below a unit for any multiple. */
#define FRAC_DIGITS_MAX 18

/* Longest piece of the input quoted back in a message. */
#define QUOTE "%.64s"

struct number {
    uint64_t whole;
    uint64_t frac; /* numerator of the fraction ... */
    uint64_t den;  /* ... over 10^k */
    bool nonzero;  /* some digit, kept or not, is not 0 */
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Reads digits[.digits] at *pp and moves *pp past them.  Returns 0,
 * -EINVAL (no number there) or -ERANGE (the whole part overflows).
 */
static int parse_number(const char **pp, struct number *n)
{
    const char *p = *pp;
    unsigned kept = 0;

    *n = (struct number){ .den = 1 };
    if (!is_digit(*p)) {
        return -EINVAL;
    }
    for (; is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');

        if (n->whole > (UINT64_MAX - d) / 10) {
            return -ERANGE;
        }
        n->whole = n->whole * 10 + d;
        n->nonzero |= d != 0;
    }
    if (*p == '.') {
        p++;
        if (!is_digit(*p)) {
            return -EINVAL;
        }
        for (; is_digit(*p); p++) {
            unsigned d = (unsigned)(*p - '0');

            n->nonzero |= d != 0;
            if (kept < FRAC_DIGITS_MAX) {
                n->frac = n->frac * 10 + d;
                n->den *= 10;
                kept++;
            }
        }
    }
    *pp = p;
    return 0;
}

/*
 * frac * mult / den rounded to nearest, for frac < den <= 10^18: binary
 * long division over the bits of mult keeps every intermediate below
 * 3 * 10^18, and the quotient is at most mult.
 */
static uint64_t scale_fraction(uint64_t frac, uint64_t den, uint64_t mult)
{
    uint64_t q = 0;
    uint64_t r = 0;

    for (int bit = 63; bit >= 0; bit--) {
        q <<= 1;
        r <<= 1;
        if ((mult >> bit) & 1) {
            r += frac;
        }
        while (r >= den) {
            r -= den;
            q++;
        }
    }
    if (2 * r >= den) {
        q++;
    }
    return q;
}

/*
 * n * mult, rounded to nearest.  -ERANGE when it overflows, -EDOM when n
 * is not zero and the result is.
 */
static int scale(const struct number *n, uint64_t mult, uint64_t *out)
{
    uint64_t v;
    uint64_t f;

    if (mult != 0 && n->whole > UINT64_MAX / mult) {
        return -ERANGE;
    }
    v = n->whole * mult;
    f = n->frac ? scale_fraction(n->frac, n->den, mult) : 0;
    if (v > UINT64_MAX - f) {
        return -ERANGE;
    }
    v += f;
    if (v == 0 && n->nonzero) {
        return -EDOM;
    }
    *out = v;
    return 0;
}

/* The message for scale()'s failures. */
static int out_of_range(char *err, size_t err_size, int code, const char *what,
                        const char *s, const char *max)
{
    if (code == -EDOM) {
        return zm_errbuf(err, err_size, -ERANGE,
                         "%s '" QUOTE "' is too small: it rounds to 0", what,
                         s);
    }
    return zm_errbuf(err, err_size, -ERANGE,
                     "%s '" QUOTE "' is too large (at most %s)", what, s, max);
}

/* The binary multiple a prefix letter names, as a shift; -1 if none. */
static int prefix_shift(char c)
{
    static const char prefixes[] = "kmgtpe";
    const char *p;

    if (c == '\0') {
        return -1;
    }
    p = strchr(prefixes, c | 0x20);
    return p != NULL ? 10 * (int)(p - prefixes + 1) : -1;
}

/* Skips a binary prefix ("K", "Ki", ...) at *pp; returns its shift. */
static int skip_prefix(const char **pp)
{
    int shift = prefix_shift(**pp);

    if (shift < 0) {
        return 0;
    }
    (*pp)++;
    if (**pp == 'i' || **pp == 'I') {
        (*pp)++;
    }
    return shift;
}

/* What comes first, for messages: a sign is the common mistake. */
static int bad_start(const char *s, const char *what, const char *example,
                     char *err, size_t err_size)
{
    if (*s == '\0') {
        return zm_errbuf(err, err_size, -EINVAL, "empty %s: expected e.g. %s",
                         what, example);
    }
    if (*s == '-') {
        return zm_errbuf(err, err_size, -EINVAL,
                         "invalid %s '" QUOTE "': it cannot be negative", what,
                         s);
    }
    return zm_errbuf(err, err_size, -EINVAL,
                     "invalid %s '" QUOTE "': expected a number, e.g. %s", what,
                     s, example);
}

int zm_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
                  char *err, size_t err_size)
{
    const char *p = s;
    struct number n;
    int ret;

    if (s == NULL || out == NULL || min > max) {
        return zm_errbuf(err, err_size, -EINVAL, "invalid arguments");
    }
    ret = parse_number(&p, &n);
    if (ret == -EINVAL || (ret == 0 && *p != '\0') || n.den != 1) {
        if (ret == -EINVAL) {
            return bad_start(s, "number", "8", err, err_size);
        }
        return zm_errbuf(err, err_size, -EINVAL,
                         "invalid number '" QUOTE "': expected a whole number",
                         s);
    }
    if (ret == -ERANGE || n.whole < min || n.whole > max) {
        return zm_errbuf(err, err_size, -ERANGE,
                         "number '" QUOTE "' is out of range (%llu to %llu)", s,
                         (unsigned long long)min, (unsigned long long)max);
    }
    *out = n.whole;
    return 0;
}

int zm_parse_size(const char *s, uint64_t *out, char *err, size_t err_size)
{
    static const char units[] = "K, M, G, T, P or E, then B or iB";
    const char *p = s;
    struct number n;
    uint64_t v;
    int shift;
    int ret;

    if (s == NULL || out == NULL) {
        return zm_errbuf(err, err_size, -EINVAL, "invalid arguments");
    }
    ret = parse_number(&p, &n);
    if (ret == -EINVAL) {
        return bad_start(s, "size", "4G", err, err_size);
    }
    if (ret == 0) {
        shift = prefix_shift(*p);
        if (shift > 0) {
            p++;
        } else {
            shift = 0;
        }
        if (shift > 0 && p[0] == 'i' && p[1] == 'B' && p[2] == '\0') {
            p += 2;
        } else if (p[0] == 'B' && p[1] == '\0') {
            p++;
        }
        if (*p == 'b' || (shift > 0 && *p == 'i' && p[1] == 'b')) {
            return zm_errbuf(err, err_size, -EINVAL,
                             "invalid size '" QUOTE "': 'b' means bits, "
                             "sizes are in bytes ('B')",
                             s);
        }
        if (*p != '\0') {
            return zm_errbuf(err, err_size, -EINVAL,
                             "invalid size '" QUOTE "': unknown unit '" QUOTE
                             "' (expected %s)",
                             s, p, units);
        }
        if (shift == 0 && n.den != 1 && n.frac != 0) {
            return zm_errbuf(err, err_size, -EINVAL,
                             "invalid size '" QUOTE "': a number of bytes "
                             "must be whole",
                             s);
        }
        ret = scale(&n, UINT64_C(1) << shift, &v);
    }
    if (ret < 0) {
        return out_of_range(err, err_size, ret, "size", s, "16 EiB - 1 byte");
    }
    *out = v;
    return 0;
}

int zm_parse_rate(const char *s, uint64_t *out, char *err, size_t err_size)
{
    static const char units[] =
        "[K|M|G|T|P|E][i]B/s, bit/s or bps, e.g. 200M/s or 1Gbit/s";
    char unit[16];
    const char *p = s;
    struct number n;
    uint64_t v;
    size_t len;
    bool per_s = false;
    bool bits;
    int shift;
    int ret;

    if (s == NULL || out == NULL) {
        return zm_errbuf(err, err_size, -EINVAL, "invalid arguments");
    }
    if (strcasecmp(s, "unlimited") == 0 || strcasecmp(s, "max") == 0) {
        *out = ZM_RATE_UNLIMITED;
        return 0;
    }
    ret = parse_number(&p, &n);
    if (ret == -EINVAL) {
        return bad_start(s, "rate", "200M/s", err, err_size);
    }
    if (ret < 0) {
        goto range;
    }
    shift = skip_prefix(&p);

    /* What is left names bytes or bits, perhaps followed by "/s". */
    len = strlen(p);
    if (len >= 2 && strcmp(p + len - 2, "/s") == 0) {
        per_s = true;
        len -= 2;
    }
    if (len >= sizeof(unit)) {
        goto bad_unit;
    }
    memcpy(unit, p, len);
    unit[len] = '\0';
    if (strcmp(unit, "") == 0 || strcmp(unit, "B") == 0) {
        bits = false;
    } else if (strcasecmp(unit, "bit") == 0) {
        bits = true;
    } else if (strcmp(unit, "Bps") == 0 && !per_s) {
        bits = false;
    } else if (strcmp(unit, "bps") == 0 && !per_s) {
        bits = true;
    } else if (strcmp(unit, "b") == 0) {
        return zm_errbuf(err, err_size, -EINVAL,
                         "invalid rate '" QUOTE "': 'b' is ambiguous, "
                         "write 'B' for bytes or 'bit' for bits",
                         s);
    } else {
        goto bad_unit;
    }
    if (shift == 0 && !bits && n.frac != 0) {
        return zm_errbuf(err, err_size, -EINVAL,
                         "invalid rate '" QUOTE "': a number of bytes per "
                         "second must be whole",
                         s);
    }
    ret = scale(&n, UINT64_C(1) << shift, &v);
    if (ret == 0 && bits) {
        v = v / 8 + (v % 8 >= 4);
        if (v == 0 && n.nonzero) {
            ret = -EDOM;
        }
    }
    if (ret < 0) {
        goto range;
    }
    *out = v;
    return 0;

bad_unit:
    return zm_errbuf(err, err_size, -EINVAL,
                     "invalid rate '" QUOTE "': unknown unit '" QUOTE
                     "' (expected %s)",
                     s, p, units);
range:
    return out_of_range(err, err_size, ret, "rate", s, "16 EiB/s - 1 byte/s");
}

int zm_parse_duration(const char *s, uint64_t default_unit, uint64_t *out,
                      char *err, size_t err_size)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        { "ns", ZM_UNIT_NS },        { "us", ZM_UNIT_US },
        { "\xc2\xb5s", ZM_UNIT_US }, /* µs */
        { "ms", ZM_UNIT_MS },        { "s", ZM_UNIT_S },
        { "min", 60 * ZM_UNIT_S },   { "h", 3600 * ZM_UNIT_S },
    };
    const char *p = s;
    struct number n;
    uint64_t mult = 0;
    uint64_t v;
    int ret;

    if (s == NULL || out == NULL || default_unit == 0) {
        return zm_errbuf(err, err_size, -EINVAL, "invalid arguments");
    }
    ret = parse_number(&p, &n);
    if (ret == -EINVAL) {
        return bad_start(s, "duration", "300ms", err, err_size);
    }
    if (ret == 0) {
        if (*p == '\0') {
            mult = default_unit;
        }
        for (size_t i = 0; mult == 0 && i < sizeof(units) / sizeof(units[0]);
             i++) {
            if (strcasecmp(p, units[i].name) == 0) {
                mult = units[i].ns;
            }
        }
        if (mult == 0) {
            return zm_errbuf(err, err_size, -EINVAL,
                             "invalid duration '" QUOTE
                             "': unknown unit '" QUOTE
                             "' (expected ns, us, ms, s, min or h)",
                             s, p);
        }
        ret = scale(&n, mult, &v);
    }
    if (ret < 0) {
        return out_of_range(err, err_size, ret, "duration", s,
                            "about 584 years");
    }
    *out = v;
    return 0;
}

/* snprintf, with the convention of this file. */
__attribute__((format(printf, 3, 4))) static int put(char *buf, size_t size,
                                                     const char *fmt, ...)
{
    va_list ap;
    int n;

    if (buf == NULL) {
        return -EINVAL;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < size ? 0 : -ERANGE;
}

/* Decimals that show v (at least 1) with three significant digits. */
static int decimals(double v)
{
    return v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
}

/*
 * v in the largest of units[] (each 1024 times the one before) that keeps
 * it at least 1, with three significant digits.  Values that would print
 * as 1024 move up a unit.
 */
static int put_binary(char *buf, size_t size, double v,
                      const char *const units[], unsigned count)
{
    unsigned u = 0;

    while (u + 1 < count && v >= 1023.5) {
        v /= 1024;
        u++;
    }
    return put(buf, size, "%.*f %s", u == 0 ? 0 : decimals(v), v, units[u]);
}

int zm_format_bytes(char *buf, size_t size, uint64_t bytes)
{
    static const char *const units[] = { "B",   "KiB", "MiB", "GiB",
                                         "TiB", "PiB", "EiB" };

    if (bytes < 1024) {
        /* Exact: a double might print 1023.6 as "1024 B". */
        return put(buf, size, "%u B", (unsigned)bytes);
    }
    return put_binary(buf, size, (double)bytes, units, 7);
}

int zm_format_rate(char *buf, size_t size, double bytes_per_s)
{
    static const char *const units[] = { "B/s",   "KiB/s", "MiB/s", "GiB/s",
                                         "TiB/s", "PiB/s", "EiB/s" };

    if (buf == NULL || isnan(bytes_per_s) || bytes_per_s < 0) {
        return -EINVAL;
    }
    /* 2^64 and more: what ZM_RATE_UNLIMITED becomes as a double. */
    if (bytes_per_s >= 18446744073709551616.0) {
        return put(buf, size, "unlimited");
    }
    return put_binary(buf, size, bytes_per_s, units, 7);
}

int zm_format_duration(char *buf, size_t size, uint64_t ns)
{
    static const struct {
        uint64_t ns;
        const char *name;
    } units[] = {
        { ZM_UNIT_US, "us" },
        { ZM_UNIT_MS, "ms" },
        { ZM_UNIT_S, "s" },
    };
    uint64_t s;

    if (ns < 1000) {
        return put(buf, size, "%u ns", (unsigned)ns);
    }
    for (unsigned i = 0; i < 3; i++) {
        double v = (double)ns / (double)units[i].ns;

        /* Up to what rounds to 1000 of the unit; seconds up to a minute. */
        if (v < (i < 2 ? 999.5 : 59.95)) {
            return put(buf, size, "%.*f %s", decimals(v), v, units[i].name);
        }
    }
    s = ns / ZM_UNIT_S + (ns % ZM_UNIT_S >= ZM_UNIT_S / 2);
    if (s < 3600) {
        return put(buf, size, "%um%02us", (unsigned)(s / 60),
                   (unsigned)(s % 60));
    }
    return put(buf, size, "%lluh%02um%02us", (unsigned long long)(s / 3600),
               (unsigned)(s / 60 % 60), (unsigned)(s % 60));
}
