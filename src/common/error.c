/*
 * error.c - error names, the per-thread message, the version
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "zmigrate.h"

static _Thread_local char last_message[256];

/* Callers wrap a message in context: zm_error(ret, "x: %s", zm_errmsg()).
 * So the arguments may point into last_message: format apart, then copy. */
int zm_error(int err, const char *fmt, ...)
{
    char message[sizeof(last_message)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    memcpy(last_message, message, sizeof(message));
    return err;
}

ZM_API const char *zm_errmsg(void)
{
    return last_message;
}

ZM_API const char *zm_version(void)
{
    return ZM_VERSION_STRING;
}

ZM_API const char *zm_strerror(int err)
{
    /* The codes this library returns, in the sense it gives them. */
    switch (-err) {
    case 0:
        return "success";
    case EBADMSG:
        return "malformed or corrupt data (EBADMSG)";
    case EPROTO:
        return "protocol mismatch (EPROTO)";
    case ERANGE:
        return "value out of range (ERANGE)";
    case EMSGSIZE:
        return "more pages in a packet than accepted (EMSGSIZE)";
    case EOVERFLOW:
        return "device state larger than ZM_MAX_DEVICE_STATE (EOVERFLOW)";
    case ENOSPC:
        return "more regions than ZM_MAX_REGIONS (ENOSPC)";
    case EEXIST:
        return "region registered twice (EEXIST)";
    case ECONNREFUSED:
        return "refused by the peer: nobody listening, or it refused or "
               "failed the migration (ECONNREFUSED)";
    case ENOTCONN:
        return "no answer after the switchover (ENOTCONN)";
    case ENOBUFS:
        return "output buffer too small (ENOBUFS)";
    case EOPNOTSUPP:
        return "not supported by this build (EOPNOTSUPP)";
    case EINVAL:
        return "invalid argument (EINVAL)";
    case ENOMEM:
        return "out of memory (ENOMEM)";
    default:
        return strerror(-err);
    }
}
