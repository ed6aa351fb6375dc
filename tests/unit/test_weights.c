/* test_weights - the weights loader against tests/fixtures/loader (made by
 * tests/ref/make_loader_fixtures.py with PyTorch): every tensor's name,
 * dtype, shape and bytes, from the torch.save zip, its deflated copy, the
 * safetensors twin and hub-style folders; every refusal names the file and
 * what is wrong; safetensors write -> read round trips on fresh random data.
 *
 *   test_weights                  run the checks
 *   test_weights --write PATH     write a random .safetensors to PATH and its
 *                                 expected.txt lines on stdout (t-weights.sh
 *                                 reads it back with numpy) */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "util.h"
#include "weights.h"

typedef struct {
  char name[160], dtype[8];
  int ndim;
  int64_t shape[BM_W_MAX_DIMS];
  unsigned char *bytes;
  size_t nbytes;
} expect_t;

static char fx[4096];

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = bm_xmalloc((size_t)n + 1);
  size_t got = fread(b, 1, (size_t)n, f);
  fclose(f);
  b[got] = 0;
  if (len) *len = got;
  return b;
}

static int load_expected(expect_t **out) {
  char path[4200];
  snprintf(path, sizeof path, "%s/expected.txt", fx);
  char *text = slurp(path, NULL);
  if (!text) return -1;
  int n = 0, cap = 0;
  expect_t *e = NULL;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (n == cap) e = bm_xrealloc(e, (size_t)(cap = cap ? cap * 2 : 64) * sizeof *e);
    expect_t *x = &e[n++];
    memset(x, 0, sizeof *x);
    char shape[256], *hex = bm_xmalloc(strlen(line) + 1);
    if (sscanf(line, "%159s %7s %255s %s", x->name, x->dtype, shape, hex) != 4) return -1;
    if (strcmp(shape, "-"))
      for (char *s = shape; s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL)
        x->shape[x->ndim++] = strtoll(s, NULL, 10);
    x->nbytes = strcmp(hex, "-") ? strlen(hex) / 2 : 0;
    x->bytes = bm_xmalloc(x->nbytes + 1);
    for (size_t i = 0; i < x->nbytes; i++) sscanf(hex + 2 * i, "%2hhx", &x->bytes[i]);
    free(hex);
  }
  free(text);
  *out = e;
  return n;
}

/* every expected tensor present with the same dtype, shape and bytes */
static void check_all(const char *what, const bm_weights *ws, const expect_t *e, int ne, int ordered) {
  CHECK(ws->n == ne, "%s: %d tensors (expected %d)", what, ws->n, ne);
  int bad = 0, aligned = 1, order = 1;
  for (int i = 0; i < ne; i++) {
    const bm_weight *w = bm_weights_get(ws, e[i].name);
    if (!w) {
      printf("# %s: %s missing\n", what, e[i].name);
      bad++;
      continue;
    }
    if (ordered && (w - ws->w) != i) order = 0;
    int ok = !strcmp(bm_wdtype_name(w->dtype), e[i].dtype) && w->ndim == e[i].ndim &&
             w->nbytes == e[i].nbytes && !memcmp(w->shape, e[i].shape, sizeof w->shape[0] * (size_t)w->ndim);
    int64_t numel = 1;
    for (int d = 0; d < w->ndim; d++) numel *= w->shape[d];
    ok = ok && numel == w->numel && w->nbytes == (size_t)numel * bm_wdtype_size(w->dtype);
    ok = ok && (w->nbytes == 0 || memcmp(w->data, e[i].bytes, w->nbytes) == 0);
    if (!ok) {
      printf("# %s: %s differs (dtype %s ndim %d nbytes %zu)\n", what, e[i].name,
             bm_wdtype_name(w->dtype), w->ndim, w->nbytes);
      bad++;
    }
    if (!w->data || ((uintptr_t)w->data & 63)) aligned = 0;
  }
  CHECK(bad == 0, "%s: every tensor has the expected name, dtype, shape and bytes (%d bad)", what, bad);
  CHECK(aligned, "%s: every tensor's data is 64-byte aligned", what);
  if (ordered) CHECK(order, "%s: tensors keep the state dict's order", what);
}

static int file_eq(const char *got, size_t glen, const char *path) {
  size_t n;
  char *want = slurp(path, &n);
  int ok = want && got && glen == n && !memcmp(got, want, n);
  free(want);
  return ok;
}

static void fxpath(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", fx, name); }

static void make_folder(const char *dir, const char *const *links) {
  mkdir(dir, 0755);
  for (int i = 0; links[i]; i += 2) {
    char src[4200], dst[4200];
    fxpath(src, sizeof src, links[i]);
    snprintf(dst, sizeof dst, "%s/%s", dir, links[i + 1]);
    if (symlink(src, dst)) printf("# symlink %s: %s\n", dst, strerror(errno));
  }
}

static void test_fixtures(const char *tmp) {
  expect_t *e = NULL;
  int ne = load_expected(&e);
  CHECK(ne > 40, "fixtures: expected.txt lists %d tensors", ne);
  if (ne <= 0) return;
  char path[4200], err[1024], side[4200];
  bm_weights ws;

  fxpath(path, sizeof path, "model.bin");
  CHECK(bm_weights_load(path, &ws, err, sizeof err) == 0, "torch.save zip loads (%s)", err);
  check_all("model.bin", &ws, e, ne, 1);
  const bm_weight *pid = bm_weights_get(&ws, "text.transformer.embeddings.position_ids");
  CHECK(pid && pid->dtype == BM_W_I64 && ((int64_t *)pid->data)[5] == 5,
        "model.bin: int64 position_ids kept as they are");
  /* a direct file picks up the side files of its folder */
  fxpath(side, sizeof side, "open_clip_config.json");
  CHECK(file_eq(ws.config_json, ws.config_json ? strlen(ws.config_json) : 0, side),
        "model.bin: config_json from open_clip_config.json beside it");
  fxpath(side, sizeof side, "vocab.txt");
  CHECK(file_eq(ws.vocab, ws.vocab_len, side), "model.bin: vocab from vocab.txt beside it");
  CHECK(ws.source && !strcmp(ws.source, path), "source is the path given");
  bm_weights_free(&ws);

  fxpath(path, sizeof path, "model_deflate.bin");
  CHECK(bm_weights_load(path, &ws, err, sizeof err) == 0, "deflated torch zip loads (%s)", err);
  check_all("model_deflate.bin", &ws, e, ne, 1);
  bm_weights_free(&ws);

  fxpath(path, sizeof path, "model.safetensors");
  CHECK(bm_weights_load(path, &ws, err, sizeof err) == 0, "safetensors loads (%s)", err);
  check_all("model.safetensors", &ws, e, ne, 0);
  fxpath(side, sizeof side, "open_clip_config.json");
  CHECK(file_eq(ws.config_json, ws.config_json ? strlen(ws.config_json) : 0, side),
        "model.safetensors: config from metadata key \"config\"");
  fxpath(side, sizeof side, "vocab.txt");
  CHECK(file_eq(ws.vocab, ws.vocab_len, side), "model.safetensors: vocab from metadata key \"vocab\"");
  bm_weights_free(&ws);

  /* hub folders */
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/hub", tmp);
  make_folder(dir, (const char *const[]){"open_clip_config.json", "open_clip_config.json", "model.bin",
                                         "open_clip_pytorch_model.bin", "vocab.txt", "vocab.txt",
                                         "tokenizer.json", "tokenizer.json", NULL});
  CHECK(bm_weights_load(dir, &ws, err, sizeof err) == 0, "hub folder loads (%s)", err);
  check_all("hub folder", &ws, e, ne, 1);
  fxpath(side, sizeof side, "open_clip_config.json");
  CHECK(file_eq(ws.config_json, ws.config_json ? strlen(ws.config_json) : 0, side), "hub folder: config_json");
  fxpath(side, sizeof side, "vocab.txt");
  CHECK(file_eq(ws.vocab, ws.vocab_len, side), "hub folder: vocab.txt");
  bm_weights_free(&ws);

  snprintf(dir, sizeof dir, "%s/hub_tokjson", tmp);
  make_folder(dir, (const char *const[]){"open_clip_config.json", "open_clip_config.json", "model.bin",
                                         "open_clip_pytorch_model.bin", "tokenizer.json",
                                         "tokenizer.json", NULL});
  CHECK(bm_weights_load(dir, &ws, err, sizeof err) == 0, "hub folder with only tokenizer.json loads (%s)", err);
  CHECK(file_eq(ws.vocab, ws.vocab_len, side), "vocab from tokenizer.json equals vocab.txt, in id order");
  bm_weights_free(&ws);

  snprintf(dir, sizeof dir, "%s/hub_st", tmp);
  make_folder(dir, (const char *const[]){"model.safetensors", "open_clip_model.safetensors", NULL});
  CHECK(bm_weights_load(dir, &ws, err, sizeof err) == 0, "folder with open_clip_model.safetensors loads (%s)", err);
  check_all("safetensors folder", &ws, e, ne, 0);
  bm_weights_free(&ws);

  snprintf(dir, sizeof dir, "%s/hub_none", tmp);
  make_folder(dir, (const char *const[]){"vocab.txt", "vocab.txt", NULL});
  CHECK(bm_weights_load(dir, &ws, err, sizeof err) == -1 && strstr(err, "hub_none") &&
            strstr(err, "open_clip_pytorch_model.bin"),
        "folder without weights is refused naming it: %s", err);

  /* bm_weights_expect, list, to_f32 */
  fxpath(path, sizeof path, "model.bin");
  if (bm_weights_load(path, &ws, err, sizeof err) == 0) {
    int64_t good[2] = {48, 16}, bad[2] = {48, 17}, any[2] = {-1, 16};
    const char *q = "visual.trunk.blocks.0.attn.qkv.weight";
    CHECK(bm_weights_expect(&ws, q, 2, good, err, sizeof err) != NULL, "expect: right shape found");
    CHECK(bm_weights_expect(&ws, q, 2, any, err, sizeof err) != NULL, "expect: -1 matches any size");
    CHECK(!bm_weights_expect(&ws, q, 2, bad, err, sizeof err) && strstr(err, q) &&
              strstr(err, "[48,16]") && strstr(err, "[48,17]") && strstr(err, "model.bin"),
          "expect: misshapen tensor named with both shapes: %s", err);
    CHECK(!bm_weights_expect(&ws, "visual.nope", 1, good, err, sizeof err) && strstr(err, "visual.nope") &&
              strstr(err, "missing"),
          "expect: missing tensor named: %s", err);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bm_weights_list(&ws, f);
    fclose(f);
    CHECK(buf && strstr(buf, "visual.trunk.patch_embed.proj.weight f32 [16,3,4,4] 3072\n") &&
              strstr(buf, "logit_scale f32 [] 4\n"),
          "list: one line per tensor with dtype, shape and bytes");
    free(buf);
    const bm_weight *h = bm_weights_get(&ws, "extra.f16"), *b = bm_weights_get(&ws, "extra.bf16"),
                    *i = bm_weights_get(&ws, "extra.i32");
    float *hf = h ? bm_weight_to_f32(h) : NULL, *bf = b ? bm_weight_to_f32(b) : NULL;
    int ok = hf && bf;
    for (int64_t k = 0; ok && k < b->numel; k++) {
      uint32_t bits = (uint32_t)((uint16_t *)b->data)[k] << 16;
      float want;
      memcpy(&want, &bits, 4);
      ok = bf[k] == want;
    }
    CHECK(ok, "to_f32: bf16 widened exactly");
    CHECK(i && bm_weight_to_f32(i) == NULL, "to_f32: NULL for an integer tensor");
    free(hf);
    free(bf);
    bm_weights_free(&ws);
  }
  for (int i = 0; i < ne; i++) free(e[i].bytes);
  free(e);
}

/* half -> float on patterns whose value is known exactly */
static void test_half(void) {
  static const struct { uint16_t h; float f; } cases[] = {
      {0x3c00, 1.0f}, {0xc000, -2.0f}, {0x0001, 5.9604644775390625e-08f}, {0x03ff, 6.0975551605224609375e-05f},
      {0x0400, 6.103515625e-05f}, {0x7bff, 65504.0f}, {0x8000, -0.0f}, {0x3555, 0.333251953125f}};
  bm_weight w = {.dtype = BM_W_F16, .ndim = 1, .numel = 10, .nbytes = 20};
  uint16_t d[10];
  for (int i = 0; i < 8; i++) d[i] = cases[i].h;
  d[8] = 0x7c00;
  d[9] = 0x7e00;
  w.data = d;
  w.shape[0] = 10;
  float *f = bm_weight_to_f32(&w);
  int ok = f != NULL;
  for (int i = 0; ok && i < 8; i++) ok = f[i] == cases[i].f && signbit(f[i]) == signbit(cases[i].f);
  CHECK(ok, "to_f32: f16 normals, subnormals, max and -0 exact");
  CHECK(f && isinf(f[8]) && f[8] > 0 && isnan(f[9]), "to_f32: f16 inf and nan");
  free(f);
}

static void expect_fail(const char *what, const char *path, const char *want1, const char *want2) {
  bm_weights ws;
  char err[1024] = "";
  memset(&ws, 0x5a, sizeof ws); /* poisoned: load must reset it */
  int rc = bm_weights_load(path, &ws, err, sizeof err);
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  CHECK(rc == -1 && strstr(err, base) && strstr(err, want1) && (!want2 || strstr(err, want2)) &&
            ws.n == 0 && ws.w == NULL,
        "%s refused: %s", what, err);
  if (rc == 0) bm_weights_free(&ws);
}

static void test_bad_fixtures(void) {
  static const struct { const char *file, *what, *w1, *w2; } bad[] = {
      {"bad_global.bin", "a foreign global", "refusing global os.system", "crafted/data.pkl"},
      {"bad_stride.bin", "a stride past the storage", "storage 0", "reaches element 13"},
      {"bad_offset.bin", "an offset past the storage", "storage 0", "reaches element 12"},
      {"bad_short.bin", "a storage shorter than its tensor", "crafted/data/0", "tensor w"},
      {"bad_missing.bin", "a missing storage member", "crafted/data/0", "missing"},
      {"bad_bigendian.bin", "a big-endian checkpoint", "big-endian", "crafted/byteorder"},
      {"bad_double.bin", "a float64 storage", "torch.DoubleStorage", "not supported"},
      {"bad_notensor.bin", "a state dict entry that is no tensor", "entry w is a int", NULL},
      {"bad_list.bin", "a pickle that is no dict", "holds a list", NULL},
      {"bad_truncated.bin", "a truncated zip", "zip", NULL},
      {"bad_notzip.bin", "a file that is neither format", "neither", NULL},
      {"legacy.bin", "the pre-1.6 torch format", "re-save", NULL},
      {"does_not_exist.bin", "a missing file", "No such file", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char path[4200];
    fxpath(path, sizeof path, bad[i].file);
    expect_fail(bad[i].what, path, bad[i].w1, bad[i].w2);
  }
}

/* a safetensors file from a header text and n data bytes */
static void write_st(const char *path, const char *hdr, size_t ndata, int64_t hlen_override) {
  FILE *f = fopen(path, "wb");
  uint64_t hl = hlen_override >= 0 ? (uint64_t)hlen_override : strlen(hdr);
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
  fwrite(len8, 1, 8, f);
  fwrite(hdr, 1, strlen(hdr), f);
  for (size_t i = 0; i < ndata; i++) fputc((int)(i * 37 + 11), f);
  fclose(f);
}

static void test_bad_safetensors(const char *tmp) {
  static const struct { const char *what, *hdr; size_t ndata; int64_t hlen; const char *w1, *w2; } bad[] = {
      {"header length past the file", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
       1 << 20, "header length", NULL},
      {"data_offsets past the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
       -1, "tensor a", "data_offsets outside"},
      {"overlapping tensors",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, -1, "tensors a and b overlap", NULL},
      {"an unknown dtype", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, -1,
       "tensor a has dtype F64", NULL},
      {"duplicate names",
       "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
       "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, -1, "duplicate", "a"},
      {"shape disagreeing with the byte range", "{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,8]}}",
       8, -1, "tensor a", "shape needs 6 bytes"},
      {"a negative dimension", "{\"a\":{\"dtype\":\"F16\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8, -1,
       "tensor a: bad shape", NULL},
      {"a header that is no JSON", "{\"a\":{\"dtype\":", 8, -1, "safetensors header", NULL},
      {"non-string metadata", "{\"__metadata__\":{\"config\":3}}", 0, -1, "metadata config", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char path[4200];
    snprintf(path, sizeof path, "%s/bad%zu.safetensors", tmp, i);
    write_st(path, bad[i].hdr, bad[i].ndata, bad[i].hlen);
    expect_fail(bad[i].what, path, bad[i].w1, bad[i].w2);
  }
}

static bm_weight *random_weights(bm_rng *r, int *n_out) {
  int n = 2 + (int)(bm_rng_next(r) % 7);
  bm_weight *w = bm_xcalloc((size_t)n, sizeof *w);
  for (int i = 0; i < n; i++) {
    w[i].name = bm_xmalloc(64);
    snprintf(w[i].name, 64, "layer.%d.w%llu", i, (unsigned long long)(bm_rng_next(r) % 1000));
    w[i].dtype = (bm_wdtype)(bm_rng_next(r) % 6);
    w[i].ndim = (int)(bm_rng_next(r) % 4);
    w[i].numel = 1;
    for (int d = 0; d < w[i].ndim; d++) w[i].numel *= (w[i].shape[d] = 1 + (int64_t)(bm_rng_next(r) % 9));
    w[i].nbytes = (size_t)w[i].numel * bm_wdtype_size(w[i].dtype);
    w[i].data = bm_xmalloc(w[i].nbytes + 1);
    for (size_t b = 0; b < w[i].nbytes; b++) ((unsigned char *)w[i].data)[b] = (unsigned char)(bm_rng_next(r) | 1);
  }
  *n_out = n;
  return w;
}

static void free_random(bm_weight *w, int n) {
  for (int i = 0; i < n; i++) {
    free(w[i].name);
    free(w[i].data);
  }
  free(w);
}

static void test_roundtrip(const char *tmp, uint64_t seed) {
  bm_rng r;
  bm_rng_seed(&r, seed);
  char path[4200], err[1024];
  snprintf(path, sizeof path, "%s/rt.safetensors", tmp);
  int bad = 0;
  for (int round = 0; round < 20; round++) {
    int n;
    bm_weight *w = random_weights(&r, &n);
    const char *keys[] = {BM_ST_CONFIG, BM_ST_VOCAB, "note"};
    const char *vals[] = {"{\"model_cfg\": {\"embed_dim\": 8}}", "[PAD]\nh\xc3\xa9llo\n\xe4\xb8\xad\n", "x\"y\\z"};
    bm_weights ws;
    if (bm_safetensors_write(path, w, n, keys, vals, 3, err, sizeof err) ||
        bm_weights_load(path, &ws, err, sizeof err)) {
      printf("# round %d: %s\n", round, err);
      bad++;
      free_random(w, n);
      continue;
    }
    int ok = ws.n == n && ws.config_json && !strcmp(ws.config_json, vals[0]) && ws.vocab &&
             ws.vocab_len == strlen(vals[1]) && !strcmp(ws.vocab, vals[1]);
    for (int i = 0; ok && i < n; i++) {
      const bm_weight *g = bm_weights_get(&ws, w[i].name);
      ok = g && g->dtype == w[i].dtype && g->ndim == w[i].ndim && g->numel == w[i].numel &&
           !memcmp(g->shape, w[i].shape, sizeof g->shape[0] * (size_t)g->ndim) &&
           !memcmp(g->data, w[i].data, w[i].nbytes);
    }
    bad += !ok;
    bm_weights_free(&ws);
    free_random(w, n);
  }
  CHECK(bad == 0, "safetensors write -> read: 20 random models equal bit for bit, metadata kept (seed %llu)",
        (unsigned long long)seed);
  struct stat sb;
  char tmpname[4300];
  snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", path, (long)getpid());
  CHECK(stat(tmpname, &sb) != 0, "safetensors write leaves no temporary file");

  bm_weight dup[2] = {{.name = "a", .dtype = BM_W_U8, .ndim = 1, .shape = {1}, .numel = 1, .nbytes = 1, .data = "x"},
                      {.name = "a", .dtype = BM_W_U8, .ndim = 1, .shape = {1}, .numel = 1, .nbytes = 1, .data = "y"}};
  CHECK(bm_safetensors_write(path, dup, 2, NULL, NULL, 0, err, sizeof err) == -1 && strstr(err, "tensor name a"),
        "safetensors write refuses duplicate names: %s", err);
  snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", tmp);
  CHECK(bm_safetensors_write(path, dup, 1, NULL, NULL, 0, err, sizeof err) == -1 && strstr(err, "x.safetensors"),
        "safetensors write into a missing folder fails naming it: %s", err);
}

static int write_mode(const char *path) {
  bm_rng r;
  bm_rng_seed(&r, (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20);
  int n;
  bm_weight *w = random_weights(&r, &n);
  char err[1024];
  const char *keys[] = {BM_ST_CONFIG, BM_ST_VOCAB};
  const char *vals[] = {"{\"a\": 1}", "[PAD]\n[UNK]\n"};
  if (bm_safetensors_write(path, w, n, keys, vals, 2, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  for (int i = 0; i < n; i++) {
    printf("%s %s ", w[i].name, bm_wdtype_name(w[i].dtype));
    for (int d = 0; d < w[i].ndim; d++) printf("%s%lld", d ? "," : "", (long long)w[i].shape[d]);
    printf("%s ", w[i].ndim ? "" : "-");
    for (size_t b = 0; b < w[i].nbytes; b++) printf("%02x", ((unsigned char *)w[i].data)[b]);
    printf("\n");
  }
  free_random(w, n);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--write")) return write_mode(argv[2]);
  const char *tests = getenv("BM_TESTS");
  snprintf(fx, sizeof fx, "%s/fixtures/loader", tests ? tests : "tests");
  char tmp[] = "/tmp/test_weights.XXXXXX";
  if (!mkdtemp(tmp)) return 1;
  uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
  test_fixtures(tmp);
  test_half();
  test_bad_fixtures();
  test_bad_safetensors(tmp);
  test_roundtrip(tmp, seed);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd)) printf("# could not remove %s\n", tmp);
  CHECK_DONE();
}
