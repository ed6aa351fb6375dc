/* sim_impl.cpp - the CPU side of tests/gpu/sim/run.sh: the lane scheduler
 * (each warp's lanes are ucontext coroutines that switch at every shuffle
 * and __syncwarp; a block's warps run one after another, which is one of
 * the orders the device may choose), and stand-ins for the device runtime
 * and the verified bmct_* / bm_cuda_* kernels the fusion module calls, as
 * plain loops in the same precisions. */
#include <ucontext.h>
#include "train_internal.cuh"
dim3 threadIdx, blockIdx, blockDim, gridDim;
float sh[1 << 16];
int sim_lane;
double sim_slot[32];
static ucontext_t sched, lanes[32];
static char *stacks[32];
static int done[32], waiting[32], absent[32];
static std::function<void()> *body_now;
static unsigned warp_now;
static long long nswitch;
void sim_yield() { waiting[sim_lane] = 1; swapcontext(&lanes[sim_lane], &sched); }
static void lane_main() { (*body_now)(); done[sim_lane] = 1; swapcontext(&lanes[sim_lane], &sched); }
static void run_warp(std::function<void()> &body, unsigned w, unsigned nthreads) {
  body_now = &body, warp_now = w;
  for (int l = 0; l < 32; l++) {
    if (!stacks[l]) stacks[l] = (char *)malloc(1 << 17);
    getcontext(&lanes[l]);
    lanes[l].uc_stack.ss_sp = stacks[l], lanes[l].uc_stack.ss_size = 1 << 17, lanes[l].uc_link = nullptr;
    makecontext(&lanes[l], lane_main, 0);
    done[l] = absent[l] = w * 32 + l >= nthreads; /* partial warps: lanes that do not exist */
  }
  for (;;) {
    int any = 0, nd = 0, nw = 0;
    for (int l = 0; l < 32; l++) {
      if (done[l]) continue;
      any = 1, waiting[l] = 0, sim_lane = l;
      threadIdx = dim3(w * 32 + l);
      swapcontext(&sched, &lanes[l]);
      nswitch++;
    }
    if (!any) break;
    for (int l = 0; l < 32; l++) nd += done[l] && !absent[l], nw += waiting[l] && !done[l];
    if (nw && nd) { fprintf(stderr, "sim: lanes exited while others wait at a warp barrier (block %u warp %u)\n", blockIdx.x, w); abort(); }
  }
}
void sim_launch(dim3 grid, dim3 block, size_t shmem, std::function<void()> body) {
  if (shmem > sizeof sh) { fprintf(stderr, "sim: shared %zu\n", shmem); abort(); }
  if (block.x > 1024 || block.y != 1) { fprintf(stderr, "sim: block %u x %u\n", block.x, block.y); abort(); }
  gridDim = grid, blockDim = block;
  for (unsigned b = 0; b < grid.x; b++) {
    blockIdx = dim3(b);
    memset(sh, 0xff, shmem); /* NaN garbage */
    for (unsigned w = 0; w < (block.x + 31) / 32; w++) run_warp(body, w, block.x);
  }
}

/* typed element access */
static float gv(int p, const void *x, size_t i) {
  switch (p) {
  case BMCT_FP32: return ((const float *)x)[i];
  case BMCT_BF16: return __bfloat162float(((const __nv_bfloat16 *)x)[i]);
  default: return __half2float(((const __half *)x)[i]);
  }
}
static void sv(int p, void *x, size_t i, float v) {
  switch (p) {
  case BMCT_FP32: ((float *)x)[i] = v; break;
  case BMCT_BF16: ((__nv_bfloat16 *)x)[i] = __float2bfloat16_rn(v); break;
  default: ((__half *)x)[i] = __float2half_rn(v);
  }
}

extern "C" {
size_t bm_prec_size(bm_prec t) { return t == BM_PREC_FP32 ? 4 : 2; }
const char *bm_prec_name(bm_prec t) { return t == BM_PREC_FP32 ? "fp32" : t == BM_PREC_BF16 ? "bf16" : "fp16"; }
struct bm_cuda { int x; };
bm_cuda *bm_cuda_open(const char *, char *, size_t) { return (bm_cuda *)calloc(1, sizeof(bm_cuda)); }
void bm_cuda_close(bm_cuda *c) { free(c); }
static long long live;
void *bm_cuda_malloc(size_t bytes, const char *) { void *p = malloc(bytes ? bytes : 1); memset(p, 0xff, bytes); live++; return p; }
void bm_cuda_free(void *p) { if (p) live--; free(p); }
bmct_ctx *bmct_ctx_new(bm_cuda *cu) { bmct_ctx *c = (bmct_ctx *)calloc(1, sizeof *c); c->cu = cu; return c; }
void bmct_ctx_free(bmct_ctx *c) { free(c); if (getenv("SIM_VERBOSE")) fprintf(stderr, "sim: %lld buffers live, %lld lane switches\n", live, nswitch); }
void bmct_sync(bmct_ctx *) {}
bm_cuda *bmct_ctx_cuda(bmct_ctx *c) { return c->cu; }
void bmct_upload(bmct_ctx *, void *d, const void *s, size_t n) { memcpy(d, s, n); }
void bmct_download(bmct_ctx *, void *d, const void *s, size_t n) { memcpy(d, s, n); }
void bmct_poison(bmct_ctx *, void *p, int prec, size_t n) { for (size_t i = 0; i < n; i++) sv(prec, p, i, NAN); }
void bm_cuda_convert(bm_cuda *, void *dst, bm_prec t, const float *src, size_t n) { for (size_t i = 0; i < n; i++) sv(t, dst, i, src[i]); }
void bm_cuda_gather_rows(bm_cuda *, float *dst, const float *src, const int *rows, int n, int C) {
  for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * C, src + (size_t)rows[i] * C, 4 * (size_t)C);
}
void bm_cuda_gemm(bm_cuda *, void *Y, bm_prec yt, const void *X, const void *W, bm_prec ab, const float *bias, int N,
                  int in, int out, float alpha, float beta) {
  for (int r = 0; r < N; r++)
    for (int o = 0; o < out; o++) {
      float a = 0;
      for (int k = 0; k < in; k++) a += gv(ab, X, (size_t)r * in + k) * gv(ab, W, (size_t)o * in + k);
      float y = alpha * a + (beta != 0 ? beta * gv(yt, Y, (size_t)r * out + o) : 0.0f) + (bias ? bias[o] : 0.0f);
      sv(yt, Y, (size_t)r * out + o, y);
    }
}
void bmct_colsum(bmct_ctx *, int prec, float *db, const void *y, int N, int C) {
  if (!db) return;
  for (int j = 0; j < C; j++) { double s = 0; for (int i = 0; i < N; i++) s += gv(prec, y, (size_t)i * C + j); db[j] += (float)s; }
}
void bmct_convert_colsum(bmct_ctx *c, int prec, void *yt, float *db, const float *y, int N, int C) {
  if (yt) for (size_t i = 0; i < (size_t)N * C; i++) sv(prec, yt, i, y[i]);
  bmct_colsum(c, BMCT_FP32, db, y, N, C);
}
void bmct_linear_backward(bmct_ctx *c, int prec, void *dx, int dx_f32, float *dW, float *db, const void *dy,
                          const void *x, const void *W, int N, int in, int out, int accumulate) {
  int xt = dx_f32 ? BMCT_FP32 : prec;
  if (dx)
    for (int r = 0; r < N; r++)
      for (int k = 0; k < in; k++) {
        float a = 0;
        for (int o = 0; o < out; o++) a += gv(prec, dy, (size_t)r * out + o) * gv(prec, W, (size_t)o * in + k);
        sv(xt, dx, (size_t)r * in + k, accumulate ? gv(xt, dx, (size_t)r * in + k) + a : a);
      }
  if (dW)
    for (int o = 0; o < out; o++)
      for (int k = 0; k < in; k++) {
        float a = 0;
        for (int r = 0; r < N; r++) a += gv(prec, dy, (size_t)r * out + o) * gv(prec, x, (size_t)r * in + k);
        dW[(size_t)o * in + k] += a;
      }
  bmct_colsum(c, prec, db, dy, N, out);
}
static float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
void bmct_bias_gelu(bmct_ctx *, int prec, void *pre, void *h, const float *b, int N, int C) {
  for (size_t i = 0; i < (size_t)N * C; i++) {
    float x = gv(prec, pre, i) + (b ? b[i % C] : 0.0f);
    sv(prec, pre, i, x);
    sv(prec, h, i, gelu(gv(prec, pre, i)));
  }
}
void bmct_gelu_backward_db(bmct_ctx *c, int prec, void *dx, float *db, const void *dy, const void *pre, int N, int C) {
  for (size_t i = 0; i < (size_t)N * C; i++) {
    float x = gv(prec, pre, i);
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f)), pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    sv(prec, dx, i, gv(prec, dy, i) * (cdf + x * pdf));
  }
  bmct_colsum(c, prec, db, dx, N, C);
}
void bmct_layernorm_fwd(bmct_ctx *, int prec, int y_f32, void *y, float *mean, float *rstd, const float *x,
                        const float *g, const float *b, int N, int C, float eps) {
  if (y_f32) prec = BMCT_FP32;
  for (int r = 0; r < N; r++) {
    const float *xr = x + (size_t)r * C;
    float m = 0, v = 0;
    for (int j = 0; j < C; j++) m += xr[j];
    m /= C;
    for (int j = 0; j < C; j++) v += (xr[j] - m) * (xr[j] - m);
    float rs = 1.0f / sqrtf(v / C + eps);
    for (int j = 0; j < C; j++) sv(prec, y, (size_t)r * C + j, (xr[j] - m) * rs * g[j] + b[j]);
    mean[r] = m, rstd[r] = rs;
  }
}
void bmct_layernorm_backward(bmct_ctx *, float *dx, float *dg, float *db, const float *dy, const float *x,
                             const float *mean, const float *rstd, const float *g, int N, int C, int acc) {
  for (int r = 0; r < N; r++) {
    const float *xr = x + (size_t)r * C, *dyr = dy + (size_t)r * C;
    float m = mean[r], rs = rstd[r], s1 = 0, s2 = 0;
    for (int j = 0; j < C; j++) { float d = dyr[j] * g[j]; s1 += d; s2 += d * (xr[j] - m) * rs; }
    s1 /= C, s2 /= C;
    for (int j = 0; j < C; j++) {
      float v = rs * (dyr[j] * g[j] - s1 - (xr[j] - m) * rs * s2);
      if (dx) dx[(size_t)r * C + j] = acc ? dx[(size_t)r * C + j] + v : v;
      if (dg) dg[j] += dyr[j] * (xr[j] - m) * rs;
      if (db) db[j] += dyr[j];
    }
  }
}
/* ---- optimizer (adamw.c's arithmetic; bmcuda_train.h's contract) ---- */
void bmct_upload_as(bmct_ctx *, void *dst, int prec, const float *src, size_t n) { for (size_t i = 0; i < n; i++) sv(prec, dst, i, src[i]); }
void bmct_download_as(bmct_ctx *, float *dst, const void *src, int prec, size_t n) { for (size_t i = 0; i < n; i++) dst[i] = gv(prec, src, i); }
void bmct_adamw(bmct_ctx *, float *w, void *wc, int prec, const float *g, float *m, float *v, size_t n, double lr,
                double wd, double beta1, double beta2, double eps, long step, float gscale) {
  double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step), decay = 1 - lr * wd;
  float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] * gscale;
    w[i] = (float)(w[i] * decay);
    m[i] = (float)(beta1 * m[i] + (1 - beta1) * gi);
    v[i] = (float)(beta2 * v[i] + (1 - beta2) * (double)gi * gi);
    w[i] -= step_size * m[i] / (sqrtf(v[i]) / sqrt_bc2 + (float)eps);
    if (wc) sv(prec, wc, i, w[i]);
  }
}
double bmct_sumsq(bmct_ctx *, const float *g, size_t n) { double s = 0; for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i]; return s; }
void bmct_scale(bmct_ctx *, float *g, size_t n, float s) { for (size_t i = 0; i < n; i++) g[i] *= s; }
}
