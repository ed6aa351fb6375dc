/* tokenizer_json.c - the vocab.txt inside a HuggingFace tokenizer.json, for
 * model folders that carry only that file. Accepts exactly the pipeline that
 * bm_tokenize implements (BertNormalizer uncased, BertPreTokenizer,
 * WordPiece "##" with 100 characters a word, [CLS] $A [SEP]) and refuses
 * everything else by name, rather than tokenizing differently in silence. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static const char *str_of(json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

static int is_true(json_t *o, const char *key) { return json_is_true(json_object_get(o, key)); }

/* The template must be [CLS] $A [SEP] (BertProcessing is that by definition). */
static int check_post(json_t *post, char *err, size_t errlen) {
  if (!post || json_is_null(post)) {
    snprintf(err, errlen, "no post_processor: [CLS] ... [SEP] is not added");
    return -1;
  }
  const char *type = str_of(post, "type");
  if (type && !strcmp(type, "BertProcessing")) {
    json_t *cls = json_object_get(post, "cls"), *sep = json_object_get(post, "sep");
    if (json_is_array(cls) && json_is_array(sep) &&
        !strcmp(json_string_value(json_array_get(cls, 0)) ?: "", "[CLS]") &&
        !strcmp(json_string_value(json_array_get(sep, 0)) ?: "", "[SEP]"))
      return 0;
  } else if (type && !strcmp(type, "TemplateProcessing")) {
    json_t *single = json_object_get(post, "single");
    static const char *want[] = {"[CLS]", "A", "[SEP]"};
    int ok = json_array_size(single) == 3;
    for (size_t i = 0; ok && i < 3; i++) {
      json_t *piece = json_array_get(single, i);
      json_t *sp = json_object_get(piece, i == 1 ? "Sequence" : "SpecialToken");
      ok = sp && !strcmp(str_of(sp, "id") ?: "", want[i]);
    }
    if (ok) return 0;
  }
  snprintf(err, errlen, "post_processor %s is not [CLS] $A [SEP]", type ? type : "(no type)");
  return -1;
}

int bm_vocab_from_tokenizer_json(const char *text, size_t len, char **vocab, size_t *vlen,
                                 char *err, size_t errlen) {
  *vocab = NULL;
  *vlen = 0;
  json_error_t je;
  json_t *root = json_loadb(text, len, 0, &je);
  if (!root) {
    snprintf(err, errlen, "not JSON: line %d: %s", je.line, je.text);
    return -1;
  }
  int rc = -1;
  char **tok = NULL;
  size_t n = 0;
  json_t *model = json_object_get(root, "model"), *norm = json_object_get(root, "normalizer");
  json_t *pre = json_object_get(root, "pre_tokenizer");
  json_t *vmap = json_object_get(model, "vocab");
  const char *mtype = str_of(model, "type"), *ntype = str_of(norm, "type");
  const char *ptype = str_of(pre, "type");
  json_t *strip = json_object_get(norm, "strip_accents");
  json_t *maxc = json_object_get(model, "max_input_chars_per_word");
  if (!mtype || strcmp(mtype, "WordPiece") || !json_is_object(vmap)) {
    snprintf(err, errlen, "model is %s, not WordPiece with a vocab", mtype ? mtype : "missing");
  } else if (strcmp(str_of(model, "continuing_subword_prefix") ?: "", "##") ||
             strcmp(str_of(model, "unk_token") ?: "", "[UNK]")) {
    snprintf(err, errlen, "WordPiece with prefix \"%s\" and unk \"%s\"; only \"##\" and [UNK] "
             "are supported", str_of(model, "continuing_subword_prefix") ?: "(none)",
             str_of(model, "unk_token") ?: "(none)");
  } else if (maxc && json_integer_value(maxc) != 100) {
    snprintf(err, errlen, "max_input_chars_per_word %lld; only 100 is supported",
             (long long)json_integer_value(maxc));
  } else if (!ntype || strcmp(ntype, "BertNormalizer") || !is_true(norm, "lowercase") ||
             !is_true(norm, "clean_text") || !is_true(norm, "handle_chinese_chars") ||
             !(json_is_null(strip) || json_is_true(strip) || !strip)) {
    snprintf(err, errlen, "normalizer %s: only BertNormalizer with clean_text, "
             "handle_chinese_chars, lowercase and accent stripping (uncased BERT) is supported",
             ntype ? ntype : "missing");
  } else if (!ptype || strcmp(ptype, "BertPreTokenizer")) {
    snprintf(err, errlen, "pre_tokenizer %s: only BertPreTokenizer is supported",
             ptype ? ptype : "missing");
  } else if (!check_post(json_object_get(root, "post_processor"), err, errlen)) {
    const char *key;
    json_t *val;
    json_int_t maxid = -1;
    int bad = 0;
    json_object_foreach(vmap, key, val) {
      json_int_t id = json_integer_value(val);
      if (!json_is_integer(val) || id < 0 || id >= (1 << 24)) {
        snprintf(err, errlen, "vocab: token \"%.40s\" has no valid id", key);
        bad = 1;
        break;
      }
      if (id > maxid) maxid = id;
    }
    n = (size_t)(maxid + 1);
    /* Holes come from duplicate lines of a vocab.txt: a few. Many would only
     * make a large, mostly empty table (a hostile file's way to eat memory). */
    if (!bad && n > 2 * json_object_size(vmap) + 16) {
      snprintf(err, errlen, "vocab: ids up to %lld for %zu tokens: too sparse", (long long)maxid,
               json_object_size(vmap));
      bad = 1;
    }
    tok = bad ? NULL : calloc(n ? n : 1, sizeof *tok);
    if (!bad && !tok) snprintf(err, errlen, "out of memory"), bad = 1;
    size_t total = 0;
    json_object_foreach(vmap, key, val) {
      if (bad) break;
      size_t id = (size_t)json_integer_value(val), kl = strlen(key);
      /* vocab.txt cannot say these: a line break, or blanks tokenizers trims */
      if (strchr(key, '\n') || (kl && strchr(" \t\r\v\f", key[kl - 1]))) {
        snprintf(err, errlen, "vocab: token %zu ends in a blank or holds a line break", id);
        bad = 1;
      } else if (tok[id]) {
        snprintf(err, errlen, "vocab: id %zu given to \"%.40s\" and \"%.40s\"", id, tok[id], key);
        bad = 1;
      }
      tok[id] = (char *)key;
      total += kl + 1;
    }
    size_t i;
    json_t *added;
    json_array_foreach(json_object_get(root, "added_tokens"), i, added) {
      if (bad) break;
      const char *c = str_of(added, "content") ?: "";
      json_int_t id = json_integer_value(json_object_get(added, "id"));
      int known = !strcmp(c, "[PAD]") || !strcmp(c, "[UNK]") || !strcmp(c, "[CLS]") ||
                  !strcmp(c, "[SEP]") || !strcmp(c, "[MASK]");
      if (!known || id < 0 || (size_t)id >= n || !tok[id] || strcmp(tok[id], c) ||
          json_is_true(json_object_get(added, "normalized")) || is_true(added, "lstrip") ||
          is_true(added, "rstrip") || is_true(added, "single_word")) {
        snprintf(err, errlen, "added token \"%.40s\" (id %lld) is not one of BERT's special "
                 "tokens as its vocab has them", c, (long long)id);
        bad = 1;
      }
    }
    if (!bad) {
      char *v = malloc(total + n + 1), *p = v;
      if (!v) {
        snprintf(err, errlen, "out of memory");
      } else {
        for (size_t k = 0; k < n; k++) { /* an id no token has: an empty line */
          size_t kl = tok[k] ? strlen(tok[k]) : 0;
          memcpy(p, tok[k] ? tok[k] : "", kl);
          p += kl;
          *p++ = '\n';
        }
        *vocab = v;
        *vlen = (size_t)(p - v);
        rc = 0;
      }
    }
  }
  free(tok);
  json_decref(root);
  return rc;
}
