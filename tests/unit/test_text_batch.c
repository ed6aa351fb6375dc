/* test_text_batch.c - the text tower's packed input (key, prompt, both,
 * truncation, reading texts from a record file) and the leakage check's
 * whole-word class match. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "label_text.h"
#include "record.h"
#include "text_batch.h"
#include "train_opts.h"
#include "util.h"

static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\nlesion\nback\nage\nmale\n##s\n";
enum { CLS = 2, SEP = 3 };
static const char *words[] = {"hello", "world", "lesion", "back", "age", "male", "lesions"};

/* a random text of nw vocab words, and its ids as [CLS] ... [SEP] */
static void random_text(bm_rng *r, int nw, char *text, int32_t *ids, int *nids) {
  static const int32_t wid[][2] = {{5, -1}, {6, -1}, {7, -1}, {8, -1}, {9, -1}, {10, -1}, {7, 11}};
  text[0] = 0;
  ids[0] = CLS;
  int n = 1;
  for (int i = 0; i < nw; i++) {
    int w = (int)(bm_rng_next(r) % 7);
    strcat(text, i ? (bm_rng_next(r) % 2 ? " " : "  ") : "");
    strcat(text, words[w]);
    ids[n++] = wid[w][0];
    if (wid[w][1] >= 0) ids[n++] = wid[w][1];
  }
  ids[n++] = SEP;
  *nids = n;
}

static void test_add(bm_rng *r, const bm_tokenizer *tok) {
  bm_text_batch b;
  bm_text_batch_init(&b);
  for (int round = 0; round < 60; round++) {
    bm_text_batch_clear(&b);
    int B = 1 + (int)(bm_rng_next(r) % 6), n_ctx = 1 + (int)(bm_rng_next(r) % 5);
    int context = n_ctx + 2 + (int)(bm_rng_next(r) % 12);
    int src = (int)(bm_rng_next(r) % 3);
    int32_t want[8][64];
    int wlen[8];
    for (int j = 0; j < B; j++) {
      char text[512];
      int32_t ids[64];
      int n;
      random_text(r, (int)(bm_rng_next(r) % 9), text, ids, &n);
      if (b.ids) /* poison what add must write */
        for (int q = b.n_ids; q < b.cap_ids; q++) b.ids[q] = 0x5a5a5a5a;
      int prompt = src == BM_TEXT_KEY ? 0 : n_ctx;
      int keep = src == BM_TEXT_PROMPT ? 0 : n - 2; /* the text's pieces that fit */
      if (keep > context - prompt - 2) keep = context - prompt - 2;
      int L = 0;
      want[j][L++] = CLS;
      for (int k = 0; k < prompt; k++) want[j][L++] = -1 - k;
      for (int k = 0; k < keep; k++) want[j][L++] = ids[1 + k];
      want[j][L++] = SEP;
      wlen[j] = L;
      int got = bm_text_batch_add(&b, tok, src, n_ctx, context, text, strlen(text));
      CHECK(got == L, "round %d text %d (%s, n_ctx %d, context %d): %d ids, want %d", round, j,
            bm_text_names[src], n_ctx, context, got, L);
      CHECK(got <= context, "round %d: %d ids over the context %d", round, got, context);
    }
    CHECK(b.n == B, "round %d: %d texts, want %d", round, b.n, B);
    int at = 0;
    for (int j = 0; j < B && j < b.n; j++) {
      CHECK(b.start[j] == at && b.len[j] == wlen[j], "round %d text %d: start %d len %d, want %d %d", round, j,
            b.start[j], b.len[j], at, wlen[j]);
      if (b.len[j] != wlen[j]) continue;
      int same = !memcmp(b.ids + b.start[j], want[j], sizeof(int32_t) * (size_t)wlen[j]);
      CHECK(same, "round %d text %d (%s): packed ids differ", round, j, bm_text_names[src]);
      at += wlen[j];
    }
    CHECK(b.n_ids == at, "round %d: %d ids packed, want %d", round, b.n_ids, at);
  }
  CHECK(bm_text_batch_add(&b, tok, BM_TEXT_PROMPT, 8, 9, "", 0) == -1, "a context of 9 cannot hold 8 prompts + 2");
  CHECK(bm_text_batch_add(&b, tok, BM_TEXT_KEY, 8, 2, "hello", 5) == 2, "key needs only [CLS] [SEP]");
  bm_text_batch_free(&b);
}

/* texts read back from a record file by record number, in batch order */
static void test_read(bm_rng *r, const bm_tokenizer *tok) {
  char path[] = "/tmp/bm-test-text-batch-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) bm_die("mkstemp");
  close(fd);
  enum { N = 30 };
  char texts[N][512];
  int32_t ids[N][64];
  int nids[N];
  bm_writer *w = bm_writer_open(path);
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "task", "pairs");
  bm_write_header(w, NULL, &o);
  for (int i = 0; i < N; i++) {
    bm_out_reset(&o);
    random_text(r, 1 + (int)(bm_rng_next(r) % 6), texts[i], ids[i], &nids[i]);
    bm_out_str(&o, "text", texts[i]);
    bm_write_record(w, NULL, &o);
  }
  bm_writer_close(w);
  bm_out_free(&o);
  bm_trainset ds = {.f = bm_recfile_open(path)};
  ds.name = bm_recfile_name(ds.f);
  bm_recslot slot;
  bm_recslot_init(&slot);
  bm_text_batch b;
  bm_text_batch_init(&b);
  long idx[7];
  for (int round = 0; round < 20; round++) {
    for (int j = 0; j < 7; j++) idx[j] = (long)(bm_rng_next(r) % N);
    bm_text_batch_read(&b, &ds, idx, 7, &slot, tok, BM_TEXT_BOTH, 2, 64);
    for (int j = 0; j < 7; j++) {
      const int32_t *g = b.ids + b.start[j];
      int ok = b.len[j] == nids[idx[j]] + 2 && g[0] == CLS && g[1] == -1 && g[2] == -2 &&
               !memcmp(g + 3, ids[idx[j]] + 1, sizeof(int32_t) * (size_t)(nids[idx[j]] - 1));
      CHECK(ok, "round %d: batch text %d is not record %ld's \"%s\" after 2 prompts", round, j, idx[j] + 1,
            texts[idx[j]]);
    }
  }
  bm_text_batch_free(&b);
  bm_recslot_free(&slot);
  bm_recfile_close(ds.f);
  unlink(path);
}

static void test_label_text(void) {
  const char *cls[] = {"mel", "Pleural_Effusion", "No Finding", "nv"};
  struct {
    const char *text;
    int want;
  } cases[] = {
      {"a melanoma on the back", -1},        {"MEL, back", 0},
      {"age 40, pleural effusion.", 1},      {"pleural-effusion", 1},
      {"pleural effusions", -1},             {"pleuraleffusion", -1},
      {"no  finding", 2},                    {"finding no", -1},
      {"xnv nvx", -1},                       {"(nv)", 3},
      {"", -1},                              {"pleural", -1},
      {"male, 45, lower extremity", -1},     {"caf\xc3\xa9mel", -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int got = bm_text_names_class(cases[i].text, strlen(cases[i].text), cls, 4);
    CHECK(got == cases[i].want, "\"%s\": class %d, want %d", cases[i].text, got, cases[i].want);
  }
  const char *odd[] = {"__", ""}; /* names without a word never match */
  CHECK(bm_text_names_class("a __ b", 6, odd, 2) == -1, "a name of separators matched");
  /* len bounds the text: a name past it is not seen */
  CHECK(bm_text_names_class("nv", 1, cls, 4) == -1, "matched past len");
  char out[16];
  memset(out, 'x', sizeof out);
  bm_text_snippet("line\none\ttwo and a long tail", 29, out, sizeof out);
  CHECK(!strcmp(out, "line one two..."), "snippet \"%s\"", out);
  CHECK(strlen(out) < sizeof out, "snippet overflows");
  bm_text_snippet("short", 5, out, sizeof out);
  CHECK(!strcmp(out, "short"), "snippet \"%s\"", out);
  bm_text_snippet("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 16, out, 10);
  CHECK(!strcmp(out, "\xc3\xa9\xc3\xa9\xc3\xa9..."), "snippet cut inside a UTF-8 sequence: \"%s\"", out);
}

int main(void) {
  bm_rng r;
  uint64_t seed = (uint64_t)time(NULL);
  printf("# seed %llu\n", (unsigned long long)seed);
  bm_rng_seed(&r, seed);
  char err[256];
  bm_tokenizer *tok = bm_tokenizer_new(vocab, strlen(vocab), err, sizeof err);
  if (!tok) bm_die("vocab: %s", err);
  test_add(&r, tok);
  test_read(&r, tok);
  test_label_text();
  bm_tokenizer_free(tok);
  CHECK_DONE();
}
