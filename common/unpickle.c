/* unpickle.c - the restricted pickle machine behind unpickle.h.
 *
 * Objects live in an arena freed in one go, so shared references through the
 * memo need no ownership rules and a malformed pickle cannot leak or double
 * free. The arena is capped in proportion to the input: every opcode byte can
 * create at most a few small objects, so an honest pickle never gets near it. */
#include "unpickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { O_NONE, O_BOOL, O_INT, O_FLOAT, O_STR, O_TUPLE, O_LIST, O_DICT, O_GLOBAL, O_STORAGE,
       O_TENSOR };
static const char *const type_names[] = {"None",   "bool",   "int",    "float",
                                         "str",    "tuple",  "list",   "dict",
                                         "global", "storage", "tensor"};

enum { G_ODICT, G_REBUILD, G_PARAM, G_STORAGE };

typedef struct obj obj;
struct obj {
  int type;
  int64_t i;       /* INT, BOOL; GLOBAL: kind; STORAGE: index; TENSOR: index */
  int dtype;       /* GLOBAL of kind G_STORAGE */
  const char *s;   /* STR (NUL-terminated, may hold NULs) */
  size_t slen;
  obj **items;     /* TUPLE, LIST; DICT: key, value, key, value... */
  int64_t n, cap;  /* items in use (a DICT counts pairs * 2) */
};

typedef struct blk { struct blk *next; } blk;

typedef struct {
  const uint8_t *p;
  size_t n, pos, op_pos;
  const char *what;
  char *err;
  size_t errlen;
  blk *arena;
  size_t arena_used, arena_cap;
  obj **stack;
  int64_t sp, scap;
  int64_t *marks;
  int64_t nmarks, mcap;
  obj **memo;
  int64_t nmemo;   /* allocated slots */
  int64_t memo_next; /* MEMOIZE index */
  bm_pk_storage *st;
  int nst, stcap;
  bm_pk_tensor *t; /* unnamed views; names are given when the dict is read */
  int nt, tcap;
} pk;

static obj none_obj = {.type = O_NONE};

static int fail(pk *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(pk *k, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(k->err, k->errlen, "%s (byte %zu of %s)", msg, k->op_pos, k->what);
  return -1;
}

static void *aalloc(pk *k, size_t n) {
  if (n > k->arena_cap - k->arena_used) return NULL;
  blk *b = malloc(16 + n); /* a 16-byte header keeps the payload aligned */
  if (!b) return NULL;
  k->arena_used += n + 16;
  b->next = k->arena;
  k->arena = b;
  return (char *)b + 16;
}

static obj *new_obj(pk *k, int type) {
  obj *o = aalloc(k, sizeof(obj));
  if (!o) { fail(k, "pickle too large for its size (memory cap)"); return NULL; }
  memset(o, 0, sizeof *o);
  o->type = type;
  return o;
}

/* grows an arena array of pointers; old copies stay in the arena */
static int grow_items(pk *k, obj *o, int64_t need) {
  if (need <= o->cap) return 0;
  int64_t cap = o->cap ? o->cap : 4;
  while (cap < need) cap *= 2;
  obj **it = aalloc(k, (size_t)cap * sizeof(obj *));
  if (!it) return fail(k, "pickle too large for its size (memory cap)");
  if (o->n) memcpy(it, o->items, (size_t)o->n * sizeof(obj *));
  o->items = it;
  o->cap = cap;
  return 0;
}

static int push(pk *k, obj *o) {
  if (!o) return -1;
  if (k->sp == k->scap) {
    int64_t cap = k->scap ? k->scap * 2 : 64;
    obj **s = realloc(k->stack, (size_t)cap * sizeof(obj *));
    if (!s) return fail(k, "out of memory");
    k->stack = s;
    k->scap = cap;
  }
  k->stack[k->sp++] = o;
  return 0;
}

static obj *pop(pk *k) {
  int64_t floor = k->nmarks ? k->marks[k->nmarks - 1] : 0;
  if (k->sp <= floor) { fail(k, "stack underflow"); return NULL; }
  return k->stack[--k->sp];
}

static obj *top(pk *k) {
  int64_t floor = k->nmarks ? k->marks[k->nmarks - 1] : 0;
  if (k->sp <= floor) { fail(k, "stack underflow"); return NULL; }
  return k->stack[k->sp - 1];
}

/* the object just below position `from` (a popped mark), if no other mark
 * fences it off */
static obj *below(pk *k, int64_t from) {
  int64_t floor = k->nmarks ? k->marks[k->nmarks - 1] : 0;
  if (from - 1 < floor) { fail(k, "stack underflow"); return NULL; }
  return k->stack[from - 1];
}

/* the items above the last mark; the mark is removed */
static int pop_mark(pk *k, int64_t *from) {
  if (!k->nmarks) return fail(k, "no MARK on the stack");
  *from = k->marks[--k->nmarks];
  return 0;
}

static int need(pk *k, size_t n) {
  if (n > k->n - k->pos) return fail(k, "pickle ends inside an opcode");
  return 0;
}

static uint64_t rd_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static obj *new_str(pk *k, const uint8_t *s, size_t len) {
  obj *o = new_obj(k, O_STR);
  if (!o) return NULL;
  char *c = aalloc(k, len + 1);
  if (!c) { fail(k, "pickle too large for its size (memory cap)"); return NULL; }
  memcpy(c, s, len);
  c[len] = 0;
  o->s = c;
  o->slen = len;
  return o;
}

static obj *new_int(pk *k, int64_t v) {
  obj *o = new_obj(k, O_INT);
  if (o) o->i = v;
  return o;
}

static obj *tuple_from(pk *k, int64_t from, int type) {
  obj *o = new_obj(k, type);
  if (!o) return NULL;
  int64_t n = k->sp - from;
  if (n && grow_items(k, o, n)) return NULL;
  if (n) memcpy(o->items, k->stack + from, (size_t)n * sizeof(obj *));
  o->n = n;
  k->sp = from;
  return o;
}

static const struct { const char *name; bm_wdtype dtype; } storages[] = {
    {"FloatStorage", BM_W_F32}, {"HalfStorage", BM_W_F16}, {"BFloat16Storage", BM_W_BF16},
    {"LongStorage", BM_W_I64},  {"IntStorage", BM_W_I32},  {"ByteStorage", BM_W_U8},
};

static int printable(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 32 || (unsigned char)s[i] == 127) return 0;
  return 1;
}

static obj *find_global(pk *k, const char *mod, size_t mlen, const char *name, size_t nlen) {
  int kind = -1, dtype = 0;
  if (strlen(mod) == mlen && strlen(name) == nlen) {
    if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict")) kind = G_ODICT;
    else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) kind = G_REBUILD;
    else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_parameter")) kind = G_PARAM;
    else if (!strcmp(mod, "torch"))
      for (size_t i = 0; i < sizeof storages / sizeof storages[0]; i++)
        if (!strcmp(name, storages[i].name)) kind = G_STORAGE, dtype = (int)storages[i].dtype;
  }
  if (kind < 0 && !strcmp(mod, "torch") && nlen > 7 && !strcmp(name + nlen - 7, "Storage") &&
      printable(name, nlen) && nlen < 64) {
    fail(k, "storage type torch.%s is not supported (Float, Half, BFloat16, Long, Int and Byte "
            "storages only)", name);
    return NULL;
  }
  if (kind < 0) {
    if (printable(mod, mlen) && printable(name, nlen) && mlen + nlen < 200)
      fail(k, "refusing global %s.%s: only collections.OrderedDict and torch tensor/storage "
              "rebuild globals are allowed", mod, name);
    else
      fail(k, "refusing a global with an unprintable or overlong name");
    return NULL;
  }
  obj *o = new_obj(k, O_GLOBAL);
  if (!o) return NULL;
  o->i = kind;
  o->dtype = dtype;
  return o;
}

static int memo_put(pk *k, uint64_t idx, obj *o) {
  if (!o) return -1;
  /* indices are handed out in sequence, so a real one never exceeds the
   * number of opcodes so far; the bound keeps the table small */
  if (idx > k->n) return fail(k, "memo index %llu out of range", (unsigned long long)idx);
  if ((int64_t)idx >= k->nmemo) {
    int64_t cap = k->nmemo ? k->nmemo : 64;
    while (cap <= (int64_t)idx) cap *= 2;
    obj **m = realloc(k->memo, (size_t)cap * sizeof(obj *));
    if (!m) return fail(k, "out of memory");
    memset(m + k->nmemo, 0, (size_t)(cap - k->nmemo) * sizeof(obj *));
    k->memo = m;
    k->nmemo = cap;
  }
  k->memo[idx] = o;
  return 0;
}

static obj *memo_get(pk *k, uint64_t idx) {
  if ((int64_t)idx >= k->nmemo || idx > (uint64_t)INT64_MAX || !k->memo[idx]) {
    fail(k, "memo index %llu was never stored", (unsigned long long)idx);
    return NULL;
  }
  return k->memo[idx];
}

static int as_int(const obj *o, int64_t *v) {
  if (o->type != O_INT && o->type != O_BOOL) return -1;
  *v = o->i;
  return 0;
}

/* persistent id ('storage', <storage global>, key, location, numel) */
static obj *load_persid(pk *k, obj *pid) {
  if (pid->type != O_TUPLE || pid->n != 5 || pid->items[0]->type != O_STR ||
      strcmp(pid->items[0]->s, "storage")) {
    fail(k, "persistent id is not a ('storage', type, key, location, numel) tuple");
    return NULL;
  }
  obj *g = pid->items[1], *key = pid->items[2], *num = pid->items[4];
  int64_t numel;
  if (g->type != O_GLOBAL || g->i != G_STORAGE) {
    fail(k, "persistent id names no storage type");
    return NULL;
  }
  if (key->type != O_STR || key->slen == 0 || key->slen > 64 || !printable(key->s, key->slen) ||
      strchr(key->s, '/')) {
    fail(k, "persistent id holds a bad storage key");
    return NULL;
  }
  if (as_int(num, &numel) || numel < 0 || numel > ((int64_t)1 << 44)) {
    fail(k, "storage %s has a bad element count", key->s);
    return NULL;
  }
  int idx = -1;
  for (int i = 0; i < k->nst; i++)
    if (!strcmp(k->st[i].key, key->s)) idx = i;
  if (idx >= 0) {
    if (k->st[idx].dtype != (bm_wdtype)g->dtype || k->st[idx].numel != numel) {
      fail(k, "storage %s is referenced with two different types or sizes", key->s);
      return NULL;
    }
  } else {
    if (k->nst == k->stcap) {
      int cap = k->stcap ? k->stcap * 2 : 16;
      bm_pk_storage *s = realloc(k->st, (size_t)cap * sizeof *s);
      if (!s) { fail(k, "out of memory"); return NULL; }
      k->st = s;
      k->stcap = cap;
    }
    char *kc = strdup(key->s);
    if (!kc) { fail(k, "out of memory"); return NULL; }
    k->st[k->nst] = (bm_pk_storage){.key = kc, .dtype = (bm_wdtype)g->dtype, .numel = numel};
    idx = k->nst++;
  }
  obj *o = new_obj(k, O_STORAGE);
  if (o) o->i = idx;
  return o;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static obj *rebuild_tensor(pk *k, obj *args) {
  if (args->type != O_TUPLE || args->n < 4 || args->n > 7) {
    fail(k, "_rebuild_tensor_v2 called with %lld arguments", (long long)args->n);
    return NULL;
  }
  obj *so = args->items[0], *size = args->items[2], *stride = args->items[3];
  bm_pk_tensor t = {0};
  if (so->type != O_STORAGE) { fail(k, "_rebuild_tensor_v2 without a storage"); return NULL; }
  t.storage = (int)so->i;
  const bm_pk_storage *st = &k->st[t.storage];
  if (as_int(args->items[1], &t.offset) || t.offset < 0) {
    fail(k, "tensor on storage %s has a bad offset", st->key);
    return NULL;
  }
  if (size->type != O_TUPLE || stride->type != O_TUPLE || size->n != stride->n) {
    fail(k, "tensor on storage %s: size and stride are not tuples of one length", st->key);
    return NULL;
  }
  if (size->n > BM_W_MAX_DIMS) {
    fail(k, "tensor on storage %s has %lld dimensions (at most %d)", st->key,
         (long long)size->n, BM_W_MAX_DIMS);
    return NULL;
  }
  t.ndim = (int)size->n;
  int64_t numel = 1, last = t.offset;
  for (int d = 0; d < t.ndim; d++) {
    if (as_int(size->items[d], &t.shape[d]) || as_int(stride->items[d], &t.stride[d]) ||
        t.shape[d] < 0 || t.stride[d] < 0) {
      fail(k, "tensor on storage %s: bad size or stride in dimension %d", st->key, d);
      return NULL;
    }
    int64_t span;
    if (__builtin_mul_overflow(numel, t.shape[d], &numel) || numel > ((int64_t)1 << 44) ||
        (t.shape[d] && (__builtin_mul_overflow(t.shape[d] - 1, t.stride[d], &span) ||
                        __builtin_add_overflow(last, span, &last)))) {
      fail(k, "tensor on storage %s: size or stride overflows", st->key);
      return NULL;
    }
  }
  t.numel = numel;
  if (numel > 0 ? last >= st->numel : t.offset > st->numel) {
    fail(k, "tensor on storage %s reaches element %lld but the storage holds %lld", st->key,
         (long long)last, (long long)st->numel);
    return NULL;
  }
  if (k->nt == k->tcap) {
    int cap = k->tcap ? k->tcap * 2 : 64;
    bm_pk_tensor *nt = realloc(k->t, (size_t)cap * sizeof *nt);
    if (!nt) { fail(k, "out of memory"); return NULL; }
    k->t = nt;
    k->tcap = cap;
  }
  k->t[k->nt] = t;
  obj *o = new_obj(k, O_TENSOR);
  if (o) o->i = k->nt++;
  return o;
}

static obj *reduce(pk *k, obj *fn, obj *args) {
  if (fn->type != O_GLOBAL) { fail(k, "REDUCE of a %s", type_names[fn->type]); return NULL; }
  if (args->type != O_TUPLE) { fail(k, "REDUCE with %s arguments", type_names[args->type]); return NULL; }
  switch (fn->i) {
  case G_ODICT:
    if (args->n != 0) { fail(k, "OrderedDict called with arguments"); return NULL; }
    return new_obj(k, O_DICT);
  case G_REBUILD:
    return rebuild_tensor(k, args);
  case G_PARAM: /* _rebuild_parameter(tensor, requires_grad, hooks) */
    if (args->n < 1 || args->items[0]->type != O_TENSOR) {
      fail(k, "_rebuild_parameter without a tensor");
      return NULL;
    }
    return args->items[0];
  default:
    fail(k, "a storage type called as a function");
    return NULL;
  }
}

static int setitems(pk *k, obj *d, int64_t from) {
  int64_t n = k->sp - from;
  if (d->type != O_DICT) return fail(k, "SETITEM on a %s", type_names[d->type]);
  if (n % 2) return fail(k, "SETITEMS with an odd number of items");
  if (grow_items(k, d, d->n + n)) return -1;
  memcpy(d->items + d->n, k->stack + from, (size_t)n * sizeof(obj *));
  d->n += n;
  k->sp = from;
  return 0;
}

static int appends(pk *k, obj *l, int64_t from) {
  int64_t n = k->sp - from;
  if (l->type != O_LIST) return fail(k, "APPEND on a %s", type_names[l->type]);
  if (grow_items(k, l, l->n + n)) return -1;
  memcpy(l->items + l->n, k->stack + from, (size_t)n * sizeof(obj *));
  l->n += n;
  k->sp = from;
  return 0;
}

static int step(pk *k, obj **result) {
  k->op_pos = k->pos;
  if (need(k, 1)) return -1;
  uint8_t op = k->p[k->pos++];
  const uint8_t *a = k->p + k->pos;
  obj *x, *y;
  int64_t from = 0;
  switch (op) {
  case 0x80: /* PROTO */
    if (need(k, 1)) return -1;
    k->pos++;
    if (a[0] > 5) return fail(k, "pickle protocol %d is unknown", a[0]);
    return 0;
  case 0x95: /* FRAME: the framed bytes follow inline */
    if (need(k, 8)) return -1;
    k->pos += 8;
    return 0;
  case '.': /* STOP */
    if (!(x = pop(k))) return -1;
    *result = x;
    return 1;
  case '(': /* MARK */
    if (k->nmarks == k->mcap) {
      int64_t cap = k->mcap ? k->mcap * 2 : 32;
      int64_t *m = realloc(k->marks, (size_t)cap * sizeof *m);
      if (!m) return fail(k, "out of memory");
      k->marks = m;
      k->mcap = cap;
    }
    k->marks[k->nmarks++] = k->sp;
    return 0;
  case '0': /* POP */
    return pop(k) ? 0 : -1;
  case '1': /* POP_MARK */
    return pop_mark(k, &from) ? -1 : (k->sp = from, 0);
  case '2': /* DUP */
    return (x = top(k)) ? push(k, x) : -1;
  case 'N': return push(k, &none_obj);
  case 0x88: /* NEWTRUE */
  case 0x89: /* NEWFALSE */
    if (!(x = new_obj(k, O_BOOL))) return -1;
    x->i = op == 0x88;
    return push(k, x);
  case 'J': /* BININT */
    if (need(k, 4)) return -1;
    k->pos += 4;
    return push(k, new_int(k, (int32_t)(uint32_t)rd_le(a, 4)));
  case 'K': /* BININT1 */
    if (need(k, 1)) return -1;
    k->pos += 1;
    return push(k, new_int(k, a[0]));
  case 'M': /* BININT2 */
    if (need(k, 2)) return -1;
    k->pos += 2;
    return push(k, new_int(k, (int64_t)rd_le(a, 2)));
  case 0x8a: { /* LONG1 */
    if (need(k, 1) || need(k, 1 + (size_t)a[0])) return -1;
    int n = a[0];
    if (n > 8) return fail(k, "integer of %d bytes is too large", n);
    k->pos += 1 + (size_t)n;
    uint64_t v = rd_le(a + 1, n);
    if (n > 0 && n < 8 && (a[n] & 0x80)) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    return push(k, new_int(k, (int64_t)v));
  }
  case 'G': { /* BINFLOAT, big-endian */
    if (need(k, 8)) return -1;
    k->pos += 8;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | a[i];
    if (!(x = new_obj(k, O_FLOAT))) return -1;
    double d;
    memcpy(&d, &bits, 8);
    x->i = (int64_t)bits;
    (void)d;
    return push(k, x);
  }
  case 'X': /* BINUNICODE */
  case 'T': /* BINSTRING */
  case 'B': /* BINBYTES */
  case 0x8c: /* SHORT_BINUNICODE */
  case 'U': /* SHORT_BINSTRING */
  case 'C': /* SHORT_BINBYTES */
  case 0x8d: /* BINUNICODE8 */
  case 0x8e: { /* BINBYTES8 */
    int w = (op == 'X' || op == 'T' || op == 'B') ? 4 : (op == 0x8d || op == 0x8e) ? 8 : 1;
    if (need(k, (size_t)w)) return -1;
    uint64_t len = rd_le(a, w);
    k->pos += (size_t)w;
    if (len > k->n - k->pos) return fail(k, "string of %llu bytes runs past the end",
                                         (unsigned long long)len);
    x = new_str(k, a + w, (size_t)len);
    k->pos += (size_t)len;
    return push(k, x);
  }
  case 'c': { /* GLOBAL "module\nname\n" */
    const uint8_t *end = k->p + k->n;
    const uint8_t *nl1 = memchr(a, '\n', (size_t)(end - a));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2) return fail(k, "GLOBAL without two newline-terminated names");
    obj *m = new_str(k, a, (size_t)(nl1 - a)), *nm = m ? new_str(k, nl1 + 1, (size_t)(nl2 - nl1 - 1)) : NULL;
    if (!nm) return -1;
    k->pos = (size_t)(nl2 + 1 - k->p);
    return push(k, find_global(k, m->s, m->slen, nm->s, nm->slen));
  }
  case 0x93: /* STACK_GLOBAL */
    if (!(y = pop(k)) || !(x = pop(k))) return -1;
    if (x->type != O_STR || y->type != O_STR) return fail(k, "STACK_GLOBAL of non-strings");
    return push(k, find_global(k, x->s, x->slen, y->s, y->slen));
  case 'Q': /* BINPERSID */
    if (!(x = pop(k))) return -1;
    return push(k, load_persid(k, x));
  case 'R': /* REDUCE */
    if (!(y = pop(k)) || !(x = pop(k))) return -1;
    return push(k, reduce(k, x, y));
  case 'b': /* BUILD: torch sets _metadata on the OrderedDict; state is dropped */
    if (!(y = pop(k)) || !(x = top(k))) return -1;
    if (x->type != O_DICT) return fail(k, "BUILD on a %s", type_names[x->type]);
    return 0;
  case '}': return push(k, new_obj(k, O_DICT));
  case ']': return push(k, new_obj(k, O_LIST));
  case ')': return push(k, new_obj(k, O_TUPLE));
  case 0x85: /* TUPLE1 */
  case 0x86: /* TUPLE2 */
  case 0x87: { /* TUPLE3 */
    int64_t n = op - 0x84;
    int64_t floor = k->nmarks ? k->marks[k->nmarks - 1] : 0;
    if (k->sp - floor < n) return fail(k, "stack underflow");
    return push(k, tuple_from(k, k->sp - n, O_TUPLE));
  }
  case 't': /* TUPLE */
    if (pop_mark(k, &from)) return -1;
    return push(k, tuple_from(k, from, O_TUPLE));
  case 'l': /* LIST */
    if (pop_mark(k, &from)) return -1;
    return push(k, tuple_from(k, from, O_LIST));
  case 'd': /* DICT */
    if (pop_mark(k, &from)) return -1;
    if ((k->sp - from) % 2) return fail(k, "DICT with an odd number of items");
    return push(k, tuple_from(k, from, O_DICT));
  case 's': /* SETITEM */
    if (k->sp - (k->nmarks ? k->marks[k->nmarks - 1] : 0) < 3) return fail(k, "stack underflow");
    return setitems(k, k->stack[k->sp - 3], k->sp - 2);
  case 'u': /* SETITEMS: the dict sits just below the mark */
    if (pop_mark(k, &from) || !(x = below(k, from))) return -1;
    return setitems(k, x, from);
  case 'a': /* APPEND */
    if (k->sp - (k->nmarks ? k->marks[k->nmarks - 1] : 0) < 2) return fail(k, "stack underflow");
    return appends(k, k->stack[k->sp - 2], k->sp - 1);
  case 'e': /* APPENDS: the list sits just below the mark */
    if (pop_mark(k, &from) || !(x = below(k, from))) return -1;
    return appends(k, x, from);
  case 'q': /* BINPUT */
    if (need(k, 1)) return -1;
    k->pos += 1;
    return memo_put(k, a[0], top(k));
  case 'r': /* LONG_BINPUT */
    if (need(k, 4)) return -1;
    k->pos += 4;
    return memo_put(k, rd_le(a, 4), top(k));
  case 0x94: /* MEMOIZE */
    if (memo_put(k, (uint64_t)k->memo_next, top(k))) return -1;
    k->memo_next++;
    return 0;
  case 'h': /* BINGET */
    if (need(k, 1)) return -1;
    k->pos += 1;
    return push(k, memo_get(k, a[0]));
  case 'j': /* LONG_BINGET */
    if (need(k, 4)) return -1;
    k->pos += 4;
    return push(k, memo_get(k, rd_le(a, 4)));
  default:
    if (op >= 32 && op < 127)
      return fail(k, "pickle opcode '%c' (0x%02x) is not allowed in a state dict", op, op);
    return fail(k, "pickle opcode 0x%02x is not allowed in a state dict", op);
  }
}

static int cmp_names(const void *a, const void *b) {
  return strcmp((*(const bm_pk_tensor *const *)a)->name, (*(const bm_pk_tensor *const *)b)->name);
}

static obj *dict_get(obj *d, const char *key) {
  for (int64_t i = 0; i + 1 < d->n; i += 2)
    if (d->items[i]->type == O_STR && !strcmp(d->items[i]->s, key)) return d->items[i + 1];
  return NULL;
}

/* the dict's string keys and tensor values become named tensors */
static int extract(pk *k, obj *root, bm_pk_state *out) {
  k->op_pos = k->n;
  if (root->type != O_DICT) return fail(k, "the pickle holds a %s, not a state dict", type_names[root->type]);
  obj *sd = dict_get(root, "state_dict");
  if (sd && sd->type == O_DICT) root = sd;
  int64_t n = root->n / 2;
  int strip = n > 0;
  for (int64_t i = 0; i < n; i++) {
    obj *key = root->items[2 * i], *val = root->items[2 * i + 1];
    if (key->type != O_STR || key->slen == 0 || strlen(key->s) != key->slen || !printable(key->s, key->slen))
      return fail(k, "state dict entry %lld has a key that is not a printable string", (long long)i);
    if (val->type != O_TENSOR)
      return fail(k, "state dict entry %s is a %s, not a tensor", key->s, type_names[val->type]);
    if (strncmp(key->s, "module.", 7) || key->slen == 7) strip = 0;
  }
  out->t = calloc((size_t)(n ? n : 1), sizeof *out->t);
  if (!out->t) return fail(k, "out of memory");
  for (int64_t i = 0; i < n; i++) {
    obj *key = root->items[2 * i], *val = root->items[2 * i + 1];
    out->t[i] = k->t[val->i];
    out->t[i].name = strdup(key->s + (strip ? 7 : 0));
    out->nt = (int)i + 1;
    if (!out->t[i].name) return fail(k, "out of memory");
  }
  if (n > 1) {
    bm_pk_tensor **by = malloc((size_t)n * sizeof *by);
    if (!by) return fail(k, "out of memory");
    for (int64_t i = 0; i < n; i++) by[i] = &out->t[i];
    qsort(by, (size_t)n, sizeof *by, cmp_names);
    for (int64_t i = 1; i < n; i++)
      if (!strcmp(by[i - 1]->name, by[i]->name)) {
        fail(k, "tensor %s appears twice in the state dict", by[i]->name);
        free(by);
        return -1;
      }
    free(by);
  }
  out->st = k->st;
  out->nst = k->nst;
  k->st = NULL;
  k->nst = 0;
  return 0;
}

int bm_unpickle_state_dict(const uint8_t *buf, size_t n, const char *what, bm_pk_state *out,
                           char *err, size_t errlen) {
  pk k = {.p = buf, .n = n, .what = what, .err = err, .errlen = errlen};
  k.arena_cap = ((size_t)16 << 20) + (n < ((size_t)1 << 26) ? n : ((size_t)1 << 26)) * 128;
  memset(out, 0, sizeof *out);
  obj *root = NULL;
  int rc;
  while ((rc = step(&k, &root)) == 0) {}
  if (rc > 0) rc = extract(&k, root, out);
  if (rc < 0) bm_pk_state_free(out);
  while (k.arena) {
    blk *b = k.arena;
    k.arena = b->next;
    free(b);
  }
  for (int i = 0; i < k.nst; i++) free(k.st[i].key);
  free(k.st);
  free(k.t);
  free(k.stack);
  free(k.marks);
  free(k.memo);
  return rc < 0 ? -1 : 0;
}

void bm_pk_state_free(bm_pk_state *s) {
  for (int i = 0; i < s->nst; i++) free(s->st[i].key);
  for (int i = 0; i < s->nt; i++) free(s->t[i].name);
  free(s->st);
  free(s->t);
  memset(s, 0, sizeof *s);
}
