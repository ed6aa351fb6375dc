/* train_opt.cu - bmcuda_opt.h: a bm_adamw mirrored on the device. The
 * arithmetic is the verified kernels' (bmct_sumsq, bmct_adamw); this file
 * only keeps the books: where each parameter lives, its moments, the groups,
 * the step count and the fp16 loss scale. */
#include <math.h>

#include "bmcuda_opt.h"
#include "train_internal.cuh"

struct slot {
  float *w;
  void *wc;
  const float *g;
  size_t n, mo; /* elements; offset of its moments in Mo/Vo */
  int group, bound;
};

struct gbuf {
  const float *g;
  size_t n;
};

struct bmct_opt {
  bmct_ctx *c;
  int prec;
  slot *s;
  int ns;
  gbuf *gb;
  int ngb;
  float *Mo, *Vo; /* [total] moments of every parameter, one after the other */
  double *lr, *wd, b1, b2, eps;
  int ngroups;
  long step;
  float scale;
  int good;
};

extern "C" bmct_opt *bmct_opt_new(bmct_ctx *c, const bm_adamw *cpu, int prec) {
  bmct_opt *o = (bmct_opt *)bm_xcalloc(1, sizeof *o);
  o->c = c, o->prec = prec, o->ns = cpu->nparams;
  o->s = (slot *)bm_xcalloc((size_t)(cpu->nparams ? cpu->nparams : 1), sizeof(slot));
  size_t total = 0;
  for (int k = 0; k < cpu->nparams; k++) {
    const bm_adamw_param *q = &cpu->params[k];
    if (q->group < 0 || q->group >= cpu->ngroups)
      bm_die("internal error: GPU optimizer: %s in group %d of %d", q->name, q->group, cpu->ngroups);
    o->s[k].n = q->n, o->s[k].mo = total, o->s[k].group = q->group;
    total += q->n;
  }
  o->Mo = (float *)bm_cuda_malloc((total ? total : 1) * 4, "AdamW m");
  o->Vo = (float *)bm_cuda_malloc((total ? total : 1) * 4, "AdamW v");
  for (int k = 0; k < cpu->nparams; k++) { /* zeros for a fresh run, a checkpoint's for a resumed one */
    bmct_upload(c, o->Mo + o->s[k].mo, cpu->params[k].m, cpu->params[k].n * 4);
    bmct_upload(c, o->Vo + o->s[k].mo, cpu->params[k].v, cpu->params[k].n * 4);
  }
  o->ngroups = cpu->ngroups;
  o->lr = (double *)bm_xmalloc(sizeof(double) * 2 * (size_t)(cpu->ngroups ? cpu->ngroups : 1));
  o->wd = o->lr + cpu->ngroups;
  for (int k = 0; k < cpu->ngroups; k++) o->lr[k] = cpu->groups[k].lr, o->wd[k] = cpu->groups[k].weight_decay;
  o->b1 = cpu->beta1, o->b2 = cpu->beta2, o->eps = cpu->eps, o->step = cpu->step;
  o->scale = prec == BMCT_FP16 ? 1024.0f : 1.0f; /* as train_ft.cu */
  return o;
}

extern "C" void bmct_opt_free(bmct_opt *o) {
  if (!o) return;
  bm_cuda_free(o->Mo), bm_cuda_free(o->Vo);
  free(o->s), free(o->gb), free(o->lr), free(o);
}

extern "C" void bmct_opt_bind(bmct_opt *o, int k, float *w, void *wc, const float *g) {
  if (k < 0 || k >= o->ns) bm_die("internal error: GPU optimizer: parameter %d of %d", k, o->ns);
  if (!w || !g) bm_die("internal error: GPU optimizer: parameter %d bound without weight or gradient", k);
  o->s[k].w = w, o->s[k].wc = o->prec == BMCT_FP32 ? NULL : wc, o->s[k].g = g, o->s[k].bound = 1;
}

extern "C" void bmct_opt_grads(bmct_opt *o, const float *g, size_t n) {
  o->gb = (gbuf *)realloc(o->gb, sizeof(gbuf) * (size_t)(o->ngb + 1));
  if (!o->gb) bm_die("out of memory (GPU optimizer)");
  o->gb[o->ngb++] = gbuf{g, n};
}

/* Every bound gradient inside exactly one registered buffer: otherwise the
 * norm would miss it or count it twice. Checked at each step: cheap. */
static void check_cover(const bmct_opt *o) {
  for (int k = 0; k < o->ns; k++) {
    const slot *s = &o->s[k];
    if (!s->bound) bm_die("internal error: GPU optimizer: parameter %d was never bound", k);
    int in = 0;
    for (int b = 0; b < o->ngb; b++) in += s->g >= o->gb[b].g && s->g + s->n <= o->gb[b].g + o->gb[b].n;
    if (in != 1) bm_die("internal error: GPU optimizer: parameter %d's gradient in %d norm buffers", k, in);
  }
}

extern "C" int bmct_opt_step(bmct_opt *o, double lr_scale, double max_norm, double *norm) {
  check_cover(o);
  double sq = 0;
  for (int b = 0; b < o->ngb; b++) sq += bmct_sumsq(o->c, o->gb[b].g, o->gb[b].n);
  double nrm = sqrt(sq) / o->scale; /* the gradients carry the loss scale */
  if (norm) *norm = nrm;
  if (o->prec == BMCT_FP16 && !isfinite(sq)) {
    o->scale = o->scale > 1.0f ? o->scale / 2 : 1.0f;
    o->good = 0;
    return 0;
  }
  float gs = 1.0f; /* torch's clip_grad_norm_: g *= max_norm / (norm + 1e-6) */
  if (max_norm > 0 && nrm > max_norm) gs = (float)(max_norm / (nrm + 1e-6));
  if (o->scale != 1.0f) gs = gs * (1.0f / o->scale);
  o->step++;
  for (int k = 0; k < o->ns; k++) {
    const slot *s = &o->s[k];
    bmct_adamw(o->c, s->w, s->wc, o->prec, s->g, o->Mo + s->mo, o->Vo + s->mo, s->n, o->lr[s->group] * lr_scale,
               o->wd[s->group], o->b1, o->b2, o->eps, o->step, gs);
  }
  if (o->prec == BMCT_FP16 && ++o->good >= 2000) o->scale *= 2, o->good = 0;
  return 1;
}

extern "C" float bmct_opt_loss_scale(const bmct_opt *o) { return o->scale; }

extern "C" void bmct_opt_download(bmct_opt *o, bm_adamw *cpu) {
  if (cpu->nparams != o->ns) bm_die("internal error: GPU optimizer: %d parameters, the CPU's has %d", o->ns, cpu->nparams);
  for (int k = 0; k < o->ns; k++) {
    bmct_download(o->c, cpu->params[k].m, o->Mo + o->s[k].mo, o->s[k].n * 4);
    bmct_download(o->c, cpu->params[k].v, o->Vo + o->s[k].mo, o->s[k].n * 4);
  }
  cpu->step = o->step;
}
