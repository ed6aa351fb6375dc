#include "adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void bm_adamw_init(bm_adamw *opt, double beta1, double beta2, double eps) {
  memset(opt, 0, sizeof *opt);
  opt->beta1 = beta1;
  opt->beta2 = beta2;
  opt->eps = eps;
}

int bm_adamw_add_group(bm_adamw *opt, double lr, double weight_decay) {
  opt->groups = bm_xrealloc(opt->groups, sizeof *opt->groups * (size_t)(opt->ngroups + 1));
  opt->groups[opt->ngroups] = (bm_adamw_group){lr, weight_decay};
  return opt->ngroups++;
}

void bm_adamw_add_param(bm_adamw *opt, const char *name, float *param, float *grad, size_t n,
                        int group) {
  if (group < 0 || group >= opt->ngroups) bm_die("internal error: %s in group %d", name, group);
  if (opt->nparams == opt->cap) {
    opt->cap = opt->cap ? 2 * opt->cap : 64;
    opt->params = bm_xrealloc(opt->params, sizeof *opt->params * (size_t)opt->cap);
  }
  bm_adamw_param *p = &opt->params[opt->nparams++];
  p->param = param;
  p->grad = grad;
  p->n = n;
  p->group = group;
  p->name = name;
  p->m = bm_xcalloc(n, sizeof(float));
  p->v = bm_xcalloc(n, sizeof(float));
}

void bm_adamw_step(bm_adamw *opt, double lr_scale) {
  opt->step++;
  double bc1 = 1 - pow(opt->beta1, (double)opt->step);
  double bc2 = 1 - pow(opt->beta2, (double)opt->step);
  double b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
  for (int k = 0; k < opt->nparams; k++) {
    bm_adamw_param *p = &opt->params[k];
    double lr = opt->groups[p->group].lr * lr_scale;
    double decay = 1 - lr * opt->groups[p->group].weight_decay;
    /* the same order of operations as torch.optim.AdamW (single tensor):
     * decay, moments, then p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps) */
    float step_size = (float)(lr / bc1);
    float sqrt_bc2 = (float)sqrt(bc2);
    float *w = p->param, *g = p->grad, *m = p->m, *v = p->v;
    size_t n = p->n;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (size_t i = 0; i < n; i++) {
      w[i] = (float)(w[i] * decay);
      m[i] = (float)(b1 * m[i] + (1 - b1) * g[i]);
      v[i] = (float)(b2 * v[i] + (1 - b2) * (double)g[i] * g[i]);
      float denom = sqrtf(v[i]) / sqrt_bc2 + (float)eps;
      w[i] -= step_size * m[i] / denom;
    }
  }
}

void bm_adamw_zero_grad(bm_adamw *opt) {
  for (int k = 0; k < opt->nparams; k++)
    memset(opt->params[k].grad, 0, opt->params[k].n * sizeof(float));
}

double bm_clip_grad_norm(bm_adamw *opt, double max_norm) {
  double sq = 0;
  for (int k = 0; k < opt->nparams; k++) {
    const float *g = opt->params[k].grad;
    size_t n = opt->params[k].n;
    double s = 0;
#pragma omp parallel for reduction(+ : s) if (n > 65536) schedule(static)
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    sq += s;
  }
  double norm = sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    float scale = (float)(max_norm / (norm + 1e-6));
    for (int k = 0; k < opt->nparams; k++) {
      float *g = opt->params[k].grad;
      for (size_t i = 0; i < opt->params[k].n; i++) g[i] *= scale;
    }
  }
  return norm;
}

double bm_cosine_warmup(long step, long warmup, long total) {
  if (step < warmup) return (double)(step + 1) / (double)warmup;
  long e = step - warmup, es = total - warmup;
  if (es <= 0) return 1.0;
  if (e >= es) return 0.0;
  return 0.5 * (1 + cos(M_PI * (double)e / (double)es));
}

void bm_adamw_free(bm_adamw *opt) {
  for (int k = 0; k < opt->nparams; k++) {
    free(opt->params[k].m);
    free(opt->params[k].v);
  }
  free(opt->params);
  free(opt->groups);
  memset(opt, 0, sizeof *opt);
}
