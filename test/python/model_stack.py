# RUN: %PYTHON %s | moe-opt | FileCheck %s
# RUN: %PYTHON %s | moe-opt -moe-decompose | FileCheck %s --check-prefix=DECOMP

# Three OLMoE blocks stacked as h = h + moe(rms_norm(h)), then a final
# RMSNorm; bf16 storage with the norm statistics in f32.

from moe_frontend import get_preset, model_from_hf_config

print(model_from_hf_config(get_preset("olmoe-small"), num_layers=3, dtype="bf16",
                           name="olmoe_stack").to_mlir())

# CHECK-LABEL: func.func @olmoe_stack(
# CHECK-SAME: %[[X:[^:]*]]: tensor<?x64xbf16> {moe.name = "input"}
# CHECK-SAME: {moe.name = "layers.2.w2"}
# CHECK-SAME: %[[FN:[^:]*]]: tensor<64xbf16> {moe.name = "final_norm"}
# CHECK: %[[EPS:.*]] = arith.constant 9.99999974E-6 : f32
# CHECK: tensor.dim %[[X]]
# CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
# CHECK: arith.extf
# CHECK: arith.addf %{{.*}}, %[[EPS]] : f32
# CHECK: math.rsqrt
# CHECK: arith.truncf
# CHECK: %[[Y0:.*]] = moe.layer {{.*}}routing = #moe.routing<k = 4>
# CHECK: %[[H1:.*]] = linalg.generic {{.*}} ins(%[[X]], %[[Y0]] :
# CHECK: math.rsqrt
# CHECK: %[[Y1:.*]] = moe.layer
# CHECK: linalg.generic {{.*}} ins(%[[H1]], %[[Y1]] :
# CHECK: moe.layer
# CHECK: ins(%{{.*}}, %{{.*}}, %[[FN]] :
# CHECK: return

# DECOMP-LABEL: func.func @olmoe_stack(
# DECOMP-COUNT-3: moe.route
# DECOMP-NOT: moe.layer
