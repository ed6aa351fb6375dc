/* bm-embed-img - the image tower as a filter: records with "image" get
 * "img_emb" (and "img_tokens" with --tokens); every other record and key
 * passes through in order.
 *
 *   bm-embed-img -m MODEL [--tokens] [--batch N] [--threads N]
 *                [--device cpu|cuda[:N]] [--precision fp32|bf16|fp16] [FILE]
 *
 * Records are gathered into two slots of a batch each: while the device
 * works on one slot's images, the next slot is read and normalized, so on
 * a GPU the pipe and the decoding overlap the forward pass. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bmcuda.h"
#include "cuda/bmcuda_towers.h"
#include "held.h"
#include "kernels.h"
#include "model.h"
#include "record.h"
#include "run_opts.h"
#include "util.h"

static const char usage[] =
    "Usage: bm-embed-img -m MODEL [OPTION]... [FILE]\n"
    "Add the BiomedCLIP image embedding to every record that has an \"image\"\n"
    "(u8 [3,S,S], S the model's image size): \"img_emb\" f32 [E], L2-normalized.\n"
    "Other records and keys pass through in order. Reads FILE or stdin, writes stdout.\n"
    "\n"
    "  -m, --model PATH   the hub folder, a torch .bin or a .safetensors checkpoint\n"
    "  -t, --tokens       also add \"img_tokens\" f16 [T,W]: the final-norm output of\n"
    "                     every token (class token first)\n"
    "  -b, --batch N      images per forward pass (default 32)\n"
    "  -j, --threads N    threads (default: OMP_NUM_THREADS or all cores)\n"
    "  -d, --device DEV   cpu (default), cuda or cuda:N (a GPU)\n"
    "  -p, --precision P  on a GPU: fp32, bf16 (default) or fp16 GEMMs and activations\n"
    "                     (fp32 accumulation and residual stream); the CPU is fp32\n"
    "  -q, --quiet        no progress line\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 ok, 1 error (model, input, an image of the wrong size), 2 usage.\n";

typedef struct {
  const char *model, *input;
  int tokens, quiet;
  bm_run_opts run; /* --batch, --threads, --device, --precision */
} options;

typedef struct {
  bm_held held;
  int *img_of;      /* [held] index into the batch's images, -1 for none */
  int cap_held;
  float *img;       /* [batch, 3, S, S] */
  float *emb;       /* [batch, E] */
  float *tok;       /* [batch, T, W] with --tokens */
  int nimg;
} slot;

typedef struct {
  bm_model m;
  bm_vit_acts acts;
  bm_cuda *gpu;     /* NULL on the CPU */
  bm_cuda_vit *gvit;
  slot sl[2];
  uint16_t *tok16;  /* [T, W] */
  long done;
} state;

/* Starts the forward pass of slot k (on a GPU it runs while we go on). */
static void submit(state *s, int k, const options *opt) {
  slot *b = &s->sl[k];
  if (!b->nimg) return;
  if (s->gvit) bm_cuda_vit_submit(s->gvit, k, b->img, b->nimg, b->emb, opt->tokens ? b->tok : NULL);
  else bm_vit_forward(&s->m.vit, &s->acts, b->img, b->nimg, b->emb, opt->tokens ? b->tok : NULL);
}

/* Waits for slot k's outputs and writes its records. */
static void finish(state *s, int k, const options *opt, bm_writer *w, bm_out *o) {
  const bm_vit *v = &s->m.vit;
  slot *b = &s->sl[k];
  if (b->nimg && s->gvit) bm_cuda_vit_wait(s->gvit, k);
  size_t TW = (size_t)v->ntok * v->width;
  for (int i = 0; i < b->held.n; i++) {
    const msgpack_object *rec = bm_held_get(&b->held, i);
    bm_out_reset(o);
    int j = b->img_of[i];
    if (j >= 0) {
      bm_out_tensor(o, "img_emb", BM_F32, 1, (int64_t[]){v->embed_dim}, b->emb + (size_t)j * v->embed_dim);
      if (opt->tokens) {
        const float *t = b->tok + (size_t)j * TW;
        for (size_t q = 0; q < TW; q++) s->tok16[q] = bm_f32_to_f16(t[q]);
        bm_out_tensor(o, "img_tokens", BM_F16, 2, (int64_t[]){v->ntok, v->width}, s->tok16);
      }
    }
    if (bm_write_record(w, rec, o)) exit(1);
  }
  s->done += b->nimg;
  b->nimg = 0;
  bm_held_clear(&b->held);
}

/* Host buffers: pinned on a GPU so that the copies overlap the compute. */
static float *host_floats(const state *s, size_t n, const char *what) {
  size_t bytes = bm_mul_size(n, sizeof(float));
  return s->gpu ? bm_cuda_host_alloc(bytes, what) : bm_xmalloc(bytes);
}
static void host_free(const state *s, float *p) {
  if (s->gpu) bm_cuda_host_free(p);
  else free(p);
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  bm_blas_init(argv);
  options opt = {.run = BM_RUN_OPTS_DEFAULT};
  static const struct option longs[] = {{"model", required_argument, 0, 'm'},
                                        {"tokens", no_argument, 0, 't'},
                                        {"quiet", no_argument, 0, 'q'},
                                        BM_RUN_LONGOPTS,
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "m:tqh" BM_RUN_SHORTOPTS, longs, NULL)) != -1) {
    switch (c) {
    case 'm': opt.model = optarg; break;
    case 't': opt.tokens = 1; break;
    case 'q': opt.quiet = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    default:
      if (!bm_run_opt(&opt.run, c, optarg)) bm_usage_die("unknown option (see --help)");
    }
  }
  if (!opt.model) bm_usage_die("-m MODEL is required (see --help)");
  if (argc - optind > 1) bm_usage_die("one input at most (see --help)");
  opt.input = optind < argc ? argv[optind] : NULL;
  bm_run_opts_apply(&opt.run);

  state s;
  memset(&s, 0, sizeof s);
  char err[1024];
  if (bm_model_load(&s.m, opt.model, BM_LOAD_VISION, err, sizeof err)) bm_die("%s", err);
  const bm_vit *v = &s.m.vit;
  if (bm_device_is_cuda(opt.run.device)) {
    if (!(s.gpu = bm_cuda_open(opt.run.device, err, sizeof err))) bm_die("--device %s", err);
    s.gvit = bm_cuda_vit_new(s.gpu, v, opt.run.prec, (int)opt.run.batch);
    if (!opt.quiet) bm_warn("image tower on %s in %s", bm_cuda_describe(s.gpu), bm_prec_name(opt.run.prec));
  }
  int S = v->image_size;
  size_t npix = (size_t)3 * S * S;
  for (int k = 0; k < 2; k++) {
    slot *b = &s.sl[k];
    b->img = host_floats(&s, (size_t)opt.run.batch * npix, "images");
    b->emb = host_floats(&s, (size_t)opt.run.batch * v->embed_dim, "embeddings");
    if (opt.tokens) b->tok = host_floats(&s, (size_t)opt.run.batch * v->ntok * v->width, "tokens");
    bm_held_init(&b->held);
  }
  if (opt.tokens) s.tok16 = bm_xmalloc(bm_mul_size((size_t)v->ntok * v->width, sizeof(uint16_t)));
  int cur = 0, pending = -1;

  bm_reader *r = bm_reader_open(opt.input);
  bm_writer *w = bm_writer_open(NULL);
  const msgpack_object *hdr = bm_reader_header(r);
  if (bm_reader_error(r)) return 1;
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "img_model", opt.model);
  bm_out_int(&o, "embed_dim", v->embed_dim);
  if (bm_write_header(w, hdr, &o)) return 1;

  bm_progress prog;
  bm_progress_init(&prog, opt.quiet);
  const msgpack_object *rec;
  int got;
  while ((got = bm_reader_next(r, &rec)) == 1) {
    bm_tensor t;
    int has = bm_rec_tensor(rec, "image", &t, err, sizeof err);
    char where[256];
    if (has < 0) bm_die("%s: \"image\": %s", bm_reader_where(r, where, sizeof where), err);
    if (has && (t.dtype != BM_U8 || t.ndim != 3 || t.shape[0] != 3 || t.shape[1] != S || t.shape[2] != S)) {
      char shape[128];
      int k = 0;
      for (int i = 0; i < t.ndim && k < (int)sizeof shape - 24; i++)
        k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", i ? "," : "", (long long)t.shape[i]);
      shape[k] = 0;
      bm_die("%s: \"image\" is %s [%s]; this model expects u8 [3,%d,%d] (resize with bm-decode --size %d)",
             bm_reader_where(r, where, sizeof where), bm_dtype_name(t.dtype), shape, S, S, S);
    }
    slot *b = &s.sl[cur];
    int i = bm_held_push(&b->held, rec);
    if (i >= b->cap_held) {
      b->cap_held = 2 * (i + 1);
      b->img_of = bm_xrealloc(b->img_of, sizeof(int) * (size_t)b->cap_held);
    }
    b->img_of[i] = has ? b->nimg : -1;
    if (has) bm_model_normalize_image(&s.m, t.data, S, b->img + (size_t)b->nimg++ * npix);
    /* a long run of records without images is written out too, not hoarded */
    if (b->nimg == opt.run.batch || b->held.n >= 4 * opt.run.batch) {
      submit(&s, cur, &opt);
      if (pending >= 0) finish(&s, pending, &opt, w, &o);
      pending = cur, cur ^= 1;
      bm_progress_update(&prog, "%ld images, %.1f images/s", s.done, s.done / (bm_now() - prog.start));
    }
  }
  submit(&s, cur, &opt);
  if (pending >= 0) finish(&s, pending, &opt, w, &o);
  finish(&s, cur, &opt, w, &o);
  bm_progress_done(&prog);
  int bad = got < 0 || bm_reader_error(r);
  bm_reader_close(r);
  if (bm_writer_close(w)) bad = 1;
  bm_out_free(&o);
  bm_vit_acts_free(&s.acts);
  for (int k = 0; k < 2; k++) {
    slot *b = &s.sl[k];
    bm_held_free(&b->held);
    host_free(&s, b->img), host_free(&s, b->emb), host_free(&s, b->tok);
    free(b->img_of);
  }
  free(s.tok16);
  bm_cuda_vit_free(s.gvit);
  bm_cuda_close(s.gpu);
  bm_model_free(&s.m);
  return bad ? 1 : 0;
}
