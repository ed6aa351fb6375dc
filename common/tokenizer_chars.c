/* tokenizer_chars.c - the BERT normalizer's per-character rules on top of
 * utf8proc's Unicode tables. Where HuggingFace tokenizers (whose Rust crates
 * carry their own, older Unicode tables) and utf8proc disagree, the
 * exceptions below make us agree with tokenizers: test_tokenizer compares
 * every code point with tests/fixtures/tokenizer_chars.txt, which
 * tests/ref/make_tokenizer_fixture.py writes from tokenizers itself. */
#include "tokenizer_chars.h"

#include <utf8proc.h>

typedef struct {
  int32_t lo, hi;
} bm_range;

/* The tables below were found by comparing every code point (see
 * tests/ref/make_tokenizer_fixture.py --chars): tokenizers 0.23 carries
 * Unicode category tables older than utf8proc 2.8's Unicode 15, and Rust's
 * lowercasing newer ones. They state what tokenizers answers, so a newer
 * utf8proc that already agrees does no harm; one that knows characters added
 * after Unicode 15 may need more entries, which the test will name. */
/* Mn in utf8proc, not (yet) in the tables of tokenizers: kept. */
static const bm_range hf_not_mn[] = {
    {0x7fd, 0x7fd}, {0x898, 0x89f}, {0x8ca, 0x8e1}, {0x9fe, 0x9fe}, {0xafa, 0xaff},
    {0xb55, 0xb55}, {0xc04, 0xc04}, {0xc3c, 0xc3c}, {0xd00, 0xd00}, {0xd3b, 0xd3c},
    {0xd81, 0xd81}, {0xeba, 0xeba}, {0xece, 0xece}, {0x180f, 0x180f}, {0x1885, 0x1886},
    {0x1abf, 0x1ace}, {0x1df6, 0x1dfb}, {0xa82c, 0xa82c}, {0xa8c5, 0xa8c5},
    {0xa8ff, 0xa8ff}, {0xa9bd, 0xa9bd}, {0x10d24, 0x10d27}, {0x10eab, 0x10eac},
    {0x10efd, 0x10eff}, {0x10f46, 0x10f50}, {0x10f82, 0x10f85}, {0x11070, 0x11070},
    {0x11073, 0x11074}, {0x110c2, 0x110c2}, {0x111c9, 0x111c9}, {0x111cf, 0x111cf},
    {0x1123e, 0x1123e}, {0x11241, 0x11241}, {0x1133b, 0x1133b}, {0x11438, 0x1143f},
    {0x11442, 0x11444}, {0x11446, 0x11446}, {0x1145e, 0x1145e}, {0x1182f, 0x11837},
    {0x11839, 0x1183a}, {0x1193b, 0x1193c}, {0x1193e, 0x1193e}, {0x11943, 0x11943},
    {0x119d4, 0x119d7}, {0x119da, 0x119db}, {0x119e0, 0x119e0}, {0x11a01, 0x11a0a},
    {0x11a33, 0x11a38}, {0x11a3b, 0x11a3e}, {0x11a47, 0x11a47}, {0x11a51, 0x11a56},
    {0x11a59, 0x11a5b}, {0x11a8a, 0x11a96}, {0x11a98, 0x11a99}, {0x11c30, 0x11c36},
    {0x11c38, 0x11c3d}, {0x11c3f, 0x11c3f}, {0x11c92, 0x11ca7}, {0x11caa, 0x11cb0},
    {0x11cb2, 0x11cb3}, {0x11cb5, 0x11cb6}, {0x11d31, 0x11d36}, {0x11d3a, 0x11d3a},
    {0x11d3c, 0x11d3d}, {0x11d3f, 0x11d45}, {0x11d47, 0x11d47}, {0x11d90, 0x11d91},
    {0x11d95, 0x11d95}, {0x11d97, 0x11d97}, {0x11ef3, 0x11ef4}, {0x11f00, 0x11f01},
    {0x11f36, 0x11f3a}, {0x11f40, 0x11f40}, {0x11f42, 0x11f42}, {0x13440, 0x13440},
    {0x13447, 0x13455}, {0x16f4f, 0x16f4f}, {0x16fe4, 0x16fe4}, {0x1cf00, 0x1cf2d},
    {0x1cf30, 0x1cf46}, {0x1e000, 0x1e006}, {0x1e008, 0x1e018}, {0x1e01b, 0x1e021},
    {0x1e023, 0x1e024}, {0x1e026, 0x1e02a}, {0x1e08f, 0x1e08f}, {0x1e130, 0x1e136},
    {0x1e2ae, 0x1e2ae}, {0x1e2ec, 0x1e2ef}, {0x1e4ec, 0x1e4ef}, {0x1e944, 0x1e94a},
};
/* Mn in the tables of tokenizers only: dropped. */
static const bm_range hf_mn[] = {
    {0x1734, 0x1734},
};
/* P* in utf8proc only: not split off. */
static const bm_range hf_not_punct[] = {
    {0x61d, 0x61d}, {0x9fd, 0x9fd}, {0xa76, 0xa76}, {0xc77, 0xc77}, {0xc84, 0xc84},
    {0x1b7d, 0x1b7e}, {0x2e43, 0x2e4f}, {0x2e52, 0x2e5d}, {0x10ead, 0x10ead},
    {0x10f55, 0x10f59}, {0x10f86, 0x10f89}, {0x1144b, 0x1144f}, {0x1145a, 0x1145b},
    {0x1145d, 0x1145d}, {0x11660, 0x1166c}, {0x116b9, 0x116b9}, {0x1183b, 0x1183b},
    {0x11944, 0x11946}, {0x119e2, 0x119e2}, {0x11a3f, 0x11a46}, {0x11a9a, 0x11a9c},
    {0x11a9e, 0x11aa2}, {0x11b00, 0x11b09}, {0x11c41, 0x11c45}, {0x11c70, 0x11c71},
    {0x11ef7, 0x11ef8}, {0x11f43, 0x11f4f}, {0x11fff, 0x11fff}, {0x12ff1, 0x12ff2},
    {0x16e97, 0x16e9a}, {0x16fe2, 0x16fe2}, {0x1e95e, 0x1e95f},
};
/* P* in the tables of tokenizers only: split off. */
static const bm_range hf_punct[] = {
    {0x166d, 0x166d}, {0x111c9, 0x111c9},
};
/* C* in utf8proc only: kept. */
static const bm_range hf_not_drop[] = {
    {0x890, 0x891}, {0x8e2, 0x8e2}, {0x110cd, 0x110cd}, {0x13430, 0x1343f},
};
/* Lowercase mappings newer than utf8proc (Rust follows the latest Unicode). */
static const int32_t hf_lower[][2] = {
    {0x1c89, 0x1c8a}, {0xa7cb, 0x264}, {0xa7cc, 0xa7cd}, {0xa7ce, 0xa7cf}, {0xa7d2, 0xa7d3},
    {0xa7d4, 0xa7d5}, {0xa7da, 0xa7db}, {0xa7dc, 0x19b}, {0x10d50, 0x10d70},
    {0x10d51, 0x10d71}, {0x10d52, 0x10d72}, {0x10d53, 0x10d73}, {0x10d54, 0x10d74},
    {0x10d55, 0x10d75}, {0x10d56, 0x10d76}, {0x10d57, 0x10d77}, {0x10d58, 0x10d78},
    {0x10d59, 0x10d79}, {0x10d5a, 0x10d7a}, {0x10d5b, 0x10d7b}, {0x10d5c, 0x10d7c},
    {0x10d5d, 0x10d7d}, {0x10d5e, 0x10d7e}, {0x10d5f, 0x10d7f}, {0x10d60, 0x10d80},
    {0x10d61, 0x10d81}, {0x10d62, 0x10d82}, {0x10d63, 0x10d83}, {0x10d64, 0x10d84},
    {0x10d65, 0x10d85}, {0x16ea0, 0x16ebb}, {0x16ea1, 0x16ebc}, {0x16ea2, 0x16ebd},
    {0x16ea3, 0x16ebe}, {0x16ea4, 0x16ebf}, {0x16ea5, 0x16ec0}, {0x16ea6, 0x16ec1},
    {0x16ea7, 0x16ec2}, {0x16ea8, 0x16ec3}, {0x16ea9, 0x16ec4}, {0x16eaa, 0x16ec5},
    {0x16eab, 0x16ec6}, {0x16eac, 0x16ec7}, {0x16ead, 0x16ec8}, {0x16eae, 0x16ec9},
    {0x16eaf, 0x16eca}, {0x16eb0, 0x16ecb}, {0x16eb1, 0x16ecc}, {0x16eb2, 0x16ecd},
    {0x16eb3, 0x16ece}, {0x16eb4, 0x16ecf}, {0x16eb5, 0x16ed0}, {0x16eb6, 0x16ed1},
    {0x16eb7, 0x16ed2}, {0x16eb8, 0x16ed3},
};
/* Decompositions tokenizers does not know: kept whole. */
static const int32_t hf_no_nfd[] = {0x11938};

static int in_ranges(const bm_range *r, int n, int32_t cp) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (cp < r[mid].lo) hi = mid - 1;
    else if (cp > r[mid].hi) lo = mid + 1;
    else return 1;
  }
  return 0;
}
static int in_list(const int32_t *v, int n, int32_t cp) {
  for (int i = 0; i < n; i++)
    if (v[i] == cp) return 1;
  return 0;
}
#define IN_LIST(table, cp) in_list(table, (int)(sizeof table / sizeof table[0]), cp)
#define IN(table, cp) in_ranges(table, (int)(sizeof table / sizeof table[0]), cp)

int bm_ch_py_space(int32_t cp) {
  return (cp >= 0x1c && cp <= 0x1f) || cp == 0x0b || cp == 0x0c || bm_ch_space(cp);
}

int bm_ch_space(int32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0d);
  return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* The ranges BERT calls CJK (the CJK Unified Ideographs blocks and the
 * compatibility ideographs; not kana, not hangul). tokenizers skips
 * U+2B820..U+2B91F (Extension E starts at U+2B820), and so do we. */
static int is_cjk(int32_t cp) {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
         (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
         (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
         (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

int bm_ch_clean(int32_t cp) {
  if (cp == 0 || cp == 0xfffd) return BM_CH_DROP;
  if (cp == '\t' || cp == '\n' || cp == '\r') return BM_CH_SPACE;
  switch (IN(hf_not_drop, cp) ? UTF8PROC_CATEGORY_LO : utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_CC:
  case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_CO:
  case UTF8PROC_CATEGORY_CS: return BM_CH_DROP;
  default: break;
  }
  if (bm_ch_space(cp)) return BM_CH_SPACE;
  if (is_cjk(cp)) return BM_CH_CJK;
  return BM_CH_KEEP;
}

int bm_ch_mn(int32_t cp) {
  if (cp < 0x300) return 0;
  if (utf8proc_category(cp) == UTF8PROC_CATEGORY_MN) return !IN(hf_not_mn, cp);
  return IN(hf_mn, cp);
}

int bm_ch_punct(int32_t cp) {
  if (cp < 0x80)
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126);
  if (IN(hf_punct, cp)) return 1;
  if (IN(hf_not_punct, cp)) return 0;
  switch (utf8proc_category(cp)) {
  case UTF8PROC_CATEGORY_PC:
  case UTF8PROC_CATEGORY_PD:
  case UTF8PROC_CATEGORY_PS:
  case UTF8PROC_CATEGORY_PE:
  case UTF8PROC_CATEGORY_PI:
  case UTF8PROC_CATEGORY_PF:
  case UTF8PROC_CATEGORY_PO: return 1;
  default: return 0;
  }
}

int bm_ch_lower(int32_t cp, int32_t out[3]) {
  if (cp < 0x80) {
    out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    return 1;
  }
  /* The one unconditional multi-character lowercase in SpecialCasing. */
  if (cp == 0x130) {
    out[0] = 'i';
    out[1] = 0x307;
    return 2;
  }
  int lo = 0, hi = (int)(sizeof hf_lower / sizeof hf_lower[0]) - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (cp < hf_lower[mid][0]) hi = mid - 1;
    else if (cp > hf_lower[mid][0]) lo = mid + 1;
    else {
      out[0] = hf_lower[mid][1];
      return 1;
    }
  }
  out[0] = utf8proc_tolower(cp);
  return 1;
}

int bm_ch_nfd(int32_t cp, int32_t out[BM_CH_MAX_NFD]) {
  int last = 0;
  if (cp < 0xc0 || IN_LIST(hf_no_nfd, cp)) {
    out[0] = cp;
    return 1;
  }
  utf8proc_ssize_t n = utf8proc_decompose_char(cp, out, BM_CH_MAX_NFD, UTF8PROC_DECOMPOSE, &last);
  if (n < 1 || n > BM_CH_MAX_NFD) { /* cannot happen with Unicode's tables */
    out[0] = cp;
    return 1;
  }
  return (int)n;
}

int bm_ch_ccc(int32_t cp) { return cp < 0x300 ? 0 : utf8proc_get_property(cp)->combining_class; }

int bm_ch_normalize(int32_t cp, int32_t *out, int cap) {
  int cls = bm_ch_clean(cp);
  if (cls == BM_CH_DROP) return 0;
  if (cls == BM_CH_SPACE) {
    if (cap < 1) return 0;
    out[0] = ' ';
    return 1;
  }
  int n = 0;
  if (cls == BM_CH_CJK && n < cap) out[n++] = ' ';
  int32_t dec[BM_CH_MAX_NFD];
  int nd = bm_ch_nfd(cp, dec);
  for (int i = 0; i < nd; i++) {
    if (bm_ch_mn(dec[i])) continue;
    int32_t lo[3];
    int nl = bm_ch_lower(dec[i], lo);
    for (int j = 0; j < nl && n < cap; j++) out[n++] = lo[j];
  }
  if (cls == BM_CH_CJK && n < cap) out[n++] = ' ';
  return n;
}
