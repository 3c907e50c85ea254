//===- tensor.cc - moert_tensor_t ------------------------------------------===//

#include <cstring>
#include <new>

#include "base/internal.h"

struct moert_tensor_s {
  int32_t dtype;
  int32_t rank;
  int64_t shape[MOERT_MAX_RANK];
  int64_t numel;
  size_t bytes;
  void *data;
  bool borrowed;                      // owned by another object
  moert_tensor_release_fn release_fn; // may be NULL
  void *user;
  void *release_arg;
};

namespace moert {

moert_status_t NewTensorOver(int32_t dtype, int32_t rank, const int64_t *shape,
                             void *data, bool borrowed,
                             moert_tensor_release_fn release_fn, void *user,
                             void *release_arg, moert_tensor_t **out) {
  *out = nullptr;
  int64_t numel;
  size_t bytes;
  MOERT_RETURN_IF_ERROR(CheckShape(dtype, rank, shape, &numel, &bytes));
  auto *t = new (std::nothrow) moert_tensor_s();
  if (!t)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory allocating a tensor");
  t->dtype = dtype;
  t->rank = rank;
  for (int32_t i = 0; i < rank; ++i)
    t->shape[i] = shape[i];
  t->numel = numel;
  t->bytes = bytes;
  t->data = data;
  t->borrowed = borrowed;
  t->release_fn = release_fn;
  t->user = user;
  t->release_arg = release_arg;
  *out = t;
  return nullptr;
}

void DestroyTensor(moert_tensor_t *tensor) {
  if (!tensor)
    return;
  if (tensor->release_fn)
    tensor->release_fn(tensor->user, tensor->release_arg);
  delete tensor;
}

} // namespace moert

namespace {

void FreeAligned(void *, void *data) { moert::AlignedFree(data); }

// Allocates an owned tensor (contents uninitialised unless `zero`).
moert_status_t Allocate(int32_t dtype, int32_t rank, const int64_t *shape,
                        bool zero, moert_tensor_t **out) {
  *out = nullptr;
  size_t bytes;
  MOERT_RETURN_IF_ERROR(moert::CheckShape(dtype, rank, shape, nullptr, &bytes));
  void *data = moert::AlignedAlloc(bytes);
  if (!data)
    return moert_status_make(MOERT_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory allocating %zu bytes for a tensor",
                             bytes);
  if (zero)
    std::memset(data, 0, bytes);
  moert_status_t s = moert::NewTensorOver(dtype, rank, shape, data, false,
                                          FreeAligned, nullptr, data, out);
  if (s)
    moert::AlignedFree(data);
  return s;
}

} // namespace

extern "C" {

MOERT_API_EXPORT moert_status_t moert_tensor_create(int32_t dtype, int32_t rank,
                                                    const int64_t *shape,
                                                    moert_tensor_t **out_tensor) {
  if (!out_tensor)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_tensor is NULL");
  return Allocate(dtype, rank, shape, true, out_tensor);
}

MOERT_API_EXPORT moert_status_t moert_tensor_create_copy(
    int32_t dtype, int32_t rank, const int64_t *shape, const void *data,
    size_t data_size, moert_tensor_t **out_tensor) {
  if (!out_tensor)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_tensor is NULL");
  *out_tensor = nullptr;
  size_t bytes;
  MOERT_RETURN_IF_ERROR(moert::CheckShape(dtype, rank, shape, nullptr, &bytes));
  if (data_size != bytes)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "data size %zu does not match the %zu bytes of a "
                             "%s tensor of shape %s",
                             data_size, bytes, moert_dtype_name(dtype),
                             moert::ShapeString(rank, shape).c_str());
  if (bytes > 0 && !data)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "data is NULL");
  moert_tensor_t *t;
  MOERT_RETURN_IF_ERROR(Allocate(dtype, rank, shape, false, &t));
  if (bytes > 0)
    std::memcpy(t->data, data, bytes);
  *out_tensor = t;
  return nullptr;
}

MOERT_API_EXPORT moert_status_t moert_tensor_wrap(
    int32_t dtype, int32_t rank, const int64_t *shape, void *data,
    size_t data_size, moert_tensor_release_fn release_fn, void *user,
    moert_tensor_t **out_tensor) {
  if (!out_tensor)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_tensor is NULL");
  *out_tensor = nullptr;
  size_t bytes;
  MOERT_RETURN_IF_ERROR(moert::CheckShape(dtype, rank, shape, nullptr, &bytes));
  if (data_size != bytes)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "data size %zu does not match the %zu bytes of a "
                             "%s tensor of shape %s",
                             data_size, bytes, moert_dtype_name(dtype),
                             moert::ShapeString(rank, shape).c_str());
  if (!data)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "data is NULL");
  if (reinterpret_cast<uintptr_t>(data) % moert_dtype_size(dtype) != 0)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "data %p is not aligned to the %zu-byte elements "
                             "of %s",
                             data, moert_dtype_size(dtype),
                             moert_dtype_name(dtype));
  return moert::NewTensorOver(dtype, rank, shape, data, false, release_fn, user,
                              data, out_tensor);
}

MOERT_API_EXPORT moert_status_t moert_tensor_clone(const moert_tensor_t *src,
                                                   moert_tensor_t **out_tensor) {
  if (!src)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "src is NULL");
  return moert_tensor_create_copy(src->dtype, src->rank, src->shape, src->data,
                                  src->bytes, out_tensor);
}

MOERT_API_EXPORT moert_status_t moert_tensor_convert(const moert_tensor_t *src,
                                                     int32_t dtype,
                                                     moert_tensor_t **out_tensor) {
  if (!out_tensor)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT,
                             "out_tensor is NULL");
  *out_tensor = nullptr;
  if (!src)
    return moert_status_make(MOERT_STATUS_INVALID_ARGUMENT, "src is NULL");
  if (src->dtype == dtype)
    return moert_tensor_clone(src, out_tensor);
  if (!moert_dtype_is_float(src->dtype) || !moert_dtype_is_float(dtype))
    return moert_status_make(
        MOERT_STATUS_UNIMPLEMENTED,
        "cannot convert a %s tensor to %s: only f32, f16 and bf16 convert",
        moert_dtype_name(src->dtype), moert_dtype_name(dtype));
  moert_tensor_t *t;
  MOERT_RETURN_IF_ERROR(Allocate(dtype, src->rank, src->shape, false, &t));
  moert_status_t s = moert_convert_floats(src->dtype, src->data, dtype, t->data,
                                          static_cast<size_t>(src->numel));
  if (s) {
    moert::DestroyTensor(t);
    return s;
  }
  *out_tensor = t;
  return nullptr;
}

MOERT_API_EXPORT void moert_tensor_release(moert_tensor_t *tensor) {
  if (!tensor || tensor->borrowed)
    return;
  moert::DestroyTensor(tensor);
}

MOERT_API_EXPORT int32_t moert_tensor_dtype(const moert_tensor_t *tensor) {
  return tensor->dtype;
}
MOERT_API_EXPORT int32_t moert_tensor_rank(const moert_tensor_t *tensor) {
  return tensor->rank;
}
MOERT_API_EXPORT const int64_t *moert_tensor_shape(const moert_tensor_t *tensor) {
  return tensor->shape;
}
MOERT_API_EXPORT int64_t moert_tensor_dim(const moert_tensor_t *tensor,
                                          int32_t axis) {
  if (axis < 0 || axis >= tensor->rank)
    return -1;
  return tensor->shape[axis];
}
MOERT_API_EXPORT int64_t moert_tensor_element_count(const moert_tensor_t *tensor) {
  return tensor->numel;
}
MOERT_API_EXPORT size_t moert_tensor_byte_size(const moert_tensor_t *tensor) {
  return tensor->bytes;
}
MOERT_API_EXPORT void *moert_tensor_data(moert_tensor_t *tensor) {
  return tensor->data;
}
MOERT_API_EXPORT const void *moert_tensor_const_data(
    const moert_tensor_t *tensor) {
  return tensor->data;
}

} // extern "C"
