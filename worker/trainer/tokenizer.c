/*
 * tokenizer.c: text to token ids (tokenizer.h). Three kinds:
 *
 * - the byte tokenizer of ft's tiny models ("tokenizer_class":
 *   "FtByteTokenizer" in tokenizer_config.json): id = byte + 3, with 0 = pad,
 *   1 = bos, 2 = eos;
 * - byte-level BPE from a Hugging Face tokenizer.json (GPT-2, Llama 3 and
 *   their kin): no normalizer; pre-tokenizer ByteLevel (GPT-2 regex) or
 *   Split(Llama-3 regex, Isolated) + ByteLevel(use_regex false), never with
 *   add_prefix_space; merges as "a b" strings or [a, b] pairs; ignore_merges
 *   honoured;
 * - SentencePiece-style BPE from tokenizer.json (Llama 2, Mistral): byte
 *   fallback to <0xXX> tokens, "▁" for spaces, and either the normalizer
 *   Prepend("▁") + Replace(" ", "▁") or the Metaspace pre-tokenizer with
 *   prepend_scheme "first".
 *
 * Added tokens found in the text are emitted as themselves (longest match
 * first), as transformers does by default. Any other tokenizer.json is refused
 * with the reason: its data must then come pre-tokenized. None adds BOS or
 * EOS: data.c places them (ids from config.json for BPE). The two regexes are
 * matched by hand-written code that follows the regex semantics (ordered
 * alternatives, greedy quantifiers with backtracking), with \p{L}, \p{N} and
 * \s from the Unicode tables below. Every kind is checked id for id against
 * Hugging Face tokenizers (tests/trainer/test_tokenizer_bpe.c).
 *
 * Invariants: every id produced is < tokenizer_vocab_size(); a text of n bytes
 * gives at most 2n + 1 ids (byte-level at most n; SentencePiece adds one "▁"
 * per piece between added tokens). Costs: loading O(size of tokenizer.json)
 * with hash tables for the vocabulary and the merge ranks; byte-level
 * encoding of a pre-token of k bytes is O(k^2) (pre-tokens are short),
 * SentencePiece-style O(k log k) per piece (a heap of candidate merges); the
 * added-token scan is O(n) with a first-byte filter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ft/json.h"
#include "llama.h"
#include "tokenizer.h"

#define BYTE_OFFSET 3
#define BYTE_VOCAB 259
#define TOKCFG_MAX_BYTES (16 * 1024 * 1024)
#define TOKJSON_MAX_BYTES (256 * 1024 * 1024)

static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char llama3_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef enum { TOK_BYTE = 1, TOK_BPE = 2 } tok_kind_t;
typedef enum {
    PRE_GPT2 = 1,     /* byte-level, GPT-2 regex */
    PRE_LLAMA3 = 2,   /* byte-level, Llama-3 regex */
    PRE_SP_ALL = 3,   /* SentencePiece style: normalizer Prepend("▁") + Replace(" ", "▁") */
    PRE_SP_FIRST = 4, /* SentencePiece style: Metaspace("▁", prepend_scheme first) */
} pre_kind_t;

#define SP_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's word mark */

/* string -> id, open addressing */
typedef struct {
    char **keys;  /* [cap], NUL-terminated, owned; NULL = empty slot */
    int32_t *ids; /* [cap] */
    size_t cap;   /* power of two */
    size_t n;     /* entries */
} strmap_t;

/* (left id, right id) -> merge rank and merged id */
typedef struct {
    uint64_t *keys;  /* [cap], (a << 32 | b) + 1; 0 = empty */
    int32_t *rank;   /* [cap] position in the merges list */
    int32_t *merged; /* [cap] id of the concatenation */
    size_t cap;      /* power of two */
} pairmap_t;

typedef struct {
    char *content; /* text of the added token */
    size_t len;    /* strlen(content) */
    int32_t id;    /* its id */
} added_t;

struct tokenizer {
    tok_kind_t kind;      /* byte or BPE */
    int vocab;            /* ids in use: max id + 1 */
    int bos, eos;         /* from config.json (BPE) or 1, 2 (byte) */
    pre_kind_t pre;       /* BPE: which pre-tokenizer regex or SentencePiece scheme */
    bool sp;              /* BPE: SentencePiece style (chars, byte fallback, no regex) */
    bool ignore_merges;   /* BPE: a pre-token found whole in the vocab is one id */
    strmap_t vocab_map;   /* BPE: token string (byte-level chars) -> id */
    pairmap_t merges;     /* BPE: merge ranks */
    int32_t byte_id[256]; /* BPE: id of each byte's single-char token */
    added_t *added;       /* BPE: added tokens, longest first */
    int n_added;
    uint8_t added_first[256]; /* BPE: 1 if some added token starts with this byte */
};

/* Unicode 14.0.0, generated with Python's unicodedata: ranges of the
 * categories L (Lu Ll Lt Lm Lo) and N (Nd Nl No). */
static const uint32_t uni_letter[][2] = {
    {0x41, 0x5a},       {0x61, 0x7a},       {0xaa, 0xaa},       {0xb5, 0xb5},
    {0xba, 0xba},       {0xc0, 0xd6},       {0xd8, 0xf6},       {0xf8, 0x2c1},
    {0x2c6, 0x2d1},     {0x2e0, 0x2e4},     {0x2ec, 0x2ec},     {0x2ee, 0x2ee},
    {0x370, 0x374},     {0x376, 0x377},     {0x37a, 0x37d},     {0x37f, 0x37f},
    {0x386, 0x386},     {0x388, 0x38a},     {0x38c, 0x38c},     {0x38e, 0x3a1},
    {0x3a3, 0x3f5},     {0x3f7, 0x481},     {0x48a, 0x52f},     {0x531, 0x556},
    {0x559, 0x559},     {0x560, 0x588},     {0x5d0, 0x5ea},     {0x5ef, 0x5f2},
    {0x620, 0x64a},     {0x66e, 0x66f},     {0x671, 0x6d3},     {0x6d5, 0x6d5},
    {0x6e5, 0x6e6},     {0x6ee, 0x6ef},     {0x6fa, 0x6fc},     {0x6ff, 0x6ff},
    {0x710, 0x710},     {0x712, 0x72f},     {0x74d, 0x7a5},     {0x7b1, 0x7b1},
    {0x7ca, 0x7ea},     {0x7f4, 0x7f5},     {0x7fa, 0x7fa},     {0x800, 0x815},
    {0x81a, 0x81a},     {0x824, 0x824},     {0x828, 0x828},     {0x840, 0x858},
    {0x860, 0x86a},     {0x870, 0x887},     {0x889, 0x88e},     {0x8a0, 0x8c9},
    {0x904, 0x939},     {0x93d, 0x93d},     {0x950, 0x950},     {0x958, 0x961},
    {0x971, 0x980},     {0x985, 0x98c},     {0x98f, 0x990},     {0x993, 0x9a8},
    {0x9aa, 0x9b0},     {0x9b2, 0x9b2},     {0x9b6, 0x9b9},     {0x9bd, 0x9bd},
    {0x9ce, 0x9ce},     {0x9dc, 0x9dd},     {0x9df, 0x9e1},     {0x9f0, 0x9f1},
    {0x9fc, 0x9fc},     {0xa05, 0xa0a},     {0xa0f, 0xa10},     {0xa13, 0xa28},
    {0xa2a, 0xa30},     {0xa32, 0xa33},     {0xa35, 0xa36},     {0xa38, 0xa39},
    {0xa59, 0xa5c},     {0xa5e, 0xa5e},     {0xa72, 0xa74},     {0xa85, 0xa8d},
    {0xa8f, 0xa91},     {0xa93, 0xaa8},     {0xaaa, 0xab0},     {0xab2, 0xab3},
    {0xab5, 0xab9},     {0xabd, 0xabd},     {0xad0, 0xad0},     {0xae0, 0xae1},
    {0xaf9, 0xaf9},     {0xb05, 0xb0c},     {0xb0f, 0xb10},     {0xb13, 0xb28},
    {0xb2a, 0xb30},     {0xb32, 0xb33},     {0xb35, 0xb39},     {0xb3d, 0xb3d},
    {0xb5c, 0xb5d},     {0xb5f, 0xb61},     {0xb71, 0xb71},     {0xb83, 0xb83},
    {0xb85, 0xb8a},     {0xb8e, 0xb90},     {0xb92, 0xb95},     {0xb99, 0xb9a},
    {0xb9c, 0xb9c},     {0xb9e, 0xb9f},     {0xba3, 0xba4},     {0xba8, 0xbaa},
    {0xbae, 0xbb9},     {0xbd0, 0xbd0},     {0xc05, 0xc0c},     {0xc0e, 0xc10},
    {0xc12, 0xc28},     {0xc2a, 0xc39},     {0xc3d, 0xc3d},     {0xc58, 0xc5a},
    {0xc5d, 0xc5d},     {0xc60, 0xc61},     {0xc80, 0xc80},     {0xc85, 0xc8c},
    {0xc8e, 0xc90},     {0xc92, 0xca8},     {0xcaa, 0xcb3},     {0xcb5, 0xcb9},
    {0xcbd, 0xcbd},     {0xcdd, 0xcde},     {0xce0, 0xce1},     {0xcf1, 0xcf2},
    {0xd04, 0xd0c},     {0xd0e, 0xd10},     {0xd12, 0xd3a},     {0xd3d, 0xd3d},
    {0xd4e, 0xd4e},     {0xd54, 0xd56},     {0xd5f, 0xd61},     {0xd7a, 0xd7f},
    {0xd85, 0xd96},     {0xd9a, 0xdb1},     {0xdb3, 0xdbb},     {0xdbd, 0xdbd},
    {0xdc0, 0xdc6},     {0xe01, 0xe30},     {0xe32, 0xe33},     {0xe40, 0xe46},
    {0xe81, 0xe82},     {0xe84, 0xe84},     {0xe86, 0xe8a},     {0xe8c, 0xea3},
    {0xea5, 0xea5},     {0xea7, 0xeb0},     {0xeb2, 0xeb3},     {0xebd, 0xebd},
    {0xec0, 0xec4},     {0xec6, 0xec6},     {0xedc, 0xedf},     {0xf00, 0xf00},
    {0xf40, 0xf47},     {0xf49, 0xf6c},     {0xf88, 0xf8c},     {0x1000, 0x102a},
    {0x103f, 0x103f},   {0x1050, 0x1055},   {0x105a, 0x105d},   {0x1061, 0x1061},
    {0x1065, 0x1066},   {0x106e, 0x1070},   {0x1075, 0x1081},   {0x108e, 0x108e},
    {0x10a0, 0x10c5},   {0x10c7, 0x10c7},   {0x10cd, 0x10cd},   {0x10d0, 0x10fa},
    {0x10fc, 0x1248},   {0x124a, 0x124d},   {0x1250, 0x1256},   {0x1258, 0x1258},
    {0x125a, 0x125d},   {0x1260, 0x1288},   {0x128a, 0x128d},   {0x1290, 0x12b0},
    {0x12b2, 0x12b5},   {0x12b8, 0x12be},   {0x12c0, 0x12c0},   {0x12c2, 0x12c5},
    {0x12c8, 0x12d6},   {0x12d8, 0x1310},   {0x1312, 0x1315},   {0x1318, 0x135a},
    {0x1380, 0x138f},   {0x13a0, 0x13f5},   {0x13f8, 0x13fd},   {0x1401, 0x166c},
    {0x166f, 0x167f},   {0x1681, 0x169a},   {0x16a0, 0x16ea},   {0x16f1, 0x16f8},
    {0x1700, 0x1711},   {0x171f, 0x1731},   {0x1740, 0x1751},   {0x1760, 0x176c},
    {0x176e, 0x1770},   {0x1780, 0x17b3},   {0x17d7, 0x17d7},   {0x17dc, 0x17dc},
    {0x1820, 0x1878},   {0x1880, 0x1884},   {0x1887, 0x18a8},   {0x18aa, 0x18aa},
    {0x18b0, 0x18f5},   {0x1900, 0x191e},   {0x1950, 0x196d},   {0x1970, 0x1974},
    {0x1980, 0x19ab},   {0x19b0, 0x19c9},   {0x1a00, 0x1a16},   {0x1a20, 0x1a54},
    {0x1aa7, 0x1aa7},   {0x1b05, 0x1b33},   {0x1b45, 0x1b4c},   {0x1b83, 0x1ba0},
    {0x1bae, 0x1baf},   {0x1bba, 0x1be5},   {0x1c00, 0x1c23},   {0x1c4d, 0x1c4f},
    {0x1c5a, 0x1c7d},   {0x1c80, 0x1c88},   {0x1c90, 0x1cba},   {0x1cbd, 0x1cbf},
    {0x1ce9, 0x1cec},   {0x1cee, 0x1cf3},   {0x1cf5, 0x1cf6},   {0x1cfa, 0x1cfa},
    {0x1d00, 0x1dbf},   {0x1e00, 0x1f15},   {0x1f18, 0x1f1d},   {0x1f20, 0x1f45},
    {0x1f48, 0x1f4d},   {0x1f50, 0x1f57},   {0x1f59, 0x1f59},   {0x1f5b, 0x1f5b},
    {0x1f5d, 0x1f5d},   {0x1f5f, 0x1f7d},   {0x1f80, 0x1fb4},   {0x1fb6, 0x1fbc},
    {0x1fbe, 0x1fbe},   {0x1fc2, 0x1fc4},   {0x1fc6, 0x1fcc},   {0x1fd0, 0x1fd3},
    {0x1fd6, 0x1fdb},   {0x1fe0, 0x1fec},   {0x1ff2, 0x1ff4},   {0x1ff6, 0x1ffc},
    {0x2071, 0x2071},   {0x207f, 0x207f},   {0x2090, 0x209c},   {0x2102, 0x2102},
    {0x2107, 0x2107},   {0x210a, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211d},
    {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},   {0x212a, 0x212d},
    {0x212f, 0x2139},   {0x213c, 0x213f},   {0x2145, 0x2149},   {0x214e, 0x214e},
    {0x2183, 0x2184},   {0x2c00, 0x2ce4},   {0x2ceb, 0x2cee},   {0x2cf2, 0x2cf3},
    {0x2d00, 0x2d25},   {0x2d27, 0x2d27},   {0x2d2d, 0x2d2d},   {0x2d30, 0x2d67},
    {0x2d6f, 0x2d6f},   {0x2d80, 0x2d96},   {0x2da0, 0x2da6},   {0x2da8, 0x2dae},
    {0x2db0, 0x2db6},   {0x2db8, 0x2dbe},   {0x2dc0, 0x2dc6},   {0x2dc8, 0x2dce},
    {0x2dd0, 0x2dd6},   {0x2dd8, 0x2dde},   {0x2e2f, 0x2e2f},   {0x3005, 0x3006},
    {0x3031, 0x3035},   {0x303b, 0x303c},   {0x3041, 0x3096},   {0x309d, 0x309f},
    {0x30a1, 0x30fa},   {0x30fc, 0x30ff},   {0x3105, 0x312f},   {0x3131, 0x318e},
    {0x31a0, 0x31bf},   {0x31f0, 0x31ff},   {0x3400, 0x4dbf},   {0x4e00, 0xa48c},
    {0xa4d0, 0xa4fd},   {0xa500, 0xa60c},   {0xa610, 0xa61f},   {0xa62a, 0xa62b},
    {0xa640, 0xa66e},   {0xa67f, 0xa69d},   {0xa6a0, 0xa6e5},   {0xa717, 0xa71f},
    {0xa722, 0xa788},   {0xa78b, 0xa7ca},   {0xa7d0, 0xa7d1},   {0xa7d3, 0xa7d3},
    {0xa7d5, 0xa7d9},   {0xa7f2, 0xa801},   {0xa803, 0xa805},   {0xa807, 0xa80a},
    {0xa80c, 0xa822},   {0xa840, 0xa873},   {0xa882, 0xa8b3},   {0xa8f2, 0xa8f7},
    {0xa8fb, 0xa8fb},   {0xa8fd, 0xa8fe},   {0xa90a, 0xa925},   {0xa930, 0xa946},
    {0xa960, 0xa97c},   {0xa984, 0xa9b2},   {0xa9cf, 0xa9cf},   {0xa9e0, 0xa9e4},
    {0xa9e6, 0xa9ef},   {0xa9fa, 0xa9fe},   {0xaa00, 0xaa28},   {0xaa40, 0xaa42},
    {0xaa44, 0xaa4b},   {0xaa60, 0xaa76},   {0xaa7a, 0xaa7a},   {0xaa7e, 0xaaaf},
    {0xaab1, 0xaab1},   {0xaab5, 0xaab6},   {0xaab9, 0xaabd},   {0xaac0, 0xaac0},
    {0xaac2, 0xaac2},   {0xaadb, 0xaadd},   {0xaae0, 0xaaea},   {0xaaf2, 0xaaf4},
    {0xab01, 0xab06},   {0xab09, 0xab0e},   {0xab11, 0xab16},   {0xab20, 0xab26},
    {0xab28, 0xab2e},   {0xab30, 0xab5a},   {0xab5c, 0xab69},   {0xab70, 0xabe2},
    {0xac00, 0xd7a3},   {0xd7b0, 0xd7c6},   {0xd7cb, 0xd7fb},   {0xf900, 0xfa6d},
    {0xfa70, 0xfad9},   {0xfb00, 0xfb06},   {0xfb13, 0xfb17},   {0xfb1d, 0xfb1d},
    {0xfb1f, 0xfb28},   {0xfb2a, 0xfb36},   {0xfb38, 0xfb3c},   {0xfb3e, 0xfb3e},
    {0xfb40, 0xfb41},   {0xfb43, 0xfb44},   {0xfb46, 0xfbb1},   {0xfbd3, 0xfd3d},
    {0xfd50, 0xfd8f},   {0xfd92, 0xfdc7},   {0xfdf0, 0xfdfb},   {0xfe70, 0xfe74},
    {0xfe76, 0xfefc},   {0xff21, 0xff3a},   {0xff41, 0xff5a},   {0xff66, 0xffbe},
    {0xffc2, 0xffc7},   {0xffca, 0xffcf},   {0xffd2, 0xffd7},   {0xffda, 0xffdc},
    {0x10000, 0x1000b}, {0x1000d, 0x10026}, {0x10028, 0x1003a}, {0x1003c, 0x1003d},
    {0x1003f, 0x1004d}, {0x10050, 0x1005d}, {0x10080, 0x100fa}, {0x10280, 0x1029c},
    {0x102a0, 0x102d0}, {0x10300, 0x1031f}, {0x1032d, 0x10340}, {0x10342, 0x10349},
    {0x10350, 0x10375}, {0x10380, 0x1039d}, {0x103a0, 0x103c3}, {0x103c8, 0x103cf},
    {0x10400, 0x1049d}, {0x104b0, 0x104d3}, {0x104d8, 0x104fb}, {0x10500, 0x10527},
    {0x10530, 0x10563}, {0x10570, 0x1057a}, {0x1057c, 0x1058a}, {0x1058c, 0x10592},
    {0x10594, 0x10595}, {0x10597, 0x105a1}, {0x105a3, 0x105b1}, {0x105b3, 0x105b9},
    {0x105bb, 0x105bc}, {0x10600, 0x10736}, {0x10740, 0x10755}, {0x10760, 0x10767},
    {0x10780, 0x10785}, {0x10787, 0x107b0}, {0x107b2, 0x107ba}, {0x10800, 0x10805},
    {0x10808, 0x10808}, {0x1080a, 0x10835}, {0x10837, 0x10838}, {0x1083c, 0x1083c},
    {0x1083f, 0x10855}, {0x10860, 0x10876}, {0x10880, 0x1089e}, {0x108e0, 0x108f2},
    {0x108f4, 0x108f5}, {0x10900, 0x10915}, {0x10920, 0x10939}, {0x10980, 0x109b7},
    {0x109be, 0x109bf}, {0x10a00, 0x10a00}, {0x10a10, 0x10a13}, {0x10a15, 0x10a17},
    {0x10a19, 0x10a35}, {0x10a60, 0x10a7c}, {0x10a80, 0x10a9c}, {0x10ac0, 0x10ac7},
    {0x10ac9, 0x10ae4}, {0x10b00, 0x10b35}, {0x10b40, 0x10b55}, {0x10b60, 0x10b72},
    {0x10b80, 0x10b91}, {0x10c00, 0x10c48}, {0x10c80, 0x10cb2}, {0x10cc0, 0x10cf2},
    {0x10d00, 0x10d23}, {0x10e80, 0x10ea9}, {0x10eb0, 0x10eb1}, {0x10f00, 0x10f1c},
    {0x10f27, 0x10f27}, {0x10f30, 0x10f45}, {0x10f70, 0x10f81}, {0x10fb0, 0x10fc4},
    {0x10fe0, 0x10ff6}, {0x11003, 0x11037}, {0x11071, 0x11072}, {0x11075, 0x11075},
    {0x11083, 0x110af}, {0x110d0, 0x110e8}, {0x11103, 0x11126}, {0x11144, 0x11144},
    {0x11147, 0x11147}, {0x11150, 0x11172}, {0x11176, 0x11176}, {0x11183, 0x111b2},
    {0x111c1, 0x111c4}, {0x111da, 0x111da}, {0x111dc, 0x111dc}, {0x11200, 0x11211},
    {0x11213, 0x1122b}, {0x11280, 0x11286}, {0x11288, 0x11288}, {0x1128a, 0x1128d},
    {0x1128f, 0x1129d}, {0x1129f, 0x112a8}, {0x112b0, 0x112de}, {0x11305, 0x1130c},
    {0x1130f, 0x11310}, {0x11313, 0x11328}, {0x1132a, 0x11330}, {0x11332, 0x11333},
    {0x11335, 0x11339}, {0x1133d, 0x1133d}, {0x11350, 0x11350}, {0x1135d, 0x11361},
    {0x11400, 0x11434}, {0x11447, 0x1144a}, {0x1145f, 0x11461}, {0x11480, 0x114af},
    {0x114c4, 0x114c5}, {0x114c7, 0x114c7}, {0x11580, 0x115ae}, {0x115d8, 0x115db},
    {0x11600, 0x1162f}, {0x11644, 0x11644}, {0x11680, 0x116aa}, {0x116b8, 0x116b8},
    {0x11700, 0x1171a}, {0x11740, 0x11746}, {0x11800, 0x1182b}, {0x118a0, 0x118df},
    {0x118ff, 0x11906}, {0x11909, 0x11909}, {0x1190c, 0x11913}, {0x11915, 0x11916},
    {0x11918, 0x1192f}, {0x1193f, 0x1193f}, {0x11941, 0x11941}, {0x119a0, 0x119a7},
    {0x119aa, 0x119d0}, {0x119e1, 0x119e1}, {0x119e3, 0x119e3}, {0x11a00, 0x11a00},
    {0x11a0b, 0x11a32}, {0x11a3a, 0x11a3a}, {0x11a50, 0x11a50}, {0x11a5c, 0x11a89},
    {0x11a9d, 0x11a9d}, {0x11ab0, 0x11af8}, {0x11c00, 0x11c08}, {0x11c0a, 0x11c2e},
    {0x11c40, 0x11c40}, {0x11c72, 0x11c8f}, {0x11d00, 0x11d06}, {0x11d08, 0x11d09},
    {0x11d0b, 0x11d30}, {0x11d46, 0x11d46}, {0x11d60, 0x11d65}, {0x11d67, 0x11d68},
    {0x11d6a, 0x11d89}, {0x11d98, 0x11d98}, {0x11ee0, 0x11ef2}, {0x11fb0, 0x11fb0},
    {0x12000, 0x12399}, {0x12480, 0x12543}, {0x12f90, 0x12ff0}, {0x13000, 0x1342e},
    {0x14400, 0x14646}, {0x16800, 0x16a38}, {0x16a40, 0x16a5e}, {0x16a70, 0x16abe},
    {0x16ad0, 0x16aed}, {0x16b00, 0x16b2f}, {0x16b40, 0x16b43}, {0x16b63, 0x16b77},
    {0x16b7d, 0x16b8f}, {0x16e40, 0x16e7f}, {0x16f00, 0x16f4a}, {0x16f50, 0x16f50},
    {0x16f93, 0x16f9f}, {0x16fe0, 0x16fe1}, {0x16fe3, 0x16fe3}, {0x17000, 0x187f7},
    {0x18800, 0x18cd5}, {0x18d00, 0x18d08}, {0x1aff0, 0x1aff3}, {0x1aff5, 0x1affb},
    {0x1affd, 0x1affe}, {0x1b000, 0x1b122}, {0x1b150, 0x1b152}, {0x1b164, 0x1b167},
    {0x1b170, 0x1b2fb}, {0x1bc00, 0x1bc6a}, {0x1bc70, 0x1bc7c}, {0x1bc80, 0x1bc88},
    {0x1bc90, 0x1bc99}, {0x1d400, 0x1d454}, {0x1d456, 0x1d49c}, {0x1d49e, 0x1d49f},
    {0x1d4a2, 0x1d4a2}, {0x1d4a5, 0x1d4a6}, {0x1d4a9, 0x1d4ac}, {0x1d4ae, 0x1d4b9},
    {0x1d4bb, 0x1d4bb}, {0x1d4bd, 0x1d4c3}, {0x1d4c5, 0x1d505}, {0x1d507, 0x1d50a},
    {0x1d50d, 0x1d514}, {0x1d516, 0x1d51c}, {0x1d51e, 0x1d539}, {0x1d53b, 0x1d53e},
    {0x1d540, 0x1d544}, {0x1d546, 0x1d546}, {0x1d54a, 0x1d550}, {0x1d552, 0x1d6a5},
    {0x1d6a8, 0x1d6c0}, {0x1d6c2, 0x1d6da}, {0x1d6dc, 0x1d6fa}, {0x1d6fc, 0x1d714},
    {0x1d716, 0x1d734}, {0x1d736, 0x1d74e}, {0x1d750, 0x1d76e}, {0x1d770, 0x1d788},
    {0x1d78a, 0x1d7a8}, {0x1d7aa, 0x1d7c2}, {0x1d7c4, 0x1d7cb}, {0x1df00, 0x1df1e},
    {0x1e100, 0x1e12c}, {0x1e137, 0x1e13d}, {0x1e14e, 0x1e14e}, {0x1e290, 0x1e2ad},
    {0x1e2c0, 0x1e2eb}, {0x1e7e0, 0x1e7e6}, {0x1e7e8, 0x1e7eb}, {0x1e7ed, 0x1e7ee},
    {0x1e7f0, 0x1e7fe}, {0x1e800, 0x1e8c4}, {0x1e900, 0x1e943}, {0x1e94b, 0x1e94b},
    {0x1ee00, 0x1ee03}, {0x1ee05, 0x1ee1f}, {0x1ee21, 0x1ee22}, {0x1ee24, 0x1ee24},
    {0x1ee27, 0x1ee27}, {0x1ee29, 0x1ee32}, {0x1ee34, 0x1ee37}, {0x1ee39, 0x1ee39},
    {0x1ee3b, 0x1ee3b}, {0x1ee42, 0x1ee42}, {0x1ee47, 0x1ee47}, {0x1ee49, 0x1ee49},
    {0x1ee4b, 0x1ee4b}, {0x1ee4d, 0x1ee4f}, {0x1ee51, 0x1ee52}, {0x1ee54, 0x1ee54},
    {0x1ee57, 0x1ee57}, {0x1ee59, 0x1ee59}, {0x1ee5b, 0x1ee5b}, {0x1ee5d, 0x1ee5d},
    {0x1ee5f, 0x1ee5f}, {0x1ee61, 0x1ee62}, {0x1ee64, 0x1ee64}, {0x1ee67, 0x1ee6a},
    {0x1ee6c, 0x1ee72}, {0x1ee74, 0x1ee77}, {0x1ee79, 0x1ee7c}, {0x1ee7e, 0x1ee7e},
    {0x1ee80, 0x1ee89}, {0x1ee8b, 0x1ee9b}, {0x1eea1, 0x1eea3}, {0x1eea5, 0x1eea9},
    {0x1eeab, 0x1eebb}, {0x20000, 0x2a6df}, {0x2a700, 0x2b738}, {0x2b740, 0x2b81d},
    {0x2b820, 0x2cea1}, {0x2ceb0, 0x2ebe0}, {0x2f800, 0x2fa1d}, {0x30000, 0x3134a},
};
static const uint32_t uni_number[][2] = {
    {0x30, 0x39},       {0xb2, 0xb3},       {0xb9, 0xb9},       {0xbc, 0xbe},
    {0x660, 0x669},     {0x6f0, 0x6f9},     {0x7c0, 0x7c9},     {0x966, 0x96f},
    {0x9e6, 0x9ef},     {0x9f4, 0x9f9},     {0xa66, 0xa6f},     {0xae6, 0xaef},
    {0xb66, 0xb6f},     {0xb72, 0xb77},     {0xbe6, 0xbf2},     {0xc66, 0xc6f},
    {0xc78, 0xc7e},     {0xce6, 0xcef},     {0xd58, 0xd5e},     {0xd66, 0xd78},
    {0xde6, 0xdef},     {0xe50, 0xe59},     {0xed0, 0xed9},     {0xf20, 0xf33},
    {0x1040, 0x1049},   {0x1090, 0x1099},   {0x1369, 0x137c},   {0x16ee, 0x16f0},
    {0x17e0, 0x17e9},   {0x17f0, 0x17f9},   {0x1810, 0x1819},   {0x1946, 0x194f},
    {0x19d0, 0x19da},   {0x1a80, 0x1a89},   {0x1a90, 0x1a99},   {0x1b50, 0x1b59},
    {0x1bb0, 0x1bb9},   {0x1c40, 0x1c49},   {0x1c50, 0x1c59},   {0x2070, 0x2070},
    {0x2074, 0x2079},   {0x2080, 0x2089},   {0x2150, 0x2182},   {0x2185, 0x2189},
    {0x2460, 0x249b},   {0x24ea, 0x24ff},   {0x2776, 0x2793},   {0x2cfd, 0x2cfd},
    {0x3007, 0x3007},   {0x3021, 0x3029},   {0x3038, 0x303a},   {0x3192, 0x3195},
    {0x3220, 0x3229},   {0x3248, 0x324f},   {0x3251, 0x325f},   {0x3280, 0x3289},
    {0x32b1, 0x32bf},   {0xa620, 0xa629},   {0xa6e6, 0xa6ef},   {0xa830, 0xa835},
    {0xa8d0, 0xa8d9},   {0xa900, 0xa909},   {0xa9d0, 0xa9d9},   {0xa9f0, 0xa9f9},
    {0xaa50, 0xaa59},   {0xabf0, 0xabf9},   {0xff10, 0xff19},   {0x10107, 0x10133},
    {0x10140, 0x10178}, {0x1018a, 0x1018b}, {0x102e1, 0x102fb}, {0x10320, 0x10323},
    {0x10341, 0x10341}, {0x1034a, 0x1034a}, {0x103d1, 0x103d5}, {0x104a0, 0x104a9},
    {0x10858, 0x1085f}, {0x10879, 0x1087f}, {0x108a7, 0x108af}, {0x108fb, 0x108ff},
    {0x10916, 0x1091b}, {0x109bc, 0x109bd}, {0x109c0, 0x109cf}, {0x109d2, 0x109ff},
    {0x10a40, 0x10a48}, {0x10a7d, 0x10a7e}, {0x10a9d, 0x10a9f}, {0x10aeb, 0x10aef},
    {0x10b58, 0x10b5f}, {0x10b78, 0x10b7f}, {0x10ba9, 0x10baf}, {0x10cfa, 0x10cff},
    {0x10d30, 0x10d39}, {0x10e60, 0x10e7e}, {0x10f1d, 0x10f26}, {0x10f51, 0x10f54},
    {0x10fc5, 0x10fcb}, {0x11052, 0x1106f}, {0x110f0, 0x110f9}, {0x11136, 0x1113f},
    {0x111d0, 0x111d9}, {0x111e1, 0x111f4}, {0x112f0, 0x112f9}, {0x11450, 0x11459},
    {0x114d0, 0x114d9}, {0x11650, 0x11659}, {0x116c0, 0x116c9}, {0x11730, 0x1173b},
    {0x118e0, 0x118f2}, {0x11950, 0x11959}, {0x11c50, 0x11c6c}, {0x11d50, 0x11d59},
    {0x11da0, 0x11da9}, {0x11fc0, 0x11fd4}, {0x12400, 0x1246e}, {0x16a60, 0x16a69},
    {0x16ac0, 0x16ac9}, {0x16b50, 0x16b59}, {0x16b5b, 0x16b61}, {0x16e80, 0x16e96},
    {0x1d2e0, 0x1d2f3}, {0x1d360, 0x1d378}, {0x1d7ce, 0x1d7ff}, {0x1e140, 0x1e149},
    {0x1e2f0, 0x1e2f9}, {0x1e8c7, 0x1e8cf}, {0x1e950, 0x1e959}, {0x1ec71, 0x1ecab},
    {0x1ecad, 0x1ecaf}, {0x1ecb1, 0x1ecb4}, {0x1ed01, 0x1ed2d}, {0x1ed2f, 0x1ed3d},
    {0x1f100, 0x1f10c}, {0x1fbf0, 0x1fbf9},
};

static bool in_ranges(uint32_t cp, const uint32_t (*r)[2], size_t n)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

static bool is_letter(uint32_t c)
{
    if (c < 0x80)
        return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return in_ranges(c, uni_letter, sizeof uni_letter / sizeof uni_letter[0]);
}

static bool is_number(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    return in_ranges(c, uni_number, sizeof uni_number / sizeof uni_number[0]);
}

/* Unicode White_Space, which is what \s matches in the regex engines of
 * Hugging Face tokenizers. */
static bool is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static bool is_nl(uint32_t c)
{
    return c == '\r' || c == '\n';
}

/* [^\s\p{L}\p{N}] */
static bool is_other(uint32_t c)
{
    return !is_space(c) && !is_letter(c) && !is_number(c);
}

/* Decodes valid UTF-8 (JSON strings are validated) into code points and
 * their byte offsets; off has n + 1 entries. Invalid bytes count as U+FFFD. */
static size_t utf8_decode(const char *s, size_t len, uint32_t *cp, size_t *off)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0, i = 0;
    while (i < len) {
        uint32_t c = p[i];
        size_t k = 1;
        if (c >= 0xf0 && i + 3 < len) {
            c = ((c & 0x07u) << 18) | ((p[i + 1] & 0x3fu) << 12) | ((p[i + 2] & 0x3fu) << 6) |
                (p[i + 3] & 0x3fu);
            k = 4;
        } else if (c >= 0xe0 && c < 0xf0 && i + 2 < len) {
            c = ((c & 0x0fu) << 12) | ((p[i + 1] & 0x3fu) << 6) | (p[i + 2] & 0x3fu);
            k = 3;
        } else if (c >= 0xc0 && c < 0xe0 && i + 1 < len) {
            c = ((c & 0x1fu) << 6) | (p[i + 1] & 0x3fu);
            k = 2;
        } else if (c >= 0x80) {
            c = 0xfffd;
        }
        off[n] = i;
        cp[n++] = c;
        i += k;
    }
    off[n] = len;
    return n;
}

/* Length in code points of the pre-token starting at i (GPT-2 pattern). */
static size_t match_gpt2(const uint32_t *c, size_t n, size_t i)
{
    static const char *const contr[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (c[i] == '\'') {
        for (int k = 0; k < 7; k++) {
            size_t m = strlen(contr[k]), j = 0;
            while (j < m && i + 1 + j < n && c[i + 1 + j] == (uint32_t)contr[k][j])
                j++;
            if (j == m)
                return 1 + m;
        }
    }
    /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": the space is taken when the
     * class follows it */
    bool (*cls[3])(uint32_t) = {is_letter, is_number, is_other};
    for (int k = 0; k < 3; k++) {
        size_t st = c[i] == ' ' && i + 1 < n && cls[k](c[i + 1]) ? i + 1 : i;
        if (cls[k](c[st])) {
            size_t j = st;
            while (j < n && cls[k](c[j]))
                j++;
            return j - i;
        }
    }
    size_t j = i;
    while (j < n && is_space(c[j]))
        j++;
    if (j == n)
        return j - i; /* \s+(?!\S) at the end */
    if (j - i > 1)
        return j - i - 1; /* \s+(?!\S): leave one space for the next word */
    return 1;             /* \s+ (every code point is in one of the classes) */
}

static bool ascii_ieq(uint32_t c, char want)
{
    return c < 0x80 && ((char)c == want || ((char)c | 0x20) == want);
}

/* Length in code points of the pre-token starting at i (Llama-3 pattern). */
static size_t match_llama3(const uint32_t *c, size_t n, size_t i)
{
    static const char *const contr[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (c[i] == '\'') {
        for (int k = 0; k < 7; k++) {
            size_t m = strlen(contr[k]), j = 0;
            while (j < m && i + 1 + j < n && ascii_ieq(c[i + 1 + j], contr[k][j]))
                j++;
            if (j == m)
                return 1 + m;
        }
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (!is_nl(c[i]) && !is_letter(c[i]) && !is_number(c[i]) && i + 1 < n && is_letter(c[i + 1])) {
        size_t j = i + 1;
        while (j < n && is_letter(c[j]))
            j++;
        return j - i;
    }
    if (is_letter(c[i])) {
        size_t j = i;
        while (j < n && is_letter(c[j]))
            j++;
        return j - i;
    }
    /* \p{N}{1,3} */
    if (is_number(c[i])) {
        size_t j = i;
        while (j < n && j - i < 3 && is_number(c[j]))
            j++;
        return j - i;
    }
    /* " ?[^\s\p{L}\p{N}]+[\r\n]*" */
    size_t s = c[i] == ' ' && i + 1 < n && is_other(c[i + 1]) ? 1 : 0;
    if (is_other(c[i + s])) {
        size_t j = i + s;
        while (j < n && is_other(c[j]))
            j++;
        while (j < n && is_nl(c[j]))
            j++;
        return j - i;
    }
    /* whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+ */
    size_t j = i;
    while (j < n && is_space(c[j]))
        j++;
    for (size_t k = j; k > i; k--)
        if (is_nl(c[k - 1]))
            return k - i; /* ends after the run's last newline */
    if (j == n)
        return j - i;
    if (j - i > 1)
        return j - i - 1;
    return 1;
}

/* ---- hash tables ---- */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int strmap_init(strmap_t *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n + 16)
        m->cap *= 2;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->ids = calloc(m->cap, sizeof *m->ids);
    m->n = 0;
    return m->keys && m->ids ? 0 : -1;
}

static void strmap_free(strmap_t *m)
{
    for (size_t i = 0; m->keys && i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->ids);
    memset(m, 0, sizeof *m);
}

/* -1 when absent. */
static int32_t strmap_get(const strmap_t *m, const char *s, size_t len)
{
    size_t i = hash_bytes(s, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (strlen(m->keys[i]) == len && memcmp(m->keys[i], s, len) == 0)
            return m->ids[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

/* 0 added, 1 already present, -1 out of memory. */
static int strmap_put(strmap_t *m, const char *s, int32_t id)
{
    size_t len = strlen(s);
    size_t i = hash_bytes(s, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (strcmp(m->keys[i], s) == 0)
            return 1;
        i = (i + 1) & (m->cap - 1);
    }
    if (!(m->keys[i] = strdup(s)))
        return -1;
    m->ids[i] = id;
    m->n++;
    return 0;
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static size_t pair_slot(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static int pairmap_init(pairmap_t *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n + 16)
        m->cap *= 2;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->rank = calloc(m->cap, sizeof *m->rank);
    m->merged = calloc(m->cap, sizeof *m->merged);
    return m->keys && m->rank && m->merged ? 0 : -1;
}

static void pairmap_free(pairmap_t *m)
{
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* Keeps the first (lowest) rank of a pair listed twice. */
static void pairmap_put(pairmap_t *m, int32_t a, int32_t b, int32_t rank, int32_t merged)
{
    uint64_t k = pair_key(a, b);
    size_t i = pair_slot(k, m->cap);
    while (m->keys[i] && m->keys[i] != k)
        i = (i + 1) & (m->cap - 1);
    if (m->keys[i])
        return;
    m->keys[i] = k;
    m->rank[i] = rank;
    m->merged[i] = merged;
}

static bool pairmap_get(const pairmap_t *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged)
{
    uint64_t k = pair_key(a, b);
    size_t i = pair_slot(k, m->cap);
    while (m->keys[i]) {
        if (m->keys[i] == k) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return true;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return false;
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to
 * U+0100 and up in byte order. */
static uint32_t byte_char(int b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
            n++;
    return 256u + (uint32_t)n;
}

static size_t utf8_put(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | (c >> 12));
    out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[2] = (char)(0x80 | (c & 0x3f));
    return 3;
}

/* ---- loading ---- */

static int cmp_added(const void *a, const void *b)
{
    const added_t *x = a, *y = b;
    return x->len != y->len ? (x->len > y->len ? -1 : 1) : x->id - y->id;
}

static bool json_str_is(const cJSON *o, const char *key, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

/* The two SentencePiece-style set-ups transformers writes (Llama 2, Mistral):
 * the normalizer form (every piece between added tokens gets "▁" prepended)
 * or Metaspace with prepend_scheme "first" (only a piece at the start of the
 * text, and only when it does not start with "▁" already). */
static int sp_scheme(const cJSON *norm, const cJSON *pre, pre_kind_t *out)
{
    bool no_norm = !norm || cJSON_IsNull(norm), no_pre = !pre || cJSON_IsNull(pre);
    if (!no_norm && no_pre && json_str_is(norm, "type", "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        const cJSON *a = cJSON_GetArrayItem(list, 0), *b = cJSON_GetArrayItem(list, 1);
        if (cJSON_GetArraySize(list) == 2 && json_str_is(a, "type", "Prepend") &&
            json_str_is(a, "prepend", SP_SPACE) && json_str_is(b, "type", "Replace") &&
            json_str_is(cJSON_GetObjectItemCaseSensitive(b, "pattern"), "String", " ") &&
            json_str_is(b, "content", SP_SPACE)) {
            *out = PRE_SP_ALL;
            return 0;
        }
        return -1;
    }
    if (no_norm && !no_pre && json_str_is(pre, "type", "Metaspace") &&
        json_str_is(pre, "replacement", SP_SPACE) && json_str_is(pre, "prepend_scheme", "first") &&
        cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "split"))) {
        *out = PRE_SP_FIRST;
        return 0;
    }
    return -1;
}

static int load_bpe(tokenizer_t *t, const char *model_dir, const char *path, ft_err_t *err)
{
    int rc = -1;
    size_t len = 0;
    ft_err_t e2 = {0};
    char *buf = ft_read_file(path, TOKJSON_MAX_BYTES, &len, &e2);
    cJSON *root = NULL;
    if (!buf) {
        ft_err_set(err, e2.code ? e2.code : FT_ENOTFOUND, "%s", e2.msg);
        return -1;
    }
    root = ft_json_parse(buf, len, &e2);
    free(buf);
    if (!root || !cJSON_IsObject(root)) {
        ft_err_set(err, FT_EBADJSON, "'%s': %s", path, root ? "expected an object" : e2.msg);
        goto out;
    }
#define TOK_FAIL(...)                                                                              \
    do {                                                                                           \
        char m_[400];                                                                              \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        ft_err_set(err, FT_EBADFIELD,                                                              \
                   "'%s': %s (give the data pre-tokenized, with "                                  \
                   "input_ids)",                                                                   \
                   path, m_);                                                                      \
        goto out;                                                                                  \
    } while (0)
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(model) || !cJSON_IsString(mt) || strcmp(mt->valuestring, "BPE") != 0)
        TOK_FAIL("model.type must be \"BPE\"");
    static const char *const must_be_off[] = {"dropout", "continuing_subword_prefix",
                                              "end_of_word_suffix"};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, must_be_off[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
            TOK_FAIL("model.%s is not supported", must_be_off[i]);
    }
    t->sp = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));

    /* normalizer and pre-tokenizer */
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pty = cJSON_GetObjectItemCaseSensitive(pre, "type");
    const cJSON *bl = NULL;
    if (t->sp) {
        if (sp_scheme(norm, pre, &t->pre) < 0)
            TOK_FAIL("SentencePiece-style BPE (byte_fallback) is supported with the normalizer "
                     "Sequence[Prepend(\"\u2581\"), Replace(\" \", \"\u2581\")] and no "
                     "pre_tokenizer, or no normalizer and the pre_tokenizer Metaspace(\"\u2581\", "
                     "prepend_scheme first, split false); this file has another one");
    } else if (norm && !cJSON_IsNull(norm)) {
        TOK_FAIL("normalizer is not supported for byte-level BPE");
    } else if (cJSON_IsString(pty) && strcmp(pty->valuestring, "ByteLevel") == 0) {
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pre, "use_regex");
        if (ur && !cJSON_IsTrue(ur))
            TOK_FAIL("pre_tokenizer ByteLevel without use_regex is not supported");
        t->pre = PRE_GPT2;
        bl = pre;
    } else if (cJSON_IsString(pty) && strcmp(pty->valuestring, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
        const cJSON *sp = cJSON_GetArrayItem(list, 0), *b2 = cJSON_GetArrayItem(list, 1);
        const cJSON *spt = cJSON_GetObjectItemCaseSensitive(sp, "type");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(sp, "pattern"), "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(sp, "behavior");
        const cJSON *inv = cJSON_GetObjectItemCaseSensitive(sp, "invert");
        const cJSON *b2t = cJSON_GetObjectItemCaseSensitive(b2, "type");
        if (cJSON_GetArraySize(list) != 2 || !cJSON_IsString(spt) ||
            strcmp(spt->valuestring, "Split") != 0 || !cJSON_IsString(pat) ||
            !cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0 ||
            cJSON_IsTrue(inv) || !cJSON_IsString(b2t) ||
            strcmp(b2t->valuestring, "ByteLevel") != 0 ||
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b2, "use_regex")))
            TOK_FAIL("pre_tokenizer: only Sequence[Split(Regex, Isolated), ByteLevel(use_regex "
                     "false)] is supported");
        if (strcmp(pat->valuestring, llama3_regex) == 0)
            t->pre = PRE_LLAMA3;
        else if (strcmp(pat->valuestring, gpt2_regex) == 0)
            t->pre = PRE_GPT2;
        else
            TOK_FAIL("pre_tokenizer: the Split regex is neither the GPT-2 nor the Llama-3 one");
        bl = b2;
    } else {
        TOK_FAIL("pre_tokenizer must be ByteLevel or Sequence[Split, ByteLevel]");
    }
    if (bl && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bl, "add_prefix_space")))
        TOK_FAIL("pre_tokenizer ByteLevel add_prefix_space is not supported");

    /* vocabulary */
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab) || cJSON_GetArraySize(vocab) == 0)
        TOK_FAIL("model.vocab must be a non-empty object");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int n_vocab = cJSON_GetArraySize(vocab),
        n_add = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    if (strmap_init(&t->vocab_map, (size_t)n_vocab + (size_t)n_add) < 0)
        goto oom;
    int max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (d < 0 || d != (double)(int32_t)d || d > 1e8)
            TOK_FAIL("model.vocab '%s': expected a token id", ft_sanitize(e->string, 40));
        if (strmap_put(&t->vocab_map, e->string, (int32_t)d) < 0)
            goto oom;
        if ((int)d > max_id)
            max_id = (int)d;
    }
    /* added tokens: matched in the text before pre-tokenization */
    t->added = calloc((size_t)n_add + 1, sizeof *t->added);
    if (!t->added)
        goto oom;
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8 ||
            !cJSON_IsString(ct) || ct->valuestring[0] == '\0')
            TOK_FAIL("added_tokens[%d]: expected {id, content}", t->n_added);
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (int f = 0; f < 3; f++)
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, flags[f])))
                TOK_FAIL("added_tokens[%d]: %s is not supported", t->n_added, flags[f]);
        if (t->pre == PRE_SP_ALL &&
            !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e, "normalized")))
            TOK_FAIL("added_tokens[%d]: tokens matched after the normalizer (normalized true) are "
                     "not supported",
                     t->n_added);
        added_t *a = &t->added[t->n_added++];
        if (!(a->content = strdup(ct->valuestring)))
            goto oom;
        a->len = strlen(a->content);
        a->id = (int32_t)id->valuedouble;
        t->added_first[(unsigned char)a->content[0]] = 1;
        if (a->id > max_id)
            max_id = a->id;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);
    t->vocab = max_id + 1;

    /* every byte must have its token: the single byte-level character, or
     * SentencePiece's <0xXX> */
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t k = t->sp ? (size_t)snprintf(s, sizeof s, "<0x%02X>", b) : utf8_put(byte_char(b), s);
        t->byte_id[b] = strmap_get(&t->vocab_map, s, k);
        if (t->byte_id[b] < 0)
            TOK_FAIL("model.vocab has no token for byte 0x%02x", b);
    }

    /* merges */
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges))
        TOK_FAIL("model.merges must be an array");
    if (pairmap_init(&t->merges, (size_t)cJSON_GetArraySize(merges)) < 0)
        goto oom;
    int rank = 0;
    cJSON_ArrayForEach(e, merges)
    {
        const char *a = NULL, *b = NULL;
        char *tmp = NULL;
        if (cJSON_IsString(e)) {
            tmp = strdup(e->valuestring);
            if (!tmp)
                goto oom;
            char *sp = strchr(tmp, ' ');
            if (sp && sp != tmp && sp[1] && !strchr(sp + 1, ' ')) {
                *sp = '\0';
                a = tmp;
                b = sp + 1;
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
        }
        if (!a || !b) {
            free(tmp);
            TOK_FAIL("model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", rank);
        }
        size_t la = strlen(a), lb = strlen(b);
        char *ab = malloc(la + lb + 1);
        if (!ab) {
            free(tmp);
            goto oom;
        }
        memcpy(ab, a, la);
        memcpy(ab + la, b, lb + 1);
        int32_t ia = strmap_get(&t->vocab_map, a, la), ib = strmap_get(&t->vocab_map, b, lb);
        int32_t iab = strmap_get(&t->vocab_map, ab, la + lb);
        free(ab);
        free(tmp);
        if (ia < 0 || ib < 0 || iab < 0)
            TOK_FAIL("model.merges[%d]: a part or the merged token is not in the vocabulary", rank);
        pairmap_put(&t->merges, ia, ib, rank, iab);
        rank++;
    }

    /* BOS and EOS come from the model's config.json */
    llama_config_t cfg;
    if (llama_config_load(model_dir, &cfg, err) < 0)
        goto out;
    t->bos = cfg.bos_token_id;
    t->eos = cfg.eos_token_id;
    if (t->bos < 0 || t->eos < 0 || t->bos >= t->vocab || t->eos >= t->vocab) {
        ft_err_set(err, FT_EBADFIELD,
                   "'%s/config.json': bos_token_id and eos_token_id must be "
                   "ids of the tokenizer (vocabulary %d)",
                   model_dir, t->vocab);
        goto out;
    }
    rc = 0;
    goto out;
#undef TOK_FAIL
oom:
    ft_err_set(err, FT_EINTERNAL, "out of memory reading '%s'", path);
out:
    cJSON_Delete(root);
    return rc;
}

tokenizer_t *tokenizer_load(const char *model_dir, ft_err_t *err)
{
    tokenizer_t *t = NULL;
    cJSON *root = NULL;
    size_t len = 0;
    ft_err_t e2 = {0};
    char *path = ft_asprintf("%s/tokenizer_config.json", model_dir);
    char *jpath = ft_asprintf("%s/tokenizer.json", model_dir);
    char *buf = path ? ft_read_file(path, TOKCFG_MAX_BYTES, &len, &e2) : NULL;
    struct stat sb;

    if (!path || !jpath) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    if (buf) {
        root = ft_json_parse(buf, len, &e2);
        if (!root || !cJSON_IsObject(root)) {
            ft_err_set(err, FT_EBADJSON, "'%s': %s", path, root ? "expected an object" : e2.msg);
            goto out;
        }
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "tokenizer_class");
        if (cJSON_IsString(cls) && strcmp(cls->valuestring, "FtByteTokenizer") == 0) {
            t = calloc(1, sizeof *t);
            if (!t) {
                ft_err_set(err, FT_EINTERNAL, "out of memory");
                goto out;
            }
            t->kind = TOK_BYTE;
            t->vocab = BYTE_VOCAB;
            t->bos = 1;
            t->eos = 2;
            goto out;
        }
    }
    if (stat(jpath, &sb) != 0) {
        ft_err_set(err, FT_ENOTFOUND,
                   "'%s': no tokenizer.json and no FtByteTokenizer "
                   "tokenizer_config.json (give the data pre-tokenized, with input_ids)",
                   model_dir);
        goto out;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        ft_err_set(err, FT_EINTERNAL, "out of memory");
        goto out;
    }
    t->kind = TOK_BPE;
    if (load_bpe(t, model_dir, jpath, err) < 0)
        tokenizer_destroy(&t);
out:
    cJSON_Delete(root);
    free(buf);
    free(path);
    free(jpath);
    return t;
}

void tokenizer_destroy(tokenizer_t **pt)
{
    tokenizer_t *t = pt ? *pt : NULL;
    if (!t)
        return;
    strmap_free(&t->vocab_map);
    pairmap_free(&t->merges);
    for (int i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t);
    *pt = NULL;
}

/* BPE of one pre-token (bytes [s, s+len)) appended to out; returns the count. */
static int64_t bpe_piece(const tokenizer_t *t, const unsigned char *s, size_t len, int32_t *out,
                         char *scratch)
{
    if (t->ignore_merges || len == 1) {
        size_t k = 0;
        for (size_t i = 0; i < len; i++)
            k += utf8_put(byte_char(s[i]), scratch + k);
        int32_t id = strmap_get(&t->vocab_map, scratch, k);
        if (id >= 0) {
            out[0] = id;
            return 1;
        }
    }
    size_t n = len;
    for (size_t i = 0; i < len; i++)
        out[i] = t->byte_id[s[i]];
    for (;;) {
        int32_t best = INT32_MAX, merged = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t r, m;
            if (pairmap_get(&t->merges, out[i], out[i + 1], &r, &m) && r < best) {
                best = r;
                merged = m;
                at = i;
            }
        }
        if (merged < 0)
            break;
        out[at] = merged;
        memmove(out + at + 1, out + at + 2, (n - at - 2) * sizeof *out);
        n--;
    }
    return (int64_t)n;
}

/* A symbol of a SentencePiece-style word during merging. */
typedef struct {
    int32_t id;     /* current token */
    int prev, next; /* neighbours, -1 at the ends */
} sym_t;

/* A candidate merge: rank, then the left symbol's position, break ties. */
typedef struct {
    int32_t rank;                /* merge rank, lower first */
    int pos;                     /* left symbol index */
    int32_t left, right, merged; /* ids when the candidate was made */
} cand_t;

static bool cand_less(const cand_t *a, const cand_t *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(cand_t *h, int *n, cand_t c)
{
    int i = (*n)++;
    h[i] = c;
    while (i > 0 && cand_less(&h[i], &h[(i - 1) / 2])) {
        cand_t tmp = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static cand_t heap_pop(cand_t *h, int *n)
{
    cand_t top = h[0];
    h[0] = h[--*n];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && cand_less(&h[l], &h[m]))
            m = l;
        if (r < *n && cand_less(&h[r], &h[m]))
            m = r;
        if (m == i)
            break;
        cand_t tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
    return top;
}

static void push_pair(const tokenizer_t *t, const sym_t *sy, int left, cand_t *h, int *nh)
{
    int right = left >= 0 ? sy[left].next : -1;
    int32_t r, m;
    if (left < 0 || right < 0 || !pairmap_get(&t->merges, sy[left].id, sy[right].id, &r, &m))
        return;
    heap_push(h, nh, (cand_t){r, left, sy[left].id, sy[right].id, m});
}

/* SentencePiece-style BPE of one piece between added tokens: the piece is
 * normalized ("▁" for spaces, "▁" prepended per the scheme), split into
 * characters (a character missing from the vocabulary becomes its UTF-8
 * bytes' <0xXX> tokens), then merged lowest rank first, leftmost first, with
 * a heap: O(k log k) for k characters. Returns the count, or -1 when it would
 * not fit in cap or memory runs out. */
/* Where a piece sits: how SentencePiece-style tokenizers prepend "▁". */
typedef enum {
    PIECE_CONT = 0,  /* first piece of a text that continues an earlier one */
    PIECE_START = 1, /* first piece of a text */
    PIECE_AFTER = 2, /* a piece after an added token */
} piece_t;

static int64_t sp_segment(const tokenizer_t *t, const char *s, size_t len, piece_t where,
                          int32_t *out, int64_t cap)
{
    if (len == 0)
        return 0;
    int64_t rc = -1;
    bool prepend = t->pre == PRE_SP_ALL ? where != PIECE_CONT
                                        : where == PIECE_START && s[0] != ' ' &&
                                              !(len >= 3 && memcmp(s, SP_SPACE, 3) == 0);
    size_t nl = 0;
    /* the normalized text has at most len + 1 characters ("▁" for a space is
     * one character) in at most 3 * len + 3 bytes */
    char *norm = malloc(3 * len + 4);
    uint32_t *cp = malloc((len + 2) * sizeof *cp);
    size_t *off = malloc((len + 2) * sizeof *off);
    int32_t *cid = malloc((len + 2) * sizeof *cid);
    sym_t *sy = NULL;
    cand_t *h = NULL;
    if (!norm || !cp || !off || !cid)
        goto out;
    if (prepend) {
        memcpy(norm, SP_SPACE, 3);
        nl = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(norm + nl, SP_SPACE, 3);
            nl += 3;
        } else {
            norm[nl++] = s[i];
        }
    }
    int32_t whole;
    if (t->ignore_merges && (whole = strmap_get(&t->vocab_map, norm, nl)) >= 0) {
        if (cap < 1)
            goto out;
        out[0] = whole;
        rc = 1;
        goto out;
    }
    size_t nc = utf8_decode(norm, nl, cp, off), nsym = 0;
    for (size_t i = 0; i < nc; i++) {
        cid[i] = strmap_get(&t->vocab_map, norm + off[i], off[i + 1] - off[i]);
        nsym += cid[i] >= 0 ? 1 : off[i + 1] - off[i];
    }
    /* every merge removes a symbol and adds at most two candidates; stale ones
     * are skipped, so the heap never holds more than 3n entries */
    sy = malloc((nsym + 1) * sizeof *sy);
    h = malloc((3 * nsym + 4) * sizeof *h);
    if (!sy || !h)
        goto out;
    int n = 0;
    for (size_t i = 0; i < nc; i++) {
        if (cid[i] >= 0) {
            sy[n++].id = cid[i];
            continue;
        }
        for (size_t b = off[i]; b < off[i + 1]; b++) /* byte fallback */
            sy[n++].id = t->byte_id[(unsigned char)norm[b]];
    }
    for (int i = 0; i < n; i++) {
        sy[i].prev = i - 1;
        sy[i].next = i + 1 < n ? i + 1 : -1;
    }
    int nh = 0;
    for (int i = 0; i + 1 < n; i++)
        push_pair(t, sy, i, h, &nh);
    while (nh > 0) {
        cand_t c = heap_pop(h, &nh);
        int l = c.pos, r = sy[l].next;
        if (sy[l].id != c.left || r < 0 || sy[r].id != c.right || sy[l].prev == -2)
            continue; /* stale */
        sy[l].id = c.merged;
        sy[l].next = sy[r].next;
        if (sy[r].next >= 0)
            sy[sy[r].next].prev = l;
        sy[r].prev = -2; /* removed */
        sy[r].id = -1;
        push_pair(t, sy, sy[l].prev, h, &nh);
        push_pair(t, sy, l, h, &nh);
    }
    int64_t k = 0;
    for (int i = 0; i >= 0 && n > 0; i = sy[i].next) {
        if (k >= cap)
            goto out;
        out[k++] = sy[i].id;
    }
    rc = k;
out:
    free(norm);
    free(cp);
    free(off);
    free(cid);
    free(sy);
    free(h);
    return rc;
}

/* Pre-tokenizes and encodes text without added tokens. */
static int64_t bpe_segment(const tokenizer_t *t, const char *s, size_t len, int32_t *out)
{
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    size_t *off = malloc((len + 1) * sizeof *off);
    char *scratch = malloc(3 * len + 1);
    int64_t k = 0;
    if (!cp || !off || !scratch) {
        k = -1;
        goto out;
    }
    size_t n = utf8_decode(s, len, cp, off), i = 0;
    while (i < n) {
        size_t m = t->pre == PRE_LLAMA3 ? match_llama3(cp, n, i) : match_gpt2(cp, n, i);
        k += bpe_piece(t, (const unsigned char *)s + off[i], off[i + m] - off[i], out + k, scratch);
        i += m;
    }
out:
    free(cp);
    free(off);
    free(scratch);
    return k;
}

/* Encodes the piece [s, s+len) between added tokens into out (capacity cap). */
static int64_t encode_piece(const tokenizer_t *t, const char *s, size_t len, piece_t where,
                            int32_t *out, int64_t cap)
{
    if (t->sp)
        return sp_segment(t, s, len, where, out, cap);
    if ((int64_t)len > cap) /* byte-level never gives more ids than bytes */
        return -1;
    return bpe_segment(t, s, len, out);
}

/* Encodes text[a, b), a piece between added tokens, after the n ids already in
 * out (capacity cap); the new count of ids, or -1. cont: text continues a
 * previous call (only matters for a piece at the start). */
static int64_t encode_span(const tokenizer_t *t, const char *text, size_t a, size_t b, bool cont,
                           int32_t *out, int64_t n, int64_t cap)
{
    int64_t k = encode_piece(t, text + a, b - a,
                             a      ? PIECE_AFTER
                             : cont ? PIECE_CONT
                                    : PIECE_START,
                             out + n, cap - n);

    return k < 0 ? -1 : n + k;
}

static int64_t encode_text(const tokenizer_t *t, const char *text, size_t len, int32_t *out,
                           int64_t cap, bool cont)
{
    if (t->kind == TOK_BYTE) {
        if ((int64_t)len > cap)
            return -1;
        const unsigned char *p = (const unsigned char *)text;
        for (size_t i = 0; i < len; i++)
            out[i] = (int32_t)p[i] + BYTE_OFFSET;
        return (int64_t)len;
    }
    int64_t n = 0;
    size_t seg = 0, i = 0;
    while (i < len) {
        const added_t *hit = NULL;
        if (t->added_first[(unsigned char)text[i]]) {
            for (int a = 0; a < t->n_added; a++) {
                const added_t *ad = &t->added[a];
                if (ad->len <= len - i && memcmp(text + i, ad->content, ad->len) == 0) {
                    hit = ad; /* longest first */
                    break;
                }
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        if (i > seg && (n = encode_span(t, text, seg, i, cont, out, n, cap)) < 0)
            return -1;
        if (n >= cap)
            return -1;
        out[n++] = hit->id;
        i += hit->len;
        seg = i;
    }
    if (len > seg && (n = encode_span(t, text, seg, len, cont, out, n, cap)) < 0)
        return -1;
    return n;
}

int64_t tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, int32_t *out,
                         int64_t cap)
{
    return encode_text(t, text, len, out, cap, false);
}

int64_t tokenizer_encode_cont(const tokenizer_t *t, const char *text, size_t len, int32_t *out,
                              int64_t cap)
{
    return encode_text(t, text, len, out, cap, true);
}

int tokenizer_bos(const tokenizer_t *t)
{
    return t->bos;
}

int tokenizer_eos(const tokenizer_t *t)
{
    return t->eos;
}

int tokenizer_vocab_size(const tokenizer_t *t)
{
    return t->vocab;
}
