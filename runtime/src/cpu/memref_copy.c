/*===- memref_copy.c - memrefCopy for compiled models ---------------------===*
 *
 * MLIR lowers a memref.copy between non-contiguous views to a call to
 * `memrefCopy`, which upstream ships in libmlir_c_runner_utils. A model
 * library must not depend on LLVM/MLIR at run time, so the kernels provide
 * the same ABI: (element size, unranked source, unranked destination).
 *===----------------------------------------------------------------------===*/

#include <stdint.h>
#include <string.h>

typedef struct {
  int64_t rank;
  void *descriptor;
} moert_unranked_memref;

/* Layout of a ranked descriptor: allocated, aligned, offset, sizes[rank],
 * strides[rank]. */
typedef struct {
  char *allocated;
  char *aligned;
  int64_t offset;
  int64_t sizes_and_strides[];
} moert_ranked_memref;

__attribute__((visibility("default"))) void
memrefCopy(int64_t elem_size, moert_unranked_memref *src_arg,
           moert_unranked_memref *dst_arg) {
  if (!src_arg || !dst_arg || src_arg->rank != dst_arg->rank || elem_size <= 0)
    return;
  int64_t rank = src_arg->rank;
  const moert_ranked_memref *src = src_arg->descriptor;
  const moert_ranked_memref *dst = dst_arg->descriptor;
  const int64_t *sizes = src->sizes_and_strides;
  const int64_t *src_strides = src->sizes_and_strides + rank;
  const int64_t *dst_strides = dst->sizes_and_strides + rank;
  char *src_ptr = src->aligned + src->offset * elem_size;
  char *dst_ptr = dst->aligned + dst->offset * elem_size;

  int64_t total = 1;
  for (int64_t i = 0; i < rank; ++i) {
    if (sizes[i] != dst->sizes_and_strides[i] || sizes[i] < 0)
      return; /* shapes disagree: copying would overflow one side */
    total *= sizes[i];
  }
  if (total == 0)
    return;
  if (rank == 0) {
    memcpy(dst_ptr, src_ptr, (size_t)elem_size);
    return;
  }

  /* Walk the index space with an odometer, copying innermost rows. */
  int64_t index[16] = {0};
  if (rank > 16)
    return;
  int64_t inner = sizes[rank - 1];
  int contiguous = src_strides[rank - 1] == 1 && dst_strides[rank - 1] == 1;
  for (;;) {
    int64_t src_off = 0, dst_off = 0;
    for (int64_t i = 0; i < rank - 1; ++i) {
      src_off += index[i] * src_strides[i];
      dst_off += index[i] * dst_strides[i];
    }
    if (contiguous) {
      memmove(dst_ptr + dst_off * elem_size, src_ptr + src_off * elem_size,
              (size_t)(inner * elem_size));
    } else {
      for (int64_t j = 0; j < inner; ++j)
        memmove(dst_ptr + (dst_off + j * dst_strides[rank - 1]) * elem_size,
                src_ptr + (src_off + j * src_strides[rank - 1]) * elem_size,
                (size_t)elem_size);
    }
    int64_t d = rank - 2;
    while (d >= 0 && ++index[d] == sizes[d])
      index[d--] = 0;
    if (d < 0)
      return;
  }
}
