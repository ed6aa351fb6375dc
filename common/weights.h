/* weights.h - a model's named tensors, however they were stored.
 *
 * bm_weights_load() takes what a user points -m at:
 *   - the hub folder of microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224
 *     (open_clip_config.json, open_clip_pytorch_model.bin or
 *     open_clip_model.safetensors, vocab.txt and/or tokenizer.json),
 *   - a torch.save zip (.bin/.pt) directly,
 *   - a .safetensors file written by bm-train (config and vocab in its
 *     metadata).
 * The torch zip is read with libarchive and its data.pkl with a restricted
 * unpickler (torch rebuild globals and OrderedDict only). Every name, shape,
 * offset and stride is checked against the storage. */
#ifndef BM_WEIGHTS_H
#define BM_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#define BM_W_MAX_DIMS 8

typedef enum { BM_W_F32, BM_W_F16, BM_W_BF16, BM_W_I64, BM_W_I32, BM_W_U8 } bm_wdtype;

typedef struct {
  char *name;              /* e.g. "visual.trunk.blocks.0.attn.qkv.weight" */
  bm_wdtype dtype;
  int ndim;
  int64_t shape[BM_W_MAX_DIMS];
  int64_t numel;
  void *data;              /* contiguous row-major, 64-byte aligned, owned */
  size_t nbytes;
} bm_weight;

typedef struct {
  bm_weight *w;
  int n;
  char *config_json;  /* open_clip_config.json, or the safetensors "config"; may be NULL */
  char *vocab;        /* contents of vocab.txt (or carried in the checkpoint); may be NULL */
  size_t vocab_len;
  char *source;       /* the path it came from, for messages */
} bm_weights;

/* 0 ok; -1 with a message in err naming the file (and member/tensor). */
int bm_weights_load(const char *path, bm_weights *out, char *err, size_t errlen);
void bm_weights_free(bm_weights *ws);
/* NULL when absent. */
const bm_weight *bm_weights_get(const bm_weights *ws, const char *name);
/* The tensor as float32 (converted from f16/bf16 when needed): a new
 * 64-byte aligned buffer the caller frees with free(). NULL on a dtype that is
 * not a float. */
float *bm_weight_to_f32(const bm_weight *w);

/* Write a .safetensors file atomically (temporary + rename). metadata is a
 * flat list of string key/value pairs (nmeta pairs; may be 0) stored under
 * "__metadata__". 0 ok, -1 with err. */
int bm_safetensors_write(const char *path, const bm_weight *w, int n, const char *const *meta_keys,
                         const char *const *meta_vals, int nmeta, char *err, size_t errlen);

#endif
