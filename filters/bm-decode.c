/* bm-decode - data sets as released (archives or folders + metadata CSV)
 * into a record stream: one record per image with id, split, group,
 * target, image (u8 [3,N,N], BiomedCLIP's validation transform), meta and
 * optional text; or image-caption pairs (--format pairs) from a CSV/TSV or
 * webdataset shards, one record per pair with id, split, image and text.
 *
 *   bm-decode --format nih|ham10000|isic2018-test|folder [OPTION]... DIR
 *   bm-decode --format pairs [OPTION]... CAPTIONS.csv|DIR|SHARD.tar...
 *
 * The images are streamed out of the archives in order; a batch at a time
 * is decoded on all cores (OpenMP tasks) while the next batch is read, and
 * written in input order, so the output is the same for any thread count. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "archive_walk.h"
#include "datasets.h"
#include "imageio.h"
#include "pool.h"
#include "record.h"
#include "splits.h"
#include "util.h"
#include "wds.h"

static const char usage[] =
    "Usage: bm-decode --format FORMAT [OPTION]... DIR [INPUT]...\n"
    "       bm-decode --format pairs [OPTION]... CAPTIONS.csv|DIR|SHARD.tar...\n"
    "Turn a data set as released into a record stream on stdout.\n"
    "\n"
    "  -f, --format FORMAT    nih (ChestX-ray14), ham10000, isic2018-test, folder,\n"
    "                         pairs (image-caption pairs: a CSV/TSV or webdataset tars)\n"
    "      --split S          emit only train, val or test (all: every split, the default)\n"
    "      --size N           short side N, center crop N x N (default 224); 0: original size\n"
    "      --no-crop          resize the short side to N but keep the whole image\n"
    "      --shard K/N        emit part K of N (default from SLURM_ARRAY_TASK_ID/COUNT)\n"
    "      --val-fraction F   share of patients/lesions for val (default 0.1)\n"
    "      --test-fraction F  share for test where the release has no test list (default 0.1)\n"
    "      --seed S           seed of the split (default 0)\n"
    "      --text             add \"text\" built from the metadata (never the label)\n"
    "      --csv FILE         the metadata CSV (default: the release's file name)\n"
    "      --metadata-only    records without images, in metadata order; no image is read\n"
    "  folder format: --id-column NAME, --label-column NAME, --label-columns A,B,..,\n"
    "      --classes A,B,.., --multilabel (see bm-decode(1))\n"
    "  pairs format: --image-col NAME, --caption-col NAME (default filepath and\n"
    "      title, else image and caption); splits by a hash of the image path or key\n"
    "  -j, --threads N        decoding threads (default: all cores)\n"
    "      --strict           stop at the first problem (exit 1)\n"
    "      --max-warnings N   show at most N lines per kind of problem (default 100, 0 all)\n"
    "  -o, --output FILE      write FILE instead of stdout\n"
    "  -q, --quiet            no progress line\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 ok (skipped problems are reported and counted), 1 error or a\n"
    "problem under --strict, 2 usage.\n";

typedef struct {
  bm_dataset_opts ds;
  const char *output;
  int split, shard, nshards, threads, with_text, quiet, metadata_only;
  bm_prep prep;
  bm_problems prob;
} options;

/* An image to decode, or a problem met while reading (kind >= 0): both wait
 * in the batch so that records and messages come out in input order, and
 * --strict stops after exactly the records that precede the problem. */
typedef struct {
  int kind;
  long sample;
  void *data;
  size_t n;
  char *where, *member;
  bm_pixels px;
  int ok;
  char err[512];
  char *id, *text; /* webdataset pairs: the key and the caption (owned) */
  int split;
} job;

/* What the pool's callbacks share. */
typedef struct {
  bm_dataset *d;
  options *o;
  bm_walk *wk;
  bm_writer *w;
  bm_wds *wds;   /* pairs from webdataset shards */
  long next;     /* pairs from a CSV: the next row */
  long written;
  bm_progress prog;
} run;

static int selected(const options *o, const bm_sample *s) {
  return (o->split == BM_SPLIT_NONE || s->split == BM_SPLIT_NONE || s->split == o->split) &&
         bm_shard_of(s->key, o->nshards) == o->shard;
}

static void pack_meta(msgpack_packer *pk, const bm_dataset *d, const bm_sample *s) {
  int n = 0;
  for (int m = 0; m < d->nmeta; m++) n += s->meta[m] && *s->meta[m];
  msgpack_pack_map(pk, (size_t)n);
  for (int m = 0; m < d->nmeta; m++) {
    const char *v = s->meta[m];
    if (!v || !*v) continue;
    bm_pack_str(pk, d->meta_keys[m]);
    char *end;
    if (d->meta_types[m] == BM_META_INT && (strtoll(v, &end, 10), !*end))
      msgpack_pack_int64(pk, strtoll(v, NULL, 10));
    else if (d->meta_types[m] == BM_META_NUM && (strtod(v, &end), !*end))
      msgpack_pack_double(pk, strtod(v, NULL));
    else
      bm_pack_str(pk, v);
  }
}

static void write_header(bm_writer *w, const bm_dataset *d, const options *o) {
  bm_out h;
  bm_out_init(&h);
  int pairs = !strcmp(d->task, "pairs");
  bm_out_str(&h, "task", d->task);
  msgpack_packer *pk;
  if (!pairs) {
    pk = bm_out_key(&h, "classes");
    msgpack_pack_array(pk, (size_t)d->nclasses);
    for (int k = 0; k < d->nclasses; k++) bm_pack_str(pk, d->classes[k]);
  } else {
    bm_out_str(&h, "layout", d->webdataset ? "webdataset" : d->delim == '\t' ? "tsv" : "csv");
    if (!d->webdataset) {
      bm_out_str(&h, "csv", d->csv_path);
      bm_out_str(&h, "image_col", d->image_col);
      bm_out_str(&h, "caption_col", d->caption_col);
    }
  }
  bm_out_str(&h, "dataset", d->name);
  bm_out_str(&h, "producer", "bm-decode");
  bm_out_str(&h, "source", o->ds.dir);
  if (!o->metadata_only) {
    bm_out_int(&h, "image_size", o->prep.size);
    pk = bm_out_key(&h, "crop");
    if (o->prep.crop && o->prep.size) msgpack_pack_true(pk); else msgpack_pack_false(pk);
    bm_out_str(&h, "image_layout", "CHW RGB u8");
    bm_out_str(&h, "resize", "pillow-bicubic");
  }
  bm_out_str(&h, "split", o->split == BM_SPLIT_NONE ? "all" : bm_split_name(o->split));
  char shard[64];
  snprintf(shard, sizeof shard, "%d/%d", o->shard + 1, o->nshards);
  bm_out_str(&h, "shard", shard);
  bm_out_int(&h, "seed", (int64_t)o->ds.seed);
  bm_out_double(&h, "val_fraction", d->val_fraction);
  bm_out_double(&h, "test_fraction", d->test_fraction);
  if (!pairs) {
    pk = bm_out_key(&h, "meta_keys");
    msgpack_pack_array(pk, (size_t)d->nmeta);
    for (int m = 0; m < d->nmeta; m++) bm_pack_str(pk, d->meta_keys[m]);
  }
  if (bm_write_header(w, NULL, &h)) exit(1);
  bm_out_free(&h);
}

static void write_record(bm_writer *w, const bm_dataset *d, const options *o, const job *j) {
  const bm_sample *s = &d->s[j->sample];
  bm_out r;
  bm_out_init(&r);
  bm_out_str(&r, "id", s->id);
  bm_out_str(&r, "split", bm_split_name(s->split));
  bm_out_str(&r, "group", s->group);
  int64_t cshape[1] = {d->nclasses}, ishape[3] = {3, j->px.h, j->px.w};
  bm_out_tensor(&r, "target", BM_F32, 1, cshape, s->target);
  if (j->px.chw) bm_out_tensor(&r, "image", BM_U8, 3, ishape, j->px.chw);
  if (o->with_text && s->text) bm_out_str(&r, "text", s->text);
  pack_meta(bm_out_key(&r, "meta"), d, s);
  if (bm_write_record(w, NULL, &r)) exit(1);
  bm_out_free(&r);
}

/* A pair: no target and no meta, so that bm-score takes the embedded
 * stream as retrieval. */
static void write_pair(bm_writer *w, const bm_dataset *d, const job *j) {
  const char *id = j->id, *text = j->text, *group = j->id;
  if (!id) {
    const bm_sample *s = &d->s[j->sample];
    id = s->id, text = s->text, group = s->group;
  }
  bm_out r;
  bm_out_init(&r);
  bm_out_str(&r, "id", id);
  bm_out_str(&r, "split", bm_split_name(j->id ? j->split : d->s[j->sample].split));
  bm_out_str(&r, "group", group);
  int64_t ishape[3] = {3, j->px.h, j->px.w};
  bm_out_tensor(&r, "image", BM_U8, 3, ishape, j->px.chw);
  bm_out_str(&r, "text", text);
  if (bm_write_record(w, NULL, &r)) exit(1);
  bm_out_free(&r);
}

static int defer(job *j, int kind, const char *where, const char *member, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int defer(job *j, int kind, const char *where, const char *member, const char *fmt, ...) {
  j->kind = kind;
  j->where = bm_xstrdup(where);
  j->member = bm_xstrdup(member);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->err, sizeof j->err, fmt, ap);
  va_end(ap);
  return 1;
}

/* The metadata CSV itself, met while walking a folder: not a problem. */
static int is_metadata(const bm_dataset *d, const bm_member *m) {
  size_t lc = strlen(m->container);
  return !strncmp(d->csv_path, m->container, lc) && d->csv_path[lc] == '/' &&
         !strcmp(d->csv_path + lc + 1, m->name);
}

/* The pool's producer: read members until one is an image to decode or a
 * problem to report; 0 at the end of the inputs. */
static int produce(void *ctx, void *item, size_t *weight) {
  run *r = ctx;
  bm_dataset *d = r->d;
  const options *o = r->o;
  job *j = item;
  char err[1024], key[1024];
  bm_member m;
  int rc;
  for (;;) {
    if ((rc = bm_walk_next(r->wk, &m, err, sizeof err)) == 0) return 0;
    if (rc < 0) return defer(j, BM_P_ARCHIVE, m.container, m.name, "%s", err);
    const char *base = strrchr(m.name, '/');
    base = base ? base + 1 : m.name;
    bm_sample_key(m.name, key, sizeof key);
    if (!bm_is_image_name(m.name) || !strncmp(base, "._", 2) || strstr(m.name, "__MACOSX/")) {
      if (bm_shard_of(m.name, o->nshards) == o->shard && !is_metadata(d, &m))
        return defer(j, BM_P_NOT_IMAGE, m.container, m.name, "skipped by name");
      continue;
    }
    long i = bm_strmap_get(&d->index, key);
    if (i < 0) {
      if (bm_shard_of(key, o->nshards) != o->shard) continue;
      return defer(j, BM_P_NO_ROW, m.container, m.name, "no row for %s in %s", key, d->csv_path);
    }
    bm_sample *s = &d->s[i];
    if (!selected(o, s)) { /* another split or shard: not even read */
      s->seen = 1;
      continue;
    }
    if (s->seen) return defer(j, BM_P_DUPLICATE, m.container, m.name, "%s was already read", key);
    s->seen = 1;
    if (s->skip) continue; /* its metadata problem was reported */
    int rr = bm_walk_read(r->wk, &j->data, &j->n, (size_t)1 << 30, err, sizeof err);
    if (rr)
      return defer(j, rr == -2 ? BM_P_ARCHIVE : BM_P_CORRUPT, m.container, m.name, "%s%s",
                   rr == -2 ? "truncated or corrupt archive: " : "", err);
    j->kind = -1;
    j->sample = i;
    j->where = bm_xstrdup(m.container);
    j->member = bm_xstrdup(m.name);
    *weight = j->n;
    return 1;
  }
}

/* A file whole into *data (malloc'd); -1 with the reason in err. */
static int read_whole(const char *path, void **data, size_t *n, size_t max, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (!f) return snprintf(err, errlen, "%s", strerror(errno)), -1;
  const char *why = fstat(fileno(f), &st) ? strerror(errno)
                    : !S_ISREG(st.st_mode)       ? "not a regular file"
                    : (size_t)st.st_size > max   ? "too large"
                                                 : NULL;
  if (why) {
    snprintf(err, errlen, "%s", why);
    fclose(f);
    return -1;
  }
  char *buf = bm_xmalloc((size_t)st.st_size + 1);
  size_t got = fread(buf, 1, (size_t)st.st_size, f);
  int bad = ferror(f) || got != (size_t)st.st_size;
  fclose(f);
  if (bad) {
    free(buf);
    return snprintf(err, errlen, "read error"), -1;
  }
  *data = buf;
  *n = got;
  return 0;
}

/* Pairs from a CSV: the rows in order, each image file read whole. */
static int produce_csv(void *ctx, void *item, size_t *weight) {
  run *r = ctx;
  bm_dataset *d = r->d;
  job *j = item;
  char err[1024];
  while (r->next < d->n) {
    long i = r->next++;
    bm_sample *s = &d->s[i];
    if (s->skip || !selected(r->o, s)) continue; /* a skipping problem was reported */
    s->seen = 1;
    if (read_whole(s->path, &j->data, &j->n, (size_t)1 << 30, err, sizeof err))
      return defer(j, BM_P_NO_IMAGE, d->csv_path, s->id, "line %ld: image %s: %s", s->line, s->path, err);
    j->kind = -1;
    j->sample = i;
    j->where = bm_xstrdup(d->csv_path);
    j->member = bm_xstrdup(s->id);
    *weight = j->n;
    return 1;
  }
  return 0;
}

static int want_key(void *ctx, const char *key) {
  const run *r = ctx;
  const options *o = r->o;
  return (o->split == BM_SPLIT_NONE ||
          bm_split_of(key, r->d->val_fraction, r->d->test_fraction, o->ds.seed) == o->split) &&
         bm_shard_of(key, o->nshards) == o->shard;
}

/* Pairs from webdataset shards: see wds.h. */
static int produce_wds(void *ctx, void *item, size_t *weight) {
  run *r = ctx;
  job *j = item;
  bm_wds_sample s;
  if (!bm_wds_next(r->wds, &s)) return 0;
  if (s.kind >= 0) {
    defer(j, s.kind, s.container, s.member ? s.member : s.key, "%s", s.err);
  } else {
    j->kind = -1;
    j->data = s.img, s.img = NULL;
    j->n = s.nimg;
    j->id = s.key, s.key = NULL;
    j->text = s.caption, s.caption = NULL;
    j->split = bm_split_of(j->id, r->d->val_fraction, r->d->test_fraction, r->o->ds.seed);
    j->where = bm_xstrdup(s.container);
    j->member = bm_xstrdup(s.member);
    *weight = j->n;
  }
  bm_wds_sample_free(&s);
  return 1;
}

/* The pool's work, on all cores. */
static void decode(void *ctx, void *item) {
  const run *r = ctx;
  job *j = item;
  if (j->kind >= 0) return;
  j->ok = bm_image_prepare(j->data, j->n, &r->o->prep, &j->px, j->err, sizeof j->err) == 0;
  free(j->data);
  j->data = NULL;
}

/* The pool's consumer, in input order. */
static void consume(void *ctx, void *item) {
  run *r = ctx;
  job *j = item;
  if (j->kind >= 0) bm_problem(&r->o->prob, j->kind, j->where, j->member, "%s", j->err);
  else if (j->ok && !strcmp(r->d->task, "pairs")) write_pair(r->w, r->d, j), r->written++;
  else if (j->ok) write_record(r->w, r->d, r->o, j), r->written++;
  else bm_problem(&r->o->prob, BM_P_CORRUPT, j->where, j->member, "%s", j->err);
  free(j->px.chw), free(j->where), free(j->member), free(j->id), free(j->text);
}

static void progress(void *ctx) {
  run *r = ctx;
  bm_progress_update(&r->prog, "%ld records, %.1f images/s", r->written,
                     r->written / (bm_now() - r->prog.start + 1e-9));
}

static void parse_args(int argc, char **argv, options *o) {
  enum { METAONLY = 255, SPLIT = 256, SIZE, NOCROP, SHARD, VALF, TESTF, SEED, TEXT, CSV, IDCOL, LCOL, LCOLS, CLASSES, MULTI, STRICT, MAXW, IMGCOL, CAPCOL };
  static const struct option longs[] = {
      {"format", required_argument, 0, 'f'}, {"split", required_argument, 0, SPLIT},
      {"size", required_argument, 0, SIZE}, {"no-crop", no_argument, 0, NOCROP},
      {"shard", required_argument, 0, SHARD}, {"val-fraction", required_argument, 0, VALF},
      {"test-fraction", required_argument, 0, TESTF}, {"seed", required_argument, 0, SEED},
      {"text", no_argument, 0, TEXT}, {"csv", required_argument, 0, CSV},
      {"id-column", required_argument, 0, IDCOL}, {"label-column", required_argument, 0, LCOL},
      {"label-columns", required_argument, 0, LCOLS}, {"classes", required_argument, 0, CLASSES},
      {"multilabel", no_argument, 0, MULTI}, {"threads", required_argument, 0, 'j'},
      {"strict", no_argument, 0, STRICT}, {"max-warnings", required_argument, 0, MAXW},
      {"output", required_argument, 0, 'o'}, {"quiet", no_argument, 0, 'q'},
      {"metadata-only", no_argument, 0, METAONLY}, {"image-col", required_argument, 0, IMGCOL},
      {"caption-col", required_argument, 0, CAPCOL}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  long v;
  double f;
  int c;
  while ((c = getopt_long(argc, argv, "f:j:o:qh", longs, NULL)) != -1) {
    switch (c) {
    case 'f': o->ds.format = optarg; break;
    case SPLIT:
      if ((o->split = bm_split_parse(optarg)) == BM_SPLIT_NONE && strcmp(optarg, "all"))
        bm_usage_die("--split: train, val, test or all, not '%s'", optarg);
      break;
    case SIZE:
      if (bm_parse_long(optarg, 0, 16384, &v)) bm_usage_die("--size: not a size: %s", optarg);
      o->prep.size = (int)v;
      break;
    case NOCROP: o->prep.crop = 0; break;
    case SHARD:
      if (bm_parse_shard(optarg, &o->shard, &o->nshards)) bm_usage_die("--shard: expected K/N with 1 <= K <= N: %s", optarg);
      break;
    case VALF:
    case TESTF:
      if (bm_parse_double(optarg, &f) || f < 0 || f > 1) bm_usage_die("--%s-fraction: not in [0,1]: %s", c == VALF ? "val" : "test", optarg);
      *(c == VALF ? &o->ds.val_fraction : &o->ds.test_fraction) = f;
      break;
    case SEED:
      if (bm_parse_long(optarg, 0, (long)(~0UL >> 1), &v)) bm_usage_die("--seed: not a number: %s", optarg);
      o->ds.seed = (uint64_t)v;
      break;
    case TEXT: o->with_text = 1; break;
    case METAONLY: o->metadata_only = 1; break;
    case CSV: o->ds.csv = optarg; break;
    case IDCOL: o->ds.id_column = optarg; break;
    case LCOL: o->ds.label_column = optarg; break;
    case LCOLS: o->ds.label_columns = optarg; break;
    case CLASSES: o->ds.classes_opt = optarg; break;
    case MULTI: o->ds.multilabel = 1; break;
    case IMGCOL: o->ds.image_col = optarg; break;
    case CAPCOL: o->ds.caption_col = optarg; break;
    case 'j':
      if (bm_parse_long(optarg, 1, 1024, &v)) bm_usage_die("--threads: not a count: %s", optarg);
      o->threads = (int)v;
      break;
    case STRICT: o->prob.strict = 1; break;
    case MAXW:
      if (bm_parse_long(optarg, 0, 1L << 40, &o->prob.max_lines)) bm_usage_die("--max-warnings: not a count: %s", optarg);
      break;
    case 'o': o->output = optarg; break;
    case 'q': o->quiet = 1; break;
    case 'h': fputs(usage, stdout); exit(0);
    default: bm_usage_die("unknown option");
    }
  }
  if (!o->ds.format) bm_usage_die("--format is required");
  static const char *formats[] = {"nih", "ham10000", "isic2018-test", "folder", "pairs", NULL};
  int k = 0;
  while (formats[k] && strcmp(formats[k], o->ds.format)) k++;
  if (!formats[k]) bm_usage_die("unknown --format '%s' (nih, ham10000, isic2018-test, folder, pairs)", o->ds.format);
  int pairs = !strcmp(o->ds.format, "pairs");
  if (optind >= argc) bm_usage_die(pairs ? "no CSV, folder or shard given" : "no data set folder given");
  o->ds.dir = argv[optind++];
  if (optind < argc && strcmp(o->ds.format, "folder") && !pairs)
    bm_usage_die("only --format folder and pairs take more than one input");
  if (pairs && (o->metadata_only || o->with_text || o->ds.csv))
    bm_usage_die("--format pairs: --metadata-only, --text and --csv do not apply (the caption is the text)");
  if (!pairs && (o->ds.image_col || o->ds.caption_col)) bm_usage_die("--image-col and --caption-col are for --format pairs");
  o->ds.extra_inputs = argv + optind;
  o->ds.nextra = argc - optind;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  options o = {.split = BM_SPLIT_NONE, .prep = {224, 1}, .prob = {.max_lines = 100}};
  o.ds.val_fraction = 0.1;
  o.ds.test_fraction = -1;
  bm_shard_from_env(&o.shard, &o.nshards);
  parse_args(argc, argv, &o);
  if (o.threads) omp_set_num_threads(o.threads);
  if (bm_image_init(argv[0])) bm_die("cannot start libvips");
  /* decoded images are a few MB each: keep them in the heap for reuse
   * instead of fresh zeroed mmap pages for every image */
  mallopt(M_MMAP_THRESHOLD, 256 << 20);

  bm_dataset *d = bm_dataset_load(&o.ds);
  for (long i = 0; i < d->n; i++) { /* metadata problems of what this run selects */
    bm_sample *s = &d->s[i];
    if (s->problem >= 0 && selected(&o, s))
      bm_problem(&o.prob, s->problem, d->csv_path, s->id, "%s%s", s->why, s->skip ? "" : " (record kept)");
  }
  bm_writer *w = bm_writer_open(o.output);
  write_header(w, d, &o);

  if (o.metadata_only) {
    long written = 0;
    for (long i = 0; i < d->n; i++) {
      if (d->s[i].skip || !selected(&o, &d->s[i])) continue;
      job j = {.sample = i};
      write_record(w, d, &o, &j);
      written++;
    }
    if (bm_writer_close(w)) return 1;
    bm_problem_summary(&o.prob, written);
    bm_dataset_free(d);
    return 0;
  }
  run r = {.d = d, .o = &o, .w = w};
  int pairs_csv = !strcmp(d->task, "pairs") && !d->webdataset;
  if (!pairs_csv) r.wk = bm_walk_open(d->inputs, d->ninputs);
  if (d->webdataset) r.wds = bm_wds_open(r.wk, want_key, &r);
  bm_progress_init(&r.prog, o.quiet);
  bm_pool pool = {.item_size = sizeof(job), .batch_bytes = (size_t)256 << 20, .ctx = &r,
                  .produce = pairs_csv ? produce_csv : d->webdataset ? produce_wds : produce,
                  .work = decode, .consume = consume, .batch_done = progress};
  bm_pool_run(&pool);
  bm_progress_done(&r.prog);
  bm_wds_close(r.wds);
  bm_walk_close(r.wk);

  for (long i = 0; i < d->n; i++) {
    bm_sample *s = &d->s[i];
    if (!s->seen && !s->skip && selected(&o, s) && !pairs_csv)
      bm_problem(&o.prob, BM_P_NO_IMAGE, d->csv_path, s->id, "line %ld: no image %s in the inputs", s->line, s->key);
  }
  if (bm_writer_close(w)) return 1;
  bm_problem_summary(&o.prob, r.written);
  bm_dataset_free(d);
  return 0;
}
