/*
 * endian_util.h - little-endian loads and stores at any alignment
 *
 * The wire format is little endian; memcpy keeps unaligned access defined
 * and compiles to a single move on x86.
 */
#ifndef ZM_ENDIAN_UTIL_H
#define ZM_ENDIAN_UTIL_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t zm_get_le16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static inline uint32_t zm_get_le32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline uint64_t zm_get_le64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static inline void zm_put_le16(void *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, sizeof(v));
}

static inline void zm_put_le32(void *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static inline void zm_put_le64(void *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

#endif /* ZM_ENDIAN_UTIL_H */
