//===- safetensors.cc - moert_weights_t from safetensors files ------------===//
//
// Layout: u64 little-endian header length N, N bytes of JSON, data section.
// Everything is validated before a single tensor is created.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "base/internal.h"
#include "json.h"

struct moert_weights_s {
  std::atomic<int64_t> refs{1};
  std::unique_ptr<moert::MappedFile> file; // either the mapping...
  moert::AlignedBuffer copy;               // ...or an in-memory copy
  std::vector<std::string> names;
  std::vector<moert_tensor_t *> tensors; // borrowed tensors, file order
  std::vector<int64_t> by_name;          // indices sorted by name

  ~moert_weights_s() {
    for (moert_tensor_t *t : tensors)
      moert::DestroyTensor(t);
  }
};

namespace {

using moert::json::Kind;
using moert::json::Value;

// Same limit as the reference implementation (safetensors' MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderSize = 100000000;

struct Entry {
  std::string name;
  int32_t dtype;
  int32_t rank;
  int64_t shape[MOERT_MAX_RANK];
  uint64_t begin;
  uint64_t bytes;
};

moert_status_t Corrupt(const char *format, ...) MOERT_PRINTF_LIKE(1, 2);
moert_status_t Corrupt(const char *format, ...) {
  va_list args;
  va_start(args, format);
  char buffer[512];
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  return moert::MakeStatus(MOERT_STATUS_DATA_LOSS, buffer);
}

// A printable, bounded rendering of a (possibly hostile) name.
std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 120)) {
    if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else if (c >= 0x80)
      out += static_cast<char>(c); // UTF-8 passes through
    else
      out += moert::StrFormat("\\x%02x", c);
  }
  if (s.size() > 120)
    out += "...";
  return out;
}

bool DtypeFromSafetensors(const std::string &s, int32_t *dtype) {
  static const struct {
    const char *name;
    int32_t dtype;
  } kTable[] = {{"F32", MOERT_DTYPE_F32}, {"F16", MOERT_DTYPE_F16},
                {"BF16", MOERT_DTYPE_BF16}, {"I32", MOERT_DTYPE_I32},
                {"I64", MOERT_DTYPE_I64}};
  for (const auto &e : kTable)
    if (s == e.name) {
      *dtype = e.dtype;
      return true;
    }
  return false;
}

bool IsNonNegativeInt(const Value &v) {
  return v.kind == Kind::Number && v.is_integer && v.integer >= 0;
}

// Validates one tensor entry of the header.
moert_status_t ParseEntry(const std::string &name, const Value &info,
                          uint64_t data_size, Entry *out) {
  std::string pname = Printable(name);
  const char *n = pname.c_str();
  if (name.find('\0') != std::string::npos)
    return Corrupt("tensor name '%s' contains a NUL character", n);
  if (info.kind != Kind::Object)
    return Corrupt("tensor '%s': expected an object, found %s", n,
                   moert::json::KindName(info.kind));
  for (size_t i = 0; i < info.keys.size(); ++i)
    for (size_t j = i + 1; j < info.keys.size(); ++j)
      if (info.keys[i] == info.keys[j])
        return Corrupt("tensor '%s': duplicate key '%s'", n,
                       Printable(info.keys[i]).c_str());
  const Value *dtype = info.Find("dtype");
  const Value *shape = info.Find("shape");
  const Value *offsets = info.Find("data_offsets");
  if (!dtype || dtype->kind != Kind::String)
    return Corrupt("tensor '%s': missing or non-string \"dtype\"", n);
  if (!shape || shape->kind != Kind::Array)
    return Corrupt("tensor '%s': missing or non-array \"shape\"", n);
  if (!offsets || offsets->kind != Kind::Array)
    return Corrupt("tensor '%s': missing or non-array \"data_offsets\"", n);

  out->name = name;
  if (!DtypeFromSafetensors(dtype->string, &out->dtype))
    return moert_status_make(
        MOERT_STATUS_UNIMPLEMENTED,
        "tensor '%s' has unsupported dtype '%s' (supported: F32, F16, BF16, "
        "I32, I64)",
        n, Printable(dtype->string).c_str());
  if (shape->items.size() > MOERT_MAX_RANK)
    return moert_status_make(MOERT_STATUS_UNIMPLEMENTED,
                             "tensor '%s' has rank %zu; at most %d is supported",
                             n, shape->items.size(), MOERT_MAX_RANK);
  out->rank = static_cast<int32_t>(shape->items.size());
  for (int32_t i = 0; i < out->rank; ++i) {
    if (!IsNonNegativeInt(shape->items[i]))
      return Corrupt("tensor '%s': \"shape\" entry %d is not a non-negative "
                     "integer",
                     n, static_cast<int>(i));
    out->shape[i] = shape->items[i].integer;
  }
  if (offsets->items.size() != 2 || !IsNonNegativeInt(offsets->items[0]) ||
      !IsNonNegativeInt(offsets->items[1]))
    return Corrupt("tensor '%s': \"data_offsets\" must be two non-negative "
                   "integers [begin, end]",
                   n);
  uint64_t begin = static_cast<uint64_t>(offsets->items[0].integer);
  uint64_t end = static_cast<uint64_t>(offsets->items[1].integer);
  if (begin > end)
    return Corrupt("tensor '%s': data_offsets [%llu, %llu] has begin > end", n,
                   static_cast<unsigned long long>(begin),
                   static_cast<unsigned long long>(end));
  if (end > data_size)
    return Corrupt("tensor '%s': data_offsets [%llu, %llu] exceed the "
                   "%llu-byte data section",
                   n, static_cast<unsigned long long>(begin),
                   static_cast<unsigned long long>(end),
                   static_cast<unsigned long long>(data_size));
  size_t bytes;
  moert_status_t s =
      moert::CheckShape(out->dtype, out->rank, out->shape, nullptr, &bytes);
  if (s) {
    moert_status_free(s);
    return Corrupt("tensor '%s': the size of shape %s overflows", n,
                   moert::ShapeString(out->rank, out->shape).c_str());
  }
  if (end - begin != bytes)
    return Corrupt("tensor '%s': data_offsets [%llu, %llu] span %llu bytes but "
                   "%s %s needs %zu",
                   n, static_cast<unsigned long long>(begin),
                   static_cast<unsigned long long>(end),
                   static_cast<unsigned long long>(end - begin),
                   dtype->string.c_str(),
                   moert::ShapeString(out->rank, out->shape).c_str(), bytes);
  out->begin = begin;
  out->bytes = bytes;
  return nullptr;
}

// Where a copy puts each tensor: at the next multiple of kTensorAlign.
// safetensors writers align tensors to 8 bytes at most (the header is
// padded to 8, offsets follow the previous tensor's size), so a small
// tensor before the experts' weights (a 32-byte router bias) leaves every
// weight row straddling cache lines and each vector load of the kernels
// split in two: Mixtral-small T=64 took 35.1 instead of 32.9 ms with the
// weights 32 bytes off.
constexpr uint64_t kTensorAlign = 64;

// Parses and validates the file image `base[0, size)` into `weights`. With
// `copy`, the tensors' bytes are copied into huge-page-advised memory owned
// by the weights, each tensor 64-byte aligned; without, the tensors point
// into the image.
moert_status_t Parse(const uint8_t *base, size_t size, bool copy,
                     moert_weights_s *weights) {
  if (size < 8)
    return Corrupt("file is too short (%zu bytes) to hold the 8-byte header "
                   "length",
                   size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | base[i];
  if (header_len > size - 8)
    return Corrupt("header length %llu exceeds the %zu bytes that follow it "
                   "(truncated or not a safetensors file)",
                   static_cast<unsigned long long>(header_len), size - 8);
  if (header_len > kMaxHeaderSize)
    return Corrupt("header length %llu exceeds the limit of %llu bytes",
                   static_cast<unsigned long long>(header_len),
                   static_cast<unsigned long long>(kMaxHeaderSize));
  if (header_len < 2 || base[8] != '{')
    return Corrupt("header does not start with a JSON object");
  std::string_view header(reinterpret_cast<const char *>(base + 8),
                          static_cast<size_t>(header_len));
  Value root;
  std::string error;
  if (!moert::json::Parse(header, &root, &error))
    return Corrupt("malformed JSON header: %s", error.c_str());
  if (root.kind != Kind::Object)
    return Corrupt("header is not a JSON object");

  const uint8_t *data = base + 8 + header_len;
  uint64_t data_size = size - 8 - header_len;
  std::vector<Entry> entries;
  entries.reserve(root.keys.size());
  for (size_t i = 0; i < root.keys.size(); ++i) {
    if (root.keys[i] == "__metadata__")
      continue;
    entries.emplace_back();
    MOERT_RETURN_IF_ERROR(
        ParseEntry(root.keys[i], root.items[i], data_size, &entries.back()));
  }
  std::vector<int64_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int64_t>(i);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return entries[a].name < entries[b].name;
  });
  for (size_t i = 1; i < order.size(); ++i)
    if (entries[order[i - 1]].name == entries[order[i]].name)
      return Corrupt("duplicate tensor name '%s'",
                     Printable(entries[order[i]].name).c_str());
  size_t meta_count = 0;
  for (const std::string &k : root.keys)
    meta_count += k == "__metadata__";
  if (meta_count > 1)
    return Corrupt("duplicate \"__metadata__\"");

  // Everything is valid: place (copy) the data and build the tensors.
  std::vector<uint64_t> at(entries.size());
  uint8_t *dst = nullptr;
  if (copy) {
    uint64_t total = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      // Offsets and sizes are bounded by the data section (checked above).
      at[i] = (total + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
      total = at[i] + entries[i].bytes;
    }
    if (total > SIZE_MAX)
      return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                               "out of memory copying %llu bytes",
                               static_cast<unsigned long long>(total));
    weights->copy.reset(moert::LargeAlloc(static_cast<size_t>(total)));
    if (!weights->copy)
      return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                               "out of memory copying %llu bytes",
                               static_cast<unsigned long long>(total));
    dst = static_cast<uint8_t *>(weights->copy.get());
    for (size_t i = 0; i < entries.size(); ++i)
      if (entries[i].bytes > 0)
        std::memcpy(dst + at[i], data + entries[i].begin, entries[i].bytes);
  }
  weights->names.reserve(entries.size());
  weights->tensors.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry &e = entries[i];
    moert_tensor_t *t;
    void *p = copy ? static_cast<void *>(dst + at[i])
                   : const_cast<uint8_t *>(data + e.begin);
    MOERT_RETURN_IF_ERROR(moert::NewTensorOver(
        e.dtype, e.rank, e.shape, p, /*borrowed=*/true, nullptr, nullptr,
        nullptr, &t));
    weights->tensors.push_back(t);
    weights->names.push_back(std::move(e.name));
  }
  weights->by_name = std::move(order);
  return nullptr;
}

moert_status_t Finish(std::unique_ptr<moert_weights_s> weights,
                      const uint8_t *base, size_t size, bool copy,
                      const char *what, moert_weights_t **out) {
  moert_status_t s;
  try {
    s = Parse(base, size, copy, weights.get());
  } catch (const std::bad_alloc &) {
    s = moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                          "out of memory while reading the header");
  }
  if (s)
    return moert::Annotate(s, what);
  *out = weights.release();
  return nullptr;
}

// Validates the file image and copies its tensors into huge-page-advised
// memory owned by the weights, each 64-byte aligned (see kTensorAlign).
moert_status_t CopyAndFinish(const void *data, size_t size, const char *what,
                             moert_weights_t **out_weights) {
  std::unique_ptr<moert_weights_s> weights(new (std::nothrow) moert_weights_s());
  if (!weights)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  return Finish(std::move(weights), static_cast<const uint8_t *>(data), size,
                /*copy=*/true, what, out_weights);
}

} // namespace

extern "C" {

MOERT_API_EXPORT moert_status_t moert_weights_load_safetensors(
    const char *path, moert_weights_t **out_weights) {
  if (!out_weights)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_weights is NULL");
  *out_weights = nullptr;
  if (!path)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "path is NULL");
  std::unique_ptr<moert_weights_s> weights(new (std::nothrow) moert_weights_s());
  if (!weights)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  MOERT_RETURN_IF_ERROR(moert::Annotate(
      moert::MappedFile::Open(path, &weights->file), "safetensors file"));
  const uint8_t *base = weights->file->data();
  size_t size = weights->file->size();
  std::string what = "safetensors file '" + std::string(path) + "'";
  return Finish(std::move(weights), base, size, /*copy=*/false, what.c_str(),
                out_weights);
}

MOERT_API_EXPORT moert_status_t moert_weights_parse_safetensors(
    const void *data, size_t size, moert_weights_t **out_weights) {
  if (!out_weights)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_weights is NULL");
  *out_weights = nullptr;
  if (!data && size > 0)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "data is NULL");
  return CopyAndFinish(data, size, "safetensors buffer", out_weights);
}

MOERT_API_EXPORT moert_status_t moert_weights_load_safetensors_ex(
    const char *path, moert_weights_placement placement,
    moert_weights_t **out_weights) {
  if (placement == MOERT_WEIGHTS_MAP)
    return moert_weights_load_safetensors(path, out_weights);
  if (!out_weights)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_weights is NULL");
  *out_weights = nullptr;
  if (placement != MOERT_WEIGHTS_HUGE_PAGES)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "unknown weights placement %d",
                             static_cast<int>(placement));
  if (!path)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "path is NULL");
  std::unique_ptr<moert::MappedFile> file;
  MOERT_RETURN_IF_ERROR(
      moert::Annotate(moert::MappedFile::Open(path, &file), "safetensors file"));
  std::string what = "safetensors file '" + std::string(path) + "'";
  return CopyAndFinish(file->data(), file->size(), what.c_str(), out_weights);
}

MOERT_API_EXPORT moert_status_t moert_weights_create_empty(
    moert_weights_t **out_weights) {
  if (!out_weights)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_weights is NULL");
  *out_weights = new (std::nothrow) moert_weights_s();
  if (!*out_weights)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  return nullptr;
}

MOERT_API_EXPORT void moert_weights_retain(moert_weights_t *weights) {
  if (weights)
    weights->refs.fetch_add(1, std::memory_order_relaxed);
}

MOERT_API_EXPORT void moert_weights_release(moert_weights_t *weights) {
  if (weights && weights->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete weights;
}

MOERT_API_EXPORT int64_t moert_weights_count(const moert_weights_t *weights) {
  return weights ? static_cast<int64_t>(weights->tensors.size()) : 0;
}

MOERT_API_EXPORT const char *moert_weights_name(const moert_weights_t *weights,
                                                int64_t index) {
  if (!weights || index < 0 ||
      index >= static_cast<int64_t>(weights->names.size()))
    return nullptr;
  return weights->names[static_cast<size_t>(index)].c_str();
}

MOERT_API_EXPORT const moert_tensor_t *moert_weights_tensor(
    const moert_weights_t *weights, int64_t index) {
  if (!weights || index < 0 ||
      index >= static_cast<int64_t>(weights->tensors.size()))
    return nullptr;
  return weights->tensors[static_cast<size_t>(index)];
}

MOERT_API_EXPORT const moert_tensor_t *moert_weights_find(
    const moert_weights_t *weights, const char *name) {
  if (!weights || !name)
    return nullptr;
  std::string_view key(name);
  auto it = std::lower_bound(
      weights->by_name.begin(), weights->by_name.end(), key,
      [&](int64_t i, std::string_view k) {
        return std::string_view(weights->names[static_cast<size_t>(i)]) < k;
      });
  if (it == weights->by_name.end() ||
      weights->names[static_cast<size_t>(*it)] != key)
    return nullptr;
  return weights->tensors[static_cast<size_t>(*it)];
}

} // extern "C"
