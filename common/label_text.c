/* label_text.c - whole-word class names in texts. */
#include "label_text.h"

#include <string.h>

static int word_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

/* Does the word sequence of name start at text[at] (a word start) and end
 * at a word end? Separators between words may differ in kind and count. */
static int match_at(const unsigned char *t, size_t len, size_t at, const unsigned char *name) {
  size_t i = at;
  const unsigned char *p = name;
  while (*p && !word_char(*p)) p++;
  if (!*p) return 0;
  for (;;) {
    while (*p && word_char(*p)) { /* one word of the name */
      if (i >= len || lower(t[i]) != lower(*p)) return 0;
      i++, p++;
    }
    if (i < len && word_char(t[i])) return 0; /* the text's word goes on */
    while (*p && !word_char(*p)) p++;
    if (!*p) return 1;
    if (i >= len || word_char(t[i])) return 0; /* the name has another word: the text needs a separator */
    while (i < len && !word_char(t[i])) i++;
  }
}

int bm_text_names_class(const char *text, size_t len, const char *const *classes, int C) {
  const unsigned char *t = (const unsigned char *)text;
  for (size_t i = 0; i < len; i++) {
    if (!word_char(t[i]) || (i > 0 && word_char(t[i - 1]))) continue;
    for (int k = 0; k < C; k++)
      if (match_at(t, len, i, (const unsigned char *)classes[k])) return k;
  }
  return -1;
}

void bm_text_snippet(const char *text, size_t len, char *out, size_t n) {
  if (n == 0) return;
  size_t room = n - 1, k = len <= room ? len : room >= 3 ? room - 3 : 0;
  while (k < len && k > 0 && ((unsigned char)text[k] & 0xC0) == 0x80) k--; /* not inside a sequence */
  for (size_t i = 0; i < k; i++) out[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? ' ' : text[i];
  if (k < len && room >= 3) memcpy(out + k, "...", 3), k += 3;
  out[k] = 0;
}
