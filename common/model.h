/* model.h - BiomedCLIP's two towers loaded from a checkpoint.
 *
 * Every size comes from the tensors' shapes (width, depth by counting blocks,
 * patch, grid, vocab, context rows, embed dim); heads are width/64 unless the
 * config says otherwise (vision_cfg/text_cfg "heads" or "head_width"). A
 * missing or misshapen tensor is an error naming the tensor and both shapes.
 * Unknown tensors (the int64 position_ids buffer, a BERT pooler) are ignored. */
#ifndef BM_MODEL_H
#define BM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "bert.h"
#include "tokenizer.h"
#include "vit.h"
#include "weights.h"

enum { BM_LOAD_VISION = 1, BM_LOAD_TEXT = 2 };

typedef struct {
  bm_weights ws;
  int parts;                  /* BM_LOAD_* loaded */
  bm_vit vit;                 /* valid with BM_LOAD_VISION */
  bm_bert bert;               /* valid with BM_LOAD_TEXT */
  bm_tokenizer *tok;          /* valid with BM_LOAD_TEXT */
  int embed_dim;
  float logit_scale;          /* log of the scale; NAN when the checkpoint has none */
  float mean[3], std[3];      /* image normalization */
  float **owned;              /* buffers made at load (converted or packed weights) */
  int nowned;
} bm_model;

/* 0 ok; -1 with a message in err (naming the path and the tensor). */
int bm_model_load(bm_model *m, const char *path, int parts, char *err, size_t errlen);
void bm_model_free(bm_model *m);

/* u8[3, S, S] -> dst[3, S, S] = (u8 / 255 - mean) / std, as torchvision's
 * ToTensor + Normalize compute it in float32. */
void bm_model_normalize_image(const bm_model *m, const uint8_t *u8, int S, float *dst);

#endif
