/*
 * json.h - a JSON string from any C string, for machine-readable output
 */
#ifndef ZM_TOOLS_JSON_H
#define ZM_TOOLS_JSON_H

#include <stdio.h>

/*
 * Writes s as a quoted JSON string: '"', '\' and control characters
 * escaped, valid UTF-8 as it is, any other byte as U+FFFD.  Error messages
 * carry paths and peer-supplied names, which may hold any byte.
 */
void zm_json_string(FILE *out, const char *s);

#endif
