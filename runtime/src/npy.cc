//===- npy.cc - NumPy .npy read / write ------------------------------------===//
//
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//   "\x93NUMPY" major minor, header length (u16 for 1.0, u32 for 2.0), then
//   an ASCII Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//   padded with spaces and ending in '\n', then the raw C-order data.
//
//===----------------------------------------------------------------------===//

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "base/internal.h"

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

moert_status_t Error(moert_status_code_t code, const char *format, ...)
    MOERT_PRINTF_LIKE(2, 3);
moert_status_t Error(moert_status_code_t code, const char *format, ...) {
  va_list args;
  va_start(args, format);
  char buffer[512];
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  return moert::MakeStatus(code, buffer);
}

// A parsed header value: a string, a bool or a tuple of ints.
struct HeaderValue {
  enum { String, Bool, Tuple } kind = String;
  std::string string;
  bool boolean = false;
  int64_t dims[MOERT_MAX_RANK] = {};
  int32_t rank = 0;
  bool too_many_dims = false;
};

// Parser for the small subset of Python literals that .npy headers use.
class HeaderParser {
public:
  explicit HeaderParser(std::string_view text) : text_(text) {}

  // Parses the dict; returns NULL or a DATA_LOSS/UNIMPLEMENTED status.
  moert_status_t Parse(HeaderValue *descr, HeaderValue *fortran,
                       HeaderValue *shape) {
    bool have[3] = {false, false, false};
    HeaderValue *slots[3] = {descr, fortran, shape};
    static const char *const kKeys[3] = {"descr", "fortran_order", "shape"};
    SkipSpace();
    if (!Eat('{'))
      return Bad("the header is not a Python dict");
    for (;;) {
      SkipSpace();
      if (Eat('}'))
        break;
      std::string key;
      if (!ParseString(&key))
        return Bad("expected a quoted key in the header dict");
      SkipSpace();
      if (!Eat(':'))
        return Bad("expected ':' after a header key");
      SkipSpace();
      int slot = -1;
      for (int i = 0; i < 3; ++i)
        if (key == kKeys[i])
          slot = i;
      if (slot < 0)
        return Bad("unexpected key in the header dict");
      if (have[slot])
        return Bad("duplicate key in the header dict");
      have[slot] = true;
      if (pos_ < text_.size() && text_[pos_] == '[')
        return moert_status_make(MOERT_STATUS_UNIMPLEMENTED,
                                 "structured dtypes are not supported");
      MOERT_RETURN_IF_ERROR(ParseValue(slots[slot]));
      SkipSpace();
      if (Eat(','))
        continue;
      SkipSpace();
      if (Eat('}'))
        break;
      return Bad("expected ',' or '}' in the header dict");
    }
    SkipSpace();
    if (pos_ != text_.size())
      return Bad("unexpected characters after the header dict");
    for (int i = 0; i < 3; ++i)
      if (!have[i])
        return Error(MOERT_STATUS_DATA_LOSS, "the header has no '%s' key",
                     kKeys[i]);
    return nullptr;
  }

private:
  moert_status_t Bad(const char *what) {
    return Error(MOERT_STATUS_DATA_LOSS, "malformed header at byte %zu: %s",
                 pos_, what);
  }

  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
            text_[pos_] == '\r'))
      ++pos_;
  }

  bool Eat(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool ParseString(std::string *out) {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"'))
      return false;
    char quote = text_[pos_++];
    size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' || text_[pos_] == '\n')
        return false;
      ++pos_;
    }
    if (pos_ >= text_.size())
      return false;
    *out = std::string(text_.substr(start, pos_ - start));
    ++pos_;
    return true;
  }

  bool ParseInt(int64_t *out) {
    size_t start = pos_;
    int64_t v = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      if (__builtin_mul_overflow(v, 10, &v) ||
          __builtin_add_overflow(v, text_[pos_] - '0', &v))
        return false;
      ++pos_;
    }
    if (pos_ == start)
      return false;
    if (pos_ < text_.size() && text_[pos_] == 'L') // Python 2 longs
      ++pos_;
    *out = v;
    return true;
  }

  moert_status_t ParseValue(HeaderValue *out) {
    if (pos_ >= text_.size())
      return Bad("unexpected end of the header");
    char c = text_[pos_];
    if (c == '\'' || c == '"') {
      out->kind = HeaderValue::String;
      if (!ParseString(&out->string))
        return Bad("malformed string");
      return nullptr;
    }
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      out->kind = HeaderValue::Bool;
      out->boolean = true;
      return nullptr;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      out->kind = HeaderValue::Bool;
      out->boolean = false;
      return nullptr;
    }
    if (c == '(') {
      ++pos_;
      out->kind = HeaderValue::Tuple;
      out->rank = 0;
      for (;;) {
        SkipSpace();
        if (Eat(')'))
          return nullptr;
        int64_t v;
        if (!ParseInt(&v))
          return Bad("the shape must be a tuple of non-negative integers");
        if (out->rank == MOERT_MAX_RANK)
          out->too_many_dims = true;
        else
          out->dims[out->rank++] = v;
        SkipSpace();
        if (Eat(','))
          continue;
        if (Eat(')'))
          return nullptr;
        return Bad("expected ',' or ')' in the shape tuple");
      }
    }
    return Bad("unsupported value in the header dict");
  }

  std::string_view text_;
  size_t pos_ = 0;
};

struct NpyDtype {
  const char *descr;
  int32_t dtype;
};
constexpr NpyDtype kDtypes[] = {{"<f4", MOERT_DTYPE_F32},
                                {"<f2", MOERT_DTYPE_F16},
                                {"<i4", MOERT_DTYPE_I32},
                                {"<i8", MOERT_DTYPE_I64}};

moert_status_t ParseImage(const uint8_t *data, size_t size,
                          moert_tensor_t **out) {
  if (size < kMagicLen + 2 || std::memcmp(data, kMagic, kMagicLen) != 0)
    return Error(MOERT_STATUS_DATA_LOSS,
                 "not a .npy file (missing the \\x93NUMPY magic)");
  uint8_t major = data[6], minor = data[7];
  size_t header_start;
  uint64_t header_len;
  if (major == 1 && minor == 0) {
    if (size < 10)
      return Error(MOERT_STATUS_DATA_LOSS, "truncated header length");
    header_len = data[8] | (static_cast<uint64_t>(data[9]) << 8);
    header_start = 10;
  } else if (major == 2 && minor == 0) {
    if (size < 12)
      return Error(MOERT_STATUS_DATA_LOSS, "truncated header length");
    header_len = data[8] | (static_cast<uint64_t>(data[9]) << 8) |
                 (static_cast<uint64_t>(data[10]) << 16) |
                 (static_cast<uint64_t>(data[11]) << 24);
    header_start = 12;
  } else if (major == 3 && minor == 0) {
    return Error(MOERT_STATUS_UNIMPLEMENTED,
                 "format version 3.0 (UTF-8 header) is not supported; only "
                 "1.0 and 2.0");
  } else {
    return Error(MOERT_STATUS_DATA_LOSS, "unknown format version %u.%u",
                 major, minor);
  }
  if (header_len > size - header_start)
    return Error(MOERT_STATUS_DATA_LOSS,
                 "header length %llu exceeds the %zu bytes that follow it "
                 "(truncated file)",
                 static_cast<unsigned long long>(header_len),
                 size - header_start);
  std::string_view header(reinterpret_cast<const char *>(data + header_start),
                          static_cast<size_t>(header_len));
  HeaderValue descr, fortran, shape;
  HeaderParser parser(header);
  MOERT_RETURN_IF_ERROR(parser.Parse(&descr, &fortran, &shape));
  if (descr.kind != HeaderValue::String)
    return Error(MOERT_STATUS_DATA_LOSS, "'descr' is not a string");
  if (fortran.kind != HeaderValue::Bool)
    return Error(MOERT_STATUS_DATA_LOSS, "'fortran_order' is not a boolean");
  if (shape.kind != HeaderValue::Tuple)
    return Error(MOERT_STATUS_DATA_LOSS, "'shape' is not a tuple");
  int32_t dtype = -1;
  for (const NpyDtype &d : kDtypes)
    if (descr.string == d.descr)
      dtype = d.dtype;
  if (dtype < 0) {
    std::string d = descr.string.substr(0, 32);
    if (!d.empty() && d[0] == '>')
      return Error(MOERT_STATUS_UNIMPLEMENTED,
                   "big-endian dtype '%s' is not supported", d.c_str());
    return Error(MOERT_STATUS_UNIMPLEMENTED,
                 "dtype '%s' is not supported (supported: '<f4', '<f2', "
                 "'<i4', '<i8')",
                 d.c_str());
  }
  if (fortran.boolean)
    return Error(MOERT_STATUS_UNIMPLEMENTED,
                 "Fortran-order arrays are not supported (save a C-order "
                 "array, e.g. with np.ascontiguousarray)");
  if (shape.too_many_dims)
    return Error(MOERT_STATUS_UNIMPLEMENTED,
                 "the shape has more than %d dimensions", MOERT_MAX_RANK);
  size_t bytes;
  moert_status_t s =
      moert::CheckShape(dtype, shape.rank, shape.dims, nullptr, &bytes);
  if (s) {
    moert_status_free(s);
    return Error(MOERT_STATUS_DATA_LOSS, "the size of shape %s overflows",
                 moert::ShapeString(shape.rank, shape.dims).c_str());
  }
  size_t data_start = header_start + static_cast<size_t>(header_len);
  size_t remaining = size - data_start;
  if (remaining < bytes)
    return Error(MOERT_STATUS_DATA_LOSS,
                 "truncated: %s %s needs %zu data bytes but only %zu remain",
                 descr.string.c_str(),
                 moert::ShapeString(shape.rank, shape.dims).c_str(), bytes,
                 remaining);
  if (remaining > bytes)
    return Error(MOERT_STATUS_DATA_LOSS,
                 "%zu unexpected bytes after the %zu data bytes of %s %s",
                 remaining - bytes, bytes, descr.string.c_str(),
                 moert::ShapeString(shape.rank, shape.dims).c_str());
  return moert_tensor_create_copy(dtype, shape.rank, shape.dims,
                                  data + data_start, bytes, out);
}

moert_status_t Parse(const uint8_t *data, size_t size, moert_tensor_t **out) {
  try {
    return ParseImage(data, size, out);
  } catch (const std::bad_alloc &) {
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory reading a .npy header");
  }
}

} // namespace

extern "C" {

MOERT_API_EXPORT moert_status_t moert_npy_parse(const void *data, size_t size,
                                                moert_tensor_t **out_tensor) {
  if (!out_tensor)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_tensor is NULL");
  *out_tensor = nullptr;
  if (!data && size > 0)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "data is NULL");
  return moert::Annotate(
      Parse(static_cast<const uint8_t *>(data), size, out_tensor),
      ".npy buffer");
}

MOERT_API_EXPORT moert_status_t moert_npy_read(const char *path,
                                               moert_tensor_t **out_tensor) {
  if (!out_tensor)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_tensor is NULL");
  *out_tensor = nullptr;
  if (!path)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "path is NULL");
  std::unique_ptr<moert::MappedFile> file;
  MOERT_RETURN_IF_ERROR(
      moert::Annotate(moert::MappedFile::Open(path, &file), ".npy file"));
  std::string what = ".npy file '" + std::string(path) + "'";
  return moert::Annotate(Parse(file->data(), file->size(), out_tensor), what);
}

MOERT_API_EXPORT moert_status_t moert_npy_write(const char *path,
                                                const moert_tensor_t *tensor) {
  if (!path || !tensor)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "path or tensor is NULL");
  int32_t dtype = moert_tensor_dtype(tensor);
  const char *descr = nullptr;
  for (const NpyDtype &d : kDtypes)
    if (d.dtype == dtype)
      descr = d.descr;
  if (!descr)
    return moert_status_make(MOERT_STATUS_UNIMPLEMENTED,
                             "cannot write '%s': .npy has no %s dtype (convert "
                             "to f32 first)",
                             path, moert_dtype_name(dtype));
  int32_t rank = moert_tensor_rank(tensor);
  const int64_t *dims = moert_tensor_shape(tensor);
  std::string header = "{'descr': '";
  header += descr;
  header += "', 'fortran_order': False, 'shape': (";
  for (int32_t i = 0; i < rank; ++i) {
    header += std::to_string(dims[i]);
    if (rank == 1 || i + 1 < rank)
      header += rank == 1 ? "," : ", ";
  }
  header += "), }";
  // Pad with spaces so that the data starts on a 64-byte boundary; the
  // header ends with '\n'.
  size_t prefix = kMagicLen + 2 + 2;
  bool v2 = false;
  size_t total = prefix + header.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  if (padded - prefix > 65535) {
    v2 = true;
    prefix = kMagicLen + 2 + 4;
    total = prefix + header.size() + 1;
    padded = (total + 63) / 64 * 64;
  }
  header.append(padded - total, ' ');
  header += '\n';
  uint64_t hlen = header.size();

  std::string head(kMagic, kMagicLen);
  head += static_cast<char>(v2 ? 2 : 1);
  head += static_cast<char>(0);
  for (int i = 0; i < (v2 ? 4 : 2); ++i)
    head += static_cast<char>((hlen >> (8 * i)) & 0xff);
  head += header;

  FILE *f = std::fopen(path, "wb");
  if (!f)
    return moert_status_make(MOERT_STATUS_UNAVAILABLE,
                             "cannot create .npy file '%s': %s", path,
                             std::strerror(errno));
  size_t bytes = moert_tensor_byte_size(tensor);
  bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size() &&
            (bytes == 0 || std::fwrite(moert_tensor_const_data(tensor), 1,
                                       bytes, f) == bytes);
  int err = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok)
    return moert_status_make(MOERT_STATUS_UNAVAILABLE,
                             "cannot write .npy file '%s': %s", path,
                             std::strerror(err));
  return nullptr;
}

} // extern "C"
