/* bm-embed-img - the image tower as a filter: records with "image" get
 * "img_emb" (and "img_tokens" with --tokens); every other record and key
 * passes through in order.
 *
 *   bm-embed-img -m MODEL [--tokens] [--batch N] [--threads N] [FILE]
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "held.h"
#include "kernels.h"
#include "model.h"
#include "record.h"
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
    "  -q, --quiet        no progress line\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 ok, 1 error (model, input, an image of the wrong size), 2 usage.\n";

typedef struct {
  const char *model, *input;
  int tokens, quiet;
  long batch, threads;
} options;

typedef struct {
  bm_model m;
  bm_vit_acts acts;
  bm_held held;
  int *img_of;      /* [held] index into the batch's images, -1 for none */
  float *img;       /* [batch, 3, S, S] */
  float *emb;       /* [batch, E] */
  float *tok;       /* [batch, T, W] with --tokens */
  uint16_t *tok16;  /* [T, W] */
  int nimg;
  long done;
} state;

static void flush(state *s, const options *opt, bm_writer *w, bm_out *o) {
  const bm_vit *v = &s->m.vit;
  if (s->nimg) bm_vit_forward(v, &s->acts, s->img, s->nimg, s->emb, opt->tokens ? s->tok : NULL);
  size_t TW = (size_t)v->ntok * v->width;
  for (int i = 0; i < s->held.n; i++) {
    const msgpack_object *rec = bm_held_get(&s->held, i);
    bm_out_reset(o);
    int k = s->img_of[i];
    if (k >= 0) {
      bm_out_tensor(o, "img_emb", BM_F32, 1, (int64_t[]){v->embed_dim}, s->emb + (size_t)k * v->embed_dim);
      if (opt->tokens) {
        const float *t = s->tok + (size_t)k * TW;
        for (size_t j = 0; j < TW; j++) s->tok16[j] = bm_f32_to_f16(t[j]);
        bm_out_tensor(o, "img_tokens", BM_F16, 2, (int64_t[]){v->ntok, v->width}, s->tok16);
      }
    }
    if (bm_write_record(w, rec, o)) exit(1);
  }
  s->done += s->nimg;
  s->nimg = 0;
  bm_held_clear(&s->held);
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  options opt = {.batch = 32};
  static const struct option longs[] = {{"model", required_argument, 0, 'm'},
                                        {"tokens", no_argument, 0, 't'},
                                        {"batch", required_argument, 0, 'b'},
                                        {"threads", required_argument, 0, 'j'},
                                        {"quiet", no_argument, 0, 'q'},
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "m:tb:j:qh", longs, NULL)) != -1) {
    switch (c) {
    case 'm': opt.model = optarg; break;
    case 't': opt.tokens = 1; break;
    case 'b':
      if (bm_parse_long(optarg, 1, 1 << 16, &opt.batch)) bm_usage_die("--batch: not a count from 1 to 65536: %s", optarg);
      break;
    case 'j':
      if (bm_parse_long(optarg, 1, 4096, &opt.threads)) bm_usage_die("--threads: not a count: %s", optarg);
      break;
    case 'q': opt.quiet = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    default: bm_usage_die("unknown option (see --help)");
    }
  }
  if (!opt.model) bm_usage_die("-m MODEL is required (see --help)");
  if (argc - optind > 1) bm_usage_die("one input at most (see --help)");
  opt.input = optind < argc ? argv[optind] : NULL;
  bm_set_threads((int)opt.threads);

  state s;
  memset(&s, 0, sizeof s);
  char err[1024];
  if (bm_model_load(&s.m, opt.model, BM_LOAD_VISION, err, sizeof err)) bm_die("%s", err);
  const bm_vit *v = &s.m.vit;
  int S = v->image_size;
  size_t npix = (size_t)3 * S * S;
  s.img = bm_xmalloc(bm_mul_size((size_t)opt.batch * npix, sizeof(float)));
  s.emb = bm_xmalloc(bm_mul_size((size_t)opt.batch * v->embed_dim, sizeof(float)));
  if (opt.tokens) {
    s.tok = bm_xmalloc(bm_mul_size((size_t)opt.batch * v->ntok * v->width, sizeof(float)));
    s.tok16 = bm_xmalloc(bm_mul_size((size_t)v->ntok * v->width, sizeof(uint16_t)));
  }
  int cap_held = 0;
  bm_held_init(&s.held);

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
    int i = bm_held_push(&s.held, rec);
    if (i >= cap_held) {
      cap_held = 2 * (i + 1);
      s.img_of = bm_xrealloc(s.img_of, sizeof(int) * (size_t)cap_held);
    }
    s.img_of[i] = has ? s.nimg : -1;
    if (has) bm_model_normalize_image(&s.m, t.data, S, s.img + (size_t)s.nimg++ * npix);
    /* a long run of records without images is written out too, not hoarded */
    if (s.nimg == opt.batch || s.held.n >= 4 * opt.batch) {
      flush(&s, &opt, w, &o);
      bm_progress_update(&prog, "%ld images, %.1f images/s", s.done, s.done / (bm_now() - prog.start));
    }
  }
  flush(&s, &opt, w, &o);
  bm_progress_done(&prog);
  int bad = got < 0 || bm_reader_error(r);
  bm_reader_close(r);
  if (bm_writer_close(w)) bad = 1;
  bm_out_free(&o);
  bm_held_free(&s.held);
  bm_vit_acts_free(&s.acts);
  free(s.img), free(s.emb), free(s.tok), free(s.tok16), free(s.img_of);
  bm_model_free(&s.m);
  return bad ? 1 : 0;
}
