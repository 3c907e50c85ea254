//===- npy_fuzz.cc - libFuzzer target for the .npy reader -----------------===//
//
// Feeds arbitrary bytes to moert_npy_parse (the in-memory twin of
// moert_npy_read). A file that parses must round-trip: written with
// moert_npy_write and parsed again, it gives the same dtype, shape and bytes.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

#include "moert/api.h"

namespace {

std::string TempPath() {
  const char *dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/moert-npy-fuzz-" +
         std::to_string(getpid()) + ".npy";
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moert_tensor_t *t = nullptr;
  moert_status_t status = moert_npy_parse(data, size, &t);
  if (status) {
    if (t || std::strlen(moert_status_message(status)) == 0)
      std::abort();
    moert_status_free(status);
    return 0;
  }
  if (moert_tensor_byte_size(t) > (1u << 20)) {
    moert_tensor_release(t);
    return 0;
  }
  static const std::string path = TempPath();
  if (moert_status_t s = moert_npy_write(path.c_str(), t)) {
    moert_status_free(s);
    std::abort();
  }
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    std::abort();
  std::vector<uint8_t> image;
  uint8_t buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    image.insert(image.end(), buf, buf + n);
  std::fclose(f);
  std::remove(path.c_str());
  moert_tensor_t *back = nullptr;
  if (moert_status_t s = moert_npy_parse(image.data(), image.size(), &back)) {
    moert_status_free(s);
    std::abort();
  }
  int32_t rank = moert_tensor_rank(t);
  if (moert_tensor_dtype(back) != moert_tensor_dtype(t) ||
      moert_tensor_rank(back) != rank ||
      std::memcmp(moert_tensor_shape(back), moert_tensor_shape(t),
                  sizeof(int64_t) * static_cast<size_t>(rank)) != 0 ||
      moert_tensor_byte_size(back) != moert_tensor_byte_size(t) ||
      std::memcmp(moert_tensor_const_data(back), moert_tensor_const_data(t),
                  moert_tensor_byte_size(t)) != 0)
    std::abort();
  moert_tensor_release(back);
  moert_tensor_release(t);
  return 0;
}
