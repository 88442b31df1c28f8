/*
 * errbuf.h - the zmigrate tool's way to fail with a message: write it
 * into the caller's buffer (err may be NULL) and return the error code
 */
#ifndef ZM_TOOLS_ERRBUF_H
#define ZM_TOOLS_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 4, 5))) static inline int
zm_errbuf(char *err, size_t err_size, int code, const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

#endif /* ZM_TOOLS_ERRBUF_H */
