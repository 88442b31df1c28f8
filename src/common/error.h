/*
 * error.h - the per-thread error message behind zm_errmsg()
 */
#ifndef ZM_ERROR_H
#define ZM_ERROR_H

/*
 * Records a message for zm_errmsg() and returns err (a negative errno), so
 * that failures read: return zm_error(-EBADMSG, "packet: ...", ...);
 */
int zm_error(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* ZM_ERROR_H */
