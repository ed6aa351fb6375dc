/* bm-cat - concatenate record streams (the outputs of --shard K/N runs, say)
 * into one stream with one header. Headers must agree on task and classes;
 * the first header is the one written. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util.h"

static const char usage[] =
    "Usage: bm-cat [OPTION]... [FILE]...\n"
    "Concatenate record streams into one stream on stdout with a single header.\n"
    "With no FILE, or FILE -, read stdin. The headers of all inputs must agree\n"
    "on \"task\" and \"classes\"; the first input's header is written.\n"
    "\n"
    "  -o, --output FILE  write to FILE instead of stdout\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 ok, 1 malformed input or disagreeing headers, 2 usage.\n";

/* Two header values agree when both are absent or both pack to the same bytes. */
static int same_value(const msgpack_object *a, const msgpack_object *b) {
  if (!a || !b) return a == b;
  msgpack_sbuffer sa, sb;
  msgpack_sbuffer_init(&sa);
  msgpack_sbuffer_init(&sb);
  msgpack_packer pa, pb;
  msgpack_packer_init(&pa, &sa, msgpack_sbuffer_write);
  msgpack_packer_init(&pb, &sb, msgpack_sbuffer_write);
  msgpack_pack_object(&pa, *a);
  msgpack_pack_object(&pb, *b);
  int same = sa.size == sb.size && memcmp(sa.data, sb.data, sa.size) == 0;
  msgpack_sbuffer_destroy(&sa);
  msgpack_sbuffer_destroy(&sb);
  return same;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  const char *output = NULL;
  static const struct option longs[] = {
      {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "o:h", longs, NULL)) != -1) {
    switch (c) {
    case 'o': output = optarg; break;
    case 'h': fputs(usage, stdout); return 0;
    default: bm_usage_die("unknown option");
    }
  }
  int nin = argc - optind;
  const char *stdin_only[] = {"-"};
  const char **inputs = nin ? (const char **)argv + optind : stdin_only;
  if (!nin) nin = 1;

  /* The first header is kept as packed bytes so it outlives its reader. */
  msgpack_sbuffer first;
  msgpack_sbuffer_init(&first);
  msgpack_unpacked first_h;
  msgpack_unpacked_init(&first_h);
  const msgpack_object *h0 = NULL;
  int have_first = 0;
  bm_writer *w = NULL;
  long total = 0;
  for (int i = 0; i < nin; i++) {
    bm_reader *r = bm_reader_open(inputs[i]);
    const msgpack_object *h = bm_reader_header(r);
    if (bm_reader_error(r)) return 1;
    if (!have_first) {
      have_first = 1;
      if (h) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &first, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *h);
        msgpack_unpack_next(&first_h, first.data, first.size, NULL);
        h0 = &first_h.data;
      }
      w = bm_writer_open(output);
      if (bm_write_header(w, h0, NULL)) return 1;
    } else {
      const char *keys[] = {"task", "classes"};
      for (int k = 0; k < 2; k++)
        if (!same_value(bm_map_get(h0, keys[k]), bm_map_get(h, keys[k])))
          bm_die("%s: header \"%s\" differs from the first input's (%s)", bm_reader_name(r),
                 keys[k], inputs[0]);
    }
    const msgpack_object *rec;
    int got;
    while ((got = bm_reader_next(r, &rec)) == 1) {
      if (bm_write_record(w, rec, NULL)) return 1;
      total++;
    }
    bm_reader_close(r);
    if (got < 0) return 1;
  }
  msgpack_unpacked_destroy(&first_h);
  msgpack_sbuffer_destroy(&first);
  return bm_writer_close(w) ? 1 : 0;
}
