# RUN: %PYTHON %s | moe-opt | FileCheck %s
# RUN: %PYTHON %s | moe-opt -moe-decompose | FileCheck %s --check-prefix=DECOMP

# DeepSeek-V3: sigmoid scores, e_score_correction_bias for the choice only,
# grouped top-k (4 groups, keep 2), renormalised with 1e-20, x 2.5; the two
# shared experts merged into one ungated GLU of width 2 x 32. Layer 0 is
# dense (first_k_dense_replace = 1), so the MoE blocks are layers 1 and 2.

from moe_frontend import get_preset, model_from_hf_config

print(model_from_hf_config(get_preset("deepseek-v3-small"), dtype="bf16").to_mlir())

# CHECK-LABEL: func.func @deepseek_v3(
# CHECK-SAME: %[[B:[^:]*]]: tensor<16xbf16> {moe.name = "layers.1.selection_bias"}
# CHECK-SAME: {moe.name = "layers.2.router"}
# CHECK: moe.layer %{{.*}} : tensor<?x64xbf16> router(%{{.*}} : tensor<64x16xbf16>) selection_bias(%[[B]] : tensor<16xbf16>)
# CHECK-SAME: shared_w1(%{{.*}} : tensor<1x64x64xbf16>)
# CHECK-NOT: shared_gate
# CHECK-SAME: {ffn = #moe.ffn<>, routing = #moe.routing<policy = grouped_top_k, k = 4, score = sigmoid, normalize = selected, scaling = 2.5, num_groups = 4, top_groups = 2, epsilon = 1.0e-20>}
# CHECK: moe.layer
# CHECK-SAME: routing = #moe.routing<policy = grouped_top_k

# DECOMP-LABEL: func.func @deepseek_v3(
# DECOMP: moe.route %{{.*}} bias(%{{.*}} : tensor<16xf32>) {routing = #moe.routing<policy = grouped_top_k, k = 4, score = sigmoid, normalize = selected, scaling = 2.5, num_groups = 4, top_groups = 2, epsilon = 1.0e-20>} : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
# DECOMP: moe.route
# DECOMP-NOT: moe.layer
