/* datasets.c - see datasets.h. One loader per release layout. */
#define _GNU_SOURCE
#include "datasets.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "csv.h"
#include "imageio.h"
#include "record.h"
#include "splits.h"
#include "util.h"
#include "wds.h"

static const char *nih_classes[] = {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration",
                                    "Mass", "Nodule", "Pneumonia", "Pneumothorax",
                                    "Consolidation", "Edema", "Emphysema", "Fibrosis",
                                    "Pleural_Thickening", "Hernia"};
static const char *ham_classes[] = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"};

const char *bm_sample_key(const char *name, char *buf, int n) {
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  snprintf(buf, (size_t)n, "%s", base);
  char *dot = strrchr(buf, '.');
  if (dot && dot != buf && bm_is_image_name(buf)) *dot = 0;
  return buf;
}

static char *join(const char *dir, const char *name) {
  char *p;
  if (asprintf(&p, "%s/%s", dir, name) < 0) bm_die("out of memory");
  return p;
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_archive_name(const char *n) {
  static const char *ext[] = {".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz", NULL};
  size_t len = strlen(n);
  for (int i = 0; ext[i]; i++) {
    size_t e = strlen(ext[i]);
    if (len > e && !strcasecmp(n + len - e, ext[i])) return 1;
  }
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void find_prefix(bm_dataset *d, const char *dir, const char *prefix) {
  DIR *dh = opendir(dir);
  if (!dh) bm_die("%s: cannot open folder: %s", dir, strerror(errno));
  struct dirent *e;
  while ((e = readdir(dh))) {
    if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix))) continue;
    char *p = join(dir, e->d_name);
    struct stat st;
    if (stat(p, &st) == 0 && (S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && is_archive_name(e->d_name)))) {
      d->inputs = bm_xrealloc(d->inputs, sizeof(char *) * (size_t)(d->ninputs + 1));
      d->inputs[d->ninputs++] = p;
    } else {
      free(p);
    }
  }
  closedir(dh);
  if (d->ninputs) qsort(d->inputs, (size_t)d->ninputs, sizeof(char *), cmp_str);
}

/* Entries of dir whose name starts with prefix and that are archives or
 * folders, sorted: the image inputs of a release. Prefixes are separated by
 * '|': the first that names anything wins. */
static void find_inputs(bm_dataset *d, const char *dir, const char *prefixes) {
  char *list = bm_xstrdup(prefixes), *save = NULL;
  for (char *p = strtok_r(list, "|", &save); p && !d->ninputs; p = strtok_r(NULL, "|", &save))
    find_prefix(d, dir, p);
  if (!d->ninputs) bm_die("%s: no images: expected archives or folders named %s*", dir, prefixes);
  free(list);
}

static bm_csv *load_csv(const char *path) {
  char err[1024];
  bm_csv *c = bm_csv_load(path, err, sizeof err);
  if (!c) bm_die("%s", err);
  return c;
}

static int need_col(const bm_csv *c, const char *name) {
  int j = bm_csv_col(c, name);
  if (j < 0) bm_die("%s: no column '%s' in the header", c->path, name);
  return j;
}

static void set_meta_keys(bm_dataset *d, const char *const *keys, const int *types, int n) {
  d->nmeta = n;
  d->meta_keys = bm_xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
  d->meta_types = bm_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) d->meta_keys[i] = bm_xstrdup(keys[i]), d->meta_types[i] = types[i];
}

static void set_classes(bm_dataset *d, const char *const *names, int n) {
  d->nclasses = n;
  d->classes = bm_xmalloc(sizeof(char *) * (size_t)n);
  for (int i = 0; i < n; i++) d->classes[i] = bm_xstrdup(names[i]);
}

static bm_sample *new_sample(bm_dataset *d, const char *id, long line) {
  if (d->n == d->cap) /* doubling: 112,120 NIH rows must not cost n^2 copies */
    d->s = bm_xrealloc(d->s, sizeof(bm_sample) * (size_t)(d->cap = d->cap ? 2 * d->cap : 1024));
  bm_sample *s = &d->s[d->n++];
  memset(s, 0, sizeof *s);
  char key[1024];
  s->key = bm_xstrdup(bm_sample_key(id, key, sizeof key));
  s->id = bm_xstrdup(id);
  s->split = BM_SPLIT_NONE;
  s->target = bm_xcalloc((size_t)d->nclasses, sizeof(float));
  s->meta = bm_xcalloc((size_t)(d->nmeta ? d->nmeta : 1), sizeof(char *));
  s->line = line;
  s->problem = -1;
  return s;
}

static void sample_problem(bm_sample *s, int kind, int skip, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sample_problem(bm_sample *s, int kind, int skip, const char *fmt, ...) {
  if (s->problem >= 0 && s->skip) return; /* the first skipping reason stands */
  va_list ap;
  va_start(ap, fmt);
  free(s->why);
  if (vasprintf(&s->why, fmt, ap) < 0) bm_die("out of memory");
  va_end(ap);
  s->problem = kind;
  s->skip |= skip;
}

/* Index the samples by key; a second row for the same image is a problem. */
static void index_samples(bm_dataset *d) {
  bm_strmap_init(&d->index);
  for (long i = 0; i < d->n; i++) {
    long first = bm_strmap_put(&d->index, d->s[i].key, i);
    if (first != i)
      sample_problem(&d->s[i], BM_P_BAD_ROW, 1, "line %ld: image %s listed again (first on line %ld)",
                     d->s[i].line, d->s[i].id, d->s[first].line);
  }
}

/* "58", "058Y", "80.0" -> a non-negative number; -1 when empty or not one. */
static double parse_age(const char *s) {
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return -1;
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0 || !isfinite(v)) return -1;
  if (*end == 'Y' || *end == 'y') end++;
  while (isspace((unsigned char)*end)) end++;
  return *end ? -1 : v;
}

static void set_age(bm_sample *s, int slot, const char *raw, int as_int) {
  double age = parse_age(raw);
  if (age < 0) {
    sample_problem(s, BM_P_EMPTY_AGE, 0, "line %ld: age '%s' %s", s->line, raw,
                   *raw ? "is not a number" : "is empty");
    return;
  }
  char buf[32];
  if (as_int || age == floor(age)) snprintf(buf, sizeof buf, "%.0f", floor(age));
  else snprintf(buf, sizeof buf, "%g", age);
  s->meta[slot] = bm_xstrdup(buf);
}

/* Text from metadata only (never the label): "58 year old male, PA view". */
static void set_text(bm_sample *s, const char *age, const char *sex, const char *where) {
  char buf[512] = "";
  size_t n = 0;
  if (age && *age) n += (size_t)snprintf(buf + n, sizeof buf - n, "%s year old", age);
  if (sex && *sex)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", sex);
  if (where && *where && n < sizeof buf)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? ", " : "", where);
  s->text = bm_xstrdup(n ? buf : "no metadata");
}

static const char *sex_word(const char *s) {
  if (!strcasecmp(s, "M") || !strcasecmp(s, "male")) return "male";
  if (!strcasecmp(s, "F") || !strcasecmp(s, "female")) return "female";
  return "";
}

/* Lines of a list file into a set. */
static void load_list(const char *path, bm_strmap *set) {
  FILE *f = fopen(path, "r");
  if (!f) bm_die("%s: %s", path, strerror(errno));
  char line[4096];
  bm_strmap_init(set);
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    char *s = line;
    while (isspace((unsigned char)*s)) s++;
    size_t k = strlen(s);
    while (k && isspace((unsigned char)s[k - 1])) s[--k] = 0;
    char key[1024];
    if (*s) bm_strmap_put(set, bm_sample_key(s, key, sizeof key), 1);
  }
  if (ferror(f)) bm_die("%s: read error", path);
  fclose(f);
}

/* Split the groups of the samples with split == BM_SPLIT_NONE and no
 * skipping problem, stratified by stratum[i] (or one stratum). */
static void split_by_group(bm_dataset *d, const int *stratum, double val, double test, uint64_t seed) {
  bm_strmap groups;
  bm_strmap_init(&groups);
  /* at most one group per sample */
  char **names = bm_xmalloc(sizeof(char *) * (size_t)(d->n ? d->n : 1));
  int *strata = bm_xmalloc(sizeof(int) * (size_t)(d->n ? d->n : 1));
  long ng = 0;
  long *gi = bm_xmalloc(sizeof(long) * (size_t)(d->n ? d->n : 1));
  for (long i = 0; i < d->n; i++) {
    gi[i] = -1;
    if (d->s[i].skip || d->s[i].split != BM_SPLIT_NONE) continue;
    long g = bm_strmap_put(&groups, d->s[i].group, ng);
    if (g == ng) {
      names[ng] = d->s[i].group;
      strata[ng] = stratum ? stratum[i] : 0; /* a group's first row decides */
      ng++;
    }
    gi[i] = g;
  }
  int *split = bm_xmalloc(sizeof(int) * (size_t)(ng ? ng : 1));
  bm_split_groups(names, strata, ng, val, test, seed, split);
  for (long i = 0; i < d->n; i++)
    if (gi[i] >= 0) d->s[i].split = split[gi[i]];
  free(split), free(names), free(strata), free(gi);
  bm_strmap_free(&groups);
}

static char *csv_path(const bm_dataset_opts *o, const char *const *names) {
  if (o->csv) return bm_xstrdup(o->csv);
  for (int i = 0; names[i]; i++) {
    char *p = join(o->dir, names[i]);
    if (is_file(p)) return p;
    free(p);
  }
  bm_die("%s: missing metadata: no %s (or give --csv FILE)", o->dir, names[0]);
}

/* ---- NIH ChestX-ray14 ---- */
static void load_nih(bm_dataset *d, const bm_dataset_opts *o) {
  d->name = "nih-chestxray14";
  d->task = "multilabel";
  set_classes(d, nih_classes, 14);
  static const char *mk[] = {"age", "sex", "view", "follow_up"};
  static const int mt[] = {BM_META_INT, BM_META_STR, BM_META_STR, BM_META_INT};
  set_meta_keys(d, mk, mt, 4);
  static const char *csvs[] = {"Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv", NULL};
  d->csv_path = csv_path(o, csvs);
  char *tvp = join(o->dir, "train_val_list.txt"), *tp = join(o->dir, "test_list.txt");
  if (!is_file(tvp) || !is_file(tp))
    bm_die("%s: missing split list: need train_val_list.txt and test_list.txt", o->dir);
  bm_strmap trainval, test;
  load_list(tvp, &trainval);
  load_list(tp, &test);
  find_inputs(d, o->dir, "images");
  bm_csv *c = load_csv(d->csv_path);
  int ci = need_col(c, "Image Index"), cl = need_col(c, "Finding Labels"),
      cf = need_col(c, "Follow-up #"), cp = need_col(c, "Patient ID"),
      ca = need_col(c, "Patient Age"), cs = need_col(c, "Patient Gender"),
      cv = need_col(c, "View Position");
  int need = 1 + (ci > cl ? ci : cl);
  int cols[] = {cf, cp, ca, cs, cv};
  for (int k = 0; k < 5; k++) need = cols[k] + 1 > need ? cols[k] + 1 : need;
  for (long r = 1; r < c->nrows; r++) {
    bm_csv_row *row = &c->rows[r];
    bm_sample *s = new_sample(d, row->n > ci && *row->f[ci] ? row->f[ci] : "(no image index)", row->line);
    if (row->n < need) {
      s->group = bm_xstrdup("");
      sample_problem(s, BM_P_BAD_ROW, 1, "line %ld: %d fields, expected at least %d", row->line, row->n, need);
      continue;
    }
    s->group = bm_xstrdup(row->f[cp]);
    /* labels: "No Finding" or names joined by "|" */
    char *labels = row->f[cl];
    if (strcmp(labels, "No Finding")) {
      char *save = NULL, *tmp = bm_xstrdup(labels);
      for (char *t = strtok_r(tmp, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
        int k = 0;
        while (k < 14 && strcmp(t, nih_classes[k])) k++;
        if (k == 14) sample_problem(s, BM_P_BAD_LABEL, 1, "line %ld: label '%s' is not one of the 14", row->line, t);
        else s->target[k] = 1;
      }
      if (!*labels) sample_problem(s, BM_P_BAD_LABEL, 1, "line %ld: empty Finding Labels", row->line);
      free(tmp);
    }
    set_age(s, 0, row->f[ca], 1);
    const char *sex = row->f[cs], *view = row->f[cv];
    s->meta[1] = bm_xstrdup(sex);
    s->meta[2] = bm_xstrdup(view);
    s->meta[3] = bm_xstrdup(row->f[cf]);
    char where[64] = "";
    if (*view) snprintf(where, sizeof where, "%s view", view);
    set_text(s, s->meta[0], sex_word(sex), where);
    int in_test = bm_strmap_get(&test, s->key) >= 0, in_tv = bm_strmap_get(&trainval, s->key) >= 0;
    if (in_test && in_tv) sample_problem(s, BM_P_NO_SPLIT, 1, "line %ld: listed in both train_val_list.txt and test_list.txt", row->line);
    else if (in_test) s->split = BM_SPLIT_TEST;
    else if (!in_tv) sample_problem(s, BM_P_NO_SPLIT, 1, "line %ld: in neither train_val_list.txt nor test_list.txt", row->line);
  }
  bm_csv_free(c);
  bm_strmap_free(&trainval);
  bm_strmap_free(&test);
  free(tvp), free(tp);
  index_samples(d);
  /* the official split is by patient; validation comes out of train_val,
   * again by patient */
  split_by_group(d, NULL, o->val_fraction, 0, o->seed);
  d->val_fraction = o->val_fraction;
  d->test_fraction = 0;
}

/* ---- HAM10000 ---- */
static void load_ham(bm_dataset *d, const bm_dataset_opts *o) {
  d->name = "ham10000";
  d->task = "multiclass";
  set_classes(d, ham_classes, 7);
  static const char *mk[] = {"age", "sex", "localization", "dx_type", "dataset"};
  static const int mt[] = {BM_META_NUM, BM_META_STR, BM_META_STR, BM_META_STR, BM_META_STR};
  set_meta_keys(d, mk, mt, 5);
  static const char *csvs[] = {"HAM10000_metadata.csv", "HAM10000_metadata", NULL};
  d->csv_path = csv_path(o, csvs);
  find_inputs(d, o->dir, "HAM10000_images");
  bm_csv *c = load_csv(d->csv_path);
  int cles = need_col(c, "lesion_id"), cimg = need_col(c, "image_id"), cdx = need_col(c, "dx"),
      ctype = bm_csv_col(c, "dx_type"), cage = bm_csv_col(c, "age"), csex = bm_csv_col(c, "sex"),
      cloc = bm_csv_col(c, "localization"), cset = bm_csv_col(c, "dataset");
  int *stratum = bm_xmalloc(sizeof(int) * (size_t)c->nrows);
  for (long r = 1; r < c->nrows; r++) {
    bm_csv_row *row = &c->rows[r];
    bm_sample *s = new_sample(d, row->n > cimg && *row->f[cimg] ? row->f[cimg] : "(no image_id)", row->line);
    free(s->id);
    s->id = bm_xstrdup(s->key); /* "ISIC_0027419", with or without ".jpg" in the file */
    stratum[d->n - 1] = 0;
    int need = 1 + (cles > cimg ? (cles > cdx ? cles : cdx) : (cimg > cdx ? cimg : cdx));
    if (row->n < need) {
      s->group = bm_xstrdup("");
      sample_problem(s, BM_P_BAD_ROW, 1, "line %ld: %d fields, expected at least %d", row->line, row->n, need);
      continue;
    }
    s->group = bm_xstrdup(row->f[cles]);
    int k = 0;
    while (k < 7 && strcmp(row->f[cdx], ham_classes[k])) k++;
    if (k == 7) sample_problem(s, BM_P_BAD_LABEL, 1, "line %ld: dx '%s' is not one of akiec,bcc,bkl,df,mel,nv,vasc", row->line, row->f[cdx]);
    else s->target[k] = 1, stratum[d->n - 1] = k;
#define FIELD(col) ((col) >= 0 && (col) < row->n ? row->f[col] : "")
    if (cage >= 0) set_age(s, 0, FIELD(cage), 0);
    const char *sex = FIELD(csex), *loc = FIELD(cloc);
    s->meta[1] = bm_xstrdup(sex);
    s->meta[2] = bm_xstrdup(loc);
    s->meta[3] = bm_xstrdup(FIELD(ctype));
    s->meta[4] = bm_xstrdup(FIELD(cset));
#undef FIELD
    set_text(s, s->meta[0], sex_word(sex), strcmp(loc, "unknown") ? loc : "");
  }
  bm_csv_free(c);
  index_samples(d);
  double test = o->test_fraction < 0 ? 0.1 : o->test_fraction;
  split_by_group(d, stratum, o->val_fraction, test, o->seed);
  free(stratum);
  d->val_fraction = o->val_fraction;
  d->test_fraction = test;
}

/* ---- ISIC 2018 Task 3 test set ---- */
static void load_isic_test(bm_dataset *d, const bm_dataset_opts *o) {
  d->name = "isic2018-task3-test";
  d->task = "multiclass";
  set_classes(d, ham_classes, 7); /* the HAM10000 order, so models trained there apply */
  set_meta_keys(d, NULL, NULL, 0);
  static const char *csvs[] = {"ISIC2018_Task3_Test_GroundTruth.csv",
                               "ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv", NULL};
  d->csv_path = csv_path(o, csvs);
  /* the ISIC archive calls it _Input, some copies _Images */
  find_inputs(d, o->dir, "ISIC2018_Task3_Test_Images|ISIC2018_Task3_Test_Input");
  bm_csv *c = load_csv(d->csv_path);
  int cimg = need_col(c, "image"), col[7];
  for (int k = 0; k < 7; k++) {
    char up[16];
    for (int i = 0; (up[i] = (char)toupper((unsigned char)ham_classes[k][i])); i++) {}
    col[k] = need_col(c, up);
  }
  for (long r = 1; r < c->nrows; r++) {
    bm_csv_row *row = &c->rows[r];
    bm_sample *s = new_sample(d, row->n > cimg && *row->f[cimg] ? row->f[cimg] : "(no image)", row->line);
    free(s->id);
    s->id = bm_xstrdup(s->key);
    s->group = bm_xstrdup(s->key); /* no lesion ids in this release */
    s->split = BM_SPLIT_TEST;
    int ones = 0, bad = 0;
    for (int k = 0; k < 7; k++) {
      double v;
      if (col[k] >= row->n || bm_parse_double(row->f[col[k]], &v) || (v != 0 && v != 1)) bad = 1;
      else if (v == 1) s->target[k] = 1, ones++;
    }
    if (bad || ones != 1)
      sample_problem(s, BM_P_BAD_LABEL, 1, "line %ld: expected one 1.0 among MEL,NV,BCC,AKIEC,BKL,DF,VASC", row->line);
  }
  bm_csv_free(c);
  index_samples(d);
  d->val_fraction = d->test_fraction = 0;
}

/* ---- any folder of images with a CSV ---- */
static char *only_csv(const char *dir) {
  DIR *dh = opendir(dir);
  if (!dh) bm_die("%s: cannot open folder: %s", dir, strerror(errno));
  struct dirent *e;
  char *found = NULL;
  int n = 0;
  while ((e = readdir(dh))) {
    size_t len = strlen(e->d_name);
    if (e->d_name[0] != '.' && len > 4 && !strcasecmp(e->d_name + len - 4, ".csv")) {
      n++;
      free(found);
      found = join(dir, e->d_name);
    }
  }
  closedir(dh);
  if (n != 1) bm_die("%s: %s CSV files at the top: name the metadata with --csv FILE", dir, n ? "several" : "no");
  return found;
}

static int split_list(const char *s, char ***out) {
  char *tmp = bm_xstrdup(s), *save = NULL;
  int n = 0;
  *out = NULL;
  for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    *out = bm_xrealloc(*out, sizeof(char *) * (size_t)(n + 1));
    (*out)[n++] = bm_xstrdup(t);
  }
  free(tmp);
  return n;
}

static int class_index(const bm_dataset *d, const char *name) {
  for (int k = 0; k < d->nclasses; k++)
    if (!strcmp(d->classes[k], name)) return k;
  return -1;
}

static void load_folder(bm_dataset *d, const bm_dataset_opts *o) {
  d->name = "folder";
  d->task = o->multilabel ? "multilabel" : "multiclass";
  d->csv_path = o->csv ? bm_xstrdup(o->csv) : only_csv(o->dir);
  d->inputs = bm_xmalloc(sizeof(char *) * (size_t)(1 + o->nextra));
  d->inputs[d->ninputs++] = bm_xstrdup(o->dir);
  for (int i = 0; i < o->nextra; i++) d->inputs[d->ninputs++] = bm_xstrdup(o->extra_inputs[i]);
  bm_csv *c = load_csv(d->csv_path);
  const bm_csv_row *h = &c->rows[0];
  int cid = o->id_column ? need_col(c, o->id_column) : bm_csv_col(c, "id") >= 0 ? bm_csv_col(c, "id") : 0;
  int csplit = bm_csv_col(c, "split"), cgroup = bm_csv_col(c, "group"), ctext = bm_csv_col(c, "text");
  /* the label: one column of class names, or indicator columns */
  int *lcols = NULL, nl = 0, clabel = -1;
  if (o->label_columns) {
    char **names;
    nl = split_list(o->label_columns, &names);
    lcols = bm_xmalloc(sizeof(int) * (size_t)(nl ? nl : 1));
    for (int k = 0; k < nl; k++) lcols[k] = need_col(c, names[k]);
    set_classes(d, (const char *const *)names, nl);
    bm_free_strings(names, nl);
  } else {
    clabel = o->label_column ? need_col(c, o->label_column) : bm_csv_col(c, "label");
    if (clabel < 0) {
      for (int j = 0; j < h->n && clabel < 0; j++)
        if (j != cid && j != csplit && j != cgroup && j != ctext) clabel = j;
      if (clabel < 0) bm_die("%s: no label column", c->path);
    }
    if (o->classes_opt) {
      char **names;
      int n = split_list(o->classes_opt, &names);
      set_classes(d, (const char *const *)names, n);
      bm_free_strings(names, n);
    } else { /* the sorted distinct values */
      bm_strmap seen;
      bm_strmap_init(&seen);
      char **names = NULL;
      int n = 0;
      for (long r = 1; r < c->nrows; r++) {
        if (clabel >= c->rows[r].n) continue;
        char *tmp = bm_xstrdup(c->rows[r].f[clabel]), *save = NULL;
        for (char *t = strtok_r(tmp, o->multilabel ? "|" : "", &save); t; t = strtok_r(NULL, o->multilabel ? "|" : "", &save))
          if (bm_strmap_put(&seen, t, n) == n) {
            names = bm_xrealloc(names, sizeof(char *) * (size_t)(n + 1));
            names[n++] = bm_xstrdup(t);
          }
        free(tmp);
      }
      if (n) qsort(names, (size_t)n, sizeof(char *), cmp_str);
      set_classes(d, (const char *const *)names, n);
      bm_free_strings(names, n);
      bm_strmap_free(&seen);
    }
  }
  if (!d->nclasses) bm_die("%s: no classes", c->path);
  /* the other columns are metadata, kept as text */
  char **mk = NULL;
  int *mt = NULL, *mcol = NULL, nm = 0;
  for (int j = 0; j < h->n; j++) {
    int used = j == cid || j == csplit || j == cgroup || j == ctext || j == clabel || !*h->f[j];
    for (int k = 0; k < nl; k++) used |= j == lcols[k];
    if (used) continue;
    mk = bm_xrealloc(mk, sizeof(char *) * (size_t)(nm + 1));
    mt = bm_xrealloc(mt, sizeof(int) * (size_t)(nm + 1));
    mcol = bm_xrealloc(mcol, sizeof(int) * (size_t)(nm + 1));
    mk[nm] = h->f[j], mt[nm] = BM_META_STR, mcol[nm++] = j;
  }
  set_meta_keys(d, (const char *const *)mk, mt, nm);
  int *stratum = bm_xcalloc((size_t)c->nrows, sizeof(int));
  for (long r = 1; r < c->nrows; r++) {
    bm_csv_row *row = &c->rows[r];
    bm_sample *s = new_sample(d, cid < row->n && *row->f[cid] ? row->f[cid] : "(no id)", row->line);
    free(s->id);
    s->id = bm_xstrdup(s->key); /* "case001", whether the CSV says case001.png or not */
    s->group = bm_xstrdup(cgroup >= 0 && cgroup < row->n && *row->f[cgroup] ? row->f[cgroup] : s->key);
    for (int m = 0; m < nm; m++) s->meta[m] = bm_xstrdup(mcol[m] < row->n ? row->f[mcol[m]] : "");
    if (ctext >= 0 && ctext < row->n) {
      s->text = bm_xstrdup(row->f[ctext]);
    } else { /* "site: s1, age: 40" from the metadata columns */
      char buf[1024] = "";
      size_t n = 0;
      for (int m = 0; m < nm && n < sizeof buf; m++)
        if (*s->meta[m]) n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s: %s", n ? ", " : "", mk[m], s->meta[m]);
      s->text = bm_xstrdup(n ? buf : "no metadata");
    }
    if (csplit >= 0 && csplit < row->n && *row->f[csplit]) {
      s->split = bm_split_parse(row->f[csplit]);
      if (s->split == BM_SPLIT_NONE)
        sample_problem(s, BM_P_BAD_ROW, 1, "line %ld: split '%s' is not train, val or test", row->line, row->f[csplit]);
    }
    int ones = 0;
    if (lcols) {
      for (int k = 0; k < nl; k++) {
        double v;
        if (lcols[k] >= row->n || bm_parse_double(row->f[lcols[k]], &v) || (v != 0 && v != 1))
          sample_problem(s, BM_P_BAD_LABEL, 1, "line %ld: column %s: expected 0 or 1", row->line, d->classes[k]);
        else if (v == 1) s->target[k] = 1, ones++, stratum[d->n - 1] = k;
      }
    } else if (clabel < row->n) {
      char *tmp = bm_xstrdup(row->f[clabel]), *save = NULL;
      for (char *t = strtok_r(tmp, o->multilabel ? "|" : "", &save); t; t = strtok_r(NULL, o->multilabel ? "|" : "", &save)) {
        int k = class_index(d, t);
        if (k < 0) sample_problem(s, BM_P_BAD_LABEL, 1, "line %ld: label '%s' is not a class", row->line, t);
        else s->target[k] = 1, ones++, stratum[d->n - 1] = k;
      }
      free(tmp);
    }
    if (!o->multilabel && ones != 1 && !s->skip)
      sample_problem(s, BM_P_BAD_LABEL, 1, "line %ld: %d labels, expected exactly one", row->line, ones);
  }
  free(mk), free(mt), free(mcol), free(lcols);
  index_samples(d);
  double test = o->test_fraction < 0 ? 0.1 : o->test_fraction;
  split_by_group(d, o->multilabel ? NULL : stratum, o->val_fraction, test, o->seed);
  free(stratum);
  /* meta keys point into the CSV: copy was made by set_meta_keys */
  bm_csv_free(c);
  d->val_fraction = o->val_fraction;
  d->test_fraction = test;
}


/* ---- image-caption pairs ---- */
static int has_ext(const char *n, const char *ext) {
  size_t len = strlen(n), e = strlen(ext);
  return len > e && !strcasecmp(n + len - e, ext);
}

static int is_table_name(const char *n) { return has_ext(n, ".csv") || has_ext(n, ".tsv"); }

/* The one .csv/.tsv at the top of dir; NULL when none; dies when several. */
static char *only_table(const char *dir) {
  DIR *dh = opendir(dir);
  if (!dh) bm_die("%s: cannot open folder: %s", dir, strerror(errno));
  struct dirent *e;
  char *found = NULL;
  int n = 0;
  while ((e = readdir(dh)))
    if (e->d_name[0] != '.' && is_table_name(e->d_name)) {
      n++;
      free(found);
      found = join(dir, e->d_name);
    }
  closedir(dh);
  if (n > 1) bm_die("%s: several .csv/.tsv files at the top: give the one with the pairs", dir);
  return found;
}

/* .tsv: tab; .csv: comma; otherwise the one of the two the header line has
 * more of (outside quotes). */
static char sniff_delim(const char *path) {
  if (has_ext(path, ".tsv")) return '\t';
  if (has_ext(path, ".csv")) return ',';
  FILE *f = fopen(path, "rb");
  if (!f) bm_die("%s: %s", path, strerror(errno));
  int c, quoted = 0, tabs = 0, commas = 0;
  while ((c = getc(f)) != EOF && (quoted || (c != '\n' && c != '\r'))) {
    if (c == '"') quoted = !quoted;
    else if (!quoted) tabs += c == '\t', commas += c == ',';
  }
  fclose(f);
  return tabs > commas ? '\t' : ',';
}

static int find_col(const bm_csv *c, const char *given, const char *const *defaults, const char *what,
                    const char **used) {
  if (given) {
    int j = bm_csv_col(c, given);
    if (j < 0) bm_die("%s: no %s column '%s' in the header", c->path, what, given);
    *used = given;
    return j;
  }
  for (int k = 0; defaults[k]; k++) {
    int j = bm_csv_col(c, defaults[k]);
    if (j >= 0) {
      *used = defaults[k];
      return j;
    }
  }
  bm_die("%s: no %s column: the header names neither '%s' nor '%s' (give --%s-col NAME)", c->path,
         what, defaults[0], defaults[1], what);
}

static void load_pairs_csv(bm_dataset *d, const bm_dataset_opts *o) {
  d->delim = sniff_delim(d->csv_path);
  char err[1024];
  bm_csv *c = bm_csv_load_delim(d->csv_path, d->delim, err, sizeof err);
  if (!c) bm_die("%s", err);
  static const char *img_names[] = {"filepath", "image", NULL}, *cap_names[] = {"title", "caption", NULL};
  int ci = find_col(c, o->image_col, img_names, "image", &d->image_col);
  int ct = find_col(c, o->caption_col, cap_names, "caption", &d->caption_col);
  /* d->image_col and caption_col point at options or literals: both outlive d */
  char *dir = bm_xstrdup(d->csv_path), *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  else strcpy(dir, ".");
  bm_strmap times;
  bm_strmap_init(&times);
  long *count = NULL, ngroups = 0;
  int need = 1 + (ci > ct ? ci : ct);
  for (long r = 1; r < c->nrows; r++) {
    bm_csv_row *row = &c->rows[r];
    const char *p = row->n > ci ? row->f[ci] : "";
    while (*p == ' ' || *p == '\t') p++;
    bm_sample *s = new_sample(d, *p ? p : "(no image path)", row->line);
    free(s->key);
    s->key = bm_xstrdup(s->id); /* shards by image: all its captions in one */
    s->group = bm_xstrdup(s->id);
    /* later captions of the same image: ids path#2, path#3 (one group) */
    long g = bm_strmap_put(&times, s->group, ngroups);
    if (g == ngroups) count = bm_xrealloc(count, sizeof(long) * (size_t)++ngroups), count[g] = 0;
    if (++count[g] > 1) {
      free(s->id);
      if (asprintf(&s->id, "%s#%ld", s->group, count[g]) < 0) bm_die("out of memory");
    }
    if (row->n < need) {
      sample_problem(s, BM_P_BAD_ROW, 1, "line %ld: %d fields, expected at least %d", row->line, row->n, need);
      continue;
    }
    if (!*p) {
      sample_problem(s, BM_P_BAD_ROW, 1, "line %ld: empty image path", row->line);
      continue;
    }
    s->path = p[0] == '/' ? bm_xstrdup(p) : join(dir, p);
    s->text = bm_xstrdup(row->f[ct]);
    if (bm_caption_clean(s->text)) sample_problem(s, BM_P_BAD_ROW, 1, "line %ld: caption is not UTF-8", row->line);
    else if (!*s->text) sample_problem(s, BM_P_BAD_ROW, 1, "line %ld: empty caption", row->line);
  }
  bm_strmap_free(&times);
  free(count);
  free(dir);
  bm_csv_free(c);
}

static void load_pairs(bm_dataset *d, const bm_dataset_opts *o) {
  d->name = "pairs";
  d->task = "pairs";
  set_meta_keys(d, NULL, NULL, 0);
  struct stat st;
  if (stat(o->dir, &st)) bm_die("%s: %s", o->dir, strerror(errno));
  if (o->csv) d->csv_path = bm_xstrdup(o->csv);
  else if (S_ISDIR(st.st_mode)) d->csv_path = only_table(o->dir);
  else if (is_table_name(o->dir) || !is_archive_name(o->dir)) d->csv_path = bm_xstrdup(o->dir);
  if (d->csv_path) {
    if (o->nextra) bm_die("%s: a CSV of pairs is one input; further inputs are for webdataset shards", d->csv_path);
    load_pairs_csv(d, o);
  } else {
    d->webdataset = 1;
    d->inputs = bm_xmalloc(sizeof(char *) * (size_t)(1 + o->nextra));
    d->inputs[d->ninputs++] = bm_xstrdup(o->dir);
    for (int i = 0; i < o->nextra; i++) d->inputs[d->ninputs++] = bm_xstrdup(o->extra_inputs[i]);
  }
  bm_strmap_init(&d->index);
  d->val_fraction = o->val_fraction;
  d->test_fraction = o->test_fraction < 0 ? 0.1 : o->test_fraction;
  for (long i = 0; i < d->n; i++)
    d->s[i].split = bm_split_of(d->s[i].group, d->val_fraction, d->test_fraction, o->seed);
}

bm_dataset *bm_dataset_load(const bm_dataset_opts *o) {
  struct stat st;
  if (!strcmp(o->format, "pairs")) {
    bm_dataset *d = bm_xcalloc(1, sizeof *d);
    load_pairs(d, o);
    return d;
  }
  if (stat(o->dir, &st) || !S_ISDIR(st.st_mode))
    bm_die("%s: %s", o->dir, stat(o->dir, &st) ? strerror(errno) : "not a folder");
  bm_dataset *d = bm_xcalloc(1, sizeof *d);
  if (!strcmp(o->format, "nih")) load_nih(d, o);
  else if (!strcmp(o->format, "ham10000")) load_ham(d, o);
  else if (!strcmp(o->format, "isic2018-test")) load_isic_test(d, o);
  else if (!strcmp(o->format, "folder")) load_folder(d, o);
  else bm_die("unknown --format '%s' (nih, ham10000, isic2018-test, folder)", o->format);
  return d;
}

void bm_dataset_free(bm_dataset *d) {
  if (!d) return;
  for (long i = 0; i < d->n; i++) {
    bm_sample *s = &d->s[i];
    free(s->key), free(s->id), free(s->group), free(s->text), free(s->target), free(s->why), free(s->path);
    for (int m = 0; m < d->nmeta; m++) free(s->meta[m]);
    free(s->meta);
  }
  free(d->s);
  bm_free_strings(d->classes, d->nclasses);
  bm_free_strings(d->meta_keys, d->nmeta);
  free(d->meta_types);
  bm_free_strings(d->inputs, d->ninputs);
  free(d->csv_path);
  bm_strmap_free(&d->index);
  free(d);
}
