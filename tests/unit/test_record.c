/* test_record.c - the record reader and writer: round trips, passthrough,
 * float16, and every malformed-input error naming record and byte. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "record.h"
#include "util.h"

static char tmpdir[] = "/tmp/bm-test-record-XXXXXX";

static char *path_in_tmp(const char *name) {
  char *p = bm_xmalloc(strlen(tmpdir) + strlen(name) + 2);
  sprintf(p, "%s/%s", tmpdir, name);
  return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f)) bm_die("cannot write %s", path);
}

/* Capture stderr of a reader call into a buffer to check the message. */
static int read_all_capture(const char *path, char *msg, size_t n, long *records) {
  char *errpath = path_in_tmp("stderr");
  fflush(stderr);
  int saved = dup(2);
  FILE *ef = fopen(errpath, "w+");
  dup2(fileno(ef), 2);
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *rec;
  int got;
  *records = 0;
  bm_reader_header(r);
  while ((got = bm_reader_next(r, &rec)) == 1) (*records)++;
  bm_reader_close(r);
  dup2(saved, 2);
  close(saved);
  rewind(ef);
  size_t m = fread(msg, 1, n - 1, ef);
  msg[m] = 0;
  fclose(ef);
  unlink(errpath);
  free(errpath);
  return got;
}

static void test_f16(void) {
  /* values whose half representation is known exactly */
  struct { float f; uint16_t h; } cases[] = {
      {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000},
      {65504.0f, 0x7bff}, {65520.0f, 0x7c00}, {6.103515625e-05f, 0x0400},
      {5.960464477539063e-08f, 0x0001}, {2.98e-08f, 0x0000}, {0.333251953125f, 0x3555},
      {1.0009765625f, 0x3c01}, {1.00048828125f, 0x3c00} /* tie to even */,
      {1.00146484375f, 0x3c02} /* tie to even, upward */, {INFINITY, 0x7c00}};
  int bad = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t h = bm_f32_to_f16(cases[i].f);
    if (h != cases[i].h) {
      bad++;
      printf("# f32->f16 %.9g: got %04x want %04x\n", cases[i].f, h, cases[i].h);
    }
  }
  CHECK(bad == 0, "float32 -> float16 rounds to nearest even, with subnormals and overflow");
  /* every finite half survives the round trip half -> float -> half */
  bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;
    if (bm_f32_to_f16(bm_f16_to_f32((uint16_t)h)) != h) bad++;
  }
  CHECK(bad == 0, "every finite float16 round-trips through float32 (%d mismatches)", bad);
  CHECK(isnan(bm_f16_to_f32(0x7e00)), "float16 NaN decodes to NaN");
}

static void test_roundtrip(void) {
  char *path = path_in_tmp("a.bmr");
  bm_writer *w = bm_writer_open(path);
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "task", "multiclass");
  msgpack_packer *pk = bm_out_key(&o, "classes");
  msgpack_pack_array(pk, 2);
  bm_pack_str(pk, "cat");
  bm_pack_str(pk, "dog");
  CHECK(bm_write_header(w, NULL, &o) == 0, "header written");
  float emb[6] = {0.5f, -1.25f, 3.0f, 1e-3f, -7.0f, 2.5f};
  uint8_t img[2 * 3 * 4];
  for (int i = 0; i < 24; i++) img[i] = (uint8_t)(i * 11);
  for (int i = 0; i < 3; i++) {
    bm_out_reset(&o);
    char id[16];
    snprintf(id, sizeof id, "s%d", i);
    bm_out_str(&o, "id", id);
    bm_out_tensor(&o, "img_emb", BM_F32, 2, (int64_t[]){2, 3}, emb);
    bm_out_tensor(&o, "image", BM_U8, 3, (int64_t[]){2, 3, 4}, img);
    CHECK(bm_write_record(w, NULL, &o) == 0, "record %d written", i);
  }
  CHECK(bm_writer_close(w) == 0, "writer closed");

  bm_reader *r = bm_reader_open(path);
  const msgpack_object *h = bm_reader_header(r);
  char **classes;
  int nc = bm_header_classes(h, &classes);
  CHECK(nc == 2 && strcmp(classes[1], "dog") == 0, "header classes read back");
  bm_free_strings(classes, nc);
  double version = 0;
  CHECK(bm_obj_number(bm_map_get(h, "version"), &version) == 0 && version == 1,
        "header carries version 1");
  const msgpack_object *rec;
  int n = 0, good = 1;
  while (bm_reader_next(r, &rec) == 1) {
    n++;
    bm_tensor t;
    char err[256];
    float back[6];
    good &= bm_rec_tensor(rec, "img_emb", &t, err, sizeof err) == 1;
    good &= t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3 && t.dtype == BM_F32;
    bm_tensor_to_f32(&t, back);
    good &= memcmp(back, emb, sizeof emb) == 0;
    good &= bm_rec_tensor(rec, "image", &t, err, sizeof err) == 1 && t.nbytes == 24 &&
            memcmp(t.data, img, 24) == 0;
    good &= bm_reader_index(r) == n;
    good &= bm_rec_tensor(rec, "absent", &t, err, sizeof err) == 0;
  }
  CHECK(n == 3 && good && !bm_reader_error(r), "records read back bit for bit, numbered from 1");
  bm_reader_close(r);

  /* passthrough: rewrite with one key replaced and one added */
  char *path2 = path_in_tmp("b.bmr");
  r = bm_reader_open(path);
  w = bm_writer_open(path2);
  bm_write_header(w, bm_reader_header(r), NULL);
  while (bm_reader_next(r, &rec) == 1) {
    bm_out_reset(&o);
    bm_out_str(&o, "id", "replaced");
    bm_out_int(&o, "extra", 42);
    bm_out_drop(&o, "image");
    bm_write_record(w, rec, &o);
  }
  bm_reader_close(r);
  bm_writer_close(w);
  r = bm_reader_open(path2);
  h = bm_reader_header(r);
  CHECK(bm_obj_is_str(bm_map_get(h, "task"), "multiclass"), "header passes through");
  int ok = bm_reader_next(r, &rec) == 1;
  double extra = 0;
  ok = ok && rec->via.map.size == 3 && bm_obj_is_str(bm_map_get(rec, "id"), "replaced") &&
       bm_obj_number(bm_map_get(rec, "extra"), &extra) == 0 && extra == 42 &&
       bm_map_get(rec, "img_emb") && !bm_map_get(rec, "image");
  CHECK(ok, "passthrough keeps other keys, replaces, adds and drops without duplicates");
  bm_reader_close(r);
  bm_out_free(&o);
  free(path);
  free(path2);
}

static void test_errors(void) {
  char msg[2048];
  long n;
  char *p = path_in_tmp("bad.bmr");

  /* truncated: a valid header, one valid record, then half a record */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  bm_pack_str(&pk, "header");
  msgpack_pack_map(&pk, 0);
  size_t after_header = sb.size;
  msgpack_pack_map(&pk, 1);
  bm_pack_str(&pk, "id");
  bm_pack_str(&pk, "x");
  size_t second = sb.size;
  msgpack_pack_map(&pk, 1);
  bm_pack_str(&pk, "id");
  bm_pack_str(&pk, "a-longer-string");
  write_bytes(p, sb.data, sb.size - 4);
  int got = read_all_capture(p, msg, sizeof msg, &n);
  char want[128];
  snprintf(want, sizeof want, "record 2 (byte %zu): truncated", second);
  CHECK(got == -1 && n == 1 && strstr(msg, want), "truncated stream: error names record 2 and its byte offset (%s)", msg);

  /* a record that is not a map */
  msgpack_sbuffer_clear(&sb);
  msgpack_pack_map(&pk, 1);
  bm_pack_str(&pk, "header");
  msgpack_pack_map(&pk, 0);
  msgpack_pack_int(&pk, 7);
  write_bytes(p, sb.data, sb.size);
  got = read_all_capture(p, msg, sizeof msg, &n);
  snprintf(want, sizeof want, "record 1 (byte %zu): not a map", after_header);
  CHECK(got == -1 && strstr(msg, want), "non-map record is refused: %s", msg);

  /* a non-string key */
  msgpack_sbuffer_clear(&sb);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 2);
  write_bytes(p, sb.data, sb.size);
  got = read_all_capture(p, msg, sizeof msg, &n);
  CHECK(got == -1 && strstr(msg, "not a string"), "integer key is refused: %s", msg);

  /* garbage bytes: 0xc1 is never valid msgpack */
  write_bytes(p, "\xc1\xc1\xc1", 3);
  got = read_all_capture(p, msg, sizeof msg, &n);
  CHECK(got == -1 && strstr(msg, "malformed msgpack"), "invalid msgpack byte is refused: %s", msg);

  /* empty file: no header, no records, no error */
  write_bytes(p, "", 0);
  got = read_all_capture(p, msg, sizeof msg, &n);
  CHECK(got == 0 && n == 0 && msg[0] == 0, "empty stream reads as zero records without error");

  /* over the size limit */
  setenv("BM_MAX_RECORD_MB", "1", 1);
  msgpack_sbuffer_clear(&sb);
  msgpack_pack_map(&pk, 1);
  bm_pack_str(&pk, "blob");
  size_t big = (size_t)3 << 20;
  char *zeros = calloc(1, big);
  msgpack_pack_bin(&pk, big);
  msgpack_pack_bin_body(&pk, zeros, big);
  free(zeros);
  write_bytes(p, sb.data, sb.size);
  got = read_all_capture(p, msg, sizeof msg, &n);
  CHECK(got == -1 && strstr(msg, "record size limit"), "record over BM_MAX_RECORD_MB is refused: %s", msg);
  unsetenv("BM_MAX_RECORD_MB");

  /* a second header in the middle (two streams glued with cat) */
  msgpack_sbuffer_clear(&sb);
  for (int i = 0; i < 2; i++) {
    msgpack_pack_map(&pk, 1);
    bm_pack_str(&pk, "header");
    msgpack_pack_map(&pk, 0);
    msgpack_pack_map(&pk, 1);
    bm_pack_str(&pk, "id");
    bm_pack_str(&pk, "x");
  }
  write_bytes(p, sb.data, sb.size);
  got = read_all_capture(p, msg, sizeof msg, &n);
  CHECK(got == -1 && n == 1 && strstr(msg, "header record in the middle"), "header in the middle is refused: %s", msg);
  msgpack_sbuffer_destroy(&sb);

  /* tensors that lie about their size */
  msgpack_sbuffer_init(&sb);
  msgpack_pack_map(&pk, 3);
  bm_pack_str(&pk, "dtype");
  bm_pack_str(&pk, "f32");
  bm_pack_str(&pk, "shape");
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, 2);
  msgpack_pack_int(&pk, 3);
  bm_pack_str(&pk, "data");
  msgpack_pack_bin(&pk, 20);
  msgpack_pack_bin_body(&pk, "01234567890123456789", 20);
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  msgpack_unpack_next(&up, sb.data, sb.size, NULL);
  bm_tensor t;
  char err[256];
  CHECK(bm_tensor_parse(&up.data, &t, err, sizeof err) == -1 && strstr(err, "20 bytes"),
        "tensor with wrong data size is refused: %s", err);
  msgpack_unpacked_destroy(&up);
  msgpack_sbuffer_destroy(&sb);
  unlink(p);
  free(p);
}

static void test_shard(void) {
  int k, n;
  CHECK(bm_parse_shard("2/5", &k, &n) == 0 && k == 1 && n == 5, "--shard 2/5 parses to index 1 of 5");
  CHECK(bm_parse_shard("0/5", &k, &n) && bm_parse_shard("6/5", &k, &n) &&
            bm_parse_shard("x/5", &k, &n) && bm_parse_shard("3", &k, &n),
        "bad --shard values are refused");
  setenv("SLURM_ARRAY_TASK_ID", "7", 1);
  setenv("SLURM_ARRAY_TASK_COUNT", "4", 1);
  setenv("SLURM_ARRAY_TASK_MIN", "5", 1);
  CHECK(bm_shard_from_env(&k, &n) == 1 && k == 2 && n == 4, "Slurm array 5..8, task 7 is shard index 2 of 4");
  unsetenv("SLURM_ARRAY_TASK_ID");
  CHECK(bm_shard_from_env(&k, &n) == 0 && k == 0 && n == 1, "without Slurm: one shard");
}

int main(void) {
  if (!mkdtemp(tmpdir)) bm_die("mkdtemp failed");
  test_f16();
  test_roundtrip();
  test_errors();
  test_shard();
  rmdir(tmpdir);
  CHECK_DONE();
}
