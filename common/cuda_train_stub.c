/* cuda_train_stub.c - the GPU training API (cuda/bmcuda_train.h: the
 * fine-tuning step, the text tower; bmcuda_vit_train.h, bmcuda_fusion.h, bmcuda_opt.h) for a
 * build without nvcc, so that bm-train links either way: nothing here can be
 * reached, since bm_cuda_open (cuda_stub.c) fails first and every call needs
 * its device. Of the low-level bmct_* kernels only the copies the tasks use
 * have a stub: the rest are called by the GPU tests only, which are built
 * against them only with BM_HAVE_CUDA. */
#ifndef BM_HAVE_CUDA
#include "cuda/bmcuda_fusion.h"
#include "cuda/bmcuda_opt.h"
#include "cuda/bmcuda_train.h"
#include "cuda/bmcuda_vit_train.h"
#include "util.h"

#define UNREACHABLE bm_die("%s: built without CUDA (no nvcc when it was built)", __func__)

bm_cuda_ft *bm_cuda_ft_init(const bm_ft *f, bm_cuda *cu, int prec) { (void)f, (void)cu, (void)prec; UNREACHABLE; }
void bm_cuda_ft_free(bm_cuda_ft *g) { (void)g; }
double bm_cuda_ft_grad(bm_cuda_ft *g, const float *img, const float *Y, int B, uint64_t drop_step) {
  (void)g, (void)img, (void)Y, (void)B, (void)drop_step; UNREACHABLE;
}
double bm_cuda_ft_grad_acc(bm_cuda_ft *g, const float *img, const float *Y, int B, uint64_t drop_step, double weight,
                           int first) {
  (void)g, (void)img, (void)Y, (void)B, (void)drop_step, (void)weight, (void)first; UNREACHABLE;
}
int bm_cuda_ft_step(bm_cuda_ft *g, double lr_scale, double max_norm, double *norm) {
  (void)g, (void)lr_scale, (void)max_norm, (void)norm; UNREACHABLE;
}
void bm_cuda_ft_last_logits(bm_cuda_ft *g, float *logits, int B) { (void)g, (void)logits, (void)B; UNREACHABLE; }
void bm_cuda_ft_logits(bm_cuda_ft *g, const float *img, int B, float *logits) {
  (void)g, (void)img, (void)B, (void)logits; UNREACHABLE;
}
void bm_cuda_ft_download(bm_cuda_ft *g, bm_ft *f) { (void)g, (void)f; UNREACHABLE; }
void bm_cuda_ft_download_grads(bm_cuda_ft *g, bm_ft *f) { (void)g, (void)f; UNREACHABLE; }
float bm_cuda_ft_loss_scale(const bm_cuda_ft *g) { (void)g; UNREACHABLE; }

/* the text tower (bm_cuda_bt) */
bm_cuda_bt *bm_cuda_bt_new(bmct_ctx *c, const bm_bert_train *bt, int prec, int max_seq, int max_tok, int n_ctx) {
  (void)c, (void)bt, (void)prec, (void)max_seq, (void)max_tok, (void)n_ctx; UNREACHABLE;
}
void bm_cuda_bt_free(bm_cuda_bt *g) { (void)g; }
void bm_cuda_bt_forward(bm_cuda_bt *g, const int32_t *ids, const int *start, const int *len, int nseq,
                        const float *ctx, float *emb, float *tokens) {
  (void)g, (void)ids, (void)start, (void)len, (void)nseq, (void)ctx, (void)emb, (void)tokens; UNREACHABLE;
}
void bm_cuda_bt_backward(bm_cuda_bt *g, const float *demb, const float *dtokens, float *dctx) {
  (void)g, (void)demb, (void)dtokens, (void)dctx; UNREACHABLE;
}
void bm_cuda_bt_zero_grad(bm_cuda_bt *g) { (void)g; UNREACHABLE; }
const bm_bt_tensor *bm_cuda_bt_tensors(const bm_cuda_bt *g, int *nt, size_t *np, size_t *goff) {
  (void)g, (void)nt, (void)np, (void)goff; UNREACHABLE;
}
float *bm_cuda_bt_params(bm_cuda_bt *g) { (void)g; UNREACHABLE; }
void *bm_cuda_bt_params_compute(bm_cuda_bt *g) { (void)g; UNREACHABLE; }
float *bm_cuda_bt_grads(bm_cuda_bt *g) { (void)g; UNREACHABLE; }
float *bm_cuda_bt_grad(bm_cuda_bt *g, int i) { (void)g, (void)i; UNREACHABLE; }
int bm_cuda_bt_prec(const bm_cuda_bt *g) { (void)g; UNREACHABLE; }
void bm_cuda_bt_refresh_compute(bm_cuda_bt *g) { (void)g; UNREACHABLE; }
void bm_cuda_bt_download(bm_cuda_bt *g, bm_bert_train *bt) { (void)g, (void)bt; UNREACHABLE; }
void bm_cuda_bt_upload(bm_cuda_bt *g, const bm_bert_train *bt) { (void)g, (void)bt; UNREACHABLE; }
void bm_cuda_bt_download_grads(bm_cuda_bt *g, bm_bert_train *bt) { (void)g, (void)bt; UNREACHABLE; }

/* the image tower (bm_cuda_vt) */
bm_cuda_vt *bm_cuda_vt_new(const bm_vit_train *vt, bm_cuda *cu, int prec) { (void)vt, (void)cu, (void)prec; UNREACHABLE; }
void bm_cuda_vt_free(bm_cuda_vt *g) { (void)g; }
bmct_ctx *bm_cuda_vt_ctx(bm_cuda_vt *g) { (void)g; UNREACHABLE; }
void bm_cuda_vt_set_patch_dropout(bm_cuda_vt *g, float p, uint64_t seed, uint64_t step) {
  (void)g, (void)p, (void)seed, (void)step; UNREACHABLE;
}
int bm_cuda_vt_forward(bm_cuda_vt *g, const float *img, int B, float *emb, float *tokens) {
  (void)g, (void)img, (void)B, (void)emb, (void)tokens; UNREACHABLE;
}
void bm_cuda_vt_backward(bm_cuda_vt *g, const float *demb, const float *dtokens, int B) {
  (void)g, (void)demb, (void)dtokens, (void)B; UNREACHABLE;
}
void bm_cuda_vt_zero_grad(bm_cuda_vt *g) { (void)g; UNREACHABLE; }
float *bm_cuda_vt_params(bm_cuda_vt *g) { (void)g; UNREACHABLE; }
void *bm_cuda_vt_params_compute(bm_cuda_vt *g) { (void)g; UNREACHABLE; }
float *bm_cuda_vt_grads(bm_cuda_vt *g) { (void)g; UNREACHABLE; }
size_t bm_cuda_vt_goff(const bm_cuda_vt *g) { (void)g; UNREACHABLE; }
void bm_cuda_vt_download(bm_cuda_vt *g, bm_vit_train *vt) { (void)g, (void)vt; UNREACHABLE; }

/* the fusion module (bm_cuda_fusion) */
bm_cuda_fusion *bm_cuda_fusion_new(const bm_fusion *f, bm_cuda *cu, int prec) { (void)f, (void)cu, (void)prec; UNREACHABLE; }
void bm_cuda_fusion_free(bm_cuda_fusion *g) { (void)g; }
void bm_cuda_fusion_forward(bm_cuda_fusion *g, const float *xi, int B, int Ti, const float *xt, const int *tstart,
                            const int *tlen, float *out) {
  (void)g, (void)xi, (void)B, (void)Ti, (void)xt, (void)tstart, (void)tlen, (void)out; UNREACHABLE;
}
void bm_cuda_fusion_backward(bm_cuda_fusion *g, const float *dout, float *dxi, float *dxt) {
  (void)g, (void)dout, (void)dxi, (void)dxt; UNREACHABLE;
}
void bm_cuda_fusion_zero_grad(bm_cuda_fusion *g) { (void)g; UNREACHABLE; }
size_t bm_cuda_fusion_np(const bm_cuda_fusion *g) { (void)g; UNREACHABLE; }
float *bm_cuda_fusion_params(bm_cuda_fusion *g) { (void)g; UNREACHABLE; }
float *bm_cuda_fusion_grads(bm_cuda_fusion *g) { (void)g; UNREACHABLE; }
void *bm_cuda_fusion_params_compute(bm_cuda_fusion *g) { (void)g; UNREACHABLE; }
const bm_fusion_tensor *bm_cuda_fusion_tensors(const bm_cuda_fusion *g, int *nt) { (void)g, (void)nt; UNREACHABLE; }
void bm_cuda_fusion_download(bm_cuda_fusion *g, bm_fusion *f) { (void)g, (void)f; UNREACHABLE; }

/* the optimizer mirror (bmct_opt) and the copies */
bmct_opt *bmct_opt_new(bmct_ctx *c, const bm_adamw *cpu, int prec) { (void)c, (void)cpu, (void)prec; UNREACHABLE; }
void bmct_opt_free(bmct_opt *o) { (void)o; }
void bmct_opt_bind(bmct_opt *o, int k, float *w, void *wc, const float *g) {
  (void)o, (void)k, (void)w, (void)wc, (void)g; UNREACHABLE;
}
void bmct_opt_grads(bmct_opt *o, const float *g, size_t n) { (void)o, (void)g, (void)n; UNREACHABLE; }
int bmct_opt_step(bmct_opt *o, double lr_scale, double max_norm, double *norm) {
  (void)o, (void)lr_scale, (void)max_norm, (void)norm; UNREACHABLE;
}
float bmct_opt_loss_scale(const bmct_opt *o) { (void)o; UNREACHABLE; }
void bmct_opt_download(bmct_opt *o, bm_adamw *cpu) { (void)o, (void)cpu; UNREACHABLE; }
void bmct_upload(bmct_ctx *c, void *dst, const void *src, size_t bytes) { (void)c, (void)dst, (void)src, (void)bytes; UNREACHABLE; }
void bmct_download(bmct_ctx *c, void *dst, const void *src, size_t bytes) { (void)c, (void)dst, (void)src, (void)bytes; UNREACHABLE; }
#else
typedef int bm_cuda_train_stub_unused; /* ISO C wants a declaration in every file */
#endif
