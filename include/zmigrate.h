/*
 * zmigrate.h - the public interface of libzmigrate
 *
 * libzmigrate moves memory pages between processes or hosts, compressed,
 * as self-describing packets.  This header is the whole published API:
 * whatever does not appear here is internal and may change.
 *
 * Conventions
 *   - Functions return 0 (or a non-negative count) on success and a
 *     negative errno value on failure.  zm_strerror() names the code;
 *     zm_errmsg() gives the detailed message of the calling thread's last
 *     failure (like dlerror(), it is per thread).
 *   - Objects are opaque handles made by zm_<object>_new() and released by
 *     zm_<object>_free(), which accepts NULL.
 *   - An object is not safe to use from several threads at once; different
 *     threads may use different objects concurrently.  Use one encoder and
 *     one decoder per thread.
 *   - Every struct passed to or filled by the library begins with its own
 *     size (sizeof_options, sizeof_params, sizeof_hooks, sizeof_stats,
 *     sizeof_round, sizeof_info): set it to sizeof() before the call.  The
 *     library reads and writes no further, so fields can be added at the
 *     end without breaking callers compiled against an older header.  A
 *     size smaller than the size member itself is -EINVAL.
 *
 * Error codes, each with one meaning (zm_strerror() names them so):
 *   -EINVAL        an invalid argument or option, an unknown codec included
 *   -ERANGE        a value outside its range: a level, a region or a page
 *   -EOPNOTSUPP    not available here: a codec not built, a kernel feature
 *   -ENOMEM        out of memory
 *   -ENOBUFS       an output buffer too small
 *   -ENOSPC        more regions than ZM_MAX_REGIONS
 *   -EEXIST        a region name registered twice
 *   -EBADMSG       malformed or corrupt data from the peer or a file
 *   -EPROTO        the two sides disagree (version, flags, codec, page
 *                  size, layout) or the peer broke the protocol
 *   -EMSGSIZE      a packet with more pages than the decoder accepts
 *   -EOVERFLOW     the embedder's device state exceeds ZM_MAX_DEVICE_STATE
 *   -EIO           a codec library or a kernel interface failed
 *   -EAGAIN        a thread could not be started
 *   -ECANCELED     cancelled (zm_source_cancel(), zm_dest_cancel())
 *   -ECONNREFUSED  refused by the peer: nobody listens there, or it
 *                  refused or failed the migration (its reason is in
 *                  zm_errmsg())
 *   -ECONNRESET    the connection (or file) ended before the migration did
 *   -ETIMEDOUT     the data channels did not all connect in time
 *   -ENOTCONN      source only: the switchover went out and no answer came
 *                  (ZM_STATUS_UNCONFIRMED)
 *   others         from the system, for a file or socket (ENOENT: no such
 *                  file), as strerror() names them
 */
#ifndef ZMIGRATE_H
#define ZMIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ZM_BUILDING_LIBRARY)
#define ZM_API __attribute__((visibility("default")))
#else
#define ZM_API
#endif

#define ZM_VERSION_MAJOR 0
#define ZM_VERSION_MINOR 1
#define ZM_VERSION_PATCH 0
#define ZM_VERSION_STRING "0.1.0"

/* The library's version string, e.g. "0.1.0".  Thread safe. */
ZM_API const char *zm_version(void);

/*
 * The name of a negative error code returned by this library, e.g.
 * "malformed or corrupt data (EBADMSG)".  Never returns NULL; thread safe.
 */
ZM_API const char *zm_strerror(int err);

/*
 * A human-readable message describing the calling thread's most recent
 * failure in this library, with the details (field, value, valid range).
 * Empty if nothing has failed on this thread.  The string stays valid until
 * the next failing call on the same thread.
 */
ZM_API const char *zm_errmsg(void);

/* ---------------------------------------------------------------------- */
/* Codecs                                                                  */
/* ---------------------------------------------------------------------- */

/*
 * Codec identifiers.  They travel on the wire (one byte) and are pinned:
 * an identifier is never reused for another codec.
 */
enum zm_codec {
    ZM_CODEC_NONE = 0,    /* pages travel uncompressed */
    ZM_CODEC_LZ4 = 1,     /* LZ4 block format; "level" is the acceleration */
    ZM_CODEC_ZSTD = 2,    /* Zstandard frame */
    ZM_CODEC_ZLIB = 3,    /* zlib's deflate, raw deflate stream */
    ZM_CODEC_DEFLATE = 4, /* ISA-L igzip, raw deflate stream */
    ZM_CODEC_COUNT
};

/* Ask for the codec's default level. */
#define ZM_LEVEL_DEFAULT INT32_MIN

/*
 * The codec called name ("none", "lz4", "zstd", "zlib", "deflate").
 * Returns its id, -EINVAL for an unknown name (or NULL), or -EOPNOTSUPP for
 * a codec this build of the library does not include.  Thread safe, as
 * every codec query below.
 */
ZM_API int zm_codec_by_name(const char *name);

/* The codec's name, or NULL for an unknown id. */
ZM_API const char *zm_codec_name(int codec);

/* Whether this build of the library includes the codec. */
ZM_API bool zm_codec_available(int codec);

/*
 * The codec's range of levels and its default level (any pointer may be
 * NULL).  Returns 0, or -EINVAL / -EOPNOTSUPP as zm_codec_by_name().
 *   none 0..0 (0), lz4 1..65537 (1: acceleration, higher is faster),
 *   zstd 1..19 (1), zlib 1..9 (1), deflate 0..3 (1).
 */
ZM_API int zm_codec_levels(int codec, int *min, int *max, int *def);

/* ---------------------------------------------------------------------- */
/* Packets                                                                 */
/* ---------------------------------------------------------------------- */

/*
 * A packet carries a batch of pages of one memory region: an index table,
 * then the contents of the non-zero pages, compressed or raw, and an xxh3
 * checksum over the header, the table and the uncompressed contents.
 * Packets are independent: any packet decodes on its own, in any order.
 * The format is described in doc/wire-format.md.
 */
#define ZM_PACKET_HEADER_SIZE 40u

/* The most pages one packet may carry, whatever the options say. */
#define ZM_MAX_BATCH_PAGES 1024u

/* Page sizes accepted: powers of two in this range. */
#define ZM_MIN_PAGE_SIZE 512u
#define ZM_MAX_PAGE_SIZE 65536u

struct zm_packet_info {
    size_t sizeof_info; /* sizeof(struct zm_packet_info), set by the caller */
    uint32_t size;      /* the whole packet, header included */
    uint32_t region;    /* region the pages belong to */
    uint32_t page_size;
    uint32_t pages;        /* pages described: normal + zero */
    uint32_t zero_pages;   /* pages that are all zero (no payload) */
    uint32_t data_size;    /* uncompressed bytes of the non-zero pages */
    uint32_t payload_size; /* bytes of those pages on the wire */
    int codec;             /* enum zm_codec the payload was made with */
    int level;             /* level it was made with (informative) */
    bool raw;              /* payload stored uncompressed */
};

/*
 * Reads and checks the fixed header at buf (len >= ZM_PACKET_HEADER_SIZE
 * bytes) and fills info.  Use it on a byte stream to learn how many bytes
 * the whole packet takes (info->size) before reading the rest.  Checks the
 * fields that need no context (magic, version, flags, counts, sizes); the
 * decoder checks the rest.  info may be NULL.  Returns 0, -EBADMSG (not a
 * packet or inconsistent sizes), -EPROTO (another version or unknown
 * flags), -EMSGSIZE (more pages than ZM_MAX_BATCH_PAGES) or -EINVAL (info's
 * size).  Thread safe.
 */
ZM_API int zm_packet_peek(const void *buf, size_t len,
                          struct zm_packet_info *info);

/* ---------------------------------------------------------------------- */
/* Encoder: a batch of pages -> one packet                                 */
/* ---------------------------------------------------------------------- */

typedef struct zm_encoder zm_encoder;

/* One page to send: its number within the region and where it is now. */
struct zm_page_ref {
    uint64_t index;
    const void *data;
};

struct zm_encoder_options {
    size_t sizeof_options; /* sizeof(struct zm_encoder_options) */
    int codec;             /* enum zm_codec */
    int level;             /* within zm_codec_levels(), or ZM_LEVEL_DEFAULT */
    uint32_t page_size;    /* 0 means 4096 */
    uint32_t max_pages;    /* pages per packet; 0 means 128 */
    /*
     * Store-raw rule: when the compressed payload would exceed this many
     * percent of the input, the pages travel raw.  0 means 90; 1..100.
     */
    uint32_t raw_threshold;
    uint32_t flags; /* ZM_ENCODER_* */
};

/*
 * Always run the codec.  By default a cheap compressibility estimate runs
 * first, and batches that look incompressible (random or already
 * compressed data) travel raw without spending time in the codec.
 */
#define ZM_ENCODER_NO_ESTIMATE (1u << 0)

/*
 * Creates an encoder.  Returns 0 and sets *out, or -EINVAL (bad option),
 * -ERANGE (level outside the codec's range; zm_errmsg() names the range),
 * -EOPNOTSUPP (a codec not built), -ENOMEM.
 */
ZM_API int zm_encoder_new(const struct zm_encoder_options *opts,
                          zm_encoder **out);

/* Frees the encoder and its codec context; accepts NULL. */
ZM_API void zm_encoder_free(zm_encoder *enc);

/* The largest packet this encoder can produce: size output buffers so. */
ZM_API size_t zm_encoder_bound(const zm_encoder *enc);

/*
 * Makes codec at level (ZM_LEVEL_DEFAULT: its default) the method of the
 * batches enc encodes from now on.  The encoder keeps the contexts of the
 * last 8 methods it used, so a caller that picks a method per batch pays
 * for each context once.  Returns 0 or zm_encoder_new()'s errors: -EINVAL,
 * -EOPNOTSUPP, -ERANGE, -ENOMEM (enc is unchanged).
 */
ZM_API int zm_encoder_set_codec(zm_encoder *enc, int codec, int level);

/* The codec of enc's next batch (enum zm_codec); its level in *level. */
ZM_API int zm_encoder_codec(const zm_encoder *enc, int *level);

/*
 * The pages will not change while zm_encode() runs (the guest is stopped,
 * or the memory is private).  Without this flag the encoder first copies
 * each page to a buffer of its own, so that what it compresses and what it
 * checksums are the same snapshot even while other threads write the page.
 */
#define ZM_ENCODE_STABLE (1u << 0)

/*
 * Encodes count pages (1..max_pages) of region into out, which holds cap
 * bytes.  Zero pages travel as their index only.  Returns the packet's
 * size, or -EINVAL (count or index out of range, or info's size),
 * -ENOBUFS (cap too small; zm_encoder_bound() is always enough), -EIO (the
 * codec library failed).  info may be NULL.
 */
ZM_API ssize_t zm_encode(zm_encoder *enc, uint32_t region,
                         const struct zm_page_ref *pages, unsigned count,
                         unsigned flags, void *out, size_t cap,
                         struct zm_packet_info *info);

/* ---------------------------------------------------------------------- */
/* Decoder: one packet -> pages written into place                         */
/* ---------------------------------------------------------------------- */

typedef struct zm_decoder zm_decoder;

/* Destination memory of one region. */
struct zm_region_map {
    void *base;
    uint64_t size; /* bytes; pages beyond the last whole page are refused */
};

struct zm_decoder_options {
    size_t sizeof_options; /* sizeof(struct zm_decoder_options) */
    uint32_t page_size;    /* must match the sender's; 0 means 4096 */
    uint32_t max_pages;    /* largest batch accepted; 0 means 128 */
    uint32_t codecs;       /* accepted codecs, bit (1u << id); 0 = all built */
    const struct zm_region_map *regions; /* copied; region n = regions[n] */
    unsigned region_count;
};

/*
 * Creates a decoder for the regions given (the table is copied, not the
 * memory).  Returns 0 and sets *out, or -EINVAL (bad option),
 * -EOPNOTSUPP (codecs asked for that this build lacks), -ENOMEM.
 */
ZM_API int zm_decoder_new(const struct zm_decoder_options *opts,
                          zm_decoder **out);

/* Frees the decoder and its codec contexts; accepts NULL. */
ZM_API void zm_decoder_free(zm_decoder *dec);

/*
 * Decodes one packet of len bytes and writes its pages into the regions.
 * Every field is checked before it is used.  Returns 0 and fills info (may
 * be NULL), or:
 *   -EBADMSG  malformed or corrupt: truncated, sizes inconsistent, the
 *             payload does not decompress, or the checksum does not match;
 *   -EPROTO   another version, unknown flags, another page size, or a codec
 *             that was not accepted;
 *   -ERANGE   a region or page index outside the registered memory;
 *   -EMSGSIZE more pages than max_pages;
 *   -ENOMEM   the codec's context could not be made (first use only);
 *   -EINVAL   info's size.
 * zm_errmsg() has the details.  A failed packet never writes outside the
 * pages its index table names; those pages may hold partial data.
 *
 * Pages are written in index-table order.  A packet may be decoded into
 * place and read back for its checksum, so no other thread may write the
 * pages it names while zm_decode() runs (a migration sends a page at most
 * once per round, and rounds are separated).
 */
ZM_API int zm_decode(zm_decoder *dec, const void *packet, size_t len,
                     struct zm_packet_info *info);

/* ---------------------------------------------------------------------- */
/* Offload: compression handed to a device or a pool of cores             */
/* ---------------------------------------------------------------------- */

/*
 * A backend compresses batches of pages into ordinary packets (the
 * receiver cannot tell who made one), asynchronously: the source's data
 * channels submit batches and collect completions, and compress a batch
 * themselves when the backend is busy, fails, hangs or is out of service
 * (doc/offload.md).  In-tree backends: "cpu" (a pool of compression
 * workers) and "emulated" (the pool as a device with latency, a queue
 * depth, busy periods and injected failures, for tests).  An embedder may
 * pass its own (zm_params.offload_ops).
 */
#define ZM_OFFLOAD_VERSION 1

/* What a backend can do; filled by its caps(). */
struct zm_offload_caps {
    size_t sizeof_caps;   /* set by the library */
    uint32_t codecs;      /* bit (1u << id) of each codec it compresses */
    uint32_t max_pages;   /* largest batch it takes (<= ZM_MAX_BATCH_PAGES) */
    unsigned queue_depth; /* jobs in flight before it answers busy */
    uint32_t min_pages;   /* smaller batches are cheaper in software */
    /* Engines that compress at once (a pool's threads, a device's
     * channels); 0: unknown.  --compression auto counts them as cores.
     * Added after version 1's first fields: write it only when
     * sizeof_caps reaches it (an older library's struct is shorter). */
    unsigned threads;
};

/* One batch to compress into a packet. */
struct zm_offload_job {
    size_t sizeof_job; /* set by the library */
    /* Set by the library before submit(); unchanged until completion. */
    uint32_t region;
    const struct zm_page_ref *pages; /* the pages, never copied by the
                                      * interface: they stay mapped */
    unsigned count;
    unsigned flags; /* ZM_ENCODE_STABLE */
    int codec;      /* enum zm_codec, one of caps.codecs */
    int level;
    void *out; /* the packet goes here: cap bytes, zm_encoder_bound() */
    size_t cap;
    /* Set by the backend before it hands the job back from poll(). */
    ssize_t result; /* the packet's size, or -errno: the library redoes the
                     * batch in software */
    /* Optional (leave 0): seconds one engine (caps.threads) spent on the
     * job: --compression auto weighs each method's cost by it.  Write it
     * only when sizeof_job reaches it (an older library's job is shorter). */
    double cpu_seconds;
};

/*
 * A backend.  Every function is called with the library's own structs;
 * dev is what open() made.  submit() and poll() on one queue come from one
 * thread at a time; different queues, from different threads at once.
 */
struct zm_offload_ops {
    uint32_t version;  /* ZM_OFFLOAD_VERSION the backend was built with */
    size_t sizeof_ops; /* sizeof(struct zm_offload_ops) as it was built */
    const char *name;
    /* args: "key=value,..." (may be empty); page_size: the migration's. */
    int (*open)(const char *args, uint32_t page_size, void **dev);
    /* After every queue is freed. */
    void (*close)(void *dev);
    int (*caps)(void *dev, struct zm_offload_caps *caps);
    /* One queue per submitting thread. */
    int (*queue_new)(void *dev, void **queue);
    /* Hands back, or forgets, every job still in the queue: once it
     * returns, the backend no longer touches their pages or buffers. */
    void (*queue_free)(void *queue);
    /*
     * Queues job.  0: queued; -EBUSY: full now, the library compresses it
     * itself (not an error); any other -errno: the device failed, and the
     * library takes it out of service for a while.
     */
    int (*submit)(void *queue, struct zm_offload_job *job);
    /*
     * Waits up to timeout_ms (0: not at all) for completed jobs of this
     * queue; puts up to max of them in done and returns how many, or a
     * negative errno when the device is lost.
     */
    int (*poll)(void *queue, struct zm_offload_job **done, unsigned max,
                int timeout_ms);
    /*
     * Optional (NULL): the host CPU seconds the device has spent since
     * open(), for the sender's cpu_seconds; a pool of threads counts them.
     */
    double (*cpu_seconds)(void *dev);
};

/*
 * The in-tree backend called name ("cpu", "emulated"), or NULL.  Thread
 * safe.
 */
ZM_API const struct zm_offload_ops *zm_offload_by_name(const char *name);

/* ---------------------------------------------------------------------- */
/* Live migration                                                          */
/* ---------------------------------------------------------------------- */

/* How the source learns which pages the guest wrote. */
enum zm_dirty_tracking {
    ZM_TRACKING_AUTO = 0,       /* the embedder's log if it gives one, else the
                                 * best the kernel offers; never untracked */
    ZM_TRACKING_UFFD_WP = 1,    /* userfaultfd write-protect + PAGEMAP_SCAN */
    ZM_TRACKING_SOFT_DIRTY = 2, /* /proc soft-dirty bits */
    ZM_TRACKING_EMBEDDER = 3,   /* zm_source_hooks.dirty_log, e.g. KVM's log */
};

/*
 * zm_params.compression: the source chooses the method of each batch among
 * none, lz4, deflate and zstd levels (those the destination decodes), by
 * what the link carries, the CPU each costs and the ratio it gets, as
 * measured during the migration (zm_source_auto_timeline()).
 */
#define ZM_COMPRESSION_AUTO (-1)

/* Migration parameters, named as QEMU's migrate-set-parameters. */
struct zm_params {
    size_t sizeof_params;       /* sizeof(struct zm_params) */
    unsigned multifd_channels;  /* data channels, 1..64 (2) */
    int compression;            /* enum zm_codec, or ZM_COMPRESSION_AUTO
                                 * (ZM_CODEC_NONE) */
    int compression_level;      /* ZM_LEVEL_DEFAULT */
    uint64_t max_bandwidth;     /* bytes/s on the wire; 0: unlimited (0) */
    uint64_t downtime_limit_ms; /* (300) */
    unsigned max_iterations;    /* rounds before switching over anyway (30) */
    uint32_t page_size;         /* (4096) */
    uint32_t batch_pages;       /* pages per packet (128) */
    int dirty_tracking;         /* enum zm_dirty_tracking (ZM_TRACKING_AUTO) */
    /*
     * After completion both sides hash every page and compare; a mismatch
     * fails the migration, naming the first differing page (false).
     */
    bool verify;
    /*
     * Compression offload: an in-tree backend, "NAME[:KEY=VALUE,...]"
     * ("cpu:threads=2", "emulated:latency=200us,depth=64"), or NULL to
     * compress on the channel threads (NULL).  offload_ops, when set, is
     * the embedder's own backend and offload its arguments.  Copied.
     */
    const char *offload;
    const struct zm_offload_ops *offload_ops;
    /*
     * Destination: packets are decoded by a pool of this many workers, and
     * the data channels only read them (QEMU's decompress-threads); 0: on
     * the channel threads (0).  Raw packets still go straight into place.
     */
    unsigned decompress_threads;
};

/* Fills params with the defaults above, sizeof_params included. */
ZM_API void zm_params_init(struct zm_params *params);

/* Migration states, named as QEMU's. */
enum zm_status {
    ZM_STATUS_NONE,
    ZM_STATUS_SETUP,
    ZM_STATUS_ACTIVE,
    ZM_STATUS_DEVICE, /* the guest is stopped: the last pages and state */
    ZM_STATUS_COMPLETED,
    ZM_STATUS_FAILED,
    ZM_STATUS_CANCELLED,
    /*
     * Source only: the switchover was sent whole, then no answer came (the
     * connection ended, or the peer broke the protocol).  The destination
     * may be running the guest, so this side's stays stopped
     * (zm_source_run() returns -ENOTCONN).
     */
    ZM_STATUS_UNCONFIRMED,
};

/* "none", "setup", "active", "device", "completed", "failed",
 * "cancelled", "unconfirmed"; "unknown" for anything else. */
ZM_API const char *zm_status_name(int status);

/* Statistics, named as QEMU's query-migrate; either side fills its part. */
struct zm_stats {
    size_t sizeof_stats;         /* sizeof(struct zm_stats), by the caller */
    int status;                  /* enum zm_status */
    bool max_iterations_reached; /* switched over above the downtime limit */
    unsigned iterations;         /* rounds over the RAM, the first included */
    uint64_t total_time_ms;
    uint64_t setup_time_ms;
    uint64_t downtime_ms;
    uint64_t expected_downtime_ms;
    uint64_t transferred; /* bytes on the wire */
    uint64_t remaining;   /* bytes of RAM dirty, not yet sent */
    uint64_t total;       /* bytes of RAM */
    uint64_t duplicate;   /* zero pages sent */
    uint64_t normal;      /* other pages sent */
    uint64_t normal_bytes;
    uint64_t dirty_pages_rate; /* pages/s in the last round */
    uint64_t dirty_sync_count;
    /*
     * Dirty pages a round did not send because the guest wrote them again
     * before their turn: a later round sends them once instead of twice.
     */
    uint64_t skipped;
    double mbps; /* wire megabits/s, whole migration */
    uint64_t pages_per_second;
    double compression_ratio; /* normal bytes / their bytes on the wire */
    uint64_t payload_bytes;   /* the normal pages' bytes on the wire */
    uint64_t raw_bytes;       /* of those, sent uncompressed */
    double cpu_seconds;       /* this side's threads */
    /* Offload (source): batches the backend compressed, batches compressed
     * in software instead (small, busy, out of service), and batches the
     * backend failed or hung on (redone in software). */
    uint64_t offloaded;
    uint64_t offload_fallbacks;
    uint64_t offload_failures;
};

typedef struct zm_source zm_source;

/*
 * What the source asks of its embedder.  Every function may be NULL.  The
 * hooks run on the thread that called zm_source_run().
 */
struct zm_source_hooks {
    size_t sizeof_hooks; /* sizeof(struct zm_source_hooks) */
    void *opaque;
    /* Stop the vCPUs: RAM must not change after it returns. */
    int (*stop)(void *opaque);
    /* Restart them: called when a migration fails after stop. */
    int (*resume)(void *opaque);
    /* The device state: write at most cap bytes to buf; return the size. */
    ssize_t (*save_state)(void *opaque, void *buf, size_t cap);
    /*
     * ZM_TRACKING_EMBEDDER: set the bit of every page of region written since
     * the previous call (bitmap: one bit a page, 64 a word, zeroed by the
     * caller) and reset the log.  The first call covers writes since
     * zm_source_run() started.
     */
    int (*dirty_log)(void *opaque, unsigned region, uint64_t *bitmap);
};

/* The most RAM regions a migration carries, and the longest region name
 * (bytes, printable ASCII). */
#define ZM_MAX_REGIONS 256u
#define ZM_REGION_NAME_MAX 255u

/* The largest device state a migration carries. */
#define ZM_MAX_DEVICE_STATE (16u << 20)

/*
 * Creates a source with params (NULL: the defaults) and hooks (may be
 * NULL; both are copied).  Returns 0 and sets *out, or -EINVAL (a bad
 * parameter or struct size, or ZM_TRACKING_EMBEDDER without dirty_log),
 * -ERANGE (the level), -EOPNOTSUPP (a codec not built), -ENOMEM.
 */
ZM_API int zm_source_new(const struct zm_params *params,
                         const struct zm_source_hooks *hooks, zm_source **out);

/*
 * Registers guest RAM before zm_source_run(): page-aligned base, size a
 * multiple of the page, a name of 1..ZM_REGION_NAME_MAX printable bytes.
 * The destination matches regions by name and size.  Returns 0, -EINVAL,
 * -EEXIST (the name again), -ENOSPC (past ZM_MAX_REGIONS) or -ENOMEM.
 */
ZM_API int zm_source_add_region(zm_source *src, const char *name, void *base,
                                size_t size);

/*
 * Migrates to uri (tcp:HOST:PORT, unix:PATH or file:PATH) and returns when
 * it completed (0) or failed (-errno, zm_errmsg() says why; the guest runs
 * on as it was).  Blocks; other threads may call zm_source_stats() and
 * zm_source_cancel().  May be called again once it has returned, e.g. to
 * retry after a failure.
 *
 * One outcome is neither: -ENOTCONN, status ZM_STATUS_UNCONFIRMED.  The
 * switchover was sent whole (END, or VERIFY when verifying), then no answer
 * came.  The destination may be running the guest, so the resume hook is
 * not called: the embedder decides, knowing more than this side can.
 * (QEMU resumes there and leaves the rest to its management layer; a
 * library cannot assume one.)  A FAIL from the destination, at any point,
 * is an ordinary failure.  Run again after it, the source starts from the
 * stopped guest, and resumes it if that run fails.
 */
ZM_API int zm_source_run(zm_source *src, const char *uri);

/*
 * Stops a running migration, or the next one: zm_source_run() returns
 * -ECANCELED.  Once the source has sent the end of the migration (END
 * after the last pages and the device state, or VERIFY after it when
 * verifying) it is too late and the cancel is ignored: the destination may
 * be running the guest already, and the source waits for its answer.
 */
ZM_API void zm_source_cancel(zm_source *src);

/*
 * The running or last migration's figures, into stats (its sizeof_stats
 * set).  Any thread, any time.  Returns 0 or -EINVAL (the struct's size).
 */
ZM_API int zm_source_stats(zm_source *src, struct zm_stats *stats);

/* One round of a migration: why it took as long as it did. */
struct zm_round {
    size_t sizeof_round; /* sizeof(struct zm_round), set by the caller */
    double start_ms;     /* since zm_source_run() was called */
    /* Its length; the final round's runs from the stop until its pages are
     * sent (the device state and the peer's answer come after). */
    double time_ms;
    uint64_t pages;      /* pages sent, zero pages included */
    uint64_t zero_pages; /* of those */
    uint64_t wire_bytes;
    /*
     * Dirty pages this round left to the next: the guest wrote them again
     * before their turn.  pages + skipped = the previous round's dirty_after
     * (all of RAM for round 0); the final round also sends what was written
     * after that count.
     */
    uint64_t skipped;
    uint64_t dirty_after;          /* dirty when it ended (0: the final) */
    uint64_t expected_downtime_ms; /* had the guest stopped then */
    bool final;                    /* sent with the guest stopped */
};

/*
 * The rounds of the running or last migration, oldest first: copies up to
 * cap of them and returns how many there are (rounds may be NULL if cap is
 * 0).  rounds[0].sizeof_round gives the size of the caller's struct and so
 * the array's stride; each element copied has it set.  As many as
 * stats.iterations, a final round sent before a failed switchover
 * included; fewer only if memory ran out.  Other threads may call it
 * during zm_source_run().  -EINVAL for a bad sizeof_round.
 */
ZM_API int zm_source_rounds(zm_source *src, struct zm_round *rounds,
                            unsigned cap);

/*
 * --compression auto (zm_params.compression = ZM_COMPRESSION_AUTO): each
 * decision of the controller, one per measurement window (a quarter of a
 * second), with what it measured.  Rates in megabits/s over the window.
 */
struct zm_auto_point {
    size_t sizeof_point; /* sizeof(struct zm_auto_point), by the caller */
    double time_ms;      /* since the data channels connected */
    int codec, level;    /* the method of the batches that follow */
    double raw_mbps;     /* the normal pages' bytes delivered */
    double wire_mbps;    /* their packets on the wire */
    double link_mbps;    /* the link, as last measured; 0: never the limit */
    double cores;        /* CPU compression could get */
};

/*
 * The auto controller's points of the running or last migration, oldest
 * first, as zm_source_rounds() copies rounds (points[0].sizeof_point is
 * the stride).  Returns how many there are: 0 without auto, or -EINVAL.
 */
ZM_API int zm_source_auto_timeline(zm_source *src, struct zm_auto_point *points,
                                   unsigned cap);

/* A method --compression auto could choose, and what it cost. */
struct zm_auto_method_info {
    size_t sizeof_info; /* sizeof(struct zm_auto_method_info), by the caller */
    int codec, level;
    uint64_t batches;       /* sent with it (not those measured aside) */
    uint64_t raw_bytes;     /* their normal pages' bytes */
    double cpu_ns_per_byte; /* encoding, as last measured (0: never) */
    double wire_per_byte;   /* packet bytes per normal byte (0: never) */
};

/* The candidates of the running or last migration, as above. */
ZM_API int zm_source_auto_methods(zm_source *src,
                                  struct zm_auto_method_info *methods,
                                  unsigned cap);

/* Frees the source; not while zm_source_run() runs.  Accepts NULL. */
ZM_API void zm_source_free(zm_source *src);

typedef struct zm_dest zm_dest;

struct zm_dest_hooks {
    size_t sizeof_hooks; /* sizeof(struct zm_dest_hooks) */
    void *opaque;
    /* The source's device state, once all RAM has arrived. */
    int (*load_state)(void *opaque, const void *buf, size_t len);
};

/*
 * A destination.  params (may be NULL): only page_size is used, and the
 * default accepts the source's.  hooks may be NULL; both are copied.
 * Returns 0 and sets *out, -EINVAL (a struct's size) or -ENOMEM.
 */
ZM_API int zm_dest_new(const struct zm_params *params,
                       const struct zm_dest_hooks *hooks, zm_dest **out);

/*
 * Registers where a region of the source's layout goes (matched by name
 * and size).  Without any, the destination maps the layout it receives.
 * Returns 0, -EINVAL (a bad name, no memory) or -ENOSPC.
 */
ZM_API int zm_dest_add_region(zm_dest *dst, const char *name, void *base,
                              size_t size);

/*
 * Listens on tcp:/unix: now (port 0 picks one), or names a file: to read
 * in zm_dest_run().  Returns 0, -EINVAL (not a URI) or the system's error.
 */
ZM_API int zm_dest_listen(zm_dest *dst, const char *uri);

/* The URI a source should use (with the port actually bound), valid
 * while the zm_dest lives; after zm_dest_listen(). */
ZM_API const char *zm_dest_uri(const zm_dest *dst);

/*
 * Receives one migration: blocks until it completed (0: the RAM and the
 * device state are in, load_state has taken the latter) or failed (-errno,
 * zm_errmsg() says why; the source is told and resumes its guest).  Other
 * threads may call zm_dest_stats() and zm_dest_cancel().  Once per zm_dest.
 */
ZM_API int zm_dest_run(zm_dest *dst);

/* Regions registered, or received with the layout. */
ZM_API unsigned zm_dest_region_count(const zm_dest *dst);
/*
 * Region i of the source's layout: its name, memory and size.  Valid from
 * the load_state hook on (the layout arrives before any page) and after
 * zm_dest_run() returns, for as long as the zm_dest lives.  Any pointer
 * may be NULL.  Returns 0 or -ERANGE (no region i).
 */
ZM_API int zm_dest_region(const zm_dest *dst, unsigned i, const char **name,
                          void **base, size_t *size);

/*
 * Stops a running zm_dest_run(), which returns -ECANCELED; the source fails
 * and resumes its guest.  Too late once the destination has sent its last
 * COMPLETE (after the check, with verify).
 */
ZM_API void zm_dest_cancel(zm_dest *dst);

/* As zm_source_stats(), for this side. */
ZM_API int zm_dest_stats(zm_dest *dst, struct zm_stats *stats);

/* Frees the destination and the memory it mapped for the layout; not
 * while zm_dest_run() runs.  Accepts NULL. */
ZM_API void zm_dest_free(zm_dest *dst);

#ifdef __cplusplus
}
#endif

#endif /* ZMIGRATE_H */
