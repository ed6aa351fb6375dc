/* The pieces under bm-decode: CSV parsing of the releases' quirks, the
 * resize and crop geometry, splits and shards, the sample keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "csv.h"
#include "datasets.h"
#include "imageio.h"
#include "resample.h"
#include "splits.h"
#include "util.h"

static bm_csv *csv_of(const char *text, char *err) {
  char path[] = "/tmp/bm-test-csv-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) return NULL;
  close(fd);
  bm_csv *c = bm_csv_load(path, err, 256);
  unlink(path);
  return c;
}

int main(void) {
  char err[256];
  /* NIH's header with a trailing comma, no final newline */
  bm_csv *c = csv_of("Image Index,Finding Labels,OriginalImage[Width,Height],\n"
                     "a.png,Mass|Edema,1,2\nb.png,No Finding,3,4", err);
  CHECK(c && c->nrows == 3, "csv: header + 2 rows without final newline");
  CHECK(c && c->rows[0].n == 5 && !strcmp(c->rows[0].f[4], ""), "csv: trailing comma = empty last header field");
  CHECK(c && c->rows[2].n == 4 && !strcmp(c->rows[2].f[3], "4"), "csv: last field of last line");
  CHECK(c && bm_csv_col(c, "Finding Labels") == 1 && bm_csv_col(c, "Patient ID") == -1, "csv: columns by name");
  bm_csv_free(c);
  c = csv_of("\xEF\xBB\xBFid,\"text, with \"\"quotes\"\"\"\r\n\r\nx,\"multi\nline\"\r\n", err);
  CHECK(c && c->nrows == 2 && !strcmp(c->rows[0].f[0], "id"), "csv: BOM dropped, CRLF, blank line skipped");
  CHECK(c && !strcmp(c->rows[0].f[1], "text, with \"quotes\""), "csv: quoted comma and doubled quotes");
  CHECK(c && !strcmp(c->rows[1].f[1], "multi\nline") && c->rows[1].line == 3, "csv: quoted newline, line numbers");
  bm_csv_free(c);
  CHECK(!csv_of("a,\"open\n", err) && strstr(err, "unterminated"), "csv: unterminated quote is an error: %s", err);
  CHECK(!csv_of("", err) && strstr(err, "empty"), "csv: empty file is an error");
  CHECK(!bm_csv_load("/nonexistent/x.csv", err, sizeof err) && strstr(err, "/nonexistent/x.csv"), "csv: missing file named");

  /* geometry as torchvision computes it */
  int w, h;
  bm_resize_dims(600, 450, 224, &w, &h);
  CHECK(w == 298 && h == 224, "resize dims 600x450 -> %dx%d (298x224)", w, h);
  bm_resize_dims(1024, 1024, 224, &w, &h);
  CHECK(w == 224 && h == 224, "resize dims square");
  bm_resize_dims(301, 225, 224, &w, &h);
  CHECK(w == 299 && h == 224, "resize dims 301x225 -> %dx%d (int(224*301/225) = 299)", w, h);
  CHECK(bm_center_offset(299, 224) == 38 && bm_center_offset(225, 224) == 0 && bm_center_offset(227, 224) == 2 &&
            bm_center_offset(229, 224) == 2 && bm_center_offset(224, 224) == 0,
        "center crop offsets round half to even (37.5->38, 0.5->0, 1.5->2, 2.5->2)");

  /* a constant image stays constant through up- and downscaling */
  uint8_t *in = malloc(37 * 23 * 3), *out = malloc(300 * 300 * 3);
  memset(in, 173, 37 * 23 * 3);
  memset(out, 0xAA, 300 * 300 * 3);
  int ok = bm_resize_bicubic(in, 37, 23, 3, out, 11, 300) == 0;
  for (int i = 0; i < 11 * 300 * 3; i++) ok &= out[i] == 173;
  CHECK(ok, "resize keeps a constant image constant");
  free(in), free(out);
  uint8_t px[12] = {200, 128, 10, 128, 255, 254, 33, 255, 90, 80, 70, 0};
  bm_premultiply(px, 3, 4);
  CHECK(px[0] == 100 && px[1] == 64 && px[2] == 5 && px[3] == 128 && px[4] == 255 && px[5] == 254 &&
            px[6] == 33 && px[8] == 0 && px[9] == 0 && px[11] == 0,
        "premultiply: MULDIV255; alpha 255 keeps, alpha 0 zeroes");
  bm_unpremultiply(px, 3, 4);
  CHECK(px[0] == 199 && px[1] == 127 && px[2] == 9, "unpremultiply: 255*v/a truncated (%d %d %d)", px[0], px[1], px[2]);

  /* splits: whole groups, per-stratum counts, seeded */
  enum { N = 1000 };
  char *names[N];
  int strata[N], split[N], split2[N];
  for (int i = 0; i < N; i++) {
    char b[32];
    snprintf(b, sizeof b, "P%05d", i * 7 + 3);
    names[i] = bm_xstrdup(b);
    strata[i] = i % 3 == 0 ? 1 : 0;
  }
  bm_split_groups(names, strata, N, 0.1, 0.2, 42, split);
  int cnt[2][3] = {{0}};
  for (int i = 0; i < N; i++) cnt[strata[i]][split[i]]++;
  CHECK(cnt[1][BM_SPLIT_TEST] == 67 && cnt[1][BM_SPLIT_VAL] == 33 && cnt[0][BM_SPLIT_TEST] == 133 &&
            cnt[0][BM_SPLIT_VAL] == 67,
        "split per stratum: round(n*f) (334: 67 test 33 val; 666: 133 test 67 val)");
  bm_split_groups(names, strata, N, 0.1, 0.2, 43, split2);
  int same = 1, diff = 0;
  bm_split_groups(names, strata, N, 0.1, 0.2, 42, split2);
  for (int i = 0; i < N; i++) same &= split[i] == split2[i];
  bm_split_groups(names, strata, N, 0.1, 0.2, 43, split2);
  for (int i = 0; i < N; i++) diff += split[i] != split2[i];
  CHECK(same && diff > 100, "split: same seed same split, another seed another (%d moved)", diff);
  int shard_n[3] = {0};
  for (int i = 0; i < N; i++) shard_n[bm_shard_of(names[i], 3)]++;
  CHECK(shard_n[0] > 280 && shard_n[1] > 280 && shard_n[2] > 280, "shards balanced (%d %d %d)", shard_n[0], shard_n[1], shard_n[2]);
  for (int i = 0; i < N; i++) free(names[i]);

  char key[64];
  CHECK(!strcmp(bm_sample_key("images/00000001_000.png", key, sizeof key), "00000001_000"), "key: folders and .png dropped");
  CHECK(!strcmp(bm_sample_key("ISIC_0024306", key, sizeof key), "ISIC_0024306"), "key: id without extension");
  CHECK(!strcmp(bm_sample_key("a/b.v2.JPG", key, sizeof key), "b.v2"), "key: only the image extension dropped");
  CHECK(!bm_is_image_name(".DS_Store") && bm_is_image_name("x.jpeg") && !bm_is_image_name("x.csv"), "image names by extension");
  CHECK_DONE();
}
