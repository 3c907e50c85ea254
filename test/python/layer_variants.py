# RUN: %PYTHON %s | moe-opt | FileCheck %s
# RUN: %PYTHON %s | moe-opt -moe-decompose | FileCheck %s --check-prefix=DECOMP

# Single layers built directly from the dataclasses: nn.Linear ([out, in])
# storage with a fused, interleaved gate/up and biases (GPT-OSS style), and a
# GShard-style capacity with null experts.

from moe_frontend import FFN, Capacity, MoELayer, Module, Routing

module = Module()
gptoss = MoELayer(d_model=32, d_ff=16, num_experts=4,
                  routing=Routing(k=2, score="softmax_selected"),
                  ffn=FFN(gate_up="interleaved", layout="out_in", alpha=1.702, limit=7.0,
                          up_shift=1.0),
                  router_bias=True, b1=True, b2=True, dtype="f16")
fn = module.add_function("gpt_oss_like")
x = fn.add_argument("x", gptoss.input_type())
fn.ret([gptoss.emit(fn, x, gptoss.add_weight_arguments(fn, "mlp."))])

gshard = MoELayer(d_model=32, d_ff=64, num_experts=4,
                  routing=Routing(k=2, null_experts=2, tie_break="higher_index"),
                  ffn=FFN(kind="mlp", activation="gelu_tanh"),
                  capacity=Capacity(factor=1.5, order="choice_major", min_capacity=2,
                                    renormalize=True))
fn = module.add_function("gshard_like")
x = fn.add_argument("x", gshard.input_type(8))
fn.ret([gshard.emit(fn, x, gshard.add_weight_arguments(fn, ""))])
print(module)

# CHECK-LABEL: func.func @gpt_oss_like(
# CHECK: moe.layer %{{.*}} : tensor<?x32xf16> router(%{{.*}} : tensor<4x32xf16>) router_bias(%{{.*}} : tensor<4xf16>) w1(%{{.*}} : tensor<4x32x32xf16>) w2(%{{.*}} : tensor<4x32x16xf16>) b1(%{{.*}} : tensor<4x32xf16>) b2(%{{.*}} : tensor<4x32xf16>) {ffn = #moe.ffn<gate_up = interleaved, layout = out_in, alpha = 1.702, up_shift = 1.0, limit = 7.0>, routing = #moe.routing<k = 2, score = softmax_selected>} -> tensor<?x32xf16>
# CHECK-LABEL: func.func @gshard_like(
# CHECK: moe.layer %{{.*}} : tensor<8x32xf32> router(%{{.*}} : tensor<32x6xf32>)
# CHECK-SAME: {capacity = #moe.capacity<factor = 1.5, min_capacity = 2, order = choice_major, renormalize = true>, ffn = #moe.ffn<kind = mlp, activation = gelu_tanh>, routing = #moe.routing<k = 2, tie_break = higher_index, null_experts = 2>}

# DECOMP-LABEL: func.func @gpt_oss_like(
# DECOMP: moe.experts
# DECOMP: tensor.extract_slice {{.*}}[1, 2]
# DECOMP: arith.truncf {{.*}} : f32 to f16
# DECOMP-LABEL: func.func @gshard_like(
# DECOMP: moe.route {{.*}} : tensor<8x6xf32> -> tensor<8x2xf32>, tensor<8x2xi32>
# DECOMP: moe.dispatch
# DECOMP-SAME: -> tensor<4x6x32xf32>
# DECOMP: math.tanh
