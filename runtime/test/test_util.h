//===- test_util.h - helpers for the libmoert GoogleTest suites -*- C++ -*-===//

#ifndef MOERT_TEST_TEST_UTIL_H
#define MOERT_TEST_TEST_UTIL_H

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moert/api.h"

namespace moert_test {

/// Succeeds iff `s` is OK; frees it.
inline ::testing::AssertionResult IsOk(moert_status_t s) {
  if (!s)
    return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure()
           << moert_status_code_string(moert_status_code(s)) << ": "
           << moert_status_message(s);
  moert_status_free(s);
  return r;
}

/// Succeeds iff `s` is an error with `code` whose message contains every
/// string of `parts`; frees it.
inline ::testing::AssertionResult
IsError(moert_status_t s, moert_status_code_t code,
        std::initializer_list<std::string> parts = {}) {
  if (!s)
    return ::testing::AssertionFailure() << "expected an error, got OK";
  std::string msg = moert_status_message(s);
  moert_status_code_t got = moert_status_code(s);
  moert_status_free(s);
  if (got != code)
    return ::testing::AssertionFailure()
           << "expected " << moert_status_code_string(code) << ", got "
           << moert_status_code_string(got) << ": " << msg;
  for (const std::string &p : parts)
    if (msg.find(p) == std::string::npos)
      return ::testing::AssertionFailure()
             << "message does not contain '" << p << "': " << msg;
  return ::testing::AssertionSuccess() << msg;
}

/// A fresh directory removed with its contents at destruction.
class TempDir {
public:
  TempDir() {
    const char *base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") +
                       "/moert-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data()))
      std::abort();
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string &name) const { return path_ + "/" + name; }
  const std::string &path() const { return path_; }

private:
  std::string path_;
};

inline void WriteFile(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline std::string ReadFile(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f),
                     std::istreambuf_iterator<char>());
}

/// A safetensors image: u64 LE header length, header, data.
inline std::string Safetensors(const std::string &header,
                               const std::string &data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T> std::string Bytes(const std::vector<T> &v) {
  return std::string(reinterpret_cast<const char *>(v.data()),
                     v.size() * sizeof(T));
}

/// Owns a tensor.
struct TensorPtr {
  moert_tensor_t *t = nullptr;
  TensorPtr() = default;
  explicit TensorPtr(moert_tensor_t *p) : t(p) {}
  ~TensorPtr() { moert_tensor_release(t); }
  TensorPtr(const TensorPtr &) = delete;
  TensorPtr &operator=(const TensorPtr &) = delete;
  moert_tensor_t *get() const { return t; }
  moert_tensor_t **out() {
    moert_tensor_release(t);
    t = nullptr;
    return &t;
  }
};

/// An f32 tensor from values.
inline moert_tensor_t *F32(std::vector<int64_t> shape, std::vector<float> v) {
  moert_tensor_t *t = nullptr;
  moert_status_t s = moert_tensor_create_copy(
      MOERT_DTYPE_F32, static_cast<int32_t>(shape.size()), shape.data(),
      v.data(), v.size() * sizeof(float), &t);
  EXPECT_TRUE(IsOk(s));
  return t;
}

/// The elements of t. memcpy: a tensor mapped from a file is aligned only
/// as the file's offsets are (moert/weights.h).
template <typename T> std::vector<T> Values(const moert_tensor_t *t) {
  std::vector<T> v(static_cast<size_t>(moert_tensor_element_count(t)));
  if (!v.empty())
    std::memcpy(v.data(), moert_tensor_const_data(t), v.size() * sizeof(T));
  return v;
}

inline std::vector<int64_t> Shape(const moert_tensor_t *t) {
  const int64_t *s = moert_tensor_shape(t);
  return std::vector<int64_t>(s, s + moert_tensor_rank(t));
}

} // namespace moert_test

#endif // MOERT_TEST_TEST_UTIL_H
