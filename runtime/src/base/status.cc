//===- status.cc - moert_status_t and small shared helpers ----------------===//

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

#include "base/internal.h"

struct moert_status_s {
  moert_status_code_t code;
  const char *message; // points just past the struct, or to static text
};

namespace {

// Returned when a status cannot be allocated; moert_status_free ignores it.
moert_status_s kOutOfMemoryStatus = {
    MOERT_STATUS_RESOURCE_EXHAUSTED,
    "out of memory (while reporting an error)"};

} // namespace

namespace moert {

std::string StrFormat(const char *format, ...) {
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string out;
  if (n > 0) {
    out.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(out.data(), out.size(), format, args);
    out.resize(static_cast<size_t>(n));
  }
  va_end(args);
  return out;
}

moert_status_t MakeStatus(moert_status_code_t code, std::string_view message) {
  if (code == MOERT_STATUS_OK)
    return nullptr;
  size_t bytes = sizeof(moert_status_s) + message.size() + 1;
  void *mem = std::malloc(bytes);
  if (!mem)
    return &kOutOfMemoryStatus;
  auto *status = static_cast<moert_status_s *>(mem);
  char *text = reinterpret_cast<char *>(status + 1);
  if (!message.empty())
    std::memcpy(text, message.data(), message.size());
  text[message.size()] = '\0';
  status->code = code;
  status->message = text;
  return status;
}

moert_status_t Annotate(moert_status_t status, std::string_view prefix) {
  if (!status)
    return nullptr;
  if (status == &kOutOfMemoryStatus)
    return status;
  std::string text;
  try {
    text.reserve(prefix.size() + 2 + std::strlen(status->message));
    text.append(prefix).append(": ").append(status->message);
  } catch (const std::bad_alloc &) {
    return status;
  }
  moert_status_t annotated = MakeStatus(status->code, text);
  moert_status_free(status);
  return annotated;
}

void *AlignedAlloc(size_t bytes) {
  if (bytes == 0)
    bytes = 1;
  void *p = nullptr;
  if (posix_memalign(&p, 64, bytes) != 0)
    return nullptr;
  return p;
}

void *LargeAlloc(size_t bytes) {
  constexpr size_t kHugePage = size_t(2) << 20;
  if (bytes < kHugePage)
    return AlignedAlloc(bytes);
  void *p = nullptr;
  if (posix_memalign(&p, kHugePage, bytes) != 0)
    return nullptr;
#ifdef MADV_HUGEPAGE
  // Advice only: without transparent huge pages this fails harmlessly.
  (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

void AlignedFree(void *ptr) { std::free(ptr); }

std::string ShapeString(int32_t rank, const int64_t *shape) {
  std::string s = "[";
  for (int32_t i = 0; i < rank; ++i) {
    if (i)
      s += ", ";
    if (shape[i] < 0)
      s += "?";
    else
      s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    case '\b': out += "\\b"; break;
    case '\f': out += "\\f"; break;
    default:
      if (c < 0x20)
        out += StrFormat("\\u%04x", c);
      else
        out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

} // namespace moert

extern "C" {

MOERT_API_EXPORT moert_status_t moert_status_make(moert_status_code_t code,
                                                  const char *format, ...) {
  if (code == MOERT_STATUS_OK)
    return nullptr;
  if (!format)
    return moert::MakeStatus(code, moert_status_code_string(code));
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n < 0) {
    va_end(args);
    return moert::MakeStatus(code, moert_status_code_string(code));
  }
  size_t bytes = sizeof(moert_status_s) + static_cast<size_t>(n) + 1;
  void *mem = std::malloc(bytes);
  if (!mem) {
    va_end(args);
    return &kOutOfMemoryStatus;
  }
  auto *status = static_cast<moert_status_s *>(mem);
  char *text = reinterpret_cast<char *>(status + 1);
  std::vsnprintf(text, static_cast<size_t>(n) + 1, format, args);
  va_end(args);
  status->code = code;
  status->message = text;
  return status;
}

MOERT_API_EXPORT moert_status_code_t moert_status_code(moert_status_t status) {
  return status ? status->code : MOERT_STATUS_OK;
}

MOERT_API_EXPORT const char *moert_status_message(moert_status_t status) {
  return status ? status->message : "OK";
}

MOERT_API_EXPORT const char *moert_status_code_string(moert_status_code_t code) {
  switch (code) {
  case MOERT_STATUS_OK: return "OK";
  case MOERT_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
  case MOERT_STATUS_NOT_FOUND: return "NOT_FOUND";
  case MOERT_STATUS_OUT_OF_RANGE: return "OUT_OF_RANGE";
  case MOERT_STATUS_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
  case MOERT_STATUS_DATA_LOSS: return "DATA_LOSS";
  case MOERT_STATUS_UNIMPLEMENTED: return "UNIMPLEMENTED";
  case MOERT_STATUS_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
  case MOERT_STATUS_UNAVAILABLE: return "UNAVAILABLE";
  case MOERT_STATUS_INTERNAL: return "INTERNAL";
  }
  return "UNKNOWN";
}

MOERT_API_EXPORT void moert_status_free(moert_status_t status) {
  if (status && status != &kOutOfMemoryStatus)
    std::free(status);
}

MOERT_API_EXPORT void moert_free(void *ptr) { std::free(ptr); }

} // extern "C"
