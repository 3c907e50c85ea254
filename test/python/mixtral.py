# RUN: %PYTHON %s | moe-opt | FileCheck %s
# RUN: %PYTHON %s | moe-opt -moe-decompose | FileCheck %s --check-prefix=DECOMP

# Mixtral: softmax over all experts, top-2, always renormalised; silu GLU
# experts with separate gate (w1) and up (w3) weights.

from moe_frontend import get_preset, model_from_hf_config

print(model_from_hf_config(get_preset("mixtral-small"), num_layers=1).to_mlir())

# CHECK-LABEL: func.func @mixtral(
# CHECK-SAME: %[[X:.*]]: tensor<?x64xf32> {moe.name = "input"}
# CHECK-SAME: tensor<64xf32> {moe.name = "layers.0.norm"}
# CHECK-SAME: %[[WG:[^:]*]]: tensor<64x8xf32> {moe.name = "layers.0.router"}
# CHECK-SAME: %[[W1:[^:]*]]: tensor<8x64x128xf32> {moe.name = "layers.0.w1"}
# CHECK-SAME: %[[W3:[^:]*]]: tensor<8x64x128xf32> {moe.name = "layers.0.w3"}
# CHECK-SAME: %[[W2:[^:]*]]: tensor<8x128x64xf32> {moe.name = "layers.0.w2"}
# CHECK-SAME: tensor<64xf32> {moe.name = "final_norm"}
# CHECK: %[[Y:.*]] = moe.layer %{{.*}} : tensor<?x64xf32> router(%[[WG]] : tensor<64x8xf32>) w1(%[[W1]] : tensor<8x64x128xf32>) w3(%[[W3]] : tensor<8x64x128xf32>) w2(%[[W2]] : tensor<8x128x64xf32>) {ffn = #moe.ffn<>, routing = #moe.routing<k = 2, normalize = selected>} -> tensor<?x64xf32>
# CHECK: linalg.generic
# CHECK-SAME: ins(%[[X]], %[[Y]] :
# CHECK: return

# DECOMP-LABEL: func.func @mixtral(
# DECOMP: linalg.matmul
# DECOMP: moe.route %{{.*}} {routing = #moe.routing<k = 2, normalize = selected>} : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
# DECOMP: moe.dispatch
# DECOMP-SAME: -> tensor<?x64xf32>, tensor<?xi32>, tensor<8xi32>, tensor<?x2xi32>, tensor<?x2xf32>
# DECOMP: moe.experts
# DECOMP: moe.yield
# DECOMP: moe.combine
# DECOMP-NOT: moe.layer
