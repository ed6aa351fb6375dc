/* run_opts.c - see run_opts.h. */
#include "run_opts.h"
#include "kernels.h"
#include "util.h"

int bm_run_opt(bm_run_opts *r, int c, const char *arg) {
  switch (c) {
  case 'b':
    if (bm_parse_long(arg, 1, 1 << 16, &r->batch)) bm_usage_die("--batch: not a count from 1 to 65536: %s", arg);
    return 1;
  case 'j':
    if (bm_parse_long(arg, 1, 4096, &r->threads)) bm_usage_die("--threads: not a count: %s", arg);
    return 1;
  case 'd':
    if (bm_device_is_cuda(arg) < 0) bm_usage_die("--device: cpu, cuda or cuda:N, not %s", arg);
    r->device = arg;
    return 1;
  case 'p':
    if (bm_prec_parse(arg, &r->prec)) bm_usage_die("--precision: fp32, bf16 or fp16, not %s", arg);
    r->prec_given = 1;
    return 1;
  default: return 0;
  }
}

void bm_run_opts_apply(const bm_run_opts *r) {
  if (r->prec_given && r->prec != BM_PREC_FP32 && !bm_device_is_cuda(r->device))
    bm_usage_die("--precision %s: the CPU computes in fp32 (use --device cuda)", bm_prec_name(r->prec));
  bm_set_threads((int)r->threads);
}
