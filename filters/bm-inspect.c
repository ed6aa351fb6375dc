/* bm-inspect - look at a record stream: one JSON line per record, tensors
 * summarized (dtype, shape, min, mean, max), and a final count.
 *
 *   bm-inspect [--head N] [--full KEY]... [--summary] [FILE...]
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util.h"

static const char usage[] =
    "Usage: bm-inspect [OPTION]... [FILE]...\n"
    "Print a record stream as one JSON line per record (tensors summarized as\n"
    "dtype, shape, min, mean, max) on stdout. With no FILE, or FILE -, read stdin.\n"
    "\n"
    "  -n, --head N      print the header and the first N records, then stop reading\n"
    "  -s, --summary     print only the header and counts (records, splits, keys)\n"
    "  -f, --full KEY    print the values of tensor KEY in full (repeatable)\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status: 0 ok, 1 malformed input, 2 usage.\n";

typedef struct {
  long head;
  int summary;
  char **full;
  int nfull;
} options;

static json_t *to_json(const msgpack_object *o, const options *opt, const char *key);

static int wants_full(const options *opt, const char *key) {
  for (int i = 0; key && i < opt->nfull; i++)
    if (strcmp(opt->full[i], key) == 0) return 1;
  return 0;
}

static json_t *tensor_json(const bm_tensor *t, int full) {
  json_t *j = json_object();
  json_object_set_new(j, "dtype", json_string(bm_dtype_name(t->dtype)));
  json_t *shape = json_array();
  for (int i = 0; i < t->ndim; i++) json_array_append_new(shape, json_integer(t->shape[i]));
  json_object_set_new(j, "shape", shape);
  if (t->numel == 0) return j;
  float *v = bm_xmalloc(bm_mul_size((size_t)t->numel, sizeof(float)));
  bm_tensor_to_f32(t, v);
  double lo = INFINITY, hi = -INFINITY, sum = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
    sum += v[i];
  }
  json_object_set_new(j, "min", json_real(lo));
  json_object_set_new(j, "mean", json_real(sum / (double)t->numel));
  json_object_set_new(j, "max", json_real(hi));
  if (full) {
    json_t *vals = json_array();
    for (int64_t i = 0; i < t->numel; i++) json_array_append_new(vals, json_real(v[i]));
    json_object_set_new(j, "values", vals);
  }
  free(v);
  return j;
}

static json_t *to_json(const msgpack_object *o, const options *opt, const char *key) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return json_null();
  case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
  case MSGPACK_OBJECT_STR: return json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
  case MSGPACK_OBJECT_BIN: return json_sprintf("<%u bytes>", o->via.bin.size);
  case MSGPACK_OBJECT_EXT: return json_sprintf("<ext %d, %u bytes>", o->via.ext.type, o->via.ext.size);
  case MSGPACK_OBJECT_ARRAY: {
    json_t *a = json_array();
    for (uint32_t i = 0; i < o->via.array.size; i++)
      json_array_append_new(a, to_json(&o->via.array.ptr[i], opt, NULL));
    return a;
  }
  case MSGPACK_OBJECT_MAP: {
    bm_tensor t;
    char err[256];
    if (bm_map_get(o, "dtype") && bm_map_get(o, "data") && !bm_tensor_parse(o, &t, err, sizeof err))
      return tensor_json(&t, wants_full(opt, key));
    json_t *m = json_object();
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      const msgpack_object *k = &o->via.map.ptr[i].key;
      char name[256];
      if (bm_obj_str(k, name, sizeof name)) snprintf(name, sizeof name, "<key %u>", i);
      json_object_set_new(m, name, to_json(&o->via.map.ptr[i].val, opt, name));
    }
    return m;
  }
  }
  return json_null();
}

static void print_json(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(7));
  if (!s) bm_die("cannot format a record as JSON");
  if (puts(s) == EOF) bm_die("write error on stdout");
  free(s);
  json_decref(j);
}

static int inspect(const char *path, const options *opt, long *total) {
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *h = bm_reader_header(r);
  if (bm_reader_error(r)) {
    bm_reader_close(r);
    return -1;
  }
  json_t *hj = json_object();
  json_object_set_new(hj, "header", h ? to_json(h, opt, "header") : json_null());
  print_json(hj);
  json_t *counts = json_object(), *keys = json_object();
  long n = 0;
  const msgpack_object *rec;
  int got;
  while ((opt->head < 0 || n < opt->head) && (got = bm_reader_next(r, &rec)) == 1) {
    n++;
    if (opt->summary) {
      char split[64] = "(none)";
      bm_obj_str(bm_map_get(rec, "split"), split, sizeof split);
      json_t *c = json_object_get(counts, split);
      json_object_set_new(counts, split, json_integer(c ? json_integer_value(c) + 1 : 1));
      for (uint32_t i = 0; i < rec->via.map.size; i++) {
        char k[256];
        if (bm_obj_str(&rec->via.map.ptr[i].key, k, sizeof k)) continue;
        json_t *kc = json_object_get(keys, k);
        json_object_set_new(keys, k, json_integer(kc ? json_integer_value(kc) + 1 : 1));
      }
    } else {
      print_json(to_json(rec, opt, NULL));
    }
  }
  int err = bm_reader_error(r);
  if (opt->summary) {
    json_t *s = json_object();
    json_object_set_new(s, "records", json_integer(n));
    json_object_set_new(s, "splits", counts);
    json_object_set_new(s, "keys", keys);
    print_json(s);
  } else {
    json_decref(counts);
    json_decref(keys);
  }
  bm_reader_close(r);
  *total += n;
  return err ? -1 : 0;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  options opt = {.head = -1};
  static const struct option longs[] = {{"head", required_argument, 0, 'n'},
                                        {"summary", no_argument, 0, 's'},
                                        {"full", required_argument, 0, 'f'},
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "n:sf:h", longs, NULL)) != -1) {
    switch (c) {
    case 'n':
      if (bm_parse_long(optarg, 0, 1L << 62, &opt.head)) bm_usage_die("--head: not a count: %s", optarg);
      break;
    case 's': opt.summary = 1; break;
    case 'f':
      opt.full = bm_xrealloc(opt.full, sizeof(char *) * (size_t)(opt.nfull + 1));
      opt.full[opt.nfull++] = optarg;
      break;
    case 'h': fputs(usage, stdout); return 0;
    default: bm_usage_die("unknown option");
    }
  }
  long total = 0;
  int bad = 0;
  if (optind == argc) bad |= inspect(NULL, &opt, &total) != 0;
  for (int i = optind; i < argc; i++) bad |= inspect(argv[i], &opt, &total) != 0;
  free(opt.full);
  if (fflush(stdout)) bm_die("write error on stdout");
  return bad ? 1 : 0;
}
