# RUN: %PYTHON %s | moe-opt | FileCheck %s
# RUN: %PYTHON %s | moe-opt -moe-decompose | FileCheck %s --check-prefix=DECOMP

# Qwen2-MoE: top-4 of 8 without renormalisation (norm_topk_prob = false) and
# one shared GLU expert scaled by sigmoid(x shared_gate).

from moe_frontend import get_preset, model_from_hf_config

print(model_from_hf_config(get_preset("qwen2-moe-small"), num_layers=1, tokens=16,
                           final_norm=False).to_mlir())

# CHECK-LABEL: func.func @qwen2_moe(
# CHECK-SAME: tensor<1x64x128xf32> {moe.name = "layers.0.shared_w1"}
# CHECK-SAME: tensor<1x64x128xf32> {moe.name = "layers.0.shared_w3"}
# CHECK-SAME: tensor<1x128x64xf32> {moe.name = "layers.0.shared_w2"}
# CHECK-SAME: %[[G:[^:]*]]: tensor<64x1xf32> {moe.name = "layers.0.shared_gate"}
# CHECK: moe.layer %{{.*}} : tensor<16x64xf32> router(%{{.*}} : tensor<64x8xf32>) w1(%{{.*}} : tensor<8x64x32xf32>) w3(%{{.*}} : tensor<8x64x32xf32>) w2(%{{.*}} : tensor<8x32x64xf32>) shared_w1(%{{.*}} : tensor<1x64x128xf32>) shared_w3(%{{.*}} : tensor<1x64x128xf32>) shared_w2(%{{.*}} : tensor<1x128x64xf32>) shared_gate(%[[G]] : tensor<64x1xf32>) {ffn = #moe.ffn<>, routing = #moe.routing<k = 4>} -> tensor<16x64xf32>

# DECOMP-LABEL: func.func @qwen2_moe(
# DECOMP: moe.route %{{.*}} {routing = #moe.routing<k = 4>} : tensor<16x8xf32> -> tensor<16x4xf32>, tensor<16x4xi32>
# DECOMP: moe.combine
# The shared expert: gate logits, sigmoid, then one always-on expert.
# DECOMP: linalg.matmul ins(%{{.*}} : tensor<16x64xf32>, tensor<64x1xf32>)
# DECOMP: arith.negf
# DECOMP: math.exp
# DECOMP: moe.dispatch
# DECOMP-SAME: tensor<1xi32>
# DECOMP: moe.experts
# DECOMP: moe.combine
