/* clip_loss_bench.c - bm_clip_loss forward + the three gradients at batch B,
 * width E, on the OpenMP threads; prints one JSON line (best of REPS).
 *   clip_loss_bench [B [E [REPS]]] */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "clip_loss.h"
#include "kernels.h"
#include "util.h"

int main(int argc, char **argv) {
  int B = argc > 1 ? atoi(argv[1]) : 4096, E = argc > 2 ? atoi(argv[2]) : 512;
  int reps = argc > 3 ? atoi(argv[3]) : 3;
  bm_set_threads(0);
  size_t n = (size_t)B * E;
  float *img = bm_xmalloc(n * sizeof *img), *txt = bm_xmalloc(n * sizeof *txt);
  float *di = bm_xmalloc(n * sizeof *di), *dt = bm_xmalloc(n * sizeof *dt), dl;
  bm_rng r;
  bm_rng_seed(&r, 1);
  for (size_t i = 0; i < n; i++) img[i] = (float)bm_rng_uniform(&r) - 0.5f, txt[i] = (float)bm_rng_uniform(&r) - 0.5f;
  bm_l2_normalize(img, B, E);
  bm_l2_normalize(txt, B, E);
  double best = 1e30, loss = 0;
  for (int k = 0; k <= reps; k++) { /* k = 0 warms up */
    double t = omp_get_wtime();
    loss = bm_clip_loss(img, txt, B, E, (float)BM_CLIP_LOG_SCALE_MAX, di, dt, &dl);
    t = omp_get_wtime() - t;
    if (k && t < best) best = t;
  }
  printf("{\"impl\": \"C\", \"B\": %d, \"E\": %d, \"threads\": %d, \"loss\": %.6f, \"step_s\": %.4f}\n", B, E,
         bm_threads(), loss, best);
  return 0;
}
