# RUN: %PYTHON %s | moe-opt | FileCheck %s
# RUN: %PYTHON %s | moe-opt -moe-decompose | FileCheck %s --check-prefix=DECOMP

# Switch Transformers (HF v4): top-1, weight = max probability, relu MLP
# experts, fixed expert_capacity in token order, dropped tokens pass through.
# Sixteen tokens make the padded dispatch fully static: [E, C, D] = [8, 4, 64].

from moe_frontend import get_preset, model_from_hf_config

print(model_from_hf_config(get_preset("switch-small"), num_layers=1, tokens=16).to_mlir())

# CHECK-LABEL: func.func @switch_transformers(
# CHECK-SAME: {moe.name = "encoder.layers.1.norm"}
# CHECK-SAME: tensor<8x64x128xf32> {moe.name = "encoder.layers.1.w1"}
# CHECK-SAME: tensor<8x128x64xf32> {moe.name = "encoder.layers.1.w2"}
# CHECK: moe.layer %{{.*}} : tensor<16x64xf32> router(%{{.*}} : tensor<64x8xf32>) w1(%{{.*}} : tensor<8x64x128xf32>) w2(%{{.*}} : tensor<8x128x64xf32>) {capacity = #moe.capacity<formula = fixed, fixed = 4, on_drop = pass_through>, ffn = #moe.ffn<kind = mlp, activation = relu>, routing = #moe.routing<k = 1>} -> tensor<16x64xf32>

# DECOMP-LABEL: func.func @switch_transformers(
# DECOMP: moe.route %{{.*}} {routing = #moe.routing<k = 1>} : tensor<16x8xf32> -> tensor<16x1xf32>, tensor<16x1xi32>
# DECOMP: moe.dispatch %[[IN:.*]], %{{.*}}, %{{.*}} {capacity = #moe.capacity<formula = fixed, fixed = 4, on_drop = pass_through>}
# DECOMP-SAME: -> tensor<8x4x64xf32>, tensor<8x4xi32>, tensor<8xi32>, tensor<16x1xi32>, tensor<16x1xf32>
# DECOMP: arith.maximumf
# DECOMP: moe.combine %{{.*}} passthrough(%[[IN]] : tensor<16x64xf32>)
