/* test_cuda_fwd.c - every GPU forward kernel against its CPU function, and
 * the tiny model's towers GPU vs CPU, in fp32, bf16 and fp16. Fresh random
 * inputs each run (seeded by time, printed), outputs poisoned with NaN
 * before each run, errors as ||gpu - cpu|| / ||cpu||. Without a GPU (or
 * without nvcc) it prints one "# skip" line and passes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bert.h"
#include "check.h"
#include "cuda/bmcuda.h"
#include "cuda/bmcuda_fwd.h"
#include "cuda/bmcuda_towers.h"
#include "kernels.h"
#include "model.h"
#include "record.h"
#include "util.h"
#include "vit.h"

static bm_cuda *C;
static const bm_prec PRECS[3] = {BM_PREC_FP32, BM_PREC_BF16, BM_PREC_FP16};

/* kernel tolerance by precision (relative L2) */
static double tol(bm_prec t) { return t == BM_PREC_FP32 ? 1e-5 : t == BM_PREC_BF16 ? 1e-2 : 2e-3; }

static float *rnd(size_t n, float scale) {
  float *x = bm_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * rand() / (float)RAND_MAX - 1.0f);
  return x;
}
static void *dev_poisoned(size_t bytes) {
  void *d = bm_cuda_malloc(bytes, "test output");
  bm_cuda_memset(C, d, 0xff, bytes); /* NaN in fp32, bf16 and fp16 */
  return d;
}
/* n elements of type t on the device -> fp32 on the host (fresh buffer) */
static float *down(const void *d, bm_prec t, size_t n) {
  size_t es = bm_prec_size(t);
  unsigned char *raw = bm_xmalloc(n * es);
  bm_cuda_d2h(C, raw, d, n * es, BM_STREAM_COMPUTE);
  bm_cuda_sync(C, BM_STREAM_COMPUTE);
  float *f = bm_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    if (t == BM_PREC_FP32) memcpy(&f[i], raw + 4 * i, 4);
    else {
      uint16_t h;
      memcpy(&h, raw + 2 * i, 2);
      if (t == BM_PREC_FP16) f[i] = bm_f16_to_f32(h);
      else {
        uint32_t u = (uint32_t)h << 16;
        memcpy(&f[i], &u, 4);
      }
    }
  }
  free(raw);
  return f;
}
static double relerr(const float *got, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)got[i] - ref[i];
    num += d * d, den += (double)ref[i] * ref[i];
    if (isnan(got[i])) return INFINITY; /* an unwritten (poisoned) element */
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_gemm(int N, int in, int out) {
  float *X = rnd((size_t)N * in, 1), *W = rnd((size_t)out * in, 0.5f), *b = rnd(out, 1);
  float *Y0 = rnd((size_t)N * out, 1), *ref = bm_xmalloc(sizeof(float) * N * out);
  float *refr = bm_xmalloc(sizeof(float) * N * out);
  bm_linear(ref, X, W, b, N, in, out);
  memcpy(refr, Y0, sizeof(float) * N * out);
  bm_linear_residual(refr, X, W, b, N, in, out);
  float *db = bm_cuda_upload(C, b, out, BM_PREC_FP32, "b");
  for (int p = 0; p < 3; p++) {
    bm_prec t = PRECS[p];
    void *dX = bm_cuda_upload(C, X, (size_t)N * in, t, "X"), *dW = bm_cuda_upload(C, W, (size_t)out * in, t, "W");
    void *dY = dev_poisoned((size_t)N * out * bm_prec_size(t));
    bm_cuda_gemm(C, dY, t, dX, dW, t, db, N, in, out, 1.0f, 0.0f);
    float *got = down(dY, t, (size_t)N * out);
    double e = relerr(got, ref, (size_t)N * out);
    CHECK(e < tol(t), "gemm %s %dx%dx%d + bias: rel err %.2e", bm_prec_name(t), N, in, out, e);
    free(got);
    /* residual: fp32 Y += X W^T + b */
    float *dR = bm_cuda_upload(C, Y0, (size_t)N * out, BM_PREC_FP32, "Y");
    bm_cuda_gemm(C, dR, BM_PREC_FP32, dX, dW, t, db, N, in, out, 1.0f, 1.0f);
    got = down(dR, BM_PREC_FP32, (size_t)N * out);
    e = relerr(got, refr, (size_t)N * out);
    CHECK(e < tol(t), "gemm %s residual into fp32 %dx%dx%d: rel err %.2e", bm_prec_name(t), N, in, out, e);
    free(got);
    bm_cuda_free(dX), bm_cuda_free(dW), bm_cuda_free(dY), bm_cuda_free(dR);
  }
  bm_cuda_free(db);
  free(X), free(W), free(b), free(Y0), free(ref), free(refr);
}

/* C_b[M,N] = A_b[M,K] op(B_b), row major, strided batches, both op(B). */
static void test_gemm_batched(int batch, int M, int N, int K) {
  for (int transB = 0; transB < 2; transB++) {
    size_t sa = (size_t)M * K, sb = (size_t)N * K, sc = (size_t)M * N;
    float *A = rnd(sa * batch, 1), *Bm = rnd(sb * batch, 1), *ref = bm_xmalloc(sizeof(float) * sc * batch);
    for (int b = 0; b < batch; b++)
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
          double acc = 0;
          for (int k = 0; k < K; k++)
            acc += (double)A[b * sa + (size_t)i * K + k] *
                   (transB ? Bm[b * sb + (size_t)j * K + k] : Bm[b * sb + (size_t)k * N + j]);
          ref[b * sc + (size_t)i * N + j] = (float)acc;
        }
    for (int p = 0; p < 3; p++) {
      bm_prec t = PRECS[p];
      void *dA = bm_cuda_upload(C, A, sa * batch, t, "A"), *dB = bm_cuda_upload(C, Bm, sb * batch, t, "B");
      float *dC = dev_poisoned(sizeof(float) * sc * batch);
      bm_cuda_gemm_batched(C, dC, BM_PREC_FP32, dA, dB, t, M, N, K, transB, K, transB ? K : N, N,
                           (long long)sa, (long long)sb, (long long)sc, batch, 1.0f, 0.0f);
      float *got = down(dC, BM_PREC_FP32, sc * batch);
      double e = relerr(got, ref, sc * batch);
      CHECK(e < tol(t), "batched gemm %s %d x [%d,%d,%d] transB %d: %.2e", bm_prec_name(t), batch,
            M, N, K, transB, e);
      free(got), bm_cuda_free(dA), bm_cuda_free(dB), bm_cuda_free(dC);
    }
    free(A), free(Bm), free(ref);
  }
}

static void test_layernorm(int N, int Cn) {
  float *x = rnd((size_t)N * Cn, 3), *g = rnd(Cn, 1), *b = rnd(Cn, 1);
  for (size_t i = 0; i < (size_t)N * Cn; i++) x[i] += 1.5f; /* a mean away from 0 */
  float *ref = bm_xmalloc(sizeof(float) * N * Cn);
  bm_layernorm(ref, x, g, b, N, Cn, 1e-6f);
  float *dx = bm_cuda_upload(C, x, (size_t)N * Cn, BM_PREC_FP32, "x");
  float *dg = bm_cuda_upload(C, g, Cn, BM_PREC_FP32, "g"), *dbb = bm_cuda_upload(C, b, Cn, BM_PREC_FP32, "b");
  for (int p = 0; p < 3; p++) {
    bm_prec t = PRECS[p];
    float *dyf = dev_poisoned(sizeof(float) * N * Cn);
    void *dyt = dev_poisoned(bm_prec_size(t) * N * Cn);
    bm_cuda_layernorm(C, dyf, dyt, t, dx, dg, dbb, N, Cn, 1e-6f);
    float *gf = down(dyf, BM_PREC_FP32, (size_t)N * Cn), *gt = down(dyt, t, (size_t)N * Cn);
    double ef = relerr(gf, ref, (size_t)N * Cn), et = relerr(gt, ref, (size_t)N * Cn);
    CHECK(ef < 1e-5 && et < tol(t), "layernorm %dx%d -> fp32 (%.2e) and %s (%.2e)", N, Cn, ef,
          bm_prec_name(t), et);
    free(gf), free(gt), bm_cuda_free(dyf), bm_cuda_free(dyt);
  }
  /* in place, as the BERT layers run it */
  bm_cuda_layernorm(C, dx, NULL, BM_PREC_FP32, dx, dg, dbb, N, Cn, 1e-12f);
  bm_layernorm(ref, x, g, b, N, Cn, 1e-12f);
  float *gf = down(dx, BM_PREC_FP32, (size_t)N * Cn);
  double e = relerr(gf, ref, (size_t)N * Cn);
  CHECK(e < 1e-5, "layernorm %dx%d in place: %.2e", N, Cn, e);
  free(gf), bm_cuda_free(dx), bm_cuda_free(dg), bm_cuda_free(dbb);
  free(x), free(g), free(b), free(ref);
}

static void test_rows(int N, int n) {
  float *x = rnd((size_t)N * n, 4), *ref = bm_xmalloc(sizeof(float) * N * n), *b = rnd(n, 1);
  /* softmax */
  memcpy(ref, x, sizeof(float) * N * n);
  for (int i = 0; i < N; i++) bm_softmax(ref + (size_t)i * n, n);
  float *d = bm_cuda_upload(C, x, (size_t)N * n, BM_PREC_FP32, "x");
  bm_cuda_softmax(C, d, N, n);
  float *got = down(d, BM_PREC_FP32, (size_t)N * n);
  double e = relerr(got, ref, (size_t)N * n);
  CHECK(e < 1e-5, "softmax %dx%d: %.2e", N, n, e);
  free(got), bm_cuda_free(d);
  /* l2 normalize */
  memcpy(ref, x, sizeof(float) * N * n);
  bm_l2_normalize(ref, N, n);
  d = bm_cuda_upload(C, x, (size_t)N * n, BM_PREC_FP32, "x");
  bm_cuda_l2_normalize(C, d, N, n);
  got = down(d, BM_PREC_FP32, (size_t)N * n);
  e = relerr(got, ref, (size_t)N * n);
  CHECK(e < 1e-5, "l2 normalize %dx%d: %.2e", N, n, e);
  free(got), bm_cuda_free(d);
  /* bias + GELU and bias alone, each precision */
  float *db = bm_cuda_upload(C, b, n, BM_PREC_FP32, "b");
  for (int p = 0; p < 3; p++) {
    bm_prec t = PRECS[p];
    for (size_t i = 0; i < (size_t)N * n; i++) ref[i] = x[i] + b[i % n];
    void *dy = bm_cuda_upload(C, x, (size_t)N * n, t, "y");
    bm_cuda_add_bias(C, dy, t, db, N, n);
    got = down(dy, t, (size_t)N * n);
    e = relerr(got, ref, (size_t)N * n);
    CHECK(e < tol(t), "add bias %s %dx%d: %.2e", bm_prec_name(t), N, n, e);
    free(got), bm_cuda_free(dy);
    bm_gelu(ref, (size_t)N * n);
    dy = bm_cuda_upload(C, x, (size_t)N * n, t, "y");
    bm_cuda_bias_gelu(C, dy, t, db, N, n);
    got = down(dy, t, (size_t)N * n);
    e = relerr(got, ref, (size_t)N * n);
    CHECK(e < tol(t), "bias + gelu %s %dx%d: %.2e", bm_prec_name(t), N, n, e);
    free(got), bm_cuda_free(dy);
  }
  bm_cuda_free(db);
  free(x), free(ref), free(b);
}

static void test_attention(int nseq, int heads, int hd, int maxlen) {
  int Cn = heads * hd, *start = bm_xmalloc(sizeof(int) * nseq), *len = bm_xmalloc(sizeof(int) * nseq);
  int N = 0, ml = 0;
  for (int s = 0; s < nseq; s++) {
    len[s] = s == 0 ? maxlen : s == 1 ? 1 : 1 + rand() % maxlen;
    start[s] = N, N += len[s], ml = len[s] > ml ? len[s] : ml;
  }
  float *qkv = rnd((size_t)N * 3 * Cn, 2), *ref = bm_xmalloc(sizeof(float) * N * Cn);
  float *scratch = bm_xmalloc(sizeof(float) * bm_attention_scratch(ml));
  bm_attention(ref, qkv, start, len, nseq, Cn, heads, NULL, scratch);
  int *dsl = bm_cuda_malloc(sizeof(int) * 2 * nseq, "start/len");
  bm_cuda_h2d(C, dsl, start, sizeof(int) * nseq, BM_STREAM_COMPUTE);
  bm_cuda_h2d(C, dsl + nseq, len, sizeof(int) * nseq, BM_STREAM_COMPUTE);
  for (int p = 0; p < 3; p++) {
    bm_prec t = PRECS[p];
    void *dq = bm_cuda_upload(C, qkv, (size_t)N * 3 * Cn, t, "qkv");
    void *dout = dev_poisoned(bm_prec_size(t) * N * Cn);
    bm_cuda_attention(C, dout, dq, t, dsl, dsl + nseq, nseq, ml, Cn, heads);
    float *got = down(dout, t, (size_t)N * Cn);
    double e = relerr(got, ref, (size_t)N * Cn);
    CHECK(e < tol(t), "attention %s: %d sequences (max %d), %d heads of %d: %.2e",
          bm_prec_name(t), nseq, ml, heads, hd, e);
    free(got), bm_cuda_free(dq), bm_cuda_free(dout);
  }
  bm_cuda_free(dsl);
  free(start), free(len), free(qkv), free(ref), free(scratch);
}

/* The tensor-core flash kernel (bf16 / fp16, head dim 64) on sequences of
 * the given lengths: out against bm_attention, lse against a float64
 * log-sum-exp of the scaled scores, both outputs poisoned first. */
static void test_flash(const int *lens, int nseq, int heads) {
  int Cn = heads * 64, *start = bm_xmalloc(sizeof(int) * nseq), N = 0, ml = 0;
  for (int s = 0; s < nseq; s++) start[s] = N, N += lens[s], ml = lens[s] > ml ? lens[s] : ml;
  float *qkv = rnd((size_t)N * 3 * Cn, 2), *ref = bm_xmalloc(sizeof(float) * N * Cn);
  float *scratch = bm_xmalloc(sizeof(float) * bm_attention_scratch(ml));
  float *lref = bm_xmalloc(sizeof(float) * N * heads);
  for (int p = 1; p < 3; p++) {
    bm_prec t = PRECS[p];
    CHECK(bm_cuda_flash_ok(t, Cn, heads), "flash attention applies to %s, head dim 64", bm_prec_name(t));
    void *dq = bm_cuda_upload(C, qkv, (size_t)N * 3 * Cn, t, "qkv");
    /* the reference reads the inputs as rounded to t */
    float *q = down(dq, t, (size_t)N * 3 * Cn);
    bm_attention(ref, q, start, lens, nseq, Cn, heads, NULL, scratch);
    for (int s = 0; s < nseq; s++)
      for (int h = 0; h < heads; h++)
        for (int i = 0; i < lens[s]; i++) {
          const float *qi = q + (size_t)(start[s] + i) * 3 * Cn + h * 64;
          double mx = -INFINITY, sum = 0, *sc = bm_xmalloc(sizeof(double) * lens[s]);
          for (int j = 0; j < lens[s]; j++) {
            const float *kj = q + (size_t)(start[s] + j) * 3 * Cn + Cn + h * 64;
            double d = 0;
            for (int e = 0; e < 64; e++) d += (double)qi[e] * kj[e];
            sc[j] = d / 8.0, mx = sc[j] > mx ? sc[j] : mx;
          }
          for (int j = 0; j < lens[s]; j++) sum += exp(sc[j] - mx);
          lref[(size_t)(start[s] + i) * heads + h] = (float)(mx + log(sum));
          free(sc);
        }
    int *dsl = bm_cuda_malloc(sizeof(int) * 2 * nseq, "start/len");
    bm_cuda_h2d(C, dsl, start, sizeof(int) * nseq, BM_STREAM_COMPUTE);
    bm_cuda_h2d(C, dsl + nseq, lens, sizeof(int) * nseq, BM_STREAM_COMPUTE);
    void *dout = dev_poisoned(bm_prec_size(t) * N * Cn);
    float *dl = dev_poisoned(sizeof(float) * N * heads);
    bm_cuda_flash_attention(C, dout, dl, dq, t, dsl, dsl + nseq, nseq, ml, Cn, heads);
    float *got = down(dout, t, (size_t)N * Cn), *lgot = down(dl, BM_PREC_FP32, (size_t)N * heads);
    double e = relerr(got, ref, (size_t)N * Cn), el = relerr(lgot, lref, (size_t)N * heads);
    CHECK(e < tol(t), "flash attention %s: %d sequences (%d..%d tokens), %d heads: out %.2e",
          bm_prec_name(t), nseq, lens[0], lens[nseq - 1], heads, e);
    CHECK(el < 1e-5, "flash attention %s: log-sum-exp %.2e", bm_prec_name(t), el);
    free(got), free(lgot), free(q), bm_cuda_free(dq), bm_cuda_free(dout), bm_cuda_free(dl), bm_cuda_free(dsl);
  }
  free(start), free(qkv), free(ref), free(scratch), free(lref);
}

static void test_embed(void) {
  /* BERT embedding sum with learned prompt vectors (negative ids) */
  int V = 50, P = 40, W = 24, nctx = 3, N = 37;
  float *word = rnd((size_t)V * W, 1), *pos = rnd((size_t)P * W, 1), *type = rnd(W, 1), *ctx = rnd((size_t)nctx * W, 1);
  int32_t *ids = bm_xmalloc(sizeof(int32_t) * N);
  int *posi = bm_xmalloc(sizeof(int) * N);
  float *ref = bm_xmalloc(sizeof(float) * N * W);
  for (int n = 0; n < N; n++) {
    ids[n] = n % 5 == 1 ? -1 - rand() % nctx : rand() % V;
    posi[n] = rand() % P;
    const float *e = ids[n] >= 0 ? word + (size_t)ids[n] * W : ctx + (size_t)(-ids[n] - 1) * W;
    for (int j = 0; j < W; j++) ref[n * W + j] = (e[j] + type[j]) + pos[posi[n] * W + j];
  }
  float *dw = bm_cuda_upload(C, word, (size_t)V * W, BM_PREC_FP32, "word");
  float *dp = bm_cuda_upload(C, pos, (size_t)P * W, BM_PREC_FP32, "pos");
  float *dt = bm_cuda_upload(C, type, W, BM_PREC_FP32, "type");
  float *dc = bm_cuda_upload(C, ctx, (size_t)nctx * W, BM_PREC_FP32, "ctx");
  int *dids = bm_cuda_malloc(sizeof(int) * 2 * N, "ids");
  bm_cuda_h2d(C, dids, ids, sizeof(int) * N, BM_STREAM_COMPUTE);
  bm_cuda_h2d(C, dids + N, posi, sizeof(int) * N, BM_STREAM_COMPUTE);
  float *dx = dev_poisoned(sizeof(float) * N * W);
  bm_cuda_bert_embed(C, dx, dids, dids + N, dw, V, dc, nctx, dt, dp, N, W);
  float *got = down(dx, BM_PREC_FP32, (size_t)N * W);
  double e = relerr(got, ref, (size_t)N * W);
  CHECK(e < 1e-6, "bert embedding sum, ids < 0 take prompt vectors: %.2e", e);
  free(got), bm_cuda_free(dw), bm_cuda_free(dp), bm_cuda_free(dt), bm_cuda_free(dc);
  bm_cuda_free(dids), bm_cuda_free(dx);
  free(word), free(pos), free(type), free(ctx), free(ids), free(posi), free(ref);

  /* patch embedding (im2col + GEMM) and token assembly against the CPU */
  int B = 3, S = 48, Pp = 16, G = S / Pp, GG = G * G, Wd = 40, T = 1 + GG, K = 3 * Pp * Pp;
  float *img = rnd((size_t)B * 3 * S * S, 2), *pw = rnd((size_t)Wd * K, 0.1f), *pb = rnd(Wd, 1);
  float *cls = rnd(Wd, 1), *pe = rnd((size_t)T * Wd, 1);
  float *cols = bm_xmalloc(sizeof(float) * B * GG * K), *patches = bm_xmalloc(sizeof(float) * B * GG * Wd);
  float *x = bm_xmalloc(sizeof(float) * B * T * Wd);
  bm_patch_embed(patches, img, pw, pb, cols, B, S, Pp, Wd);
  bm_vit v = {.ntok = T, .width = Wd, .grid = G, .patch = Pp, .image_size = S, .cls = cls, .pos = pe};
  bm_vit_tokens(&v, patches, B, x);
  float *dimg = bm_cuda_upload(C, img, (size_t)B * 3 * S * S, BM_PREC_FP32, "img");
  float *dpb = bm_cuda_upload(C, pb, Wd, BM_PREC_FP32, "pb"), *dcls = bm_cuda_upload(C, cls, Wd, BM_PREC_FP32, "cls");
  float *dpe = bm_cuda_upload(C, pe, (size_t)T * Wd, BM_PREC_FP32, "pos");
  for (int p = 0; p < 3; p++) {
    bm_prec t = PRECS[p];
    void *dcols = dev_poisoned(bm_prec_size(t) * B * GG * K);
    void *dpw = bm_cuda_upload(C, pw, (size_t)Wd * K, t, "pw");
    float *dpatch = dev_poisoned(sizeof(float) * B * GG * Wd), *dx2 = dev_poisoned(sizeof(float) * B * T * Wd);
    bm_cuda_im2col(C, dcols, t, dimg, B, S, Pp);
    float *gc = down(dcols, t, (size_t)B * GG * K);
    double ec = relerr(gc, cols, (size_t)B * GG * K);
    CHECK(ec < tol(t) / 2, "im2col %s: %.2e", bm_prec_name(t), ec);
    bm_cuda_gemm(C, dpatch, BM_PREC_FP32, dcols, dpw, t, dpb, B * GG, K, Wd, 1.0f, 0.0f);
    bm_cuda_vit_tokens(C, dx2, dpatch, dcls, dpe, B, T, Wd);
    float *gx = down(dx2, BM_PREC_FP32, (size_t)B * T * Wd);
    double ex = relerr(gx, x, (size_t)B * T * Wd);
    CHECK(ex < tol(t), "patch embedding + tokens %s: %.2e", bm_prec_name(t), ex);
    free(gc), free(gx), bm_cuda_free(dcols), bm_cuda_free(dpw), bm_cuda_free(dpatch), bm_cuda_free(dx2);
  }
  bm_cuda_free(dimg), bm_cuda_free(dpb), bm_cuda_free(dcls), bm_cuda_free(dpe);
  free(img), free(pw), free(pb), free(cls), free(pe), free(cols), free(patches), free(x);
}

/* The tiny model: GPU towers against bm_vit_forward / bm_bert_forward. */
static void test_towers(void) {
  const char *dir = getenv("BM_TESTS");
  char path[4096], err[1024];
  snprintf(path, sizeof path, "%s/fixtures/tiny-model", dir ? dir : "tests");
  bm_model m;
  if (bm_model_load(&m, path, BM_LOAD_VISION | BM_LOAD_TEXT, err, sizeof err)) bm_die("%s", err);
  const bm_vit *v = &m.vit;
  const bm_bert *bt = &m.bert;
  int B = 5, S = v->image_size, E = v->embed_dim, T = v->ntok, W = v->width;
  float *img = rnd((size_t)B * 3 * S * S, 2), *emb = bm_xmalloc(sizeof(float) * B * E);
  float *tok = bm_xmalloc(sizeof(float) * B * T * W);
  bm_vit_acts acts = {0};
  bm_vit_forward(v, &acts, img, B, emb, tok);
  float *gemb = bm_xmalloc(sizeof(float) * B * E), *gtok = bm_xmalloc(sizeof(float) * B * T * W);
  /* whole-model tolerances: bf16 rounds every activation between GEMMs */
  const double mtol[3] = {1e-5, 3e-2, 5e-3};
  for (int p = 0; p < 3; p++)
    for (int batched = 0; batched < 2; batched++) {
      bm_prec t = PRECS[p];
      bm_cuda_vit *g = bm_cuda_vit_new(C, v, t, 8);
      bm_cuda_vit_set_attention(g, batched);
      for (size_t i = 0; i < (size_t)B * E; i++) gemb[i] = NAN;
      for (size_t i = 0; i < (size_t)B * T * W; i++) gtok[i] = NAN;
      bm_cuda_vit_forward(g, img, B, gemb, gtok);
      double ee = relerr(gemb, emb, (size_t)B * E), et = relerr(gtok, tok, (size_t)B * T * W);
      CHECK(ee < mtol[p] && et < mtol[p],
            "tiny ViT %s, %s attention, %d images: embeddings %.2e, tokens %.2e",
            bm_prec_name(t), batched ? "batched-GEMM" : "fused", B, ee, et);
      bm_cuda_vit_free(g);
    }
  bm_vit_acts_free(&acts);
  free(img), free(emb), free(tok), free(gemb), free(gtok);

  /* text: 4 texts of odd lengths packed, one at the full context */
  int nseq = 4, lens[4] = {7, 1, 33, bt->context < 256 ? bt->context : 256}, start[4], N = 0;
  for (int s = 0; s < nseq; s++) start[s] = N, N += lens[s];
  int32_t *ids = bm_xmalloc(sizeof(int32_t) * N);
  for (int n = 0; n < N; n++) ids[n] = rand() % bt->vocab;
  int Et = bt->embed_dim, Wt = bt->width;
  float *temb = bm_xmalloc(sizeof(float) * nseq * Et), *ttok = bm_xmalloc(sizeof(float) * N * Wt);
  float *gte = bm_xmalloc(sizeof(float) * nseq * Et), *gtt = bm_xmalloc(sizeof(float) * N * Wt);
  bm_bert_acts ba = {0};
  bm_bert_forward(bt, &ba, ids, start, lens, nseq, temb, ttok);
  for (int p = 0; p < 3; p++) {
    bm_prec t = PRECS[p];
    bm_cuda_bert *g = bm_cuda_bert_new(C, bt, t, nseq, N);
    for (size_t i = 0; i < (size_t)nseq * Et; i++) gte[i] = NAN;
    for (size_t i = 0; i < (size_t)N * Wt; i++) gtt[i] = NAN;
    bm_cuda_bert_forward(g, ids, start, lens, nseq, gte, gtt);
    double ee = relerr(gte, temb, (size_t)nseq * Et), et = relerr(gtt, ttok, (size_t)N * Wt);
    CHECK(ee < mtol[p] && et < mtol[p], "tiny BERT %s, lengths 7,1,33,%d: embeddings %.2e, tokens %.2e",
          bm_prec_name(t), lens[3], ee, et);
    bm_cuda_bert_free(g);
  }
  bm_bert_acts_free(&ba);
  free(ids), free(temb), free(ttok), free(gte), free(gtt);
  bm_model_free(&m);
}

int main(void) {
  char err[512];
  if (bm_cuda_device_count(err, sizeof err) < 0) {
    printf("# skip: cuda forward tests: %s\n", err);
    CHECK_DONE();
  }
  C = bm_cuda_open("cuda", err, sizeof err);
  CHECK(C != NULL, "open cuda: %s", C ? bm_cuda_describe(C) : err);
  if (!C) CHECK_DONE();
  unsigned seed = (unsigned)time(NULL);
  printf("# seed %u\n", seed);
  srand(seed);
  bm_set_threads(0);
  test_gemm(37, 53, 29);
  test_gemm(256, 768, 2304);
  test_gemm(1, 17, 5);
  test_gemm(197, 768, 768);
  test_gemm(101, 3072, 768);
  test_gemm_batched(7, 33, 19, 64);
  test_layernorm(197, 768);
  test_layernorm(5, 31);
  test_layernorm(33, 72);
  test_layernorm(9, 1024);
  test_rows(13, 197);
  test_rows(3, 1000);
  test_rows(67, 3072);
  test_rows(5, 30);
  test_attention(3, 12, 64, 197);
  test_attention(5, 12, 64, 256);
  test_attention(4, 2, 32, 70);
  test_attention(2, 2, 16, 33);
  {
    int odd[] = {1, 7, 63, 64, 65, 197, 256}, vit[] = {197, 197, 197, 197};
    test_flash(odd, 7, 3);
    test_flash(vit, 4, 12);
  }
  test_embed();
  test_towers();
  bm_cuda_close(C);
  CHECK_DONE();
}
