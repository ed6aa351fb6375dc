#include "loss.h"

#include <math.h>

double bm_softmax_xent(const float *logits, const float *target, int B, int C, float *dlogits) {
  double total = 0;
  for (int b = 0; b < B; b++) {
    const float *x = logits + (long)b * C;
    const float *y = target + (long)b * C;
    double mx = x[0];
    for (int c = 1; c < C; c++) mx = x[c] > mx ? x[c] : mx;
    double sum = 0;
    for (int c = 0; c < C; c++) sum += exp(x[c] - mx);
    double logz = mx + log(sum);
    double ysum = 0;
    for (int c = 0; c < C; c++) {
      total -= y[c] * (x[c] - logz);
      ysum += y[c];
    }
    if (dlogits)
      for (int c = 0; c < C; c++)
        dlogits[(long)b * C + c] = (float)((exp(x[c] - logz) * ysum - y[c]) / B);
  }
  return total / B;
}

double bm_bce_logits(const float *logits, const float *target, const float *pos_weight, int B,
                     int C, float *dlogits) {
  double total = 0;
  double n = (double)B * C;
  for (int b = 0; b < B; b++) {
    for (int c = 0; c < C; c++) {
      long i = (long)b * C + c;
      double x = logits[i], y = target[i];
      double w = pos_weight ? pos_weight[c] : 1.0;
      double coef = 1 + (w - 1) * y; /* weight of the log(1+exp(-x)) term */
      /* log(1 + exp(-x)) computed without overflow */
      double softplus_negx = log1p(exp(-fabs(x))) + (x < 0 ? -x : 0);
      total += (1 - y) * x + coef * softplus_negx;
      if (dlogits) {
        double sig = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
        dlogits[i] = (float)(((1 - y) - coef * (1 - sig)) / n);
      }
    }
  }
  return total / n;
}

void bm_pos_weight_inverse_freq(const long *n_pos, long n, int C, float *pos_weight) {
  for (int c = 0; c < C; c++)
    pos_weight[c] = n_pos[c] > 0 ? (float)((double)(n - n_pos[c]) / (double)n_pos[c]) : 1.0f;
}
