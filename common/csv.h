/* csv.h - the metadata tables of the data sets (RFC 4180 CSV as exported by
 * spreadsheets: quoted fields with "" escapes, CRLF or LF, a UTF-8 byte-order
 * mark, a last line without newline, blank lines ignored). The whole file is
 * read into memory: the largest (NIH, 112,120 rows) is 8 MB. */
#ifndef BM_CSV_H
#define BM_CSV_H

typedef struct {
  char **f; /* fields, NUL-terminated, unquoted */
  int n;
  long line; /* 1-based line number where the row starts */
} bm_csv_row;

typedef struct {
  char *path;
  char *data; /* the file, fields point into it */
  bm_csv_row *rows; /* rows[0] is the header */
  long nrows;
} bm_csv;

/* NULL with a reason in err when the file cannot be read, is empty, or has
 * an unterminated quote. */
bm_csv *bm_csv_load(const char *path, char *err, int errlen);
/* The same with another field separator (a tab for TSV). */
bm_csv *bm_csv_load_delim(const char *path, char delim, char *err, int errlen);
void bm_csv_free(bm_csv *c);
/* Index of the header column named name (exact, surrounding blanks
 * ignored), or -1. */
int bm_csv_col(const bm_csv *c, const char *name);
#endif
