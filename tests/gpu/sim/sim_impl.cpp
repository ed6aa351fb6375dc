/* sim_impl.cpp - the CPU side of tests/gpu/sim/run.sh: the lane scheduler
 * (each warp's lanes are ucontext coroutines that switch at every shuffle
 * and __syncwarp; a block's warps run one after another, which is one of
 * the orders the device may choose), and stand-ins for the device runtime
 * and the verified bmct_* / bm_cuda_* kernels the fusion module calls, as
 * plain loops in the same precisions. */
#include <ucontext.h>
#include "train_internal.cuh"
extern "C" {
#include "backward.h"
}
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
/* Switching: ucontext starts a lane on its stack; afterwards _setjmp /
 * _longjmp switch (no signal-mask system call per switch, as swapcontext
 * makes: ten times faster). Under AddressSanitizer, which follows
 * swapcontext but not a longjmp onto another stack, swapcontext alone. */
#ifdef __SANITIZE_ADDRESS__
void sim_yield() { waiting[sim_lane] = 1; swapcontext(&lanes[sim_lane], &sched); }
static void lane_main() { (*body_now)(); done[sim_lane] = 1; swapcontext(&lanes[sim_lane], &sched); }
static void resume(int l) { swapcontext(&sched, &lanes[l]); }
static void fresh(int) {}
#else
#include <setjmp.h>
static jmp_buf sched_jb, lane_jb[32];
static int started[32];
void sim_yield() {
  waiting[sim_lane] = 1;
  if (!_setjmp(lane_jb[sim_lane])) _longjmp(sched_jb, 1);
}
static void lane_main() { (*body_now)(); done[sim_lane] = 1; _longjmp(sched_jb, 1); }
static __attribute__((noinline)) void resume(int l) {
  if (_setjmp(sched_jb)) return;
  if (!started[l]) started[l] = 1, setcontext(&lanes[l]);
  _longjmp(lane_jb[l], 1);
}
static void fresh(int l) { started[l] = 0; }
#endif
static void run_warp(std::function<void()> &body, unsigned w, unsigned nthreads) {
  body_now = &body, warp_now = w;
  for (volatile int l = 0; l < 32; l++) { /* volatile: getcontext returns like setjmp (-Wclobbered) */
    if (!stacks[l]) stacks[l] = (char *)malloc(1 << 17);
    getcontext(&lanes[l]);
    lanes[l].uc_stack.ss_sp = stacks[l], lanes[l].uc_stack.ss_size = 1 << 17, lanes[l].uc_link = nullptr;
    makecontext(&lanes[l], lane_main, 0);
    fresh(l);
    done[l] = absent[l] = w * 32 + l >= nthreads; /* partial warps: lanes that do not exist */
  }
  for (;;) {
    int any = 0, nd = 0, nw = 0;
    for (int l = 0; l < 32; l++) {
      if (done[l]) continue;
      any = 1, waiting[l] = 0, sim_lane = l;
      threadIdx = dim3(w * 32 + l);
      resume(l);
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

static float rnd(int p, float x) { float y; sv(p, &y, 0, x); return gv(p, &y, 0); }

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
/* ---- the image tower's verified pieces (bmcuda_fwd.h / bmcuda_train.h contracts; vit.c, kernels.c, bw_*.c) ---- */
void bmct_gemm(bmct_ctx *, int prec, int c_f32, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
               long long sA, const void *B, int ldb, long long sB, float beta, void *C, int ldc, long long sC,
               int batch) {
  int ct = c_f32 ? BMCT_FP32 : prec;
  for (int b = 0; b < batch; b++)
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++) {
        float a = 0;
        for (int k = 0; k < K; k++)
          a += gv(prec, A, b * sA + (ta ? (size_t)k * lda + m : (size_t)m * lda + k)) *
               gv(prec, B, b * sB + (tb ? (size_t)n * ldb + k : (size_t)k * ldb + n));
        size_t o = b * sC + (size_t)m * ldc + n;
        sv(ct, C, o, alpha * a + (beta != 0 ? beta * gv(ct, C, o) : 0.0f));
      }
}
void bmct_l2norm_fwd(bmct_ctx *, float *y, const float *x, int N, int C) {
  for (int i = 0; i < N; i++) {
    double s = 0;
    for (int j = 0; j < C; j++) s += (double)x[(size_t)i * C + j] * x[(size_t)i * C + j];
    float nrm = (float)sqrt(s), d = nrm > 1e-12f ? nrm : 1e-12f;
    for (int j = 0; j < C; j++) y[(size_t)i * C + j] = x[(size_t)i * C + j] / d;
  }
}
void bmct_l2norm_backward(bmct_ctx *, float *dx, const float *dy, const float *x, int N, int C) {
  bm_l2_normalize_backward(dx, dy, x, N, C); /* bw_norm.c: the CPU's, fp32 in and out, sums in double */
}
void bm_cuda_im2col(bm_cuda *, void *cols, bm_prec t, const float *img, int B, int S, int P) {
  int G = S / P, K = 3 * P * P;
  for (int b = 0; b < B; b++)
    for (int gy = 0; gy < G; gy++)
      for (int gx = 0; gx < G; gx++)
        for (int c = 0; c < 3; c++)
          for (int ky = 0; ky < P; ky++)
            for (int kx = 0; kx < P; kx++)
              sv(t, cols, ((size_t)(b * G + gy) * G + gx) * K + (c * P + ky) * P + kx,
                 img[(((size_t)b * 3 + c) * S + (size_t)gy * P + ky) * S + (size_t)gx * P + kx]);
}
void bm_cuda_vit_tokens(bm_cuda *, float *x, const float *patches, const float *cls, const float *pos, int B, int T,
                        int W) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int c = 0; c < W; c++)
        x[((size_t)b * T + t) * W + c] = (t ? patches[((size_t)b * (T - 1) + t - 1) * W + c] : cls[c]) + pos[(size_t)t * W + c];
}
void bmct_vit_tokens_backward(bmct_ctx *, int prec, void *dpatch, float *dcls, float *dpos, const float *dx, int B,
                              int GG, int W) {
  int T = GG + 1;
  for (int b = 0; b < B; b++)
    for (int p = 0; p < GG; p++)
      for (int c = 0; c < W; c++) sv(prec, dpatch, ((size_t)b * GG + p) * W + c, dx[((size_t)b * T + 1 + p) * W + c]);
  for (int t = 0; t < T; t++)
    for (int c = 0; c < W; c++) {
      double s = 0;
      for (int b = 0; b < B; b++) s += dx[((size_t)b * T + t) * W + c];
      if (dpos) dpos[(size_t)t * W + c] += (float)s;
      if (dcls && !t) dcls[c] += (float)s;
    }
}
void bmct_patch_embed_backward(bmct_ctx *c, int prec, float *dW, float *db, const void *dpatch, const void *cols, int B,
                               int S, int P, int C) {
  int G = S / P;
  bmct_linear_backward(c, prec, NULL, 0, dW, db, dpatch, cols, NULL, B * G * G, 3 * P * P, C, 0);
}

/* Attention over packed sequences, one plain loop for both verified paths:
 * flash (bf16/fp16, head dim 64: fp32 probabilities, lse [ntok, heads],
 * the backward recomputes P from lse and takes D = rowsum(dO * O) of the
 * forward's stored out) and batched (P stored in prec; o = P v; dS rounded
 * to prec), scores and every sum fp32, outputs rounded to prec. */
static void attn_fwd(int prec, void *out, void *Pst, float *lse, const void *qkv, const int *start, const int *len,
                     int nseq, int C, int H) {
  int hd = C / H;
  float scale = 1.0f / sqrtf((float)hd);
  for (int s = 0; s < nseq; s++) {
    int L = len[s], st0 = start[s];
    float *p = (float *)malloc(sizeof(float) * (L ? L : 1));
    for (int h = 0; h < H; h++)
      for (int i = 0; i < L; i++) {
        size_t qi = (size_t)(st0 + i) * 3 * C + h * hd;
        float m = -INFINITY, z = 0;
        for (int j = 0; j < L; j++) {
          size_t kj = (size_t)(st0 + j) * 3 * C + C + h * hd;
          float a = 0;
          for (int d = 0; d < hd; d++) a += gv(prec, qkv, qi + d) * gv(prec, qkv, kj + d);
          p[j] = scale * a, m = fmaxf(m, p[j]);
        }
        for (int j = 0; j < L; j++) z += p[j] = expf(p[j] - m);
        for (int j = 0; j < L; j++) {
          p[j] /= z;
          if (Pst) { size_t o = (((size_t)s * H + h) * L + i) * L + j; sv(prec, Pst, o, p[j]); p[j] = gv(prec, Pst, o); }
        }
        if (lse) lse[(size_t)(st0 + i) * H + h] = m + logf(z);
        for (int d = 0; d < hd; d++) {
          float a = 0;
          for (int j = 0; j < L; j++) a += p[j] * gv(prec, qkv, (size_t)(st0 + j) * 3 * C + 2 * C + h * hd + d);
          sv(prec, out, (size_t)(st0 + i) * C + h * hd + d, a);
        }
      }
    free(p);
  }
}
/* dq (fp32 [ntok, C]) is summed in scratch as the flash backward does; D
 * [ntok, heads] after it */
static void attn_bwd(int prec, void *dqkv, const void *dout, const void *qkv, const void *out, const void *Pst,
                     const float *lse, const int *start, const int *len, int nseq, int ntok, int C, int H,
                     float *dq, float *D) {
  int hd = C / H;
  float scale = 1.0f / sqrtf((float)hd);
  for (size_t i = 0; i < (size_t)ntok * C; i++) dq[i] = 0;
  for (int s = 0; s < nseq; s++) {
    int L = len[s], st0 = start[s];
    float *P = (float *)malloc(sizeof(float) * L * L + 1), *dS = (float *)malloc(sizeof(float) * L * L + 1);
    for (int h = 0; h < H; h++) {
      for (int i = 0; i < L; i++) {
        size_t qi = (size_t)(st0 + i) * 3 * C + h * hd, oi = (size_t)(st0 + i) * C + h * hd;
        float dd = 0, *dP = dS + (size_t)i * L;
        for (int j = 0; j < L; j++) {
          size_t kj = (size_t)(st0 + j) * 3 * C + C + h * hd, vj = kj + C;
          if (Pst) P[(size_t)i * L + j] = gv(prec, Pst, (((size_t)s * H + h) * L + i) * L + j);
          else {
            float a = 0;
            for (int d = 0; d < hd; d++) a += gv(prec, qkv, qi + d) * gv(prec, qkv, kj + d);
            P[(size_t)i * L + j] = expf(scale * a - lse[(size_t)(st0 + i) * H + h]);
          }
          float a = 0;
          for (int d = 0; d < hd; d++) a += gv(prec, dout, oi + d) * gv(prec, qkv, vj + d);
          dP[j] = a;
        }
        if (Pst) for (int j = 0; j < L; j++) dd += P[(size_t)i * L + j] * dP[j];
        else {
          for (int d = 0; d < hd; d++) dd += gv(prec, dout, oi + d) * gv(prec, out, oi + d);
          D[(size_t)(st0 + i) * H + h] = dd;
        }
        for (int j = 0; j < L; j++) {
          float v = P[(size_t)i * L + j] * (dP[j] - dd);
          dS[(size_t)i * L + j] = Pst ? rnd(prec, v) : v;
        }
      }
      for (int i = 0; i < L; i++)
        for (int d = 0; d < hd; d++) {
          float a = 0;
          for (int j = 0; j < L; j++) a += dS[(size_t)i * L + j] * gv(prec, qkv, (size_t)(st0 + j) * 3 * C + C + h * hd + d);
          dq[(size_t)(st0 + i) * C + h * hd + d] += scale * a;
        }
      for (int j = 0; j < L; j++)
        for (int d = 0; d < hd; d++) {
          float ak = 0, av = 0;
          for (int i = 0; i < L; i++) {
            ak += dS[(size_t)i * L + j] * gv(prec, qkv, (size_t)(st0 + i) * 3 * C + h * hd + d);
            av += P[(size_t)i * L + j] * gv(prec, dout, (size_t)(st0 + i) * C + h * hd + d);
          }
          size_t o = (size_t)(st0 + j) * 3 * C + h * hd + d;
          sv(prec, dqkv, o + C, scale * ak), sv(prec, dqkv, o + 2 * C, av);
        }
    }
    for (int i = 0; i < L; i++)
      for (int c = 0; c < C; c++) sv(prec, dqkv, (size_t)(st0 + i) * 3 * C + c, dq[(size_t)(st0 + i) * C + c]);
    free(P), free(dS);
  }
}
static size_t al256(size_t b) { return (b + 255) & ~(size_t)255; }
int bm_cuda_flash_ok(bm_prec t, int C, int heads) {
  return (t == BM_PREC_BF16 || t == BM_PREC_FP16) && heads > 0 && C % heads == 0 && C / heads == 64;
}
static void flash_check(const char *who, bm_prec t, int C, int heads) {
  if (!bm_cuda_flash_ok(t, C, heads)) { fprintf(stderr, "sim: %s: not a flash shape (%d, %d, %d)\n", who, (int)t, C, heads); abort(); }
}
size_t bm_cuda_flash_backward_scratch(int ntok, int C, int heads) { return al256((size_t)ntok * C * 4) + al256((size_t)ntok * heads * 4); }
void bm_cuda_flash_attention(bm_cuda *, void *out, float *lse, const void *qkv, bm_prec t, const int *start, const int *len,
                             int nseq, int maxlen, int C, int heads) {
  flash_check("bm_cuda_flash_attention", t, C, heads);
  for (int s = 0; s < nseq; s++) if (len[s] > maxlen || len[s] < 0) { fprintf(stderr, "sim: flash: len %d > maxlen %d\n", len[s], maxlen); abort(); }
  attn_fwd(t, out, NULL, lse, qkv, start, len, nseq, C, heads);
}
void bm_cuda_flash_attention_backward(bm_cuda *, void *dqkv, const void *dout, const void *qkv, const void *out,
                                      const float *lse, bm_prec t, const int *start, const int *len, int nseq, int maxlen,
                                      int ntok, int C, int heads, void *scratch) {
  flash_check("bm_cuda_flash_attention_backward", t, C, heads);
  for (int s = 0; s < nseq; s++)
    if (len[s] > maxlen || len[s] < 0 || start[s] < 0 || start[s] + len[s] > ntok) {
      fprintf(stderr, "sim: flash backward: sequence %d (%d, %d) outside %d tokens / maxlen %d\n", s, start[s], len[s], ntok, maxlen);
      abort();
    }
  attn_bwd(t, dqkv, dout, qkv, out, NULL, lse, start, len, nseq, ntok, C, heads, (float *)scratch,
           (float *)((char *)scratch + al256((size_t)ntok * C * 4)));
}
static int use_flash(int prec, int C, int heads) {
  const char *sw = getenv("BM_CUDA_ATTN");
  return bm_cuda_flash_ok((bm_prec)prec, C, heads) && !(sw && !strcmp(sw, "batched"));
}
size_t bmct_attention_scratch(int prec, int B, int T, int C, int heads) {
  if (use_flash(prec, C, heads)) return al256(bm_cuda_flash_backward_scratch(B * T, C, heads)) + al256(sizeof(int) * 2 * B);
  size_t e = bm_prec_size((bm_prec)prec), BTC = (size_t)B * T * C, BHTT = (size_t)B * heads * T * T;
  return 7 * al256(BTC * e) + al256(BHTT * 4) + al256(BHTT * e);
}
static int *seqs(int B, int T) { int *sl = (int *)malloc(sizeof(int) * 2 * B); for (int b = 0; b < B; b++) sl[b] = b * T, sl[B + b] = T; return sl; }
void bmct_attention_fwd(bmct_ctx *, int prec, void *out, void *P, const void *qkv, int B, int T, int C, int heads, void *scratch) {
  int *sl = seqs(B, T);
  memset(scratch, 0xff, bmct_attention_scratch(prec, B, T, C, heads)); /* the real one overwrites its scratch */
  if (use_flash(prec, C, heads)) attn_fwd(prec, out, NULL, (float *)P, qkv, sl, sl + B, B, C, heads);
  else attn_fwd(prec, out, P, NULL, qkv, sl, sl + B, B, C, heads);
  free(sl);
}
void bmct_attention_backward(bmct_ctx *c, int prec, void *dqkv, const void *dout, const void *qkv, const void *out,
                             const void *P, int B, int T, int C, int heads, void *scratch) {
  int *sl = seqs(B, T);
  memset(scratch, 0xff, bmct_attention_scratch(prec, B, T, C, heads));
  float *dq = (float *)malloc(sizeof(float) * B * T * C), *D = (float *)malloc(sizeof(float) * B * T * heads);
  if (use_flash(prec, C, heads)) attn_bwd(prec, dqkv, dout, qkv, out, NULL, (const float *)P, sl, sl + B, B, B * T, C, heads, dq, D);
  else attn_bwd(prec, dqkv, dout, qkv, out, P, NULL, sl, sl + B, B, B * T, C, heads, dq, D);
  free(sl), free(dq), free(D);
}
/* ---- the text tower's verified pieces ---- */
void *bm_cuda_host_alloc(size_t bytes, const char *) { void *p = malloc(bytes ? bytes : 1); memset(p, 0xff, bytes); return p; }
void bm_cuda_host_free(void *p) { free(p); }
void bm_cuda_bert_embed(bm_cuda *, float *x, const int32_t *ids, const int *posi, const float *word, int vocab,
                        const float *ctx, int nctx, const float *type, const float *pos, int N, int W) {
  for (int n = 0; n < N; n++) {
    int id = ids[n];
    if (!(id < vocab && (id >= 0 || (ctx && -id - 1 < nctx)))) { fprintf(stderr, "sim: bert_embed: id %d at %d\n", id, n); abort(); }
    const float *e = id >= 0 ? word + (size_t)id * W : ctx + (size_t)(-id - 1) * W, *pp = pos + (size_t)posi[n] * W;
    for (int j = 0; j < W; j++) x[(size_t)n * W + j] = (e[j] + type[j]) + pp[j]; /* bert.c's order */
  }
}
void bmct_gelu_backward(bmct_ctx *, int prec, void *dx, const void *dy, const void *pre, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float x = gv(prec, pre, i);
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f)), pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    sv(prec, dx, i, gv(prec, dy, i) * (cdf + x * pdf));
  }
}
/* applies where k_norm.cu's warp kernel does: C % 8 == 0, (C + 127) / 128 in {1,2,3,4,6,8}, 16-byte aligned */
int bm_cuda_layernorm_stats(bm_cuda *, float *yf, void *yt, bm_prec t, float *mean, float *rstd, const float *x,
                            const float *g, const float *b, int N, int C, float eps) {
  int K = (C + 127) / 128;
  if (N <= 0) return 1;
  if (C % 8 || (K != 1 && K != 2 && K != 3 && K != 4 && K != 6 && K != 8) || ((uintptr_t)x & 15) ||
      ((uintptr_t)yf & 15) || ((uintptr_t)yt & 15))
    return 0;
  for (int r = 0; r < N; r++) {
    const float *xr = x + (size_t)r * C;
    float m = 0, v = 0;
    for (int j = 0; j < C; j++) m += xr[j];
    m /= C;
    for (int j = 0; j < C; j++) v += (xr[j] - m) * (xr[j] - m);
    float rs = 1.0f / sqrtf(v / C + eps);
    for (int j = 0; j < C; j++) {
      float y = (xr[j] - m) * rs * g[j] + b[j];
      if (yt) sv(t, yt, (size_t)r * C + j, y);
      if (yf) yf[(size_t)r * C + j] = y; /* yf may be x: this element was read */
    }
    mean[r] = m, rstd[r] = rs;
  }
  return 1;
}
}
