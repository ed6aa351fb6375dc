/* bw_internal.h - how the backward functions split work over threads. */
#ifndef BM_BW_INTERNAL_H
#define BM_BW_INTERNAL_H

#include <omp.h>

/* Element-wise loops are compiled for the baseline and for AVX2+FMA and
 * AVX-512 machines, as kernels.c's; the loader picks one (GNU ifunc). */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define BW_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define BW_CLONES
#endif

/* Threads for a parallel region: one when called from inside another. */
static inline int bw_team(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/* Thread t of n takes [*i0, *i1) of total items, in bands aligned to unit
 * items (a whole SIMD row or cache line) so neighbours share no line. */
static inline void bw_band(int total, int unit, int t, int n, int *i0, int *i1) {
  long chunks = (total + unit - 1) / unit;
  long c0 = chunks * t / n, c1 = chunks * (t + 1) / n;
  *i0 = (int)(c0 * unit);
  *i1 = c1 * unit < total ? (int)(c1 * unit) : total;
  if (*i0 > total) *i0 = total;
}

#endif
