/* fuzz_safetensors - libFuzzer target: arbitrary bytes as a .safetensors
 * file. Built and run by `make fuzz`; seeds in tests/fuzz/corpus_safetensors/. */
#include <stddef.h>
#include <stdint.h>

#include "weights_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bm_weights ws = {0};
  char err[1024];
  static const uint8_t empty[1];
  if (bm_safetensors_load("fuzz.safetensors", size ? data : empty, size, &ws, err, sizeof err) == 0)
    bm_weights_free(&ws);
  return 0;
}
