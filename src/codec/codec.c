/*
 * codec.c - the list of codecs this build has, and lookups by name and id
 */
#include <errno.h>
#include <string.h>

#include "codec.h"
#include "common/error.h"

/* Indexed by id; a hole is a codec this build does not include. */
static const struct zm_codec_ops *const codecs[ZM_CODEC_COUNT] = {
    [ZM_CODEC_NONE] = &zm_codec_none,
#if ZM_HAVE_LZ4
    [ZM_CODEC_LZ4] = &zm_codec_lz4,
#endif
#if ZM_HAVE_ZSTD
    [ZM_CODEC_ZSTD] = &zm_codec_zstd,
#endif
#if ZM_HAVE_ZLIB
    [ZM_CODEC_ZLIB] = &zm_codec_zlib,
#endif
#if ZM_HAVE_ISAL
    [ZM_CODEC_DEFLATE] = &zm_codec_deflate,
#endif
};

/* Every codec's name, built or not, so that errors can tell the two apart. */
static const char *const codec_names[ZM_CODEC_COUNT] = {
    [ZM_CODEC_NONE] = "none",       [ZM_CODEC_LZ4] = "lz4",
    [ZM_CODEC_ZSTD] = "zstd",       [ZM_CODEC_ZLIB] = "zlib",
    [ZM_CODEC_DEFLATE] = "deflate",
};

const struct zm_codec_ops *zm_codec_get(int id)
{
    if (id < 0 || id >= ZM_CODEC_COUNT) {
        return NULL;
    }
    return codecs[id];
}

int zm_codec_check_level(const struct zm_codec_ops *ops, int level)
{
    if (level < ops->min_level || level > ops->max_level) {
        return zm_error(-ERANGE, "%s: level %d is out of range (%d..%d)",
                        ops->name, level, ops->min_level, ops->max_level);
    }
    return 0;
}

ZM_API const char *zm_codec_name(int codec)
{
    if (codec < 0 || codec >= ZM_CODEC_COUNT) {
        return NULL;
    }
    return codec_names[codec];
}

ZM_API bool zm_codec_available(int codec)
{
    return zm_codec_get(codec) != NULL;
}

ZM_API int zm_codec_by_name(const char *name)
{
    for (int id = 0; id < ZM_CODEC_COUNT; id++) {
        if (name && strcmp(name, codec_names[id]) == 0) {
            if (!codecs[id]) {
                return zm_error(-EOPNOTSUPP,
                                "codec '%s' is not included in this build",
                                name);
            }
            return id;
        }
    }
    return zm_error(-EINVAL,
                    "unknown codec '%s' (none, lz4, zstd, zlib, deflate)",
                    name ? name : "(null)");
}

ZM_API int zm_codec_levels(int codec, int *min, int *max, int *def)
{
    const struct zm_codec_ops *ops = zm_codec_get(codec);

    if (!ops) {
        if (zm_codec_name(codec)) {
            return zm_error(-EOPNOTSUPP,
                            "codec '%s' is not included in this build",
                            zm_codec_name(codec));
        }
        return zm_error(-EINVAL, "unknown codec id %d", codec);
    }
    if (min) {
        *min = ops->min_level;
    }
    if (max) {
        *max = ops->max_level;
    }
    if (def) {
        *def = ops->default_level;
    }
    return 0;
}
