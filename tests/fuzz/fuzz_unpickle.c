/* fuzz_unpickle - libFuzzer target: arbitrary bytes as a torch data.pkl.
 * Built and run by `make fuzz`; seeds in tests/fuzz/corpus_unpickle/. */
#include <stddef.h>
#include <stdint.h>

#include "unpickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bm_pk_state st;
  char err[1024];
  if (bm_unpickle_state_dict(data, size, "fuzz/data.pkl", &st, err, sizeof err) == 0)
    bm_pk_state_free(&st);
  return 0;
}
