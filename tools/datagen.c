/*
 * datagen.c - deterministic guest-like memory for tests and benchmarks
 *
 * Memory is cut into 64 KiB blocks.  A hash of the seed and the block
 * number gives each block a key that its pages share, so that neighbouring
 * pages look alike as in a real guest, and a hash of the seed and the page
 * number drives the rest of each page: any page can be made on its own.
 * What a block holds (text, machine code, records, zeros or random bytes)
 * is dealt from a fixed deck, so that the mix, and with it the compression
 * ratio, is the same in every few MiB.  Values are written byte by byte in
 * little-endian order: the output does not depend on the host.
 */
#include "datagen.h"

#include <string.h>

#define PAGE_SIZE 4096u
#define BLOCK_PAGES 16u

/* Generators write whole words and lines and may run this far past the
 * end of the page; they never read what they wrote there. */
#define SLACK 256u

enum page_kind {
    KIND_ZERO,
    KIND_RANDOM,
    KIND_TEXT,
    KIND_CODE,
    KIND_SDF,
    KIND_LOG,
    KIND_ROWS,
    KIND_SLAB,
};

struct page_ctx {
    uint64_t page_key;  /* hash of (seed, page number) */
    uint64_t block_key; /* hash of (seed, block number) */
    unsigned in_block;  /* page index within its block */
};

struct rng {
    uint64_t s;
};

/* splitmix64: one add and a finalizer per 64 bits, good enough here. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(struct rng *r)
{
    r->s += UINT64_C(0x9e3779b97f4a7c15);
    return mix64(r->s);
}

static inline void put_le16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void put_le64(unsigned char *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324"
    "25262728293031323334353637383940414243444546474849"
    "50515253545556575859606162636465666768697071727374"
    "75767778798081828384858687888990919293949596979899";

/* Writes v in decimal and returns the end; at most 10 bytes. */
static unsigned char *put_uint(unsigned char *p, uint32_t v)
{
    unsigned char tmp[10];
    unsigned n = 10;

    while (v >= 100) {
        n -= 2;
        memcpy(tmp + n, digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        n -= 2;
        memcpy(tmp + n, digit_pairs + 2 * v, 2);
    } else {
        tmp[--n] = (unsigned char)('0' + v);
    }
    memcpy(p, tmp + n, 10 - n);
    return p + (10 - n);
}

/* Writes v right-aligned in a field of width bytes (v must fit). */
static void put_uint_w(unsigned char *p, uint32_t v, unsigned width)
{
    do {
        p[--width] = (unsigned char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && width > 0);
    memset(p, ' ', width);
}

/* ---------------------------------------------------------------------- */
/* Text                                                                    */
/* ---------------------------------------------------------------------- */

/* Fixed 16-byte slots, so that a word is one unaligned 16-byte copy. */
struct word {
    char s[15];
    uint8_t len;
};

#define W(x)             \
    {                    \
        x, sizeof(x) - 1 \
    }

static const struct word words[] = {
    W("house"),     W("water"),      W("light"),     W("hand"),
    W("night"),     W("place"),      W("world"),     W("voice"),
    W("door"),      W("room"),       W("heart"),     W("friend"),
    W("mother"),    W("father"),     W("child"),     W("woman"),
    W("money"),     W("table"),      W("street"),    W("window"),
    W("letter"),    W("mind"),       W("face"),      W("head"),
    W("eyes"),      W("word"),       W("moment"),    W("garden"),
    W("morning"),   W("evening"),    W("paper"),     W("chair"),
    W("fire"),      W("river"),      W("country"),   W("city"),
    W("church"),    W("school"),     W("master"),    W("lady"),
    W("gentleman"), W("business"),   W("manner"),    W("matter"),
    W("question"),  W("answer"),     W("reason"),    W("truth"),
    W("power"),     W("nature"),     W("spirit"),    W("fortune"),
    W("pleasure"),  W("silence"),    W("story"),     W("family"),
    W("brother"),   W("sister"),     W("husband"),   W("wife"),
    W("daughter"),  W("servant"),    W("doctor"),    W("captain"),
    W("prisoner"),  W("stranger"),   W("office"),    W("journey"),
    W("dinner"),    W("supper"),     W("horse"),     W("carriage"),
    W("road"),      W("bridge"),     W("market"),    W("village"),
    W("coach"),     W("kitchen"),    W("parlour"),   W("candle"),
    W("bottle"),    W("glass"),      W("book"),      W("picture"),
    W("corner"),    W("wall"),       W("floor"),     W("stair"),
    W("bed"),       W("clock"),      W("hat"),       W("coat"),
    W("boot"),      W("bread"),      W("wine"),      W("fellow"),
    W("boy"),       W("girl"),       W("gentlemen"), W("people"),
    W("person"),    W("town"),       W("court"),     W("judge"),
    W("lawyer"),    W("clerk"),      W("trade"),     W("ship"),
    W("sea"),       W("shore"),      W("wind"),      W("rain"),
    W("snow"),      W("cloud"),      W("sun"),       W("moon"),
    W("star"),      W("sky"),        W("look"),      W("know"),
    W("think"),     W("come"),       W("take"),      W("give"),
    W("speak"),     W("find"),       W("leave"),     W("hear"),
    W("stand"),     W("walk"),       W("turn"),      W("begin"),
    W("seem"),      W("keep"),       W("hold"),      W("bring"),
    W("call"),      W("feel"),       W("tell"),      W("write"),
    W("read"),      W("sit"),        W("run"),       W("open"),
    W("close"),     W("carry"),      W("follow"),    W("remember"),
    W("return"),    W("wonder"),     W("believe"),   W("suppose"),
    W("observe"),   W("remain"),     W("appear"),    W("happen"),
    W("reply"),     W("cry"),        W("laugh"),     W("smile"),
    W("wait"),      W("watch"),      W("pass"),      W("stop"),
    W("meet"),      W("send"),       W("old"),       W("young"),
    W("little"),    W("great"),      W("good"),      W("poor"),
    W("dark"),      W("long"),       W("small"),     W("large"),
    W("black"),     W("white"),      W("strange"),   W("quiet"),
    W("happy"),     W("gentle"),     W("heavy"),     W("bright"),
    W("cold"),      W("warm"),       W("certain"),   W("dear"),
    W("whole"),     W("early"),      W("late"),      W("sudden"),
    W("ready"),     W("proper"),     W("honest"),    W("curious"),
    W("again"),     W("never"),      W("always"),    W("quite"),
    W("still"),     W("almost"),     W("perhaps"),   W("indeed"),
    W("presently"), W("slowly"),     W("softly"),    W("replied"),
    W("returned"),  W("observed"),   W("looked"),    W("thought"),
    W("himself"),   W("herself"),    W("myself"),    W("nothing"),
    W("something"), W("everything"), W("anything"),  W("another"),
    W("through"),   W("without"),    W("between"),   W("against"),
    W("before"),    W("after"),      W("under"),     W("above"),
    W("behind"),    W("beside"),     W("toward"),    W("upon"),
    W("within"),    W("across"),     W("towards"),   W("hour"),
    W("day"),       W("week"),       W("year"),      W("time"),
    W("life"),      W("death"),      W("love"),      W("hope"),
    W("fear"),      W("anger"),      W("grief"),     W("joy"),
    W("thing"),     W("kind"),       W("sort"),      W("part"),
    W("side"),      W("end"),        W("beginning"), W("way"),
};

_Static_assert(sizeof(words) / sizeof(words[0]) == 256,
               "words must hold 256 words");

/* Suffixes for content words; most draws add none. */
static const struct {
    char s[7];
    uint8_t len;
} suffixes[64] = {
    { "s", 1 }, { "ed", 2 }, { "ing", 3 }, { "ly", 2 },
    { "s", 1 }, { "er", 2 }, { "s", 1 },   { "ness", 4 },
};

/* What follows a word: punctuation, and the function words that link
 * content words.  The first few end a sentence. */
static const struct word separators[64] = {
    W(".\n"),       W(". "),         W(". "),      W(". "),
    W(", "),        W(", "),         W(", "),      W(", "),
    W("; "),        W(" "),          W(" "),       W(" "),
    W(" the "),     W(" of the "),   W(" and "),   W(" to the "),
    W(" in the "),  W(" a "),        W(" was "),   W(" he "),
    W(" that "),    W(" it "),       W(" with "),  W(" his "),
    W(" for the "), W(" as "),       W(" had "),   W(" on the "),
    W(" at "),      W(" by the "),   W(" is "),    W(" from "),
    W(" her "),     W(" which "),    W(" she "),   W(" not "),
    W(" but "),     W(" they "),     W(" have "),  W(" all "),
    W(" were "),    W(" we "),       W(" there "), W(" been "),
    W(" would "),   W(" their "),    W(" who "),   W(" said "),
    W(" you "),     W(" i "),        W(" when "),  W(" no "),
    W(" if "),      W(" out of "),   W(" so "),    W(" what "),
    W(" up "),      W(" into the "), W(" than "),  W(" them "),
    W(" could "),   W(" some "),     W(" an "),    W(" more "),
};

/* Out of 256: the share of words drawn from the block's topic. */
#define TOPIC_SHARE 64u

/*
 * Sentences: content words drawn from the block's topic or from all of
 * them, joined by function words and punctuation, broken into lines.  Two
 * words per random draw, and table lookups rather than branches on the
 * random choices, keep it fast.
 */
static void gen_text(unsigned char *p, const struct page_ctx *c)
{
    struct rng r = { c->page_key };
    const unsigned char *const end = p + PAGE_SIZE;
    const unsigned char *line = p;
    const unsigned topic = (unsigned)(c->block_key >> 8);
    const unsigned step = (unsigned)(c->block_key >> 16) | 1u;
    unsigned cap = 1;

    while (p < end) {
        const uint64_t x2 = rng_next(&r);

        for (unsigned half = 0; half < 2; half++) {
            const uint32_t x = (uint32_t)(x2 >> (32 * half));
            const unsigned any = x & 255u;
            const unsigned in_topic = (topic + (any & 31u) * step) & 255u;
            const unsigned topical =
                0u - (unsigned)(((x >> 8) & 255u) < TOPIC_SHARE);
            const struct word *w = &words[any ^ ((any ^ in_topic) & topical)];
            const unsigned sfx = (x >> 16) & 63u;
            const unsigned sep = (x >> 22) & 63u;

            memcpy(p, w, sizeof(*w));
            p[0] = (unsigned char)(p[0] - cap * ('a' - 'A'));
            p += w->len;
            memcpy(p, &suffixes[sfx], sizeof(suffixes[sfx]));
            p += suffixes[sfx].len;
            memcpy(p, &separators[sep], sizeof(separators[sep]));
            p += separators[sep].len;
            cap = sep < 4;
            line = sep == 0 ? p : line;
            if (p - line > 64) {
                p[-1] = '\n';
                line = p;
            }
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Machine code                                                            */
/* ---------------------------------------------------------------------- */

/*
 * Operand forms.  An operand is base ^ (x & mask), and sext is or-ed in
 * when bit 20 of x is set: each form is data, so that writing an
 * instruction takes no branch on its form.
 */
enum insn_arg {
    ARG_NONE,
    ARG_D8,    /* stack displacement, -8 * n */
    ARG_I8,    /* small immediate */
    ARG_R8,    /* short branch */
    ARG_R32,   /* call or branch within the module */
    ARG_I32,   /* small 32-bit immediate */
    ARG_D8I32, /* stack displacement, then a small immediate */
    ARG_D32,   /* rip-relative data reference */
};

static const struct {
    uint32_t base;
    uint32_t mask;
    uint32_t sext;
    uint32_t len;
} arg_forms[8] = {
    [ARG_NONE] = { 0, 0, 0, 0 },
    [ARG_D8] = { 0xf8, 0x78, 0, 1 },
    [ARG_I8] = { 0, 0x38, 0, 1 },
    [ARG_R8] = { 0x02, 0x3c, 0, 1 },
    [ARG_R32] = { 0, 0xfffff, 0xfff00000u, 4 },
    [ARG_I32] = { 0, 0x1ff, 0, 4 },
    [ARG_D8I32] = { 0xf8, 0xff78, 0, 5 },
    [ARG_D32] = { 0, 0x3ffff8, 0, 4 },
};

struct insn {
    uint8_t op[6];
    uint8_t len;
    uint8_t arg;
};

/* x86-64 encodings; frequent instructions appear more than once. */
static const struct insn body_insns[64] = {
    { { 0x48, 0x8b, 0x45 }, 3, ARG_D8 },         /* mov rax, [rbp+d] */
    { { 0x48, 0x89, 0x45 }, 3, ARG_D8 },         /* mov [rbp+d], rax */
    { { 0x8b, 0x45 }, 2, ARG_D8 },               /* mov eax, [rbp+d] */
    { { 0x89, 0x45 }, 2, ARG_D8 },               /* mov [rbp+d], eax */
    { { 0x48, 0x8b, 0x55 }, 3, ARG_D8 },         /* mov rdx, [rbp+d] */
    { { 0x48, 0x89, 0x7d }, 3, ARG_D8 },         /* mov [rbp+d], rdi */
    { { 0x48, 0x89, 0x75 }, 3, ARG_D8 },         /* mov [rbp+d], rsi */
    { { 0x48, 0x8b, 0x43 }, 3, ARG_I8 },         /* mov rax, [rbx+d] */
    { { 0x48, 0x8b, 0x7b }, 3, ARG_I8 },         /* mov rdi, [rbx+d] */
    { { 0x48, 0x89, 0xc7 }, 3, ARG_NONE },       /* mov rdi, rax */
    { { 0x48, 0x89, 0xde }, 3, ARG_NONE },       /* mov rsi, rbx */
    { { 0x48, 0x89, 0xc3 }, 3, ARG_NONE },       /* mov rbx, rax */
    { { 0x89, 0xc2 }, 2, ARG_NONE },             /* mov edx, eax */
    { { 0x31, 0xc0 }, 2, ARG_NONE },             /* xor eax, eax */
    { { 0x31, 0xd2 }, 2, ARG_NONE },             /* xor edx, edx */
    { { 0x85, 0xc0 }, 2, ARG_NONE },             /* test eax, eax */
    { { 0x48, 0x85, 0xc0 }, 3, ARG_NONE },       /* test rax, rax */
    { { 0x74 }, 1, ARG_R8 },                     /* je */
    { { 0x75 }, 1, ARG_R8 },                     /* jne */
    { { 0xeb }, 1, ARG_R8 },                     /* jmp */
    { { 0x7e }, 1, ARG_R8 },                     /* jle */
    { { 0x0f, 0x84 }, 2, ARG_R32 },              /* je near */
    { { 0x0f, 0x85 }, 2, ARG_R32 },              /* jne near */
    { { 0xe8 }, 1, ARG_R32 },                    /* call */
    { { 0xe8 }, 1, ARG_R32 },                    /* call */
    { { 0xe8 }, 1, ARG_R32 },                    /* call */
    { { 0x48, 0x8d, 0x05 }, 3, ARG_D32 },        /* lea rax, [rip+d] */
    { { 0x48, 0x8d, 0x3d }, 3, ARG_D32 },        /* lea rdi, [rip+d] */
    { { 0x48, 0x8b, 0x05 }, 3, ARG_D32 },        /* mov rax, [rip+d] */
    { { 0xff, 0x15 }, 2, ARG_D32 },              /* call [rip+d] */
    { { 0x83, 0xf8 }, 2, ARG_I8 },               /* cmp eax, i */
    { { 0x48, 0x83, 0xf8 }, 3, ARG_I8 },         /* cmp rax, i */
    { { 0xb8 }, 1, ARG_I32 },                    /* mov eax, i */
    { { 0xbe }, 1, ARG_I32 },                    /* mov esi, i */
    { { 0xbf }, 1, ARG_I32 },                    /* mov edi, i */
    { { 0xba }, 1, ARG_I32 },                    /* mov edx, i */
    { { 0xc7, 0x45 }, 2, ARG_D8I32 },            /* mov dword [rbp+d], i */
    { { 0x0f, 0xb6, 0x45 }, 3, ARG_D8 },         /* movzx eax, byte [rbp+d] */
    { { 0x48, 0x63, 0xd0 }, 3, ARG_NONE },       /* movsxd rdx, eax */
    { { 0x48, 0x01, 0xd0 }, 3, ARG_NONE },       /* add rax, rdx */
    { { 0x48, 0x29, 0xc2 }, 3, ARG_NONE },       /* sub rdx, rax */
    { { 0x83, 0xc0, 0x01 }, 3, ARG_NONE },       /* add eax, 1 */
    { { 0x48, 0x83, 0xc0 }, 3, ARG_I8 },         /* add rax, i */
    { { 0x48, 0xc1, 0xe0 }, 3, ARG_I8 },         /* shl rax, i */
    { { 0x48, 0x8d, 0x04, 0xc5 }, 4, ARG_I32 },  /* lea rax, [rax*8+i] */
    { { 0x0f, 0xaf, 0xc2 }, 3, ARG_NONE },       /* imul eax, edx */
    { { 0x89, 0xd0 }, 2, ARG_NONE },             /* mov eax, edx */
    { { 0x4c, 0x89, 0xe7 }, 3, ARG_NONE },       /* mov rdi, r12 */
    { { 0x4c, 0x89, 0xee }, 3, ARG_NONE },       /* mov rsi, r13 */
    { { 0x49, 0x8b, 0x44, 0x24 }, 4, ARG_I8 },   /* mov rax, [r12+d] */
    { { 0x41, 0x89, 0xc4 }, 3, ARG_NONE },       /* mov r12d, eax */
    { { 0x44, 0x89, 0xe0 }, 3, ARG_NONE },       /* mov eax, r12d */
    { { 0x0f, 0xb6, 0xc0 }, 3, ARG_NONE },       /* movzx eax, al */
    { { 0x84, 0xc0 }, 2, ARG_NONE },             /* test al, al */
    { { 0x39, 0xc2 }, 2, ARG_NONE },             /* cmp edx, eax */
    { { 0x48, 0x39, 0xc3 }, 3, ARG_NONE },       /* cmp rbx, rax */
    { { 0x0f, 0x1f, 0x40, 0x00 }, 4, ARG_NONE }, /* nop dword [rax] */
    { { 0x66, 0x90 }, 2, ARG_NONE },             /* xchg ax, ax */
    { { 0xf3, 0x0f, 0x10, 0x45 }, 4, ARG_D8 },   /* movss xmm0, [rbp+d] */
    { { 0xf2, 0x0f, 0x11, 0x45 }, 4, ARG_D8 },   /* movsd [rbp+d], xmm0 */
    { { 0x66, 0x0f, 0xef, 0xc0 }, 4, ARG_NONE }, /* pxor xmm0, xmm0 */
    { { 0x48, 0x8b, 0x00 }, 3, ARG_NONE },       /* mov rax, [rax] */
    { { 0x8b, 0x40 }, 2, ARG_I8 },               /* mov eax, [rax+d] */
    { { 0x48, 0x8b, 0x40 }, 3, ARG_I8 },         /* mov rax, [rax+d] */
};

/* Prologues and epilogues, matched by index. */
static const struct insn prologues[4] = {
    { { 0x55, 0x48, 0x89, 0xe5 }, 4, ARG_NONE },       /* push rbp; mov */
    { { 0x55, 0x48, 0x89, 0xe5, 0x53 }, 5, ARG_NONE }, /* ...; push rbx */
    { { 0x41, 0x54, 0x55, 0x53 }, 4, ARG_NONE },       /* push r12/rbp/rbx */
    { { 0x53, 0x48, 0x89, 0xfb }, 4, ARG_NONE },       /* push rbx; mov */
};

static const struct insn epilogues[4] = {
    { { 0xc9, 0xc3 }, 2, ARG_NONE },                   /* leave; ret */
    { { 0x5b, 0x5d, 0xc3 }, 3, ARG_NONE },             /* pop rbx/rbp; ret */
    { { 0x5b, 0x5d, 0x41, 0x5c, 0xc3 }, 5, ARG_NONE }, /* pops; ret */
    { { 0x5b, 0xc3 }, 2, ARG_NONE },                   /* pop rbx; ret */
};

/*
 * Writes one instruction with operands drawn from x.  It takes at most 11
 * bytes and writes at most 14.
 */
static inline unsigned char *put_insn(unsigned char *p, const struct insn *in,
                                      uint32_t x)
{
    const uint32_t form = in->arg;
    const uint32_t neg = 0u - ((x >> 20) & 1u);

    memcpy(p, in->op, 8);
    p += in->len;
    put_le64(p, arg_forms[form].base ^ (x & arg_forms[form].mask) ^
                    (arg_forms[form].sext & neg));
    return p + arg_forms[form].len;
}

#define IDIOMS 16
#define IDIOM_INSNS 4
#define IDIOM_SHARE 40u /* out of 256 steps of a function body */

/*
 * Functions: a prologue, a body of instructions and idioms, an epilogue and
 * padding to 16 bytes.  Idioms are short sequences fixed per block, as
 * compilers repeat the same code for the same source patterns; each page
 * makes its own copy of them once, which also saves time.
 */
static void gen_code(unsigned char *p, const struct page_ctx *c)
{
    static const struct insn sub_rsp = { { 0x48, 0x83, 0xec }, 3, ARG_I8 };
    unsigned char idioms[IDIOMS][64];
    unsigned idiom_len[IDIOMS];
    struct rng r = { c->block_key };
    const unsigned char *const start = p;
    const unsigned char *const end = p + PAGE_SIZE;
    const unsigned style = (unsigned)(c->block_key >> 20) & 3u;
    const unsigned char pad = (c->block_key >> 22) & 1u ? 0xcc : 0x90;

    for (unsigned i = 0; i < IDIOMS; i++) {
        unsigned char *q = idioms[i];

        /* Four instructions write at most 3 * 11 + 14 bytes. */
        for (unsigned j = 0; j < IDIOM_INSNS; j++) {
            const uint64_t y = rng_next(&r);

            q = put_insn(q, &body_insns[y & 63u], (uint32_t)(y >> 6));
        }
        idiom_len[i] = (unsigned)(q - idioms[i]);
    }

    r.s = c->page_key;
    while (p < end) {
        uint64_t x = rng_next(&r);
        unsigned n = 4 + (unsigned)(x & 31u);

        p = put_insn(p, &prologues[style], 0);
        p = put_insn(p, &sub_rsp, (uint32_t)(x >> 6));
        while (n-- > 0 && p < end) {
            x = rng_next(&r);
            if ((x & 255u) < IDIOM_SHARE) {
                const unsigned i = (unsigned)(x >> 8) & (IDIOMS - 1);

                memcpy(p, idioms[i], sizeof(idioms[i]));
                p += idiom_len[i];
            } else {
                uint64_t y = x >> 8;

                p = put_insn(p, &body_insns[y & 63u], (uint32_t)(y >> 6));
                y = x >> 36;
                p = put_insn(p, &body_insns[y & 63u], (uint32_t)(y >> 6));
            }
        }
        p = put_insn(p, &epilogues[style], 0);
        memset(p, pad, 16);
        p += (16u - ((size_t)(p - start) & 15u)) & 15u;
    }
}

/* ---------------------------------------------------------------------- */
/* Records                                                                 */
/* ---------------------------------------------------------------------- */

static const char sdf_atom_line[] =
    "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n";

static const char sdf_elements[16][3] = {
    "C  ", "C  ", "C  ", "C  ", "C  ", "C  ", "C  ", "C  ",
    "O  ", "O  ", "N  ", "N  ", "H  ", "H  ", "S  ", "Cl ",
};

static const int32_t sdf_steps[8] = {
    10000, -10000, 5000, -5000, 8660, -8660, 6200, 0,
};

/* A coordinate in 1/10000 units as %10.4f; |v| < 100000. */
static void put_coord(unsigned char *f, int32_t v)
{
    const uint32_t a = (uint32_t)(v < 0 ? -v : v);
    const uint32_t frac = a % 10000u;

    f[3] = v < 0 ? '-' : ' ';
    f[4] = (unsigned char)('0' + a / 10000u);
    memcpy(f + 6, digit_pairs + 2 * (frac / 100u), 2);
    memcpy(f + 8, digit_pairs + 2 * (frac % 100u), 2);
}

/* Molecules in MDL SD format, like a chemical structure database. */
static void gen_sdf(unsigned char *p, const struct page_ctx *c)
{
    struct rng r = { c->page_key };
    const unsigned char *const end = p + PAGE_SIZE;
    uint32_t id = (uint32_t)(c->block_key >> 40) + c->in_block * 8u;

    while (p < end) {
        uint64_t x = rng_next(&r);
        const unsigned atoms = 6 + (unsigned)(x & 31u);
        const unsigned bonds = atoms + (unsigned)((x >> 5) & 3u);
        int32_t cx = 20000;
        int32_t cy = 0;

        id += 1 + (uint32_t)((x >> 8) & 15u);
        p = put_uint(p, id);
        static const char head[] =
            "\n  -ZMGEN-0512241300 2D 0   0.00000     0.00000     0\n \n";
        memcpy(p, head, sizeof(head) - 1);
        p += sizeof(head) - 1;
        put_uint_w(p, atoms, 3);
        put_uint_w(p + 3, bonds, 3);
        static const char counts[] = "  0  0  0  0  0  0  0  0999 V2000\n";
        memcpy(p + 6, counts, sizeof(counts) - 1);
        p += 6 + sizeof(counts) - 1;

        for (unsigned i = 0; i < atoms && p < end; i++) {
            x = rng_next(&r);
            cx += sdf_steps[x & 7u];
            cy += sdf_steps[(x >> 3) & 7u];
            if (cx > 95000 || cx < -95000) {
                cx /= 2;
            }
            if (cy > 95000 || cy < -95000) {
                cy /= 2;
            }
            memcpy(p, sdf_atom_line, sizeof(sdf_atom_line) - 1);
            put_coord(p, cx);
            put_coord(p + 10, cy);
            memcpy(p + 31, sdf_elements[(x >> 6) & 15u], 3);
            if (((x >> 10) & 15u) == 0) {
                p[38] = (unsigned char)('1' + ((x >> 14) & 1u));
            }
            p += sizeof(sdf_atom_line) - 1;
        }
        for (unsigned i = 0; i < bonds && p < end; i++) {
            x = rng_next(&r);
            const unsigned a = 1 + (i < atoms - 1 ? i : (unsigned)(x % atoms));
            const unsigned b = a < atoms ? a + 1 : 1;

            put_uint_w(p, a, 3);
            put_uint_w(p + 3, b, 3);
            memcpy(p + 6, "  1  0  0  0  0\n", 16);
            if (((x >> 8) & 3u) == 0) {
                p[8] = '2';
            }
            p += 22;
        }
        if (p < end) {
            static const char tail[] = "M  END\n> <NSC>\n";
            memcpy(p, tail, sizeof(tail) - 1);
            p = put_uint(p + sizeof(tail) - 1, id);
            memcpy(p, "\n\n$$$$\n", 7);
            p += 7;
        }
    }
}

struct piece {
    char s[23];
    uint8_t len;
};

#define P(x)             \
    {                    \
        x, sizeof(x) - 1 \
    }

static const struct piece log_levels[8] = {
    P("INFO  ["), P("INFO  ["), P("INFO  ["), P("DEBUG ["),
    P("DEBUG ["), P("INFO  ["), P("WARN  ["), P("ERROR ["),
};

static const struct piece log_modules[16] = {
    P("worker-"), P("net-"),   P("store-"), P("sched-"),
    P("http-"),   P("cache-"), P("auth-"),  P("gc-"),
    P("io-"),     P("db-"),    P("timer-"), P("raft-"),
    P("api-"),    P("queue-"), P("mm-"),    P("cfg-"),
};

/* Messages: piece, number, piece, number, piece. */
static const struct piece log_msgs[16][3] = {
    { P("session "), P(": sent "), P(" pages") },
    { P("request id="), P(" status="), P(" ok") },
    { P("cache miss key="), P(" shard="), P("") },
    { P("connection from port "), P(" fd="), P(" accepted") },
    { P("flushed "), P(" dirty pages in "), P(" ms") },
    { P("gc pause "), P(" us, heap "), P(" MiB") },
    { P("user "), P(" logged in, uid="), P("") },
    { P("queue depth "), P(", workers "), P(" idle") },
    { P("checkpoint "), P(" complete, lsn="), P("") },
    { P("retrying operation "), P(" attempt "), P("") },
    { P("timer "), P(" fired after "), P(" ticks") },
    { P("read "), P(" bytes from block "), P("") },
    { P("tx "), P(" committed in "), P(" ms") },
    { P("allocated "), P(" objects in slab "), P("") },
    { P("heartbeat seq="), P(" peers="), P("") },
    { P("config reloaded v"), P(" keys="), P("") },
};

static unsigned char *put_piece(unsigned char *p, const struct piece *pc)
{
    memcpy(p, pc, sizeof(*pc));
    return p + pc->len;
}

/* Two digits of v (< 100). */
static unsigned char *put_2d(unsigned char *p, unsigned v)
{
    memcpy(p, digit_pairs + 2 * v, 2);
    return p + 2;
}

/* Timestamped log lines, as in a daemon's buffers or the page cache. */
static void gen_log(unsigned char *p, const struct page_ctx *c)
{
    struct rng r = { c->page_key };
    const unsigned char *const end = p + PAGE_SIZE;
    const uint64_t k = c->block_key;
    /* Milliseconds since midnight, advancing through the block. */
    uint32_t ms = (uint32_t)((k >> 32) % 72000000u) + c->in_block * 90000u;

    while (p < end) {
        const uint64_t x = rng_next(&r);
        const uint64_t y = rng_next(&r);
        const struct piece *m = log_msgs[(x >> 8) & 15u];
        const uint32_t sec = ms / 1000u;

        ms += (uint32_t)(x & 255u);
        memcpy(p, "20", 2);
        p = put_2d(p + 2, 19 + (unsigned)(k & 7u));
        *p++ = '-';
        p = put_2d(p, 1 + (unsigned)((k >> 3) % 12u));
        *p++ = '-';
        p = put_2d(p, 1 + (unsigned)((k >> 7) % 28u));
        *p++ = ' ';
        p = put_2d(p, sec / 3600u % 24u);
        *p++ = ':';
        p = put_2d(p, sec / 60u % 60u);
        *p++ = ':';
        p = put_2d(p, sec % 60u);
        *p++ = '.';
        *p++ = (unsigned char)('0' + ms % 1000u / 100u);
        p = put_2d(p, ms % 100u);
        *p++ = ' ';
        p = put_piece(p, &log_levels[(x >> 12) & 7u]);
        p = put_piece(p, &log_modules[((k >> 12) + ((x >> 15) & 3u)) & 15u]);
        *p++ = (unsigned char)('0' + ((x >> 17) & 7u));
        *p++ = ']';
        *p++ = ' ';
        p = put_piece(p, &m[0]);
        p = put_uint(p, (uint32_t)(y & 0xfffffu) >> ((y >> 20) & 15u));
        p = put_piece(p, &m[1]);
        p = put_uint(p, (uint32_t)(y >> 24) & 255u);
        p = put_piece(p, &m[2]);
        *p++ = '\n';
    }
}

/* Fixed-width binary rows of a database table. */
static void gen_rows(unsigned char *p, const struct page_ctx *c)
{
    struct rng r = { c->page_key };
    const uint64_t k = c->block_key;
    const uint32_t table = (uint32_t)(k >> 48) & 0x3fu;
    uint32_t id = (uint32_t)(k >> 8) + c->in_block * (PAGE_SIZE / 64u);
    uint64_t stamp = UINT64_C(1600000000000) + ((k >> 24) & 0xffffffffu) +
                     (uint64_t)c->in_block * 64000u;

    for (unsigned row = 0; row < PAGE_SIZE / 64u; row++, p += 64) {
        const uint64_t x = rng_next(&r);
        const uint64_t y = rng_next(&r);
        const struct word *w = &words[x & 255u];

        put_le32(p, id++);
        put_le16(p + 4, table);
        put_le16(p + 6, 64);
        memset(p + 8, ' ', 12);
        memcpy(p + 8, w->s, w->len < 12 ? w->len : 12);
        put_le32(p + 20, (uint32_t)(x >> 8) & 0xffffu);
        put_le32(p + 24, (uint32_t)(x >> 24) & 0x3fu);
        p[28] = (unsigned char)('1' + (x >> 30) % 9u);
        p[29] = '/';
        put_2d(p + 30, 10 + (unsigned)((x >> 34) % 18u));
        p[32] = '/';
        put_2d(p + 33, 19);
        put_2d(p + 35, (unsigned)((x >> 40) % 100u));
        p[37] = 0;
        put_le16(p + 38, (uint32_t)(x >> 48) & 0x7u);
        stamp += y & 1023u;
        put_le64(p + 40, stamp);
        put_le32(p + 48, (y >> 10) & 3u ? 0 : 1u << ((y >> 12) & 3u));
        put_le32(p + 52, (uint32_t)(y >> 16) & 0xffu);
        memset(p + 56, 0, 8);
    }
}

/*
 * Kernel-like objects: list pointers, small integers, pointers into a few
 * operation tables and zero fields, laid out per block as a slab cache.
 */
static void gen_slab(unsigned char *p, const struct page_ctx *c)
{
    struct rng r = { c->page_key };
    const uint64_t k = c->block_key;
    const unsigned obj_words = 8u << ((k >> 6) & 1u);
    uint64_t layout = mix64(k);

    for (unsigned i = 0; i < PAGE_SIZE / 8u; i++, p += 8) {
        const unsigned f = i & (obj_words - 1);
        const uint64_t x = rng_next(&r);
        unsigned kind = (unsigned)(layout >> (2 * f)) & 3u;

        if (f < 2) {
            kind = 1; /* list_head */
        }
        switch (kind) {
        case 0:
            put_le64(p, 0);
            break;
        case 1:
            put_le64(p, UINT64_C(0xffff888100000000) | (x & 0x3ffffc0u));
            break;
        case 2:
            put_le64(p, x & (x >> 32) & 0x1fu);
            break;
        default:
            put_le64(p, UINT64_C(0xffffffff81000000) +
                            ((k >> (8 * (x & 3u))) & 0xff) * 0x40u);
            break;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Pages                                                                   */
/* ---------------------------------------------------------------------- */

static void gen_random(unsigned char *p, const struct page_ctx *c)
{
    struct rng r = { c->page_key };

    for (unsigned i = 0; i < PAGE_SIZE; i += 8) {
        put_le64(p + i, rng_next(&r));
    }
}

/*
 * Kinds are dealt to spans of SPAN_BLOCKS blocks from this deck, shuffled
 * anew for each group of 64 spans, so that every group holds each kind in
 * the same proportion: the compression ratio varies little with the seed
 * or the part of memory.
 */
#define SPAN_BLOCKS 2u

/* Out of 16: the share of blocks that end in 1 to 8 zero pages. */
#define ZERO_TAIL_SHARE 3u

static const uint8_t kind_deck[64] = {
    KIND_SDF,  KIND_LOG,    KIND_TEXT, KIND_CODE, KIND_ROWS,   KIND_SLAB,
    KIND_SDF,  KIND_ZERO,   KIND_LOG,  KIND_TEXT, KIND_RANDOM, KIND_SDF,
    KIND_CODE, KIND_ROWS,   KIND_SLAB, KIND_LOG,  KIND_SDF,    KIND_TEXT,
    KIND_SDF,  KIND_LOG,    KIND_TEXT, KIND_CODE, KIND_ROWS,   KIND_SLAB,
    KIND_SDF,  KIND_ZERO,   KIND_LOG,  KIND_SDF,  KIND_TEXT,   KIND_CODE,
    KIND_LOG,  KIND_RANDOM, KIND_ROWS, KIND_SDF,  KIND_SLAB,   KIND_TEXT,
    KIND_SDF,  KIND_LOG,    KIND_ZERO, KIND_SDF,  KIND_CODE,   KIND_ROWS,
    KIND_SLAB, KIND_TEXT,   KIND_LOG,  KIND_SDF,  KIND_TEXT,   KIND_SDF,
    KIND_LOG,  KIND_CODE,   KIND_ROWS, KIND_SLAB, KIND_RANDOM, KIND_SDF,
    KIND_TEXT, KIND_LOG,    KIND_ZERO, KIND_SDF,  KIND_CODE,   KIND_ROWS,
    KIND_SLAB, KIND_TEXT,   KIND_LOG,  KIND_SDF,
};

/* Writes page page_no into p: PAGE_SIZE bytes, and up to SLACK more. */
static void fill_page(unsigned char *p, uint64_t page_no, uint64_t seed)
{
    const uint64_t block = page_no / BLOCK_PAGES;
    const uint64_t h = mix64(seed ^ mix64(block ^ UINT64_C(0x5a17c0de)));
    struct page_ctx c = {
        .page_key = mix64(seed + mix64(page_no ^ UINT64_C(0xda7a9e4e))),
        .block_key = mix64(h),
        .in_block = (unsigned)(page_no % BLOCK_PAGES),
    };
    const uint64_t span = block / SPAN_BLOCKS;
    /* Odd multipliers, additions and xor-shifts: a bijection of 6 bits. */
    const uint64_t g = mix64(seed ^ mix64((span / 64) ^ UINT64_C(0x7e91)));
    unsigned pos = (unsigned)((span % 64) * (g | 1) + (g >> 8)) & 63u;

    pos ^= pos >> 3;
    pos = (unsigned)(pos * ((g >> 16) | 1) + (g >> 24)) & 63u;
    pos ^= pos >> 3;
    unsigned kind = kind_deck[pos];

    /* Some blocks end in a run of zero pages: memory not yet touched. */
    if (kind != KIND_RANDOM && ((h >> 10) & 15u) < ZERO_TAIL_SHARE &&
        c.in_block >= BLOCK_PAGES - 1 - ((h >> 14) & 7u)) {
        kind = KIND_ZERO;
    }

    switch (kind) {
    case KIND_ZERO:
        memset(p, 0, PAGE_SIZE);
        break;
    case KIND_RANDOM:
        gen_random(p, &c);
        break;
    case KIND_TEXT:
        gen_text(p, &c);
        break;
    case KIND_CODE:
        gen_code(p, &c);
        break;
    case KIND_SDF:
        gen_sdf(p, &c);
        break;
    case KIND_LOG:
        gen_log(p, &c);
        break;
    case KIND_ROWS:
        gen_rows(p, &c);
        break;
    default:
        gen_slab(p, &c);
        break;
    }
}

void zm_datagen_fill(void *buf, size_t len, uint64_t offset, uint64_t seed)
{
    unsigned char *out = buf;
    uint64_t page_no = offset / PAGE_SIZE;

    while (len > 0) {
        if (len >= PAGE_SIZE + SLACK) {
            /* The slack lands on the next page, which is written next. */
            fill_page(out, page_no, seed);
            out += PAGE_SIZE;
            len -= PAGE_SIZE;
        } else {
            unsigned char tmp[PAGE_SIZE + SLACK];
            const size_t n = len < PAGE_SIZE ? len : PAGE_SIZE;

            fill_page(tmp, page_no, seed);
            memcpy(out, tmp, n);
            out += n;
            len -= n;
        }
        page_no++;
    }
}
