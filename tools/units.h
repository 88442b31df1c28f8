/*
 * units.h - sizes, rates and durations with units, for the zmigrate tool
 *
 * One rule for every multiple: K, M, G, T, P and E are powers of 1024,
 * whatever follows them ("4G" = "4GB" = "4GiB" = 4 * 2^30 bytes), and for
 * rates given in bits too ("1Gbit/s" = 2^30 bits/s = 128 MiB/s).  Letters
 * are case-insensitive except where case carries meaning: "B" is bytes
 * and a lone "b" is refused as ambiguous.  Numbers may have a fraction
 * ("1.5G", "0.5s"); the result is rounded to the nearest whole unit, and a
 * value that is not zero but rounds to zero is refused.  No sign, no
 * exponent, no spaces.
 *
 * Every function returns 0 or a negative errno value: -EINVAL for text
 * that is not a value of the kind asked for, -ERANGE for a value that does
 * not fit (or a buffer that is too small).  On failure the parsers write a
 * message naming the text and what was expected into err (err_size bytes;
 * err may be NULL) and leave *out unchanged.  Nothing here keeps state.
 */
#ifndef ZM_TOOLS_UNITS_H
#define ZM_TOOLS_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* "No limit" for rates: parse_rate's "unlimited" / "max". */
#define ZM_RATE_UNLIMITED UINT64_MAX

/* Units for zm_parse_duration()'s default_unit, in nanoseconds. */
#define ZM_UNIT_NS UINT64_C(1)
#define ZM_UNIT_US UINT64_C(1000)
#define ZM_UNIT_MS UINT64_C(1000000)
#define ZM_UNIT_S UINT64_C(1000000000)

/* A buffer of this size always holds what a zm_format_*() writes. */
#define ZM_FORMAT_MAX 32

/*
 * A whole number in [min, max], decimal only ("8"; not "0x8", "8.0").
 */
int zm_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
                  char *err, size_t err_size);

/*
 * A size in bytes: "4096", "64k", "512M", "4G", "1.5GiB", "2TB".
 * A plain number is bytes and must be whole.
 */
int zm_parse_size(const char *s, uint64_t *out, char *err, size_t err_size);

/*
 * A rate in bytes per second.  Bytes: "200M/s", "1G", "1GB/s", "1GiB/s";
 * bits, divided by 8: "1Gbit/s", "1Gbit", "1Gbps", "800Mibit/s".  The
 * multiples are binary here too, so "1Gbps" is 2^30 bits, not 10^9.
 * "unlimited" and "max" give ZM_RATE_UNLIMITED; "0" gives 0 (what 0 means
 * is the caller's to say).
 */
int zm_parse_rate(const char *s, uint64_t *out, char *err, size_t err_size);

/*
 * A duration in nanoseconds: "300ms", "2s", "1.5s", "500us" (or "µs"),
 * "100ns", "2min", "1h".  A plain number is in default_unit (ZM_UNIT_*,
 * or any number of nanoseconds), e.g. ZM_UNIT_MS for --downtime-limit.
 */
int zm_parse_duration(const char *s, uint64_t default_unit, uint64_t *out,
                      char *err, size_t err_size);

/*
 * For people: three significant digits and a binary unit.
 *   zm_format_bytes:    "512 B", "4.00 KiB", "1.50 GiB", "150 GiB"
 *   zm_format_rate:     "0 B/s", "12.5 MiB/s"; "unlimited" from 2^64
 *                       up, (double)ZM_RATE_UNLIMITED included
 *   zm_format_duration: "250 ns", "500 us", "300 ms", "1.50 s",
 *                       "2m05s", "1h02m03s"
 * They return 0, -EINVAL (a negative or NaN rate, or buf NULL) or -ERANGE
 * (size too small; buf then holds a truncated string).  ZM_FORMAT_MAX bytes
 * are always enough.
 */
int zm_format_bytes(char *buf, size_t size, uint64_t bytes);
int zm_format_rate(char *buf, size_t size, double bytes_per_s);
int zm_format_duration(char *buf, size_t size, uint64_t ns);

#endif /* ZM_TOOLS_UNITS_H */
