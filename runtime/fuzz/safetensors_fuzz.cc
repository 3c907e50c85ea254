//===- safetensors_fuzz.cc - libFuzzer target for the safetensors loader --===//
//
// Feeds arbitrary bytes to moert_weights_parse_safetensors (the in-memory
// twin of moert_weights_load_safetensors; both run the same parser). A file
// that loads must be fully usable: every tensor is found by its name and
// every byte of its data is readable (AddressSanitizer checks the bounds),
// and float tensors convert to f32.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "moert/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moert_weights_t *weights = nullptr;
  moert_status_t status = moert_weights_parse_safetensors(data, size, &weights);
  if (status) {
    if (weights || moert_status_code(status) == MOERT_STATUS_OK ||
        std::strlen(moert_status_message(status)) == 0)
      std::abort();
    moert_status_free(status);
    return 0;
  }
  uint8_t checksum = 0;
  int64_t count = moert_weights_count(weights);
  for (int64_t i = 0; i < count; ++i) {
    const char *name = moert_weights_name(weights, i);
    const moert_tensor_t *t = moert_weights_tensor(weights, i);
    if (!name || !t || moert_weights_find(weights, name) != t)
      std::abort();
    size_t bytes = moert_tensor_byte_size(t);
    size_t expected = 0;
    moert_status_t s = moert_shape_byte_size(
        moert_tensor_dtype(t), moert_tensor_rank(t), moert_tensor_shape(t),
        &expected);
    if (s || expected != bytes)
      std::abort();
    const uint8_t *p = static_cast<const uint8_t *>(moert_tensor_const_data(t));
    for (size_t b = 0; b < bytes; ++b)
      checksum ^= p[b];
    if (moert_dtype_is_float(moert_tensor_dtype(t)) && bytes <= (1u << 16)) {
      moert_tensor_t *f32 = nullptr;
      s = moert_tensor_convert(t, MOERT_DTYPE_F32, &f32);
      if (s)
        std::abort();
      moert_tensor_release(f32);
    }
  }
  moert_weights_release(weights);
  volatile uint8_t sink = checksum;
  (void)sink;
  return 0;
}
