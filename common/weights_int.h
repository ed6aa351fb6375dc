/* weights_int.h - what the weight readers share; not for the programs.
 * The fuzz targets call the readers on memory through these. */
#ifndef BM_WEIGHTS_INT_H
#define BM_WEIGHTS_INT_H

#include <stddef.h>

#include "weights.h"

/* 64-byte aligned, rounded up to whole 64 bytes, never NULL for 0 bytes;
 * NULL when out of memory. Freed with free(). */
void *bm_w_alloc(size_t nbytes);
/* snprintf into err; returns -1 so callers can `return bm_w_err(...)` */
int bm_w_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* frees the tensors only (names, data, the array) */
void bm_w_free_tensors(bm_weights *ws);

/* Each reads a whole file (mem == NULL) or a buffer (mem, memlen; path is
 * then only a label for messages) into out->w / out->n. safetensors also
 * fills out->config_json and out->vocab from its metadata. 0 ok, -1 with
 * err naming path and the member or tensor; out holds no tensors then. */
int bm_torchzip_load(const char *path, const void *mem, size_t memlen, bm_weights *out, char *err,
                     size_t errlen);
int bm_safetensors_load(const char *path, const void *mem, size_t memlen, bm_weights *out,
                        char *err, size_t errlen);

#endif
