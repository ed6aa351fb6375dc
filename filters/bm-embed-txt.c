/* bm-embed-txt - the text tower as a filter: records with "text" get
 * "txt_emb" (and "txt_tokens" with --tokens). With --classes it reads no
 * records and writes one class embedding per class instead (open_clip's
 * zero-shot recipe: the templates' embeddings averaged and renormalized).
 *
 *   bm-embed-txt -m MODEL [--tokens] [--batch N] [--threads N] [FILE]
 *   bm-embed-txt -m MODEL --classes FILE [--templates FILE]
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bmcuda.h"
#include "cuda/bmcuda_towers.h"
#include "held.h"
#include "kernels.h"
#include "model.h"
#include "text_batch.h"
#include "train_opts.h"
#include "record.h"
#include "run_opts.h"
#include "util.h"

static const char usage[] =
    "Usage: bm-embed-txt -m MODEL [OPTION]... [FILE]\n"
    "   or: bm-embed-txt -m MODEL --classes FILE [--templates FILE]\n"
    "Add the BiomedCLIP text embedding to every record that has a \"text\" string:\n"
    "\"txt_emb\" f32 [E], L2-normalized. Records without \"text\" pass through (counted\n"
    "in a warning at the end). Reads FILE or stdin, writes stdout.\n"
    "\n"
    "  -m, --model PATH      the hub folder, a torch .bin or a .safetensors checkpoint;\n"
    "                        a bm-train fusion/regularized one feeds its text mode and\n"
    "                        learned prompts (prompt.ctx) as the training did\n"
    "  -t, --tokens          also add \"txt_tokens\" f16 [L,W]: the last hidden state of\n"
    "                        every token ([CLS] first, no padding)\n"
    "  -c, --classes FILE    zero-shot class embeddings instead: one class per line,\n"
    "                        or \"name<TAB>prompt\" to put prompt into the templates,\n"
    "                        or \"name<TAB>prompt<TAB>negative\" to add \"txt_emb_neg\";\n"
    "                        writes a class-embeddings header and one record per class\n"
    "  -T, --templates FILE  one template per line with one {} for the class\n"
    "                        (default: \"this is an image of {}\", \"{} presented in image\")\n"
    "  -b, --batch N         texts per forward pass (default 32)\n"
    "  -j, --threads N       threads (default: OMP_NUM_THREADS or all cores)\n"
    "  -d, --device DEV      cpu (default), cuda or cuda:N (a GPU)\n"
    "  -p, --precision P     on a GPU: fp32, bf16 (default) or fp16 GEMMs and activations\n"
    "                        (fp32 accumulation and residual stream); the CPU is fp32\n"
    "  -q, --quiet           no progress line\n"
    "  -h, --help            this help\n"
    "\n"
    "Exit status: 0 ok, 1 error, 2 usage.\n";

/* BiomedCLIP's zero-shot prompts (seed 001, Supplementary Table 10). */
static const char *const default_templates[] = {"this is an image of {}", "{} presented in image"};

typedef struct {
  const char *model, *input, *classes, *templates;
  int tokens, quiet;
  bm_run_opts run; /* --batch, --threads, --device, --precision */
} options;

/* A batch of tokenized texts packed one after the other. */
typedef struct {
  bm_model m;
  bm_bert_acts acts;
  int32_t *ids; /* [batch * context] */
  int *start, *len;
  int n, ntok;
  float *emb;   /* [batch, E] */
  float *tok;   /* [batch * context, W] with --tokens */
  bm_cuda *gpu; /* with --device cuda: the tower runs there */
  bm_cuda_bert *gbert;
  /* a fusion/regularized checkpoint's text input (text_batch.h): source
   * BM_TEXT_KEY|PROMPT|BOTH, or -1 for a plain model; ctx [n_ctx, W] */
  int source, n_ctx;
  float *ctx;
  bm_text_batch tb;
} encoder;

/* A bm-train fusion or regularized checkpoint feeds its text tower what the
 * training fed it: config "text" (key, prompt, both) and "prompt.ctx". */
static void encoder_text_mode(encoder *e, const char *path) {
  e->source = -1;
  json_t *cfg = e->m.ws.config_json ? json_loads(e->m.ws.config_json, 0, NULL) : NULL;
  const char *mode = json_string_value(json_object_get(cfg, "mode"));
  if (mode && (!strcmp(mode, "fusion") || !strcmp(mode, "regularized"))) {
    const char *text = json_string_value(json_object_get(cfg, "text"));
    e->source = text ? bm_name_index(text, bm_text_names, BM_NTEXT) : -1;
    if (e->source < 0) bm_die("%s: a %s checkpoint whose config \"text\" is not key, prompt or both", path, mode);
    if (e->source != BM_TEXT_KEY) {
      const bm_bert *b = &e->m.bert;
      const bm_weight *w = bm_weights_get(&e->m.ws, "prompt.ctx");
      if (!w || w->ndim != 2 || w->shape[1] != b->width || w->shape[0] < 1 || w->shape[0] + 2 > b->context)
        bm_die("%s: a %s checkpoint with --text %s needs \"prompt.ctx\" [n_ctx, %d]", path, mode, text, b->width);
      e->n_ctx = (int)w->shape[0];
      e->ctx = bm_weight_to_f32(w);
      if (!e->ctx) bm_die("%s: \"prompt.ctx\" is not a float tensor", path);
    }
  }
  json_decref(cfg);
}

static void encoder_init(encoder *e, const options *opt) {
  char err[1024];
  if (bm_model_load(&e->m, opt->model, BM_LOAD_TEXT, err, sizeof err)) bm_die("%s", err);
  const bm_bert *b = &e->m.bert;
  size_t cap = (size_t)opt->run.batch * b->context;
  e->ids = bm_xmalloc(bm_mul_size(cap, sizeof(int32_t)));
  e->start = bm_xmalloc(sizeof(int) * (size_t)opt->run.batch);
  e->len = bm_xmalloc(sizeof(int) * (size_t)opt->run.batch);
  e->emb = bm_xmalloc(bm_mul_size((size_t)opt->run.batch * b->embed_dim, sizeof(float)));
  if (opt->tokens) e->tok = bm_xmalloc(bm_mul_size(cap * b->width, sizeof(float)));
  bm_text_batch_init(&e->tb);
  encoder_text_mode(e, opt->model);
  if (bm_device_is_cuda(opt->run.device)) {
    if (!(e->gpu = bm_cuda_open(opt->run.device, err, sizeof err))) bm_die("--device %s", err);
    e->gbert = bm_cuda_bert_new(e->gpu, b, opt->run.prec, (int)opt->run.batch, (int)cap);
    if (e->ctx) bm_cuda_bert_set_ctx(e->gbert, e->ctx, e->n_ctx);
    if (!opt->quiet) bm_warn("text tower on %s in %s", bm_cuda_describe(e->gpu), bm_prec_name(opt->run.prec));
  }
}

static void encoder_free(encoder *e) {
  bm_bert_acts_free(&e->acts);
  free(e->ids), free(e->start), free(e->len), free(e->emb), free(e->tok), free(e->ctx);
  bm_text_batch_free(&e->tb);
  bm_cuda_bert_free(e->gbert);
  bm_cuda_close(e->gpu);
  bm_model_free(&e->m);
}

static void encoder_add_n(encoder *e, const char *text, size_t len) {
  int L;
  if (e->source >= 0) { /* the ids bm-train made: text_batch.h */
    bm_text_batch_clear(&e->tb);
    L = bm_text_batch_add(&e->tb, e->m.tok, e->source, e->n_ctx, e->m.bert.context, text, len);
    if (L > 0) memcpy(e->ids + e->ntok, e->tb.ids, sizeof(int32_t) * (size_t)L);
  } else {
    L = bm_tokenize_n(e->m.tok, text, len, e->ids + e->ntok, e->m.bert.context);
  }
  if (L < 1 || L > e->m.bert.context) bm_die("the tokenizer returned %d ids for a text", L);
  e->start[e->n] = e->ntok;
  e->len[e->n++] = L;
  e->ntok += L;
}

static void encoder_add(encoder *e, const char *text) { encoder_add_n(e, text, strlen(text)); }

static void encoder_run(encoder *e, int tokens) {
  if (e->n && e->gbert)
    bm_cuda_bert_forward(e->gbert, e->ids, e->start, e->len, e->n, e->emb, tokens ? e->tok : NULL);
  else if (e->n)
    bm_bert_forward_ctx(&e->m.bert, &e->acts, e->ids, e->start, e->len, e->n, e->ctx, e->emb,
                        tokens ? e->tok : NULL);
}

/* ---- records mode ---- */
static int embed_records(const options *opt) {
  encoder e;
  memset(&e, 0, sizeof e);
  encoder_init(&e, opt);
  const bm_bert *b = &e.m.bert;
  bm_held held;
  bm_held_init(&held);
  int *txt_of = NULL, cap_held = 0;
  uint16_t *tok16 = opt->tokens ? bm_xmalloc(bm_mul_size((size_t)b->context * b->width, 2)) : NULL;

  bm_reader *r = bm_reader_open(opt->input);
  bm_writer *w = bm_writer_open(NULL);
  const msgpack_object *hdr = bm_reader_header(r);
  if (bm_reader_error(r)) return 1;
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "txt_model", opt->model);
  bm_out_int(&o, "embed_dim", b->embed_dim);
  if (bm_write_header(w, hdr, &o)) return 1;

  bm_progress prog;
  bm_progress_init(&prog, opt->quiet);
  long done = 0, missing = 0;
  const msgpack_object *rec;
  int got;
  for (;;) {
    got = bm_reader_next(r, &rec);
    if (got == 1) {
      const msgpack_object *t = bm_map_get(rec, "text");
      char where[256];
      if (t && t->type != MSGPACK_OBJECT_STR)
        bm_die("%s: \"text\" is not a string", bm_reader_where(r, where, sizeof where));
      int i = bm_held_push(&held, rec);
      if (i >= cap_held) {
        cap_held = 2 * (i + 1);
        txt_of = bm_xrealloc(txt_of, sizeof(int) * (size_t)cap_held);
      }
      /* learned prompts alone need no text */
      txt_of[i] = t || e.source == BM_TEXT_PROMPT ? e.n : -1;
      if (!t && e.source == BM_TEXT_PROMPT) {
        encoder_add_n(&e, "", 0);
      } else if (t) {
        /* msgpack strings are not NUL-terminated and may hold U+0000, which
         * the tokenizer drops as BERT's cleaning does */
        encoder_add_n(&e, t->via.str.ptr, t->via.str.size);
      } else {
        missing++;
      }
    }
    if (got != 1 || e.n == opt->run.batch || held.n >= 4 * opt->run.batch) {
      encoder_run(&e, opt->tokens);
      for (int i = 0; i < held.n; i++) {
        const msgpack_object *hr = bm_held_get(&held, i);
        bm_out_reset(&o);
        int k = txt_of[i];
        if (k >= 0) {
          bm_out_tensor(&o, "txt_emb", BM_F32, 1, (int64_t[]){b->embed_dim}, e.emb + (size_t)k * b->embed_dim);
          if (opt->tokens) {
            const float *src = e.tok + (size_t)e.start[k] * b->width;
            size_t n = (size_t)e.len[k] * b->width;
            for (size_t j = 0; j < n; j++) tok16[j] = bm_f32_to_f16(src[j]);
            bm_out_tensor(&o, "txt_tokens", BM_F16, 2, (int64_t[]){e.len[k], b->width}, tok16);
          }
        }
        if (bm_write_record(w, hr, &o)) exit(1);
      }
      done += e.n;
      e.n = e.ntok = 0;
      bm_held_clear(&held);
      bm_progress_update(&prog, "%ld texts, %.1f texts/s", done, done / (bm_now() - prog.start));
    }
    if (got != 1) break;
  }
  bm_progress_done(&prog);
  if (missing) bm_warn("%ld record%s without \"text\" passed through unchanged", missing, missing == 1 ? "" : "s");
  int bad = got < 0 || bm_reader_error(r);
  bm_reader_close(r);
  if (bm_writer_close(w)) bad = 1;
  bm_out_free(&o);
  bm_held_free(&held);
  free(txt_of), free(tok16);
  encoder_free(&e);
  return bad ? 1 : 0;
}

/* ---- classes mode ---- */
/* The non-empty lines of a file (trailing \r removed). */
static int read_lines(const char *path, char ***out) {
  FILE *f = fopen(path, "r");
  if (!f) bm_die("%s: cannot open: %m", path);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int count = 0;
  char **lines = NULL;
  while ((n = getline(&line, &cap, f)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (n == 0) continue;
    if (memchr(line, 0, (size_t)n)) bm_die("%s: line %d holds a NUL byte", path, count + 1);
    lines = bm_xrealloc(lines, sizeof(char *) * (size_t)(count + 1));
    lines[count++] = bm_xstrdup(line);
  }
  if (ferror(f)) bm_die("%s: read error", path);
  fclose(f);
  free(line);
  *out = lines;
  return count;
}

/* template with its one "{}" replaced by what */
static char *fill(const char *tmpl, const char *what) {
  const char *p = strstr(tmpl, "{}");
  size_t a = (size_t)(p - tmpl), n = strlen(what), rest = strlen(p + 2);
  char *s = bm_xmalloc(a + n + rest + 1);
  memcpy(s, tmpl, a);
  memcpy(s + a, what, n);
  memcpy(s + a + n, p + 2, rest + 1);
  return s;
}

/* open_clip's zero-shot recipe for one prompt: every template filled with it,
 * each embedding normalized, averaged, renormalized. out [E]. */
static void embed_prompt(encoder *e, char **tmpl, int nt, const char *prompt, float *out) {
  int E = e->m.bert.embed_dim;
  for (int t = 0; t < nt; t++) {
    char *s = fill(tmpl[t], prompt);
    encoder_add(e, s);
    free(s);
  }
  encoder_run(e, 0);
  for (int k = 0; k < E; k++) {
    float sum = 0;
    for (int t = 0; t < nt; t++) sum += e->emb[(size_t)t * E + k];
    out[k] = sum / (float)nt;
  }
  bm_l2_normalize(out, 1, E);
  e->n = e->ntok = 0;
}

static int embed_classes(const options *opt) {
  char **lines, **tmpl;
  int nc = read_lines(opt->classes, &lines), nt;
  if (nc == 0) bm_die("%s: no classes", opt->classes);
  if (opt->templates) {
    nt = read_lines(opt->templates, &tmpl);
    if (nt == 0) bm_die("%s: no templates", opt->templates);
  } else {
    nt = (int)(sizeof default_templates / sizeof *default_templates);
    tmpl = bm_xmalloc(sizeof(char *) * (size_t)nt);
    for (int i = 0; i < nt; i++) tmpl[i] = bm_xstrdup(default_templates[i]);
  }
  for (int i = 0; i < nt; i++) {
    const char *p = strstr(tmpl[i], "{}");
    if (!p || strstr(p + 2, "{}"))
      bm_die("%s: line %d: a template needs exactly one {}: %s", opt->templates ? opt->templates : "templates", i + 1, tmpl[i]);
  }
  /* "name[<TAB>prompt[<TAB>negative prompt]]": the name labels the class, the
   * prompt fills the templates, and a negative prompt (for multi-label
   * zero-shot, see bm-fuse) gets its own embedding */
  char **names = bm_xmalloc(sizeof(char *) * (size_t)nc), **prompts = bm_xmalloc(sizeof(char *) * (size_t)nc);
  char **negatives = bm_xcalloc((size_t)nc, sizeof(char *));
  for (int i = 0; i < nc; i++) {
    char *tab = strchr(lines[i], '\t');
    names[i] = lines[i];
    prompts[i] = tab ? tab + 1 : lines[i];
    if (tab) *tab = 0;
    char *tab2 = tab ? strchr(prompts[i], '\t') : NULL;
    if (tab2) {
      *tab2 = 0;
      negatives[i] = tab2 + 1;
      if (!*negatives[i] || strchr(negatives[i], '\t'))
        bm_die("%s: line %d: an empty negative prompt or more than three fields", opt->classes, i + 1);
    }
    if (!*names[i] || !*prompts[i]) bm_die("%s: line %d: an empty class name or prompt", opt->classes, i + 1);
  }
  options o2 = *opt;
  o2.tokens = 0;
  if (o2.run.batch < nt) o2.run.batch = nt;
  encoder e;
  memset(&e, 0, sizeof e);
  encoder_init(&e, &o2);
  e.source = -1; /* class prompts are plain text, whatever a checkpoint learned */
  int E = e.m.bert.embed_dim;
  bm_writer *w = bm_writer_open(NULL);
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "task", "class-embeddings");
  msgpack_packer *pk = bm_out_key(&o, "classes");
  msgpack_pack_array(pk, (size_t)nc);
  for (int i = 0; i < nc; i++) bm_pack_str(pk, names[i]);
  pk = bm_out_key(&o, "templates");
  msgpack_pack_array(pk, (size_t)nt);
  for (int i = 0; i < nt; i++) bm_pack_str(pk, tmpl[i]);
  bm_out_int(&o, "embed_dim", E);
  bm_out_str(&o, "txt_model", opt->model);
  /* the checkpoint's log scale: bm-fuse may score with exp(logit_scale) */
  if (!isnan(e.m.logit_scale)) bm_out_double(&o, "logit_scale", e.m.logit_scale);
  if (bm_write_header(w, NULL, &o)) return 1;
  float *cls = bm_xmalloc(sizeof(float) * (size_t)E);
  for (int c = 0; c < nc; c++) {
    bm_out_reset(&o);
    bm_out_str(&o, "class", names[c]);
    embed_prompt(&e, tmpl, nt, prompts[c], cls);
    bm_out_tensor(&o, "txt_emb", BM_F32, 1, (int64_t[]){E}, cls);
    if (negatives[c]) {
      embed_prompt(&e, tmpl, nt, negatives[c], cls);
      bm_out_tensor(&o, "txt_emb_neg", BM_F32, 1, (int64_t[]){E}, cls);
    }
    if (bm_write_record(w, NULL, &o)) return 1;
  }
  int bad = bm_writer_close(w) != 0;
  bm_out_free(&o);
  free(cls), free(names), free(prompts), free(negatives);
  bm_free_strings(lines, nc);
  bm_free_strings(tmpl, nt);
  encoder_free(&e);
  return bad;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  bm_blas_init(argv);
  options opt = {.run = BM_RUN_OPTS_DEFAULT};
  static const struct option longs[] = {{"model", required_argument, 0, 'm'},
                                        {"tokens", no_argument, 0, 't'},
                                        {"classes", required_argument, 0, 'c'},
                                        {"templates", required_argument, 0, 'T'},
                                        {"quiet", no_argument, 0, 'q'},
                                        BM_RUN_LONGOPTS,
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "m:tc:T:qh" BM_RUN_SHORTOPTS, longs, NULL)) != -1) {
    switch (c) {
    case 'm': opt.model = optarg; break;
    case 't': opt.tokens = 1; break;
    case 'c': opt.classes = optarg; break;
    case 'T': opt.templates = optarg; break;
    case 'q': opt.quiet = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    default:
      if (!bm_run_opt(&opt.run, c, optarg)) bm_usage_die("unknown option (see --help)");
    }
  }
  if (!opt.model) bm_usage_die("-m MODEL is required (see --help)");
  if (opt.templates && !opt.classes) bm_usage_die("--templates goes with --classes");
  if (opt.classes && opt.tokens) bm_usage_die("--tokens does not go with --classes");
  if (opt.classes && optind < argc) bm_usage_die("--classes reads no records (see --help)");
  if (argc - optind > 1) bm_usage_die("one input at most (see --help)");
  opt.input = optind < argc ? argv[optind] : NULL;
  bm_run_opts_apply(&opt.run);
  return opt.classes ? embed_classes(&opt) : embed_records(&opt);
}
