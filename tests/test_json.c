/*
 * test_json.c - the zmigrate tool's JSON strings: what is escaped, which
 * UTF-8 passes, and which bytes become U+FFFD
 */
#include "tools/json.h"
#include "test_util.h"

#include <string.h>

struct json_case {
    const char *in;
    const char *want; /* without the quotes */
};

static const struct json_case cases[] = {
    { "", "" },
    { "plain text: 1..19", "plain text: 1..19" },
    { "a\"b\\c", "a\\\"b\\\\c" },
    { "tab\there\nnl\x1f\x7f", "tab\\u0009here\\u000anl\\u001f\\u007f" },
    /* Valid UTF-8 of each length passes as it is. */
    { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
    { "\xed\x9f\xbf \xf4\x8f\xbf\xbf", "\xed\x9f\xbf \xf4\x8f\xbf\xbf" },
    /* Each byte of an invalid sequence is one U+FFFD. */
    { "\xff", "\\ufffd" },
    { "\x80x", "\\ufffdx" },
    { "\xc0\x80", "\\ufffd\\ufffd" },                       /* overlong NUL */
    { "\xc1\xbf", "\\ufffd\\ufffd" },                       /* overlong */
    { "\xe0\x80\x80", "\\ufffd\\ufffd\\ufffd" },            /* overlong */
    { "\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd" },            /* a surrogate */
    { "\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd" }, /* > U+10FFFF */
    { "\xf5\x80", "\\ufffd\\ufffd" },
    /* Cut short, by the end of the string or by another byte. */
    { "\xe2\x82", "\\ufffd\\ufffd" },
    { "\xf0\x9f\x98", "\\ufffd\\ufffd\\ufffd" },
    { "\xe2x\xac", "\\ufffdx\\ufffd" },
};

int main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        CHECK(f != NULL, "open_memstream");
        if (!f) {
            break;
        }
        zm_json_string(f, cases[i].in);
        fclose(f);
        size_t want = strlen(cases[i].want);
        CHECK(len == want + 2 && buf[0] == '"' && buf[len - 1] == '"' &&
                  memcmp(buf + 1, cases[i].want, want) == 0,
              "case %zu: got %s, want \"%s\"", i, buf, cases[i].want);
        free(buf);
    }
    return t_exit();
}
