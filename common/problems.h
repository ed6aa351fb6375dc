/* problems.h - bad input that a filter skips: each case one stderr line
 * naming the program, the file or archive, the member and the reason; a
 * count per kind for the closing summary; with strict, the first is fatal. */
#ifndef BM_PROBLEMS_H
#define BM_PROBLEMS_H

enum {
  BM_P_CORRUPT,     /* image data that does not decode */
  BM_P_NOT_IMAGE,   /* a member that is not an image (__MACOSX/._*, .DS_Store, ...) */
  BM_P_NO_ROW,      /* an image the metadata does not list */
  BM_P_NO_IMAGE,    /* a metadata row whose image was not found */
  BM_P_BAD_LABEL,   /* a label outside the class list, or no label */
  BM_P_EMPTY_AGE,   /* age missing or not a number (the record is still written) */
  BM_P_BAD_ROW,     /* a malformed or duplicated metadata row */
  BM_P_DUPLICATE,   /* the same image twice in the inputs */
  BM_P_NO_SPLIT,    /* NIH: an image in neither split list */
  BM_P_ARCHIVE,     /* an archive that is truncated, corrupt or unreadable */
  BM_P_NKINDS
};

typedef struct {
  long count[BM_P_NKINDS];
  long shown[BM_P_NKINDS];
  long max_lines; /* per kind; 0 shows all */
  int strict;
} bm_problems;

const char *bm_problem_name(int kind);
/* "prog: WHERE: MEMBER: REASON" (MEMBER omitted when NULL or empty). With
 * strict set, prints a last line and exits with status 1. */
void bm_problem(bm_problems *p, int kind, const char *where, const char *member, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
/* The closing line: "N records written; problems: 2 corrupt image, ..." */
void bm_problem_summary(const bm_problems *p, long records);
long bm_problem_total(const bm_problems *p);
#endif
