/* bm-fuse - zero-shot classification: image embeddings against class
 * embeddings made from text prompts; or a trained linear head.
 *
 *   bm-fuse --classes CLASSES.bmr [--scale S] [--map NAME=CLASS]... [FILE]
 *   bm-fuse -m HEAD.safetensors [FILE]
 *
 * Records with "img_emb" (f32/f16 [E]) get "scores" (f32 [C]) = S * img_emb .
 * class_emb and "prob" (f32 [C]) = softmax(scores); the header gets the class
 * names and the task. C and the order are the data's classes (its header)
 * when it names them, else the order of CLASSES.bmr. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cuda/bmcuda.h"
#include "fusion.h"
#include "linhead.h"
#include "record.h"
#include "util.h"

static const char usage[] =
    "Usage: bm-fuse --classes CLASSES.bmr [OPTION]... [FILE]\n"
    "   or: bm-fuse -m HEAD.safetensors [-q] [FILE]\n"
    "Zero-shot classification: every record with \"img_emb\" gets \"scores\" =\n"
    "SCALE * img_emb . class_emb for each class and \"prob\" = softmax(scores).\n"
    "CLASSES.bmr is the output of bm-embed-txt --classes. Reads FILE (or stdin),\n"
    "writes stdout. Records without \"img_emb\" pass through unchanged.\n"
    "\n"
    "  -c, --classes FILE   the class embeddings (required)\n"
    "  -s, --scale S        multiply the similarities by S (default 100, as\n"
    "                       open_clip's zero-shot evaluation); 'logit' would take\n"
    "                       the CLIP model's exp(logit_scale): not yet\n"
    "      --map NAME=CLASS score the data's class NAME with the prompt class\n"
    "                       CLASS of CLASSES.bmr (repeatable); other data classes\n"
    "                       use the prompt class of the same name\n"
    "      --softmax        multilabel data without negative prompts: take the\n"
    "                       softmax across classes anyway (see the man page)\n"
    "  -m, --model CKPT     apply the head bm-train wrote instead: \"scores\" =\n"
    "                       logits, \"prob\" = softmax (multiclass) or sigmoid\n"
    "                       (multilabel). linear, finetune: the head on the\n"
    "                       features; fusion, regularized: the fusion and head on\n"
    "                       \"img_tokens\" and \"txt_tokens\" (bm-embed-img -m CKPT\n"
    "                       --tokens | bm-embed-txt -m CKPT --tokens)\n"
    "  -d, --device DEV     cpu (default), cuda or cuda:N: checked, but the work\n"
    "                       (a few small products per record) stays on the CPU\n"
    "  -q, --quiet          no summary line on stderr\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit status: 0 ok, 1 bad input, 2 usage.\n";

typedef struct {
  const char *classes_path, *model;
  double scale;
  char **map_from, **map_to;
  int nmap;
  int softmax;
  int quiet;
} options;

/* The prompt classes of CLASSES.bmr. */
typedef struct {
  int n, dim;
  char **names;
  float *emb;     /* [n, dim] */
  float *neg;     /* [n, dim] negative prompts, or NULL when the file has none */
  msgpack_object templates; /* NIL when absent; points into the reader */
  bm_reader *r;
} prompt_set;

/* One embedding tensor of CLASSES.bmr, checked, into dst[dim] (sets dim when 0). */
static void read_emb(bm_reader *r, const msgpack_object *rec, const char *key, int *dim,
                     float **dst, int idx) {
  char err[256], where[512];
  bm_tensor t;
  int k = bm_rec_tensor(rec, key, &t, err, sizeof err);
  bm_reader_where(r, where, sizeof where);
  if (k == 0) bm_die("%s: no \"%s\" (expected f32 [E])", where, key);
  if (k < 0) bm_die("%s: \"%s\": %s", where, key, err);
  if ((t.dtype != BM_F32 && t.dtype != BM_F16) || t.ndim != 1 || t.numel < 1)
    bm_die("%s: \"%s\" is %s with %d dimensions, expected f32 [E]", where, key,
           bm_dtype_name(t.dtype), t.ndim);
  if (*dim == 0) *dim = (int)t.numel;
  if (t.numel != *dim)
    bm_die("%s: \"%s\" has %lld values, the earlier class embeddings %d", where, key,
           (long long)t.numel, *dim);
  *dst = bm_xrealloc(*dst, bm_mul_size((size_t)(idx + 1) * (size_t)*dim, sizeof(float)));
  bm_tensor_to_f32(&t, *dst + (size_t)idx * (size_t)*dim);
}

static void load_prompts(const char *path, prompt_set *p) {
  memset(p, 0, sizeof *p);
  p->templates.type = MSGPACK_OBJECT_NIL;
  bm_reader *r = p->r = bm_reader_open(path);
  const msgpack_object *h = bm_reader_header(r);
  if (bm_reader_error(r)) exit(1);
  if (!h) bm_die("%s: no header: not a class-embedding file from bm-embed-txt --classes", path);
  const msgpack_object *task = bm_map_get(h, "task");
  if (!task || !bm_obj_is_str(task, "class-embeddings"))
    bm_die("%s: header task is not \"class-embeddings\": not from bm-embed-txt --classes", path);
  const msgpack_object *tp = bm_map_get(h, "templates");
  if (tp) p->templates = *tp;
  double hdim = 0;
  int has_dim = bm_map_get(h, "embed_dim") && !bm_obj_number(bm_map_get(h, "embed_dim"), &hdim);
  const msgpack_object *rec;
  int got, with_neg = 0;
  while ((got = bm_reader_next(r, &rec)) == 1) {
    char where[512];
    bm_reader_where(r, where, sizeof where);
    char *name = bm_obj_strdup(bm_map_get(rec, "class"));
    if (!name) bm_die("%s: no \"class\" name (a string)", where);
    for (int i = 0; i < p->n; i++)
      if (!strcmp(p->names[i], name)) bm_die("%s: class \"%s\" appears twice", where, name);
    p->names = bm_xrealloc(p->names, sizeof(char *) * (size_t)(p->n + 1));
    p->names[p->n] = name;
    read_emb(r, rec, "txt_emb", &p->dim, &p->emb, p->n);
    int neg = bm_map_get(rec, "txt_emb_neg") != NULL;
    if (p->n > 0 && neg != with_neg)
      bm_die("%s: \"txt_emb_neg\" %s, unlike the classes before: give every class a negative "
             "prompt or none", where, neg ? "present" : "absent");
    with_neg = neg;
    if (neg) read_emb(r, rec, "txt_emb_neg", &p->dim, &p->neg, p->n);
    p->n++;
  }
  if (got < 0) exit(1);
  if (p->n == 0) bm_die("%s: no class records", path);
  if (has_dim && hdim != p->dim)
    bm_die("%s: header embed_dim %g but the class embeddings have %d values", path, hdim, p->dim);
  char **hc;
  int nh = bm_header_classes(h, &hc);
  if (nh >= 0) {
    int same = nh == p->n;
    for (int i = 0; same && i < nh; i++) same = !strcmp(hc[i], p->names[i]);
    bm_free_strings(hc, nh);
    if (!same) bm_die("%s: the header's \"classes\" do not match the class records", path);
  }
}

/* For each output class, the index of its prompt class. */
static int *match_classes(const options *opt, const prompt_set *p, char **data, int nd,
                          const char *input) {
  for (int m = 0; m < opt->nmap; m++) {
    int found = 0;
    for (int i = 0; i < nd; i++) found |= !strcmp(data[i], opt->map_from[m]);
    if (!found) bm_usage_die("--map %s=%s: %s: the input's classes have no \"%s\"", opt->map_from[m],
                             opt->map_to[m], input, opt->map_from[m]);
  }
  int *idx = bm_xmalloc(sizeof(int) * (size_t)nd);
  int missing = 0;
  for (int i = 0; i < nd; i++) {
    const char *want = data[i];
    for (int m = 0; m < opt->nmap; m++)
      if (!strcmp(opt->map_from[m], data[i])) want = opt->map_to[m];
    idx[i] = -1;
    for (int j = 0; j < p->n; j++)
      if (!strcmp(p->names[j], want)) idx[i] = j;
    if (idx[i] < 0) {
      const char *hint = "";
      for (int j = 0; j < p->n; j++)
        if (!strcasecmp(p->names[j], want)) hint = " (differs in case only)";
      bm_warn("%s: class \"%s\" has no prompt class \"%s\" in %s%s", input, data[i], want,
              opt->classes_path, hint);
      missing++;
    }
    for (int k = 0; k < i && idx[i] >= 0; k++)
      if (idx[k] == idx[i])
        bm_die("%s: classes \"%s\" and \"%s\" both map to prompt class \"%s\"", input, data[k],
               data[i], p->names[idx[i]]);
  }
  if (missing) {
    size_t len = 1, at = 0;
    for (int j = 0; j < p->n; j++) len += strlen(p->names[j]) + 4; /* , "name" */
    char *list = bm_xmalloc(len);
    list[0] = 0;
    for (int j = 0; j < p->n; j++)
      at += (size_t)snprintf(list + at, len - at, "%s\"%s\"", j ? ", " : "", p->names[j]);
    bm_die("%d of the input's %d classes have no prompt class (use --map NAME=CLASS); %s has %s",
           missing, nd, opt->classes_path, list);
  }
  for (int j = 0; j < p->n; j++) {
    int used = 0;
    for (int i = 0; i < nd; i++) used |= idx[i] == j;
    if (!used) bm_warn("prompt class \"%s\" of %s matches no class of %s: left out", p->names[j],
                       opt->classes_path, input);
  }
  return idx;
}

static void softmax(const float *x, float *y, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  double sum = 0;
  for (int i = 0; i < n; i++) sum += y[i] = expf(x[i] - mx);
  for (int i = 0; i < n; i++) y[i] = (float)(y[i] / sum);
}

static double dot(const float *a, const float *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static void parse_map(options *opt, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg || !eq[1]) bm_usage_die("--map %s: expected NAME=CLASS", arg);
  opt->map_from = bm_xrealloc(opt->map_from, sizeof(char *) * (size_t)(opt->nmap + 1));
  opt->map_to = bm_xrealloc(opt->map_to, sizeof(char *) * (size_t)(opt->nmap + 1));
  opt->map_from[opt->nmap] = bm_xstrdup(arg);
  opt->map_from[opt->nmap][eq - arg] = 0;
  opt->map_to[opt->nmap] = bm_xstrdup(eq + 1);
  for (int m = 0; m < opt->nmap; m++)
    if (!strcmp(opt->map_from[m], opt->map_from[opt->nmap]))
      bm_usage_die("--map: class \"%s\" mapped twice", opt->map_from[m]);
  opt->nmap++;
}

/* The record with "scores" and "prob" (f32 [C]) set. */
static int write_scored(bm_writer *w, const msgpack_object *rec, bm_out *o, int C, const float *scores,
                        const float *prob) {
  int64_t shape[1] = {C};
  bm_out_tensor(o, "scores", BM_F32, 1, shape, scores);
  bm_out_tensor(o, "prob", BM_F32, 1, shape, prob);
  return bm_write_record(w, rec, o);
}

/* Opens the input and reads its header (*h, NULL when none) and the class
 * names in it (*nd of them, or -1 when the header names none). */
static bm_reader *open_input(const char *input, const char *input_name, const msgpack_object **h,
                             char ***data, int *nd) {
  bm_reader *r = bm_reader_open(input);
  *h = bm_reader_header(r);
  if (bm_reader_error(r)) exit(1);
  *data = NULL;
  *nd = *h ? bm_header_classes(*h, data) : -1;
  if (*h && bm_map_get(*h, "classes") && *nd < 0)
    bm_die("%s: header \"classes\" is not an array of strings", input_name);
  return r;
}

/* The input's header checked against a trained head's classes and task
 * (data: the header's class names, nd of them or -1; freed), and the output
 * header written with them. Returns bm_write_header's status. */
static int head_header(const options *opt, const char *input_name, const msgpack_object *h, char **data, int nd,
                       int C, const char *const *classes, int multilabel, const char *mode, const char *features,
                       bm_writer *w, bm_out *o) {
  if (nd >= 0) { /* the order of the scores must be the order of the targets */
    if (nd != C)
      bm_die("%s: the header names %d classes, the head %s was trained on %d", input_name, nd, opt->model, C);
    for (int k = 0; k < nd; k++)
      if (strcmp(data[k], classes[k]))
        bm_die("%s: class %d is \"%s\" in the header, \"%s\" in %s", input_name, k, data[k], classes[k], opt->model);
    bm_free_strings(data, nd);
  }
  const msgpack_object *task_obj = h ? bm_map_get(h, "task") : NULL;
  const char *task = multilabel ? "multilabel" : "multiclass";
  if (task_obj && !bm_obj_is_str(task_obj, task))
    bm_die("%s: the header's task is not \"%s\", the task of %s", input_name, task, opt->model);
  msgpack_packer *pk = bm_out_key(o, "classes");
  msgpack_pack_array(pk, (size_t)C);
  for (int k = 0; k < C; k++) bm_pack_str(pk, classes[k]);
  bm_out_str(o, "task", task);
  pk = bm_out_key(o, "head");
  msgpack_pack_map(pk, 4);
  bm_pack_str(pk, "model");
  bm_pack_str(pk, opt->model);
  bm_pack_str(pk, "mode");
  bm_pack_str(pk, mode);
  bm_pack_str(pk, "features");
  bm_pack_str(pk, features);
  bm_pack_str(pk, "prob");
  bm_pack_str(pk, multilabel ? "sigmoid per class" : "softmax across classes");
  return bm_write_header(w, h, o);
}

/* One record's tokens tensor key [rows, D] into a float buffer (grown);
 * returns the rows, 0 when the record has no key; dies on a bad tensor. */
static int read_tokens(bm_reader *r, const msgpack_object *rec, const char *key, int D, float **buf, size_t *cap,
                       const char *model) {
  bm_tensor t;
  char err[256], where[512];
  int k = bm_rec_tensor(rec, key, &t, err, sizeof err);
  if (k == 0) return 0;
  bm_reader_where(r, where, sizeof where);
  if (k < 0) bm_die("%s: \"%s\": %s", where, key, err);
  if ((t.dtype != BM_F16 && t.dtype != BM_F32) || t.ndim != 2 || t.shape[1] != D || t.shape[0] < 1 ||
      t.shape[0] > (1 << 20))
    bm_die("%s: \"%s\" is %s with %d dimensions (last %lld), expected f16 [N,%d] (the fusion of %s)", where, key,
           bm_dtype_name(t.dtype), t.ndim, t.ndim ? (long long)t.shape[t.ndim - 1] : 0LL, D, model);
  if ((size_t)t.numel > *cap) *buf = bm_xrealloc(*buf, bm_mul_size((size_t)t.numel, sizeof(float))), *cap = (size_t)t.numel;
  bm_tensor_to_f32(&t, *buf);
  for (int64_t i = 0; i < t.numel; i++)
    if (!isfinite((*buf)[i])) bm_die("%s: \"%s\" holds a value that is not finite", where, key);
  return (int)t.shape[0];
}

/* -m: the linear head of a bm-train checkpoint on each record's features. */
static int apply_head(const options *opt, const char *input, const char *input_name) {
  bm_linhead hd;
  char err[1024];
  if (bm_linhead_load(opt->model, &hd, err, sizeof err)) bm_die("-m: %s", err);
  const msgpack_object *h;
  char **data;
  int nd;
  bm_reader *r = open_input(input, input_name, &h, &data, &nd);
  bm_writer *w = bm_writer_open("-");
  bm_out o;
  bm_out_init(&o);
  if (head_header(opt, input_name, h, data, nd, hd.C, (const char *const *)hd.classes, hd.multilabel, "linear",
                  bm_feat_name(hd.feat), w, &o))
    return 1;

  float *x = bm_xmalloc(bm_mul_size((size_t)hd.D, sizeof(float)));
  float *scores = bm_xmalloc(sizeof(float) * (size_t)hd.C), *prob = bm_xmalloc(sizeof(float) * (size_t)hd.C);
  long scored = 0, passed = 0;
  const msgpack_object *rec;
  int got;
  while ((got = bm_reader_next(r, &rec)) == 1) {
    char where[512];
    const char *missing = NULL;
    int dims[2] = {hd.dims[0], hd.dims[1]};
    int D = bm_linhead_features(rec, hd.feat, dims, x, (size_t)hd.D, &missing, err, sizeof err);
    bm_out_reset(&o);
    if (D == 0) { /* as zero-shot: records without the features pass through */
      passed++;
      if (bm_write_record(w, rec, &o)) return 1;
      continue;
    }
    if (D < 0) bm_die("%s: %s (the head %s)", bm_reader_where(r, where, sizeof where), err, opt->model);
    bm_linhead_forward(x, hd.W, hd.b, 1, hd.D, hd.C, scores);
    bm_linhead_prob(scores, hd.C, hd.multilabel, prob);
    if (write_scored(w, rec, &o, hd.C, scores, prob)) return 1;
    scored++;
  }
  int bad = got < 0;
  if (bm_writer_close(w)) bad = 1;
  if (!opt->quiet)
    bm_warn("%ld records scored by the linear head of %s (%d classes), %ld without its features (%s) passed through",
            scored, opt->model, hd.C, passed, bm_feat_name(hd.feat));
  bm_out_free(&o);
  bm_reader_close(r);
  bm_linhead_free(&hd);
  free(x), free(scores), free(prob);
  return bad;
}

/* -m with a fusion or regularized checkpoint: its fusion module and head on
 * each record's img_tokens and txt_tokens, one record at a time (the
 * forward of bm-train's validation, on f16-rounded tokens). */
static int apply_fusion(const options *opt, bm_weights *ws, json_t *cfg, const char *mode, const char *input,
                        const char *input_name) {
  const char *m = opt->model;
  json_t *fj = json_object_get(cfg, "fusion");
  const char *comb = json_string_value(json_object_get(fj, "combine"));
  bm_fusion_cfg fc = {.Di = (int)json_integer_value(json_object_get(fj, "img_dim")),
                      .Dt = (int)json_integer_value(json_object_get(fj, "txt_dim")),
                      .F = (int)json_integer_value(json_object_get(fj, "width")),
                      .layers = (int)json_integer_value(json_object_get(fj, "layers")),
                      .heads = (int)json_integer_value(json_object_get(fj, "heads")),
                      .mlp = (int)json_integer_value(json_object_get(fj, "mlp")),
                      .combine = comb && !strcmp(comb, "mean") ? BM_FUSE_MEAN : BM_FUSE_CONCAT};
  const char *why = bm_fusion_check_cfg(&fc);
  if (!json_is_object(fj) || !comb || (strcmp(comb, "mean") && strcmp(comb, "concat")) || why)
    bm_die("-m %s: config \"fusion\" is missing or not usable%s%s", m, why ? ": " : "", why ? why : "");
  char err[1024];
  bm_fusion fu;
  if (bm_fusion_load(&fu, &fc, ws, err, sizeof err)) bm_die("-m %s: %s", m, err);
  json_t *cls = json_object_get(cfg, "classes");
  const char *task = json_string_value(json_object_get(cfg, "task"));
  int C = (int)json_array_size(cls), K = bm_fusion_out_dim(&fu.cfg);
  if (C < 1 || !task || (strcmp(task, "multiclass") && strcmp(task, "multilabel")))
    bm_die("-m %s: config \"classes\" or \"task\" missing", m);
  char **classes = bm_xcalloc((size_t)C + 1, sizeof *classes);
  for (int k = 0; k < C; k++) {
    const char *c = json_string_value(json_array_get(cls, (size_t)k));
    if (!c) bm_die("-m %s: config \"classes\" holds a value that is not a string", m);
    classes[k] = bm_xstrdup(c);
  }
  int64_t shw[2] = {C, K};
  const bm_weight *hw = bm_weights_expect(ws, "head.weight", 2, shw, err, sizeof err);
  const bm_weight *hb = hw ? bm_weights_expect(ws, "head.bias", 1, shw, err, sizeof err) : NULL;
  if (!hw || !hb) bm_die("-m %s: %s", m, err);
  float *W = bm_weight_to_f32(hw), *b = bm_weight_to_f32(hb);
  if (!W || !b) bm_die("-m %s: head.weight and head.bias must be floats", m);
  int multilabel = !strcmp(task, "multilabel");
  const msgpack_object *h;
  char **data;
  int nd;
  bm_reader *r = open_input(input, input_name, &h, &data, &nd);
  bm_writer *w = bm_writer_open("-");
  bm_out o;
  bm_out_init(&o);
  if (head_header(opt, input_name, h, data, nd, C, (const char *const *)classes, multilabel, mode,
                  "img_tokens+txt_tokens", w, &o))
    return 1;
  bm_fusion_acts fa = {0};
  float *xi = NULL, *xt = NULL, *out = bm_xmalloc(sizeof(float) * (size_t)K);
  size_t capi = 0, capt = 0;
  float *scores = bm_xmalloc(sizeof(float) * (size_t)C), *prob = bm_xmalloc(sizeof(float) * (size_t)C);
  long scored = 0, passed = 0;
  const msgpack_object *rec;
  int got;
  while ((got = bm_reader_next(r, &rec)) == 1) {
    bm_out_reset(&o);
    int Ti = read_tokens(r, rec, "img_tokens", fc.Di, &xi, &capi, m);
    int Lt = Ti ? read_tokens(r, rec, "txt_tokens", fc.Dt, &xt, &capt, m) : 0;
    if (!Ti || !Lt) { /* as the linear head: records without both pass through */
      passed++;
      if (bm_write_record(w, rec, &o)) return 1;
      continue;
    }
    int start = 0;
    bm_fusion_forward(&fu, &fa, xi, 1, Ti, xt, &start, &Lt, out);
    bm_linhead_forward(out, W, b, 1, K, C, scores);
    bm_linhead_prob(scores, C, multilabel, prob);
    if (write_scored(w, rec, &o, C, scores, prob)) return 1;
    scored++;
  }
  int bad = got < 0;
  if (bm_writer_close(w)) bad = 1;
  if (!opt->quiet)
    bm_warn("%ld records scored by the %s model %s (%d classes), %ld without img_tokens and txt_tokens passed through",
            scored, mode, m, C, passed);
  bm_out_free(&o);
  bm_reader_close(r);
  bm_fusion_free(&fu);
  bm_fusion_acts_free(&fa);
  bm_free_strings(classes, C);
  free(W), free(b), free(xi), free(xt), free(out), free(scores), free(prob);
  return bad;
}

/* -m: the checkpoint's mode decides what it applies. */
static int apply_model(const options *opt, const char *input, const char *input_name) {
  bm_weights ws;
  char err[1024];
  if (bm_weights_load(opt->model, &ws, err, sizeof err)) bm_die("-m: %s", err);
  json_t *cfg = ws.config_json ? json_loads(ws.config_json, 0, NULL) : NULL;
  const char *mode = json_string_value(json_object_get(cfg, "mode"));
  int rc = -1;
  if (mode && (!strcmp(mode, "fusion") || !strcmp(mode, "regularized")))
    rc = apply_fusion(opt, &ws, cfg, mode, input, input_name);
  json_decref(cfg);
  bm_weights_free(&ws);
  return rc >= 0 ? rc : apply_head(opt, input, input_name);
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  options opt = {.scale = 100};
  static const struct option longs[] = {{"classes", required_argument, 0, 'c'},
                                        {"scale", required_argument, 0, 's'},
                                        {"map", required_argument, 0, 'M'},
                                        {"softmax", no_argument, 0, 'S'},
                                        {"model", required_argument, 0, 'm'},
                                        {"device", required_argument, 0, 'd'},
                                        {"quiet", no_argument, 0, 'q'},
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "c:s:m:d:qh", longs, NULL)) != -1) {
    switch (c) {
    case 'c': opt.classes_path = optarg; break;
    case 's':
      if (!strcmp(optarg, "logit"))
        bm_usage_die("--scale logit: not yet: it needs the CLIP model's logit_scale; give a number "
                     "(open_clip's zero-shot uses 100)");
      if (bm_parse_double(optarg, &opt.scale) || !isfinite(opt.scale) || opt.scale <= 0)
        bm_usage_die("--scale %s: expected a positive number", optarg);
      break;
    case 'M': parse_map(&opt, optarg); break;
    case 'S': opt.softmax = 1; break;
    case 'm': opt.model = optarg; break;
    case 'd': {
      /* one --device for every stage of a pipeline: the GPU must be there, but
       * this filter's products are too small to be worth the copies */
      int cuda = bm_device_is_cuda(optarg);
      if (cuda < 0) bm_usage_die("--device: cpu, cuda or cuda:N, not %s", optarg);
      char err[512];
      bm_cuda *gpu = cuda ? bm_cuda_open(optarg, err, sizeof err) : NULL;
      if (cuda && !gpu) bm_die("--device %s", err);
      bm_cuda_close(gpu);
      break;
    }
    case 'q': opt.quiet = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    default: bm_usage_die("unknown option (see --help)");
    }
  }
  if (argc - optind > 1) bm_usage_die("one input at most (cat several into a pipe)");
  const char *input = optind < argc ? argv[optind] : "-";
  const char *input_name = strcmp(input, "-") ? input : "stdin";
  if (opt.model) {
    if (opt.classes_path || opt.nmap || opt.softmax || opt.scale != 100)
      bm_usage_die("-m: a trained head needs no --classes, --scale, --map or --softmax");
    return apply_model(&opt, input, input_name);
  }
  if (!opt.classes_path) bm_usage_die("--classes CLASSES.bmr (zero-shot) or -m CKPT is required (see --help)");

  prompt_set ps;
  load_prompts(opt.classes_path, &ps);
  /* Output classes: the data's, mapped to prompt classes, or the prompts'. */
  const msgpack_object *h;
  char **data;
  int nd;
  bm_reader *r = open_input(input, input_name, &h, &data, &nd);
  if (nd == 0) bm_die("%s: header \"classes\" is empty", input_name);
  int *idx;
  if (nd > 0) {
    idx = match_classes(&opt, &ps, data, nd, input_name);
  } else {
    if (opt.nmap) bm_usage_die("--map: %s names no classes in its header to map", input_name);
    nd = ps.n;
    data = bm_xcalloc((size_t)nd + 1, sizeof *data);
    idx = bm_xmalloc(sizeof(int) * (size_t)nd);
    for (int i = 0; i < nd; i++) data[i] = bm_xstrdup(ps.names[i]), idx[i] = i;
  }
  const msgpack_object *task_obj = h ? bm_map_get(h, "task") : NULL;
  int multilabel = task_obj && bm_obj_is_str(task_obj, "multilabel");
  int pairwise = multilabel && ps.neg && !opt.softmax; /* per class: positive vs negative */
  if (multilabel && !ps.neg && !opt.softmax)
    bm_die("%s: task is multilabel: zero-shot needs a negative prompt per class in %s "
           "(\"txt_emb_neg\", from NAME<TAB>PROMPT<TAB>NEGATIVE lines), or --softmax to take the "
           "softmax across classes anyway", input_name, opt.classes_path);

  bm_writer *w = bm_writer_open("-");
  bm_out o;
  bm_out_init(&o);
  msgpack_packer *pk = bm_out_key(&o, "classes");
  msgpack_pack_array(pk, (size_t)nd);
  for (int i = 0; i < nd; i++) bm_pack_str(pk, data[i]);
  bm_out_str(&o, "task", multilabel ? "multilabel" : "multiclass");
  pk = bm_out_key(&o, "zero_shot");
  msgpack_pack_map(pk, 4);
  bm_pack_str(pk, "scale");
  msgpack_pack_double(pk, opt.scale);
  bm_pack_str(pk, "prob");
  bm_pack_str(pk, pairwise ? "softmax over positive and negative prompt, per class"
                           : "softmax across classes");
  bm_pack_str(pk, "prompt_classes");
  msgpack_pack_array(pk, (size_t)nd);
  for (int i = 0; i < nd; i++) bm_pack_str(pk, ps.names[idx[i]]);
  bm_pack_str(pk, "templates");
  msgpack_pack_object(pk, ps.templates);
  if (bm_write_header(w, h, &o)) return 1;

  float *emb = bm_xmalloc(bm_mul_size((size_t)ps.dim, sizeof(float)));
  float *scores = bm_xmalloc(sizeof(float) * (size_t)nd), *prob = bm_xmalloc(sizeof(float) * (size_t)nd);
  long scored = 0, passed = 0, off_unit = 0;
  const msgpack_object *rec;
  int got;
  while ((got = bm_reader_next(r, &rec)) == 1) {
    char err[256], where[512];
    bm_tensor t;
    int k = bm_rec_tensor(rec, "img_emb", &t, err, sizeof err);
    bm_out_reset(&o);
    if (k == 0) {
      passed++;
      if (bm_write_record(w, rec, &o)) return 1;
      continue;
    }
    bm_reader_where(r, where, sizeof where);
    if (k < 0) bm_die("%s: \"img_emb\": %s", where, err);
    if ((t.dtype != BM_F32 && t.dtype != BM_F16) || t.ndim != 1)
      bm_die("%s: \"img_emb\" is %s with %d dimensions, expected f32 [%d]", where,
             bm_dtype_name(t.dtype), t.ndim, ps.dim);
    if (t.numel != ps.dim)
      bm_die("%s: \"img_emb\" has %lld values but the class embeddings of %s have %d", where,
             (long long)t.numel, opt.classes_path, ps.dim);
    bm_tensor_to_f32(&t, emb);
    double nrm = sqrt(dot(emb, emb, ps.dim));
    off_unit += !(fabs(nrm - 1) < 1e-3);
    for (int i = 0; i < nd; i++) {
      const float *pos = ps.emb + (size_t)idx[i] * (size_t)ps.dim;
      if (pairwise) {
        /* softmax over {positive, negative} = sigmoid of the difference */
        const float *neg = ps.neg + (size_t)idx[i] * (size_t)ps.dim;
        scores[i] = (float)(opt.scale * (dot(emb, pos, ps.dim) - dot(emb, neg, ps.dim)));
        prob[i] = (float)(1 / (1 + exp(-(double)scores[i])));
      } else {
        scores[i] = (float)(opt.scale * dot(emb, pos, ps.dim));
      }
    }
    if (!pairwise) softmax(scores, prob, nd);
    if (write_scored(w, rec, &o, nd, scores, prob)) return 1;
    scored++;
  }
  int bad = got < 0;
  if (bm_writer_close(w)) bad = 1;
  if (off_unit)
    bm_warn("%ld img_emb were not of unit length: scores are scaled dot products, not cosines",
            off_unit);
  if (!opt.quiet)
    bm_warn("%ld records scored against %d classes, %ld without img_emb passed through", scored, nd,
            passed);
  bm_out_free(&o);
  bm_reader_close(r);
  bm_reader_close(ps.r);
  bm_free_strings(data, nd);
  bm_free_strings(ps.names, ps.n);
  free(ps.emb);
  free(ps.neg);
  free(idx);
  free(emb);
  free(scores);
  free(prob);
  for (int m = 0; m < opt.nmap; m++) free(opt.map_from[m]), free(opt.map_to[m]);
  free(opt.map_from);
  free(opt.map_to);
  return bad;
}
