/* run_opts.h - the options of the filters that run a tower (bm-embed-img,
 * bm-embed-txt): --batch, --threads, --device, --precision, parsed and
 * checked by one piece of code so that both say the same things. */
#ifndef BM_RUN_OPTS_H
#define BM_RUN_OPTS_H
#include <getopt.h>
#include "cuda/bmcuda.h"

typedef struct {
  long batch, threads; /* threads 0: OMP_NUM_THREADS or all cores */
  const char *device;  /* "cpu", "cuda", "cuda:N" */
  bm_prec prec;        /* on a GPU; the CPU computes in fp32 */
  int prec_given;
} bm_run_opts;

#define BM_RUN_OPTS_DEFAULT {.batch = 32, .device = "cpu", .prec = BM_PREC_BF16}
/* getopt_long entries and short letters of the four options */
#define BM_RUN_LONGOPTS                                                                     \
  {"batch", required_argument, 0, 'b'}, {"threads", required_argument, 0, 'j'},            \
      {"device", required_argument, 0, 'd'}, {"precision", required_argument, 0, 'p'}
#define BM_RUN_SHORTOPTS "b:j:d:p:"

/* Option c with argument arg: 1 when it is one of the four (parsed into r;
 * a bad value exits 2 naming it), 0 when it is not. */
int bm_run_opt(bm_run_opts *r, int c, const char *arg);
/* After parsing: --precision checked against --device (exit 2), the thread
 * count set. */
void bm_run_opts_apply(const bm_run_opts *r);
#endif
