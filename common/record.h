/* record.h - the record stream every filter reads and writes.
 *
 * A stream is a sequence of msgpack maps with string keys, one per sample.
 * The first map may be {"header": {...}} (version, task, classes, ...).
 * A tensor is the map {"dtype": "u8"|"i32"|"i64"|"f16"|"f32",
 * "shape": [..], "data": <bin, little-endian, row-major>}.
 * man/man5/bm-records.5 is the contract; this is its one implementation.
 *
 * Filters pass through every key they do not set: build the keys you add in a
 * bm_out and bm_write_record() merges them over the input record. */
#ifndef BM_RECORD_H
#define BM_RECORD_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define BM_FORMAT_VERSION 1
#define BM_MAX_DIMS 8
/* Default bound on one record's size; BM_MAX_RECORD_MB overrides it. */
#define BM_DEFAULT_MAX_RECORD ((size_t)1 << 30)

typedef enum { BM_U8, BM_I32, BM_I64, BM_F16, BM_F32 } bm_dtype;

const char *bm_dtype_name(bm_dtype d);
size_t bm_dtype_size(bm_dtype d);
int bm_dtype_parse(const char *s, size_t n, bm_dtype *out); /* 0 ok */

/* A tensor inside a record. data points into the record's memory and may be
 * unaligned: use bm_tensor_to_f32 or memcpy, never cast it to float*. */
typedef struct {
  bm_dtype dtype;
  int ndim;
  int64_t shape[BM_MAX_DIMS];
  int64_t numel;
  const void *data;
  size_t nbytes;
} bm_tensor;

float bm_f16_to_f32(uint16_t h);
uint16_t bm_f32_to_f16(float f); /* round to nearest even, overflow to inf */
/* Any dtype to float32, n = t->numel values into dst. */
void bm_tensor_to_f32(const bm_tensor *t, float *dst);

/* ---- reading ---- */
typedef struct bm_reader bm_reader;

/* path NULL or "-" reads stdin. Dies with a message when it cannot open. */
bm_reader *bm_reader_open(const char *path);
bm_reader *bm_reader_open_fd(int fd, const char *name);
void bm_reader_close(bm_reader *r);
void bm_reader_set_limit(bm_reader *r, size_t max_record_bytes);

/* The stream's header map (the value of "header"), or NULL when the stream
 * has none. Reads the first record if needed; valid until close. Returns NULL
 * too on a read error, which bm_reader_error() then reports. */
const msgpack_object *bm_reader_header(bm_reader *r);

/* Next sample record (a map with string keys; never the header).
 * 1: *rec is valid until the next call. 0: end of stream. -1: malformed or
 * truncated input or a read error: a message naming the input, the record
 * number and its byte offset was printed on stderr. */
int bm_reader_next(bm_reader *r, const msgpack_object **rec);
int bm_reader_error(const bm_reader *r);

/* Where the last record came from, for messages: "NAME: record N (byte B)".
 * Samples are numbered from 1 in stream order; the header is record 0. */
const char *bm_reader_name(const bm_reader *r);
long bm_reader_index(const bm_reader *r);
uint64_t bm_reader_offset(const bm_reader *r);
/* Formats the "NAME: record N (byte B)" prefix into buf. */
const char *bm_reader_where(const bm_reader *r, char *buf, size_t n);

/* ---- looking into records ---- */
const msgpack_object *bm_map_get(const msgpack_object *map, const char *key);
int bm_obj_is_str(const msgpack_object *o, const char *s);
/* Copy a str object into buf (NUL-terminated); -1 if not a str or too long. */
int bm_obj_str(const msgpack_object *o, char *buf, size_t n);
char *bm_obj_strdup(const msgpack_object *o); /* NULL if not a str */
/* A number (int, uint or float) as double; -1 if not a number. */
int bm_obj_number(const msgpack_object *o, double *out);

/* Parse a tensor map. 0 ok; -1 with a reason in err. Checks that dtype is
 * known, the shape non-negative and data exactly numel*itemsize bytes. */
int bm_tensor_parse(const msgpack_object *o, bm_tensor *t, char *err, size_t errlen);
/* The tensor under key: 1 found and valid, 0 absent, -1 malformed (err). */
int bm_rec_tensor(const msgpack_object *rec, const char *key, bm_tensor *t, char *err,
                  size_t errlen);

/* ---- building records ---- */
typedef struct {
  msgpack_sbuffer buf; /* packed key/value pairs */
  msgpack_packer pk;
  uint32_t count;      /* pairs in buf */
  char **keys;         /* keys set or dropped: not passed through */
  int nkeys, capkeys;
} bm_out;

void bm_out_init(bm_out *o);
void bm_out_reset(bm_out *o);
void bm_out_free(bm_out *o);
/* Start a pair: returns the packer on which the caller packs exactly one
 * value. */
msgpack_packer *bm_out_key(bm_out *o, const char *key);
void bm_out_drop(bm_out *o, const char *key); /* remove from passthrough */
void bm_out_str(bm_out *o, const char *key, const char *s);
void bm_out_int(bm_out *o, const char *key, int64_t v);
void bm_out_double(bm_out *o, const char *key, double v);
void bm_out_obj(bm_out *o, const char *key, const msgpack_object *v);
void bm_out_tensor(bm_out *o, const char *key, bm_dtype dt, int ndim, const int64_t *shape,
                   const void *data);

void bm_pack_str(msgpack_packer *pk, const char *s);
void bm_pack_tensor(msgpack_packer *pk, bm_dtype dt, int ndim, const int64_t *shape,
                    const void *data);
/* A map: the pairs of in (may be NULL) whose keys o does not name, then o's. */
void bm_pack_merged(msgpack_packer *pk, const msgpack_object *in, const bm_out *o);

/* ---- writing ---- */
typedef struct bm_writer bm_writer;

/* path NULL or "-" writes stdout. Dies with a message when it cannot open. */
bm_writer *bm_writer_open(const char *path);
/* Each record goes out whole in one series of write(2) calls, so a reader
 * never sees half a record from a writer that stopped between records.
 * 0 ok, -1 on a write error (message printed). EPIPE ends the program
 * quietly with status 141, as a SIGPIPE would. */
int bm_write_record(bm_writer *w, const msgpack_object *in, const bm_out *o);
/* {"header": merged(in_header, o)}; "version" is always set. */
int bm_write_header(bm_writer *w, const msgpack_object *in_header, const bm_out *o);
/* Flush and close; 0 ok, -1 on error (message printed). */
int bm_writer_close(bm_writer *w);

/* ---- header helpers ---- */
/* The "classes" array of a header: n names (malloc'd; free with
 * bm_free_strings). Returns n >= 0, or -1 when absent or not an array of
 * strings. */
int bm_header_classes(const msgpack_object *header, char ***names);
void bm_free_strings(char **s, int n);
#endif
