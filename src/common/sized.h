/*
 * sized.h - structs that begin with their own size, across versions
 *
 * Every struct the library reads from or writes to its caller begins with
 * a size_t that the caller sets to sizeof() as its header knew it.  An
 * older caller's struct is shorter: the library reads what it has and
 * writes no further.
 */
#ifndef ZM_SIZED_H
#define ZM_SIZED_H

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* The size a caller's struct states (its first member). */
static inline size_t zm_sized_size(const void *s)
{
    size_t n;

    memcpy(&n, s, sizeof(n));
    return n;
}

/*
 * Copies the caller's struct src over dst (dst_size bytes, holding the
 * defaults), as far as both reach, and sets dst's size to dst_size.
 * -EINVAL when src states less than its size member.
 */
static inline int zm_sized_in(void *dst, size_t dst_size, const void *src)
{
    size_t n = zm_sized_size(src);

    if (n < sizeof(size_t)) {
        return -EINVAL;
    }
    memcpy(dst, src, n < dst_size ? n : dst_size);
    memcpy(dst, &dst_size, sizeof(dst_size));
    return 0;
}

/*
 * Fills the caller's struct out from the library's src (src_size bytes),
 * as far as out's stated size reaches; out's size member stays as the
 * caller set it.  -EINVAL when out states less than its size member.
 */
static inline int zm_sized_out(void *out, const void *src, size_t src_size)
{
    size_t n = zm_sized_size(out);

    if (n < sizeof(size_t)) {
        return -EINVAL;
    }
    n = n < src_size ? n : src_size;
    memcpy((char *)out + sizeof(size_t), (const char *)src + sizeof(size_t),
           n - sizeof(size_t));
    return 0;
}

#endif /* ZM_SIZED_H */
