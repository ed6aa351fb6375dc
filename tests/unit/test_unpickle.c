/* test_unpickle - the restricted unpickler on pickles assembled byte by byte:
 * the opcodes torch.save uses, decoded to the right views, and every way a
 * pickle could ask for code or memory refused with a message that says what.
 * (Whole torch.save files made by PyTorch are in test_weights.) */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "unpickle.h"

typedef struct {
  unsigned char b[4096];
  size_t n;
} pb;

static void raw(pb *p, const void *s, size_t n) {
  memcpy(p->b + p->n, s, n);
  p->n += n;
}
static void op(pb *p, int c) { p->b[p->n++] = (unsigned char)c; }
static void str(pb *p, const char *s) { /* BINUNICODE */
  uint32_t n = (uint32_t)strlen(s);
  op(p, 'X');
  for (int i = 0; i < 4; i++) op(p, (int)(n >> (8 * i) & 255));
  raw(p, s, n);
}
static void global(pb *p, const char *mod, const char *name) {
  op(p, 'c');
  raw(p, mod, strlen(mod));
  op(p, '\n');
  raw(p, name, strlen(name));
  op(p, '\n');
}
static void long1(pb *p, int64_t v) { /* LONG1 with 8 bytes */
  op(p, 0x8a);
  op(p, 8);
  for (int i = 0; i < 8; i++) op(p, (int)((uint64_t)v >> (8 * i) & 255));
}
static void tuple_of(pb *p, const int64_t *v, int n) {
  op(p, '(');
  for (int i = 0; i < n; i++) long1(p, v[i]);
  op(p, 't');
}

/* the tensor _rebuild_tensor_v2(storage key, numel) at offset, size, stride,
 * the way torch.save writes it (persistent id tuple, REDUCE) */
static void tensor(pb *p, const char *stype, const char *key, int64_t numel, int64_t off, int nd,
                   const int64_t *size, const int64_t *stride) {
  global(p, "torch._utils", "_rebuild_tensor_v2");
  op(p, '(');
  op(p, '(');
  str(p, "storage");
  global(p, "torch", stype);
  str(p, key);
  str(p, "cpu");
  long1(p, numel);
  op(p, 't');
  op(p, 'Q');
  long1(p, off);
  tuple_of(p, size, nd);
  tuple_of(p, stride, nd);
  op(p, 0x89);
  global(p, "collections", "OrderedDict");
  op(p, ')');
  op(p, 'R');
  op(p, 't');
  op(p, 'R');
}

static void begin(pb *p) {
  p->n = 0;
  op(p, 0x80);
  op(p, 2);
  global(p, "collections", "OrderedDict");
  op(p, ')');
  op(p, 'R');
  op(p, '(');
}
static void end(pb *p) {
  op(p, 'u');
  op(p, '.');
}

static int parse(const pb *p, bm_pk_state *st, char *err, size_t errlen) {
  memset(st, 0x5a, sizeof *st);
  return bm_unpickle_state_dict(p->b, p->n, "t/data.pkl", st, err, errlen);
}

static void refused(const char *what, const pb *p, const char *want) {
  bm_pk_state st;
  char err[1024] = "";
  int rc = parse(p, &st, err, sizeof err);
  CHECK(rc == -1 && strstr(err, want) && strstr(err, "t/data.pkl") && st.nt == 0 && st.t == NULL,
        "%s refused: %s", what, err);
  if (rc == 0) bm_pk_state_free(&st);
}

int main(void) {
  pb p;
  bm_pk_state st;
  char err[1024];

  /* two views of one half storage and an int64 tensor, sizes through LONG1 */
  begin(&p);
  str(&p, "a");
  tensor(&p, "HalfStorage", "7", 100, 10, 2, (int64_t[]){3, 4}, (int64_t[]){1, 3});
  str(&p, "b");
  tensor(&p, "HalfStorage", "7", 100, 60, 1, (int64_t[]){40}, (int64_t[]){1});
  str(&p, "ids");
  tensor(&p, "LongStorage", "8", 5, 0, 2, (int64_t[]){1, 5}, (int64_t[]){5, 1});
  end(&p);
  int rc = parse(&p, &st, err, sizeof err);
  CHECK(rc == 0, "views built the way torch.save writes them parse (%s)", rc ? err : "");
  if (rc == 0) {
    CHECK(st.nt == 3 && st.nst == 2, "3 tensors on 2 storages (%d, %d)", st.nt, st.nst);
    CHECK(st.nt == 3 && !strcmp(st.t[0].name, "a") && st.t[0].offset == 10 && st.t[0].ndim == 2 &&
              st.t[0].shape[1] == 4 && st.t[0].stride[0] == 1 && st.t[0].stride[1] == 3 && st.t[0].numel == 12,
          "a: offset 10, shape [3,4], strides [1,3]");
    CHECK(st.nt == 3 && st.t[0].storage == st.t[1].storage && st.st[st.t[0].storage].dtype == BM_W_F16 &&
              st.st[st.t[0].storage].numel == 100 && !strcmp(st.st[st.t[0].storage].key, "7"),
          "a and b share storage 7 (f16, 100 elements)");
    CHECK(st.nt == 3 && st.st[st.t[2].storage].dtype == BM_W_I64, "ids: int64 storage");
    bm_pk_state_free(&st);
  }

  /* a view ending exactly at the storage's last element is fine; one further is not */
  begin(&p);
  str(&p, "edge");
  tensor(&p, "FloatStorage", "0", 12, 2, 2, (int64_t[]){2, 5}, (int64_t[]){5, 1});
  end(&p);
  rc = parse(&p, &st, err, sizeof err);
  CHECK(rc == 0, "a view ending on the storage's last element parses (%s)", rc ? err : "");
  if (!rc) bm_pk_state_free(&st);
  begin(&p);
  str(&p, "edge");
  tensor(&p, "FloatStorage", "0", 12, 3, 2, (int64_t[]){2, 5}, (int64_t[]){5, 1});
  end(&p);
  refused("a view one element past its storage", &p, "reaches element 12 but the storage holds 12");

  begin(&p);
  str(&p, "neg");
  tensor(&p, "FloatStorage", "0", 12, 0, 1, (int64_t[]){3}, (int64_t[]){-1});
  end(&p);
  refused("a negative stride", &p, "bad size or stride");

  begin(&p);
  str(&p, "huge");
  tensor(&p, "FloatStorage", "0", 12, 0, 2, (int64_t[]){(int64_t)1 << 40, (int64_t)1 << 40}, (int64_t[]){1, 1});
  end(&p);
  refused("a size that overflows", &p, "overflows");

  begin(&p);
  str(&p, "wrap");
  tensor(&p, "FloatStorage", "0", 12, 0, 2, (int64_t[]){2, 2}, (int64_t[]){INT64_MAX, 1});
  end(&p);
  refused("a stride that overflows the end offset", &p, "overflows");

  begin(&p);
  str(&p, "deep");
  int64_t ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  tensor(&p, "FloatStorage", "0", 12, 0, 9, ones, ones);
  end(&p);
  refused("a tensor of 9 dimensions", &p, "9 dimensions");

  begin(&p);
  str(&p, "x");
  tensor(&p, "FloatStorage", "0", 12, 0, 1, (int64_t[]){4}, (int64_t[]){1});
  str(&p, "x");
  tensor(&p, "FloatStorage", "1", 12, 0, 1, (int64_t[]){4}, (int64_t[]){1});
  end(&p);
  refused("a name used twice", &p, "tensor x appears twice");

  begin(&p);
  str(&p, "x");
  tensor(&p, "FloatStorage", "0", 12, 0, 1, (int64_t[]){4}, (int64_t[]){1});
  str(&p, "y");
  tensor(&p, "HalfStorage", "0", 12, 0, 1, (int64_t[]){4}, (int64_t[]){1});
  end(&p);
  refused("one storage key with two types", &p, "storage 0 is referenced with two different types");

  /* code execution, every way pickle offers it */
  p.n = 0;
  raw(&p, "\x80\x04", 2);
  op(&p, 0x8c), op(&p, 8), raw(&p, "builtins", 8);
  op(&p, 0x8c), op(&p, 4), raw(&p, "eval", 4);
  op(&p, 0x93);
  refused("STACK_GLOBAL builtins.eval", &p, "refusing global builtins.eval");
  p.n = 0;
  raw(&p, "\x80\x02", 2);
  global(&p, "torch.storage", "_load_from_bytes");
  refused("torch.storage._load_from_bytes (a nested torch.load)", &p, "refusing global torch.storage._load_from_bytes");
  p.n = 0;
  raw(&p, "\x80\x02", 2);
  global(&p, "torch", "load");
  refused("torch.load", &p, "refusing global torch.load");
  p.n = 0;
  raw(&p, "(ios\nsystem\n", 12);
  refused("the INST opcode", &p, "opcode 'i'");
  p.n = 0;
  raw(&p, "\x80\x02\x82\x01", 4);
  refused("EXT1 (the copyreg extension registry)", &p, "opcode 0x82");
  p.n = 0;
  raw(&p, "\x80\x02", 2);
  global(&p, "collections", "OrderedDict");
  raw(&p, ")\x81.", 3);
  refused("NEWOBJ", &p, "opcode 0x81");
  p.n = 0;
  raw(&p, "\x80\x02", 2);
  global(&p, "os\x01", "system");
  refused("a global with a control character", &p, "unprintable");

  /* malformed structure */
  begin(&p);
  str(&p, "x");
  refused("a pickle without STOP", &p, "ends without STOP");
  p.n = 0;
  raw(&p, "\x80\x02h\x05.", 5);
  refused("BINGET of an index never stored", &p, "memo index 5 was never stored");
  p.n = 0;
  raw(&p, "\x80\x02}r\xff\xff\xff\x7f.", 9);
  refused("LONG_BINPUT at a huge index", &p, "memo index 2147483647 out of range");
  p.n = 0;
  raw(&p, "\x80\x02u.", 4);
  refused("SETITEMS without a MARK", &p, "no MARK");
  p.n = 0;
  raw(&p, "\x80\x02(}u.", 5);
  refused("SETITEMS with nothing below its MARK", &p, "stack underflow");
  p.n = 0;
  raw(&p, "\x80\x02X\xff\xff\x00\x00" "ab", 10);
  refused("a string running past the end", &p, "runs past the end");
  p.n = 0;
  raw(&p, "\x80\x02K\x01.", 5);
  refused("a pickle of an int", &p, "holds a int, not a state dict");
  p.n = 0;
  raw(&p, "\x80\x09", 2);
  refused("an unknown protocol", &p, "protocol 9");
  /* 1800 nested tuples: nothing recurses */
  p.n = 0;
  raw(&p, "\x80\x02", 2);
  for (int i = 0; i < 1800; i++) op(&p, '(');
  for (int i = 0; i < 1800; i++) op(&p, 't');
  op(&p, '.');
  refused("1800 nested tuples", &p, "holds a tuple");
  CHECK_DONE();
}
