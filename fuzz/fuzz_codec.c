/*
 * fuzz_codec.c - every codec's decompress op on arbitrary bytes
 *
 * Input (fuzz_data_producer.h): from the end, the codec id (0..COUNT-1)
 * and the output size (0..256 KiB); the rest, from the front, is the
 * compressed stream.  A codec this build lacks makes the input a no-op.
 * Each codec keeps one decompression context across inputs, as a
 * decoder does.  Properties:
 *
 *   - decompress returns 0 or -EBADMSG and stays inside its buffers: the
 *     stream and the output are copied to allocations of exactly their
 *     size, so ASan sees a byte read or written past either;
 *   - a success writes every output byte: decompressing again over a
 *     buffer filled with another pattern succeeds with the same bytes
 *     (this also shows the context carries nothing from one call to the
 *     next);
 *   - zlib and deflate read the same format (doc/wire-format.md: "either
 *     library decodes both"): a stream one of them accepts, the other
 *     accepts too, with the same output.
 */
#include <errno.h>
#include <string.h>

#include "codec/codec.h"
#include "fuzz.h"
#include "fuzz_data_producer.h"

#define MAX_OUTPUT (256u * 1024)

static void *states[ZM_CODEC_COUNT];
static bool made[ZM_CODEC_COUNT];

static void *state_of(const struct zm_codec_ops *codec)
{
    if (!made[codec->id]) {
        int ret = codec->init(&states[codec->id], codec->default_level,
                              ZM_CODEC_DECOMPRESS);
        FUZZ_CHECK(ret == 0, "%s: init returned %d", codec->name, ret);
        made[codec->id] = true;
    }
    return states[codec->id];
}

static int decompress(const struct zm_codec_ops *codec, const uint8_t *src,
                      size_t src_len, uint8_t *dst, size_t dst_len, int fill)
{
    memset(dst, fill, dst_len);
    int ret = codec->decompress(state_of(codec), src, src_len, dst, dst_len);
    FUZZ_CHECK(ret == 0 || ret == -EBADMSG,
               "%s: decompress of %zu bytes into %zu returned %d", codec->name,
               src_len, dst_len, ret);
    return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zm_fdp fdp = zm_fdp_init(data, size);
    int id = (int)zm_fdp_range(&fdp, 0, ZM_CODEC_COUNT - 1);
    size_t dst_len = zm_fdp_range(&fdp, 0, MAX_OUTPUT);
    size_t src_len;
    const uint8_t *stream = zm_fdp_rest(&fdp, &src_len);
    const struct zm_codec_ops *codec = zm_codec_get(id);

    if (!codec) {
        return 0;
    }
    /* Exact sizes: malloc(0) gives a pointer ASan refuses any access to. */
    uint8_t *src = malloc(src_len);
    uint8_t *dst = malloc(dst_len);
    uint8_t *again = malloc(dst_len);
    FUZZ_CHECK((src || !src_len) && ((dst && again) || !dst_len),
               "out of memory");
    if (src_len) {
        memcpy(src, stream, src_len);
    }

    int ret = decompress(codec, src, src_len, dst, dst_len, 0x5a);
    if (ret == 0) {
        ret = decompress(codec, src, src_len, again, dst_len, 0xa5);
        FUZZ_CHECK(ret == 0, "%s: a second decompress returned %d", codec->name,
                   ret);
        FUZZ_CHECK(dst_len == 0 || memcmp(dst, again, dst_len) == 0,
                   "%s: two decompressions of one stream differ (bytes "
                   "left unwritten?)",
                   codec->name);
    }

    /* The two raw deflate decoders must agree on what they accept. */
    const struct zm_codec_ops *twin =
        id == ZM_CODEC_ZLIB      ? zm_codec_get(ZM_CODEC_DEFLATE)
        : id == ZM_CODEC_DEFLATE ? zm_codec_get(ZM_CODEC_ZLIB)
                                 : NULL;
    if (twin && ret == 0) {
        int twin_ret = decompress(twin, src, src_len, again, dst_len, 0xa5);
        FUZZ_CHECK(twin_ret == 0, "%s accepts a stream %s refuses", codec->name,
                   twin->name);
        FUZZ_CHECK(dst_len == 0 || memcmp(dst, again, dst_len) == 0,
                   "%s and %s decode a stream differently", codec->name,
                   twin->name);
    }
    free(src);
    free(dst);
    free(again);
    return 0;
}
