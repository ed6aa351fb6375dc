/* cuda_stub.c - bmcuda.h, bmcuda_fwd.h and bmcuda_towers.h for a build
 * without nvcc: opening a GPU fails saying why, and since nothing else can
 * be reached without an open device, the rest only dies if it ever is. */
#ifndef BM_HAVE_CUDA
#include <stdio.h>
#include <string.h>

#include "cuda/bmcuda.h"
#include "cuda/bmcuda_fwd.h"
#include "cuda/bmcuda_towers.h"
#include "util.h"

#define NO_CUDA "built without CUDA (no nvcc when it was built)"
#define UNREACHABLE bm_die("%s: " NO_CUDA, __func__)

size_t bm_prec_size(bm_prec t) { return t == BM_PREC_FP32 ? 4 : 2; }
const char *bm_prec_name(bm_prec t) {
  return t == BM_PREC_FP32 ? "fp32" : t == BM_PREC_BF16 ? "bf16" : t == BM_PREC_FP16 ? "fp16" : "?";
}
int bm_prec_parse(const char *s, bm_prec *t) {
  if (!strcmp(s, "fp32")) *t = BM_PREC_FP32;
  else if (!strcmp(s, "bf16")) *t = BM_PREC_BF16;
  else if (!strcmp(s, "fp16")) *t = BM_PREC_FP16;
  else return -1;
  return 0;
}
int bm_device_is_cuda(const char *spec) {
  if (!strcmp(spec, "cpu")) return 0;
  if (!strncmp(spec, "cuda", 4) && (spec[4] == 0 || spec[4] == ':')) return 1;
  return -1;
}
int bm_cuda_device_count(char *err, size_t errlen) {
  snprintf(err, errlen, NO_CUDA);
  return -1;
}
bm_cuda *bm_cuda_open(const char *spec, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: " NO_CUDA, spec);
  return NULL;
}
void bm_cuda_close(bm_cuda *c) { (void)c; }
const char *bm_cuda_describe(const bm_cuda *c) { (void)c; return "none"; }
void *bm_cuda_stream(bm_cuda *c, bm_stream_id s) { (void)c, (void)s; UNREACHABLE; }
void *bm_cuda_malloc(size_t bytes, const char *what) { (void)bytes, (void)what; UNREACHABLE; }
void bm_cuda_free(void *p) { (void)p; }
void bm_cuda_memset(bm_cuda *c, void *p, int byte, size_t bytes) {
  (void)c, (void)p, (void)byte, (void)bytes; UNREACHABLE;
}
void *bm_cuda_host_alloc(size_t bytes, const char *what) { (void)bytes, (void)what; UNREACHABLE; }
void bm_cuda_host_free(void *p) { (void)p; }
void bm_cuda_h2d(bm_cuda *c, void *d, const void *s, size_t n, bm_stream_id i) {
  (void)c, (void)d, (void)s, (void)n, (void)i; UNREACHABLE;
}
void bm_cuda_d2h(bm_cuda *c, void *d, const void *s, size_t n, bm_stream_id i) {
  (void)c, (void)d, (void)s, (void)n, (void)i; UNREACHABLE;
}
void bm_cuda_d2d(bm_cuda *c, void *d, const void *s, size_t n, bm_stream_id i) {
  (void)c, (void)d, (void)s, (void)n, (void)i; UNREACHABLE;
}
void bm_cuda_sync(bm_cuda *c, bm_stream_id s) { (void)c, (void)s; UNREACHABLE; }
void *bm_cuda_upload(bm_cuda *c, const float *src, size_t n, bm_prec t, const char *what) {
  (void)c, (void)src, (void)n, (void)t, (void)what; UNREACHABLE;
}
bm_cuda_event *bm_cuda_event_new(void) { UNREACHABLE; }
void bm_cuda_event_free(bm_cuda_event *e) { (void)e; }
void bm_cuda_event_record(bm_cuda *c, bm_cuda_event *e, bm_stream_id s) { (void)c, (void)e, (void)s; UNREACHABLE; }
void bm_cuda_stream_wait(bm_cuda *c, bm_stream_id s, bm_cuda_event *e) { (void)c, (void)e, (void)s; UNREACHABLE; }
void bm_cuda_event_sync(bm_cuda_event *e) { (void)e; UNREACHABLE; }
float bm_cuda_event_ms(bm_cuda_event *a, bm_cuda_event *b) { (void)a, (void)b; UNREACHABLE; }
void bm_cuda_gemm(bm_cuda *c, void *Y, bm_prec yt, const void *X, const void *W, bm_prec ab,
                  const float *bias, int N, int in, int out, float alpha, float beta) {
  (void)c, (void)Y, (void)yt, (void)X, (void)W, (void)ab, (void)bias, (void)N, (void)in,
      (void)out, (void)alpha, (void)beta;
  UNREACHABLE;
}
void bm_cuda_gemm_batched(bm_cuda *c, void *C, bm_prec ct, const void *A, const void *B,
                          bm_prec ab, int M, int N, int K, int transB, int lda, int ldb,
                          int ldc, long long sa, long long sb, long long sc, int batch,
                          float alpha, float beta) {
  (void)c, (void)C, (void)ct, (void)A, (void)B, (void)ab, (void)M, (void)N, (void)K,
      (void)transB, (void)lda, (void)ldb, (void)ldc, (void)sa, (void)sb, (void)sc, (void)batch,
      (void)alpha, (void)beta;
  UNREACHABLE;
}
void bm_cuda_layernorm(bm_cuda *c, float *yf, void *yt, bm_prec t, const float *x,
                       const float *g, const float *b, int N, int C, float eps) {
  (void)c, (void)yf, (void)yt, (void)t, (void)x, (void)g, (void)b, (void)N, (void)C, (void)eps;
  UNREACHABLE;
}
void bm_cuda_bias_gelu(bm_cuda *c, void *y, bm_prec t, const float *b, int N, int C) {
  (void)c, (void)y, (void)t, (void)b, (void)N, (void)C; UNREACHABLE;
}
void bm_cuda_add_bias(bm_cuda *c, void *y, bm_prec t, const float *b, int N, int C) {
  (void)c, (void)y, (void)t, (void)b, (void)N, (void)C; UNREACHABLE;
}
void bm_cuda_convert(bm_cuda *c, void *dst, bm_prec t, const float *src, size_t n) {
  (void)c, (void)dst, (void)t, (void)src, (void)n; UNREACHABLE;
}
void bm_cuda_softmax(bm_cuda *c, float *x, int N, int n) { (void)c, (void)x, (void)N, (void)n; UNREACHABLE; }
void bm_cuda_softmax_to(bm_cuda *c, void *y, bm_prec t, const float *x, int N, int n) {
  (void)c, (void)y, (void)t, (void)x, (void)N, (void)n; UNREACHABLE;
}
void bm_cuda_vit_set_attention(bm_cuda_vit *g, int batched) { (void)g, (void)batched; UNREACHABLE; }
void bm_cuda_l2_normalize(bm_cuda *c, float *x, int N, int C) { (void)c, (void)x, (void)N, (void)C; UNREACHABLE; }
void bm_cuda_gather_rows(bm_cuda *c, float *dst, const float *src, const int *rows, int n, int C) {
  (void)c, (void)dst, (void)src, (void)rows, (void)n, (void)C; UNREACHABLE;
}
void bm_cuda_bert_embed(bm_cuda *c, float *x, const int32_t *ids, const int *posi,
                        const float *word, int vocab, const float *ctx, int nctx,
                        const float *type, const float *pos, int N, int W) {
  (void)c, (void)x, (void)ids, (void)posi, (void)word, (void)vocab, (void)ctx, (void)nctx,
      (void)type, (void)pos, (void)N, (void)W;
  UNREACHABLE;
}
void bm_cuda_im2col(bm_cuda *c, void *cols, bm_prec t, const float *img, int B, int S, int P) {
  (void)c, (void)cols, (void)t, (void)img, (void)B, (void)S, (void)P; UNREACHABLE;
}
void bm_cuda_vit_tokens(bm_cuda *c, float *x, const float *patches, const float *cls,
                        const float *pos, int B, int T, int W) {
  (void)c, (void)x, (void)patches, (void)cls, (void)pos, (void)B, (void)T, (void)W; UNREACHABLE;
}
void bm_cuda_attention(bm_cuda *c, void *out, const void *qkv, bm_prec t, const int *start,
                       const int *len, int nseq, int maxlen, int C, int heads) {
  (void)c, (void)out, (void)qkv, (void)t, (void)start, (void)len, (void)nseq, (void)maxlen,
      (void)C, (void)heads;
  UNREACHABLE;
}
int bm_cuda_flash_ok(bm_prec t, int C, int heads) { (void)t, (void)C, (void)heads; return 0; }
void bm_cuda_flash_attention(bm_cuda *c, void *out, float *lse, const void *qkv, bm_prec t,
                             const int *start, const int *len, int nseq, int maxlen, int C,
                             int heads) {
  (void)c, (void)out, (void)lse, (void)qkv, (void)t, (void)start, (void)len, (void)nseq,
      (void)maxlen, (void)C, (void)heads;
  UNREACHABLE;
}
size_t bm_cuda_flash_backward_scratch(int ntok, int C, int heads) {
  (void)ntok, (void)C, (void)heads; UNREACHABLE;
}
void bm_cuda_flash_attention_backward(bm_cuda *c, void *dqkv, const void *dout, const void *qkv,
                                      const void *out, const float *lse, bm_prec t,
                                      const int *start, const int *len, int nseq, int maxlen,
                                      int ntok, int C, int heads, void *scratch) {
  (void)c, (void)dqkv, (void)dout, (void)qkv, (void)out, (void)lse, (void)t, (void)start,
      (void)len, (void)nseq, (void)maxlen, (void)ntok, (void)C, (void)heads, (void)scratch;
  UNREACHABLE;
}
bm_cuda_vit *bm_cuda_vit_new(bm_cuda *c, const bm_vit *m, bm_prec t, int max_batch) {
  (void)c, (void)m, (void)t, (void)max_batch; UNREACHABLE;
}
void bm_cuda_vit_free(bm_cuda_vit *g) { (void)g; }
void bm_cuda_vit_submit(bm_cuda_vit *g, int slot, const float *img, int B, float *emb, float *tokens) {
  (void)g, (void)slot, (void)img, (void)B, (void)emb, (void)tokens; UNREACHABLE;
}
void bm_cuda_vit_wait(bm_cuda_vit *g, int slot) { (void)g, (void)slot; UNREACHABLE; }
void bm_cuda_vit_forward(bm_cuda_vit *g, const float *img, int B, float *emb, float *tokens) {
  (void)g, (void)img, (void)B, (void)emb, (void)tokens; UNREACHABLE;
}
bm_cuda_bert *bm_cuda_bert_new(bm_cuda *c, const bm_bert *m, bm_prec t, int max_seq, int max_tok) {
  (void)c, (void)m, (void)t, (void)max_seq, (void)max_tok; UNREACHABLE;
}
void bm_cuda_bert_free(bm_cuda_bert *g) { (void)g; }
void bm_cuda_bert_set_ctx(bm_cuda_bert *g, const float *ctx, int nctx) { (void)g, (void)ctx, (void)nctx; UNREACHABLE; }
void bm_cuda_bert_submit(bm_cuda_bert *g, int slot, const int32_t *ids, const int *start,
                         const int *len, int nseq, float *emb, float *tokens) {
  (void)g, (void)slot, (void)ids, (void)start, (void)len, (void)nseq, (void)emb, (void)tokens;
  UNREACHABLE;
}
void bm_cuda_bert_wait(bm_cuda_bert *g, int slot) { (void)g, (void)slot; UNREACHABLE; }
void bm_cuda_bert_forward(bm_cuda_bert *g, const int32_t *ids, const int *start, const int *len,
                          int nseq, float *emb, float *tokens) {
  (void)g, (void)ids, (void)start, (void)len, (void)nseq, (void)emb, (void)tokens; UNREACHABLE;
}
#else
/* The CUDA build has the real functions in common/cuda/ (.cu files). */
typedef int bm_cuda_stub_unused;
#endif
