"""Attribute rendering, layer operands and model emission."""

import re
import unittest

import support
from moe_frontend.compile import compile_ir
from moe_frontend.layers import FFN, Capacity, Model, MoELayer, Routing


class RoutingTest(unittest.TestCase):
    def test_defaults_omitted_k_always_printed(self):
        self.assertEqual(Routing(k=2).render(), "#moe.routing<k = 2>")
        self.assertEqual(Routing(k=2, normalize="selected").render(),
                         "#moe.routing<k = 2, normalize = selected>")

    def test_declaration_order_and_floats(self):
        r = Routing(policy="grouped_top_k", k=8, score="sigmoid", normalize="selected",
                    scaling=2.5, num_groups=8, top_groups=4, epsilon=1e-20,
                    mask_with_zero=True)
        self.assertEqual(
            r.render(),
            "#moe.routing<policy = grouped_top_k, k = 8, score = sigmoid, "
            "normalize = selected, scaling = 2.5, num_groups = 8, top_groups = 4, "
            "mask_with_zero = true, epsilon = 1.0e-20>")

    def test_integer_valued_floats_print_with_point(self):
        self.assertIn("scaling = 2.0", Routing(k=1, scaling=2).render())

    def test_every_field_renders(self):
        r = Routing(policy="top_p", k=3, score="identity", normalize="selected",
                    tie_break="higher_index", scaling=0.5, top_p=0.9, threshold=0.1,
                    null_experts=1, sinkhorn_iterations=5, capacity_factor=2.0,
                    jitter_eps=0.02, epsilon=1e-6, group_score_k=1)
        text = r.render()
        for name in ("policy", "k", "score", "normalize", "tie_break", "scaling", "top_p",
                     "threshold", "group_score_k", "null_experts", "sinkhorn_iterations",
                     "capacity_factor", "jitter_eps", "epsilon"):
            self.assertIn(name + " = ", text)

    def test_print_order_covers_every_field(self):
        from dataclasses import fields
        self.assertEqual(sorted(Routing.PRINT_ORDER), sorted(f.name for f in fields(Routing)))

    def test_k_is_required(self):
        with self.assertRaises(TypeError):
            Routing()
        self.assertEqual(Routing(3).k, 3)

    def test_validation(self):
        bad = [
            dict(k=0), dict(k=2, policy="bogus"), dict(k=2, score="softmax_selected",
                                                       normalize="selected"),
            dict(k=2, num_groups=2), dict(k=3, policy="sparse_mixer"),
            dict(k=2, top_p=0.0), dict(k=2, threshold=1.5), dict(k=2, scaling=0.0),
            dict(k=2, epsilon=-1.0), dict(k="2"), dict(k=2, mask_with_zero=1),
            dict(k=2, policy="expert_choice", null_experts=1),
            dict(k=2, policy="grouped_top_k", num_groups=2, top_groups=3),
            dict(k=2, scaling=float("inf")),
        ]
        for kwargs in bad:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(ValueError):
                    Routing(**kwargs).render()


class CapacityFFNTest(unittest.TestCase):
    def test_capacity(self):
        self.assertEqual(Capacity().render(), "#moe.capacity<>")
        self.assertEqual(
            Capacity(formula="fixed", fixed=64, on_drop="pass_through").render(),
            "#moe.capacity<formula = fixed, fixed = 64, on_drop = pass_through>")
        self.assertEqual(
            Capacity(factor=1.25, min_capacity=4, align=8, order="choice_major",
                     renormalize=True).render(),
            "#moe.capacity<factor = 1.25, min_capacity = 4, align = 8, "
            "order = choice_major, renormalize = true>")

    def test_capacity_validation(self):
        for kwargs in (dict(formula="fixed"), dict(factor=0.0), dict(align=0),
                       dict(min_capacity=-1), dict(on_drop="pass_through", renormalize=True),
                       dict(order="random")):
            with self.subTest(kwargs=kwargs), self.assertRaises(ValueError):
                Capacity(**kwargs).render()

    def test_capacity_formula(self):
        self.assertEqual(Capacity(factor=1.0).capacity_for(10, 2, 4), 5)
        self.assertEqual(Capacity(factor=1.0, formula="tutel").capacity_for(10, 2, 4), 6)
        self.assertEqual(Capacity(formula="fixed", fixed=3, align=4).capacity_for(99, 1, 2), 4)
        self.assertEqual(Capacity(min_capacity=7).capacity_for(4, 1, 4), 7)

    def test_ffn(self):
        self.assertEqual(FFN().render(), "#moe.ffn<>")
        self.assertEqual(FFN(kind="mlp", activation="relu").render(),
                         "#moe.ffn<kind = mlp, activation = relu>")
        self.assertEqual(
            FFN(gate_up="interleaved", layout="out_in", alpha=1.702, limit=7.0,
                up_shift=1.0).render(),
            "#moe.ffn<gate_up = interleaved, layout = out_in, alpha = 1.702, "
            "up_shift = 1.0, limit = 7.0>")

    def test_ffn_validation(self):
        for kwargs in (dict(kind="mlp", gate_up="concatenated"), dict(alpha=0.0),
                       dict(activation="relu", alpha=2.0), dict(kind="mlp", limit=1.0),
                       dict(limit=-1.0), dict(activation="tanh")):
            with self.subTest(kwargs=kwargs), self.assertRaises(ValueError):
                FFN(**kwargs).render()


def mixtral_layer(**kw):
    return MoELayer(d_model=64, d_ff=128, num_experts=8,
                    routing=Routing(k=2, normalize="selected"), **kw)


class MoELayerTest(unittest.TestCase):
    def test_operands_in_order(self):
        layer = MoELayer(d_model=16, d_ff=32, num_experts=4, routing=Routing(k=2),
                         router_bias=True, selection_bias=True, b1=True, b2=True,
                         num_shared_experts=2, shared_d_ff=8, shared_gate=True)
        names = [n for n, _ in layer.operand_types()]
        self.assertEqual(names, ["router", "router_bias", "selection_bias", "w1", "w3", "w2",
                                 "b1", "b2", "shared_w1", "shared_w3", "shared_w2",
                                 "shared_gate"])
        types = dict((n, str(t)) for n, t in layer.operand_types())
        self.assertEqual(types["router"], "tensor<16x4xf32>")
        self.assertEqual(types["w1"], "tensor<4x16x32xf32>")
        self.assertEqual(types["w2"], "tensor<4x32x16xf32>")
        self.assertEqual(types["b1"], "tensor<4x32xf32>")
        self.assertEqual(types["b2"], "tensor<4x16xf32>")
        self.assertEqual(types["shared_w1"], "tensor<2x16x8xf32>")
        self.assertEqual(types["shared_w2"], "tensor<2x8x16xf32>")
        self.assertEqual(types["shared_gate"], "tensor<16x1xf32>")

    def test_out_in_layout_transposes_every_matrix(self):
        layer = mixtral_layer(ffn=FFN(layout="out_in"), num_shared_experts=1,
                              shared_d_ff=16, shared_gate=True, dtype="bf16")
        types = dict((n, str(t)) for n, t in layer.operand_types())
        self.assertEqual(types["router"], "tensor<8x64xbf16>")
        self.assertEqual(types["w1"], "tensor<8x128x64xbf16>")
        self.assertEqual(types["w2"], "tensor<8x64x128xbf16>")
        self.assertEqual(types["shared_w1"], "tensor<1x16x64xbf16>")
        self.assertEqual(types["shared_gate"], "tensor<1x64xbf16>")

    def test_fused_gate_up_doubles_w1_and_drops_w3(self):
        layer = mixtral_layer(ffn=FFN(gate_up="concatenated"), b1=True)
        types = dict((n, str(t)) for n, t in layer.operand_types())
        self.assertNotIn("w3", types)
        self.assertEqual(types["w1"], "tensor<8x64x256xf32>")
        self.assertEqual(types["b1"], "tensor<8x256xf32>")

    def test_mlp_has_no_w3(self):
        layer = mixtral_layer(ffn=FFN(kind="mlp", activation="gelu"))
        self.assertNotIn("w3", dict(layer.operand_types()))

    def test_null_experts_widen_router(self):
        layer = MoELayer(16, 32, 4, Routing(k=2, null_experts=2))
        self.assertEqual(str(dict(layer.operand_types())["router"]), "tensor<16x6xf32>")

    def test_op_text(self):
        text = mixtral_layer().to_mlir()
        self.assertIn(
            "moe.layer %input : tensor<?x64xf32> router(%router : tensor<64x8xf32>) "
            "w1(%w1 : tensor<8x64x128xf32>) w3(%w3 : tensor<8x64x128xf32>) "
            "w2(%w2 : tensor<8x128x64xf32>) {ffn = #moe.ffn<>, routing = "
            "#moe.routing<k = 2, normalize = selected>} -> tensor<?x64xf32>", text)
        self.assertIn('{moe.name = "w1"}', text)

    def test_attribute_dict_order(self):
        layer = mixtral_layer(capacity=Capacity(factor=2.0))
        self.assertTrue(layer.attribute_dict().startswith("{capacity = #moe.capacity<factor"))

    def test_validation(self):
        bad = [
            dict(routing=Routing(k=9)),
            dict(dtype="f64"),
            dict(routing=Routing(k=2, policy="grouped_top_k", num_groups=3)),
            dict(routing=Routing(k=8, policy="grouped_top_k", num_groups=4, top_groups=1)),
            dict(routing=Routing(k=1, policy="grouped_top_k", num_groups=8, group_score_k=2)),
            dict(routing=Routing(k=2, policy="sinkhorn"), selection_bias=True),
            dict(routing=Routing(k=2, policy="expert_choice"), capacity=Capacity()),
            dict(shared_gate=True),
            dict(num_shared_experts=1),
            dict(routing=Routing(k=2, policy="top_p", score="softmax_selected")),
        ]
        for kwargs in bad:
            args = dict(d_model=64, d_ff=128, num_experts=8, routing=Routing(k=2))
            args.update(kwargs)
            with self.subTest(kwargs=kwargs), self.assertRaises(ValueError):
                MoELayer(**args).to_mlir()
        with self.assertRaises(ValueError):
            MoELayer(0, 128, 8, Routing(k=2)).to_mlir()


class ModelTest(unittest.TestCase):
    def test_stack_names_and_structure(self):
        model = Model([mixtral_layer(), mixtral_layer()], norm_eps=1e-5)
        text = model.to_mlir()
        for name in ("input", "layers.0.norm", "layers.0.router", "layers.0.w1",
                     "layers.1.w2", "final_norm"):
            self.assertIn(f'{{moe.name = "{name}"}}', text)
        self.assertEqual(text.count("moe.layer "), 2)
        self.assertEqual(text.count("math.rsqrt"), 3)
        self.assertIn("arith.constant 1.0e-05 : f32", text)
        self.assertIn("tensor.dim %input", text)

    def test_static_tokens_and_no_norm(self):
        model = Model([mixtral_layer()], tokens=16, rms_norm=False, final_norm=False)
        text = model.to_mlir()
        self.assertNotIn("tensor.dim", text)
        self.assertNotIn("rsqrt", text)
        self.assertIn("tensor<16x64xf32>", text)

    def test_bf16_norm_computes_in_f32(self):
        text = Model([mixtral_layer(dtype="bf16")]).to_mlir()
        self.assertIn("arith.extf", text)
        self.assertIn("arith.truncf", text)

    def test_mismatched_layers(self):
        other = MoELayer(32, 64, 4, Routing(k=1))
        with self.assertRaises(ValueError):
            Model([mixtral_layer(), other]).to_mlir()
        with self.assertRaises(ValueError):
            Model([]).to_mlir()
        with self.assertRaises(ValueError):
            Model([mixtral_layer()], tokens=0).to_mlir()


@unittest.skipIf(support.moe_opt_path() is None, "moe-opt is not built")
class MoeOptAcceptsTest(unittest.TestCase):
    """The emitted text is accepted, and already in moe-opt's printed form."""

    VARIANTS = {
        "mixtral": mixtral_layer(),
        "everything": MoELayer(
            d_model=16, d_ff=32, num_experts=4,
            routing=Routing(policy="grouped_top_k", k=2, score="sigmoid",
                            normalize="selected", num_groups=2, top_groups=1,
                            scaling=2.5, epsilon=1e-20),
            ffn=FFN(gate_up="interleaved", layout="out_in", alpha=1.702, limit=7.0,
                    up_shift=1.0),
            capacity=Capacity(factor=1.25, order="score", renormalize=True),
            router_bias=True, selection_bias=True, b1=True, b2=True,
            num_shared_experts=2, shared_d_ff=8, shared_gate=True, dtype="bf16"),
        "switch": MoELayer(16, 32, 4, Routing(k=1), ffn=FFN(kind="mlp", activation="relu"),
                           capacity=Capacity(formula="fixed", fixed=3,
                                             on_drop="pass_through")),
    }

    def test_round_trip(self):
        for name, layer in self.VARIANTS.items():
            with self.subTest(name):
                printed = compile_ir(layer.to_mlir(), "moe")
                attrs = re.search(r"moe\.layer .*?(\{capacity.*|\{ffn.*)-> ", printed).group(1)
                self.assertEqual(attrs.strip(), layer.attribute_dict())
                compile_ir(layer.to_mlir(tokens=8), "decomposed")

    def test_model_decomposes(self):
        for dtype in ("f32", "f16", "bf16"):
            with self.subTest(dtype=dtype):
                model = Model([MoELayer(16, 32, 4, Routing(k=2), dtype=dtype)] * 2)
                out = compile_ir(model.to_mlir(), "decomposed")
                self.assertNotIn("moe.layer", out)
                self.assertIn("moe.route", out)


if __name__ == "__main__":
    unittest.main()
