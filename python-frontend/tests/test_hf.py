"""Hugging Face config mapping, one test class per model type."""

import json
import os
import tempfile
import unittest

import support
from moe_frontend.compile import compile_ir
from moe_frontend.hf import (_SIZE_KEYS, layer_from_hf_config, load_config, model_from_hf_config,
                             moe_layer_indices, supported_model_types)
from moe_frontend.layers import Capacity, FFN, Routing
from moe_frontend.presets import PRESETS, get_preset, preset_names


class MixtralTest(unittest.TestCase):
    def test_mapping(self):
        layer = layer_from_hf_config(get_preset("mixtral-8x7b"))
        self.assertEqual((layer.d_model, layer.d_ff, layer.num_experts), (4096, 14336, 8))
        self.assertEqual(layer.routing, Routing(k=2, normalize="selected"))
        self.assertEqual(layer.ffn, FFN())
        self.assertIsNone(layer.capacity)
        self.assertEqual(layer.num_shared_experts, 0)
        self.assertFalse(layer.selection_bias or layer.router_bias or layer.b1 or layer.b2)
        self.assertEqual(layer.dtype, "f32")

    def test_dtype_from_config(self):
        self.assertEqual(layer_from_hf_config(get_preset("mixtral-8x7b"), dtype="config").dtype,
                         "bf16")
        self.assertEqual(layer_from_hf_config(get_preset("mixtral-8x7b"),
                                              dtype="bfloat16").dtype, "bf16")

    def test_all_layers_are_moe(self):
        self.assertEqual(moe_layer_indices(get_preset("mixtral-8x7b")), list(range(32)))

    def test_v5_fused_layout(self):
        layer = layer_from_hf_config(get_preset("mixtral-small"), gate_up="concatenated",
                                     layout="out_in")
        self.assertEqual(layer.ffn, FFN(gate_up="concatenated", layout="out_in"))
        self.assertEqual(str(dict(layer.operand_types())["w1"]), "tensor<8x256x64xf32>")


class Qwen2MoeTest(unittest.TestCase):
    def test_mapping(self):
        layer = layer_from_hf_config(get_preset("qwen1.5-moe-a2.7b"))
        self.assertEqual((layer.d_model, layer.d_ff, layer.num_experts), (2048, 1408, 60))
        self.assertEqual(layer.routing, Routing(k=4))
        self.assertEqual((layer.num_shared_experts, layer.shared_d_ff, layer.shared_gate),
                         (1, 5632, True))

    def test_norm_topk_prob(self):
        cfg = get_preset("qwen2-moe-small")
        cfg["norm_topk_prob"] = True
        self.assertEqual(layer_from_hf_config(cfg).routing.normalize, "selected")
        del cfg["norm_topk_prob"]  # config-class default: False
        self.assertEqual(layer_from_hf_config(cfg).routing.normalize, "none")

    def test_sparse_step_and_mlp_only_layers(self):
        cfg = get_preset("qwen2-moe-small")
        cfg.update(num_hidden_layers=8, decoder_sparse_step=2, mlp_only_layers=[3])
        self.assertEqual(moe_layer_indices(cfg), [1, 5, 7])

    def test_shared_expert_required(self):
        cfg = get_preset("qwen2-moe-small")
        del cfg["shared_expert_intermediate_size"]
        with self.assertRaisesRegex(ValueError, "shared_expert_intermediate_size"):
            layer_from_hf_config(cfg)


class Qwen3MoeTest(unittest.TestCase):
    def test_mapping(self):
        layer = layer_from_hf_config(get_preset("qwen3-30b-a3b"))
        self.assertEqual((layer.d_model, layer.d_ff, layer.num_experts), (2048, 768, 128))
        self.assertEqual(layer.routing, Routing(k=8, normalize="selected"))
        self.assertEqual(layer.num_shared_experts, 0)

    def test_default_norm_is_false(self):
        cfg = get_preset("qwen3-moe-small")
        del cfg["norm_topk_prob"]
        self.assertEqual(layer_from_hf_config(cfg).routing.normalize, "none")


class OlmoeTest(unittest.TestCase):
    def test_mapping(self):
        layer = layer_from_hf_config(get_preset("olmoe-1b-7b"))
        self.assertEqual((layer.d_model, layer.d_ff, layer.num_experts), (2048, 1024, 64))
        self.assertEqual(layer.routing, Routing(k=8))
        self.assertEqual(layer.ffn, FFN())

    def test_eps(self):
        model = model_from_hf_config(get_preset("olmoe-small"))
        self.assertEqual(model.norm_eps, 1e-5)
        self.assertEqual(len(model.layers), 2)


class DeepseekV3Test(unittest.TestCase):
    def test_mapping(self):
        layer = layer_from_hf_config(get_preset("deepseek-v3"))
        self.assertEqual((layer.d_model, layer.d_ff, layer.num_experts), (7168, 2048, 256))
        self.assertEqual(layer.routing, Routing(
            policy="grouped_top_k", k=8, score="sigmoid", normalize="selected",
            epsilon=1e-20, scaling=2.5, num_groups=8, top_groups=4, group_score_k=2))
        self.assertTrue(layer.selection_bias)
        self.assertFalse(layer.router_bias)
        self.assertEqual((layer.num_shared_experts, layer.shared_d_ff, layer.shared_gate),
                         (1, 2048, False))
        self.assertEqual(str(dict(layer.operand_types())["selection_bias"]), "tensor<256xf32>")

    def test_shared_experts_merged(self):
        cfg = get_preset("deepseek-v3-small")
        cfg["n_shared_experts"] = 3
        layer = layer_from_hf_config(cfg)
        self.assertEqual((layer.num_shared_experts, layer.shared_d_ff), (1, 96))
        cfg["n_shared_experts"] = 0
        self.assertEqual(layer_from_hf_config(cfg).num_shared_experts, 0)

    def test_no_norm_keeps_scaling(self):
        cfg = get_preset("deepseek-v3-small")
        cfg["norm_topk_prob"] = False
        r = layer_from_hf_config(cfg).routing
        self.assertEqual((r.normalize, r.epsilon, r.scaling), ("none", 0.0, 2.5))

    def test_single_group_is_plain_top_k(self):
        cfg = get_preset("deepseek-v3-small")
        cfg.update(n_group=1, topk_group=1)
        r = layer_from_hf_config(cfg).routing
        self.assertEqual((r.policy, r.num_groups, r.top_groups), ("top_k", 1, 1))

    def test_group_mask_option(self):
        cfg = get_preset("deepseek-v3-small")
        self.assertFalse(layer_from_hf_config(cfg).routing.mask_with_zero)
        self.assertTrue(layer_from_hf_config(cfg, group_mask_with_zero=True)
                        .routing.mask_with_zero)

    def test_dense_layers_skipped(self):
        self.assertEqual(moe_layer_indices(get_preset("deepseek-v3"))[:2], [3, 4])
        model = model_from_hf_config(get_preset("deepseek-v3-small"))
        self.assertEqual(model.layer_prefixes, ["layers.1.", "layers.2."])

    def test_unsupported_scoring(self):
        for key, value in (("scoring_func", "softmax"), ("topk_method", "greedy")):
            cfg = get_preset("deepseek-v3-small")
            cfg[key] = value
            with self.subTest(key=key), self.assertRaisesRegex(ValueError, key):
                layer_from_hf_config(cfg)

    def test_bad_grouping(self):
        cfg = get_preset("deepseek-v3-small")
        cfg["n_group"] = 3
        with self.assertRaisesRegex(ValueError, "num_groups"):
            layer_from_hf_config(cfg)


class SwitchTest(unittest.TestCase):
    def test_mapping(self):
        layer = layer_from_hf_config(get_preset("switch-base-8"))
        self.assertEqual((layer.d_model, layer.d_ff, layer.num_experts), (768, 3072, 8))
        self.assertEqual(layer.routing, Routing(k=1))
        self.assertEqual(layer.ffn, FFN(kind="mlp", activation="relu"))
        self.assertEqual(layer.capacity, Capacity(formula="fixed", fixed=64,
                                                  on_drop="pass_through"))
        self.assertFalse(layer.router_bias)
        self.assertNotIn("w3", dict(layer.operand_types()))

    def test_router_bias(self):
        cfg = get_preset("switch-small")
        cfg["router_bias"] = True
        self.assertTrue(layer_from_hf_config(cfg).router_bias)

    def test_capacity_factor_and_v5(self):
        cfg = get_preset("switch-small")
        self.assertEqual(layer_from_hf_config(cfg, capacity_factor=1.25).capacity,
                         Capacity(factor=1.25, on_drop="pass_through"))
        self.assertIsNone(layer_from_hf_config(cfg, drop_tokens=False).capacity)

    def test_sparse_encoder_layers(self):
        self.assertEqual(moe_layer_indices(get_preset("switch-base-8")), [1, 3, 5, 7, 9, 11])
        model = model_from_hf_config(get_preset("switch-small"), num_layers=1)
        self.assertEqual(model.layer_prefixes, ["encoder.layers.1."])

    def test_router_dtype(self):
        cfg = get_preset("switch-small")
        cfg["router_dtype"] = "bfloat16"
        with self.assertRaisesRegex(ValueError, "router_dtype"):
            layer_from_hf_config(cfg)

    def test_gelu_activation(self):
        cfg = get_preset("switch-small")
        cfg["dense_act_fn"] = "gelu_new"
        self.assertEqual(layer_from_hf_config(cfg).ffn.activation, "gelu_tanh")


class ErrorsAndOptionsTest(unittest.TestCase):
    def test_unknown_model_type(self):
        with self.assertRaisesRegex(ValueError, "unsupported model_type 'llama'"):
            layer_from_hf_config({"model_type": "llama"})
        with self.assertRaisesRegex(ValueError, "no 'model_type'"):
            layer_from_hf_config({"hidden_size": 4})

    def test_missing_required_fields(self):
        required = {
            "mixtral-small": ["hidden_size", "intermediate_size", "num_local_experts",
                              "num_experts_per_tok"],
            "qwen2-moe-small": ["hidden_size", "moe_intermediate_size", "num_experts"],
            "qwen3-moe-small": ["moe_intermediate_size", "num_experts_per_tok"],
            "olmoe-small": ["intermediate_size", "num_experts"],
            "deepseek-v3-small": ["moe_intermediate_size", "n_routed_experts"],
            "switch-small": ["d_model", "d_ff", "num_experts"],
        }
        for preset, keys in required.items():
            for key in keys:
                cfg = get_preset(preset)
                del cfg[key]
                with self.subTest(preset=preset, key=key), \
                        self.assertRaisesRegex(ValueError, f"missing required field '{key}'"):
                    layer_from_hf_config(cfg)

    def test_bad_field_types(self):
        cfg = get_preset("mixtral-small")
        cfg["num_local_experts"] = "8"
        with self.assertRaisesRegex(ValueError, "num_local_experts.*integer"):
            layer_from_hf_config(cfg)
        cfg = get_preset("qwen3-moe-small")
        cfg["norm_topk_prob"] = "yes"
        with self.assertRaisesRegex(ValueError, "norm_topk_prob"):
            layer_from_hf_config(cfg)
        cfg = get_preset("mixtral-small")
        cfg["hidden_act"] = "mish"
        with self.assertRaisesRegex(ValueError, "hidden_act"):
            layer_from_hf_config(cfg)

    def test_k_larger_than_experts(self):
        cfg = get_preset("mixtral-small")
        cfg["num_experts_per_tok"] = 9
        with self.assertRaisesRegex(ValueError, "exceeds"):
            layer_from_hf_config(cfg)

    def test_size_overrides(self):
        layer = layer_from_hf_config(get_preset("qwen1.5-moe-a2.7b"), hidden_size=32,
                                     ffn_size=16, shared_ffn_size=24, num_experts=6)
        self.assertEqual((layer.d_model, layer.d_ff, layer.num_experts, layer.shared_d_ff),
                         (32, 16, 6, 24))
        ds = layer_from_hf_config(get_preset("deepseek-v3-small"), ffn_size=8)
        self.assertEqual((ds.d_ff, ds.shared_d_ff), (8, 16))  # 2 shared experts merged
        sw = layer_from_hf_config(get_preset("switch-base-8"), hidden_size=16, ffn_size=8,
                                  num_experts=2)
        self.assertEqual((sw.d_model, sw.d_ff, sw.num_experts), (16, 8, 2))
        with self.assertRaisesRegex(ValueError, "hidden_size"):
            layer_from_hf_config(get_preset("mixtral-small"), hidden_size=0)
        with self.assertRaisesRegex(ValueError, "no shared expert"):
            layer_from_hf_config(get_preset("mixtral-small"), shared_ffn_size=8)

    def test_config_overrides(self):
        layer = layer_from_hf_config(get_preset("deepseek-v3"),
                                     overrides={"hidden_size": 64, "n_routed_experts": 16,
                                                "n_group": 4, "topk_group": 2,
                                                "num_experts_per_tok": 4})
        self.assertEqual((layer.d_model, layer.num_experts, layer.routing.num_groups),
                         (64, 16, 4))

    def test_bad_options(self):
        with self.assertRaises(ValueError):
            layer_from_hf_config(get_preset("mixtral-small"), dtype="f64")
        with self.assertRaises(ValueError):
            layer_from_hf_config(get_preset("mixtral-small"), layout="row_major")
        no_dtype = get_preset("mixtral-small")
        del no_dtype["torch_dtype"]
        with self.assertRaisesRegex(ValueError, "torch_dtype"):
            layer_from_hf_config(no_dtype, dtype="config")
        with self.assertRaises(ValueError):
            layer_from_hf_config(get_preset("switch-small"), gate_up="concatenated")
        with self.assertRaises(ValueError):
            model_from_hf_config(get_preset("mixtral-small"), num_layers=0)
        with self.assertRaisesRegex(ValueError, "switch_transformers only"):
            layer_from_hf_config(get_preset("mixtral-small"), drop_tokens=False)
        with self.assertRaisesRegex(ValueError, "switch_transformers only"):
            layer_from_hf_config(get_preset("olmoe-small"), capacity_factor=1.0)
        with self.assertRaisesRegex(ValueError, "deepseek_v3 only"):
            layer_from_hf_config(get_preset("qwen3-moe-small"), group_mask_with_zero=True)

    def test_load_from_file_and_directory(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "config.json")
            with open(path, "w") as f:
                json.dump(get_preset("olmoe-small"), f)
            self.assertEqual(load_config(path)["model_type"], "olmoe")
            self.assertEqual(load_config(tmp)["model_type"], "olmoe")
            with open(path, "w") as f:
                f.write("{not json")
            with self.assertRaisesRegex(ValueError, "not valid JSON"):
                load_config(path)
            with self.assertRaisesRegex(ValueError, "cannot read"):
                load_config(os.path.join(tmp, "missing.json"))

    def test_input_dict_is_not_modified(self):
        cfg = get_preset("mixtral-small")
        before = json.dumps(cfg, sort_keys=True)
        layer_from_hf_config(cfg, overrides={"hidden_size": 32})
        self.assertEqual(json.dumps(cfg, sort_keys=True), before)

    def test_more_layers_than_config(self):
        model = model_from_hf_config(get_preset("mixtral-small"), num_layers=4)
        self.assertEqual(model.layer_prefixes,
                         ["layers.0.", "layers.1.", "layers.2.", "layers.3."])

    def test_every_supported_type_has_a_preset(self):
        types = {PRESETS[name]["model_type"] for name in preset_names()}
        self.assertEqual(types, set(supported_model_types()))
        self.assertEqual(set(_SIZE_KEYS), set(supported_model_types()))
        with self.assertRaisesRegex(ValueError, "known presets"):
            get_preset("gpt-5")


@unittest.skipIf(support.moe_opt_path() is None, "moe-opt is not built")
class PresetsCompileTest(unittest.TestCase):
    def test_small_presets_decompose(self):
        for name in preset_names():
            if not name.endswith("-small"):
                continue
            for dtype in ("f32", "bf16"):
                with self.subTest(preset=name, dtype=dtype):
                    model = model_from_hf_config(get_preset(name), dtype=dtype)
                    out = compile_ir(model.to_mlir(), "decomposed")
                    self.assertNotIn("moe.layer", out)

    def test_full_size_presets_verify(self):
        for name in preset_names():
            with self.subTest(preset=name):
                model = model_from_hf_config(get_preset(name), num_layers=1, dtype="config")
                compile_ir(model.to_mlir(), "moe")


if __name__ == "__main__":
    unittest.main()
