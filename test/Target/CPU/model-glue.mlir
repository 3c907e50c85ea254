// RUN: moe-translate --moe-to-model-glue %s | FileCheck %s --check-prefix=GLUE
// RUN: moe-translate --moe-to-c-header %s | FileCheck %s --check-prefix=HEADER
// RUN: moe-translate --moe-to-model-glue %s > %t.c && %clang -fsyntax-only -Wall -Werror -I %moe_src_root/runtime/include %t.c
// RUN: moe-translate --moe-to-c-header %s > %t.h && %clang -fsyntax-only -Wall -Werror -x c -I %moe_src_root/runtime/include %t.h

// GLUE: static const int64_t moe_shape_layer_arg0[] = {-1, 16};
// GLUE: static const moert_tensor_desc moe_arg_layer[] = {
// GLUE-NEXT:   {"x", 0, 2, moe_shape_layer_arg0},
// GLUE-NEXT:   {"w", 2, 3, moe_shape_layer_arg1},
// GLUE: extern void _mlir_ciface_layer(moe_results_layer *, moe_memref_2 *, moe_memref_3 *);
// GLUE: static int moe_invoke_layer(const moert_view *args, moert_view *results) {
// GLUE:   if ((rc = moe_check(&args[0], 0, 2, moe_shape_layer_arg0, &dyn))) return rc;
// GLUE:   _mlir_ciface_layer(&res, &a0, &a1);
// GLUE:   moe_result(&results[1], res.r1.allocated, res.r1.aligned, res.r1.offset, res.r1.sizes, 1, 3, 4);
// GLUE: int tiny_layer(const moert_view *args, moert_view *results) {
// GLUE: void moert_model_set_parallel_hook(const moert_parallel_hook *hook) {
// GLUE-NEXT:   moert_cpu_set_parallel_hook(hook);
// GLUE: void moert_model_set_weight_cache(const moert_weight_cache *cache) {
// GLUE-NEXT:   moert_cpu_set_weight_cache(cache);
// GLUE: MOERT_MODEL_ABI_VERSION, "tiny", "cpu", 1, moe_entries, moe_free_result};
// GLUE: const moert_model_desc *moert_model_describe(void)

// HEADER: #ifndef MOE_MODEL_TINY_H
// HEADER: /* Entry point 'layer' (index 0).
// HEADER-NEXT:  *   arg 0 "x": f32 [T, 16]
// HEADER-NEXT:  *   arg 1 "w": bf16 [4, 16, 8]
// HEADER-NEXT:  *   result 0 "y": f32 [T, 16]
// HEADER-NEXT:  *   result 1 "result1": i32 [4]
// HEADER: #define TINY_LAYER_NUM_ARGS 2
// HEADER: int tiny_layer(const moert_view *args, moert_view *results);

module @tiny {
  func.func @layer(%x: tensor<?x16xf32> {moe.name = "x"}, %w: tensor<4x16x8xbf16> {moe.name = "w"})
      -> (tensor<?x16xf32> {moe.name = "y"}, tensor<4xi32>) {
    %c = arith.constant dense<0> : tensor<4xi32>
    return %x, %c : tensor<?x16xf32>, tensor<4xi32>
  }
  func.func private @not_exported(%x: tensor<?x16xf32>) -> tensor<?x16xf32> {
    return %x : tensor<?x16xf32>
  }
}
