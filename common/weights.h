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
#include <stdio.h>

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

/* The __metadata__ keys of a bm-train .safetensors: the open_clip config
 * JSON (as open_clip_config.json) and the vocab.txt text. */
#define BM_ST_CONFIG "config"
#define BM_ST_VOCAB "vocab"

/* 0 ok; -1 with a message in err naming the file (and member/tensor).
 * The path may be a folder or a file; a file is recognized by its content
 * (zip = torch.save, else safetensors), not its name. config_json and vocab
 * come from a safetensors file's metadata first; what is still missing is
 * taken from open_clip_config.json, vocab.txt or tokenizer.json (its
 * WordPiece vocab written out in id order as vocab.txt text) in the folder
 * (the folder itself, or the one holding the file). A folder holding both
 * open_clip_model.safetensors and open_clip_pytorch_model.bin uses the
 * safetensors. Every tensor in the file is kept, including the int64 buffer
 * text.transformer.embeddings.position_ids; a state dict whose keys all
 * start with "module." loses that prefix. */
int bm_weights_load(const char *path, bm_weights *out, char *err, size_t errlen);
void bm_weights_free(bm_weights *ws);
/* NULL when absent. */
const bm_weight *bm_weights_get(const bm_weights *ws, const char *name);
/* The tensor as float32 (converted from f16/bf16 when needed): a new
 * 64-byte aligned buffer the caller frees with free(). NULL on a dtype that is
 * not a float. */
float *bm_weight_to_f32(const bm_weight *w);

/* "f32", "f16", "bf16", "i64", "i32", "u8" and the element size in bytes */
const char *bm_wdtype_name(bm_wdtype t);
size_t bm_wdtype_size(bm_wdtype t);

/* One line per tensor: "name dtype [d0,d1,...] nbytes", in file order. */
void bm_weights_list(const bm_weights *ws, FILE *f);

/* The tensor `name` with exactly this shape (a -1 in shape matches any
 * size), or NULL with err saying "SOURCE: tensor NAME is missing" or
 * "SOURCE: tensor NAME has shape [a,b], expected [c,d]". */
const bm_weight *bm_weights_expect(const bm_weights *ws, const char *name, int ndim,
                                   const int64_t *shape, char *err, size_t errlen);

/* Write a .safetensors file atomically (temporary + rename). metadata is a
 * flat list of string key/value pairs (nmeta pairs; may be 0) stored under
 * "__metadata__". 0 ok, -1 with err. */
int bm_safetensors_write(const char *path, const bm_weight *w, int n, const char *const *meta_keys,
                         const char *const *meta_vals, int nmeta, char *err, size_t errlen);

#endif
