"""Built-in Hugging Face style configs, so examples and tests need no download.

`*-small` presets keep each architecture's routing and FFN semantics at toy
sizes (D = 64) so the generated IR is quick to compile and run. The other
presets carry the MoE-relevant fields of the published `config.json` of the
named checkpoint, for shape-level work on the real sizes.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List

PRESETS: Dict[str, Dict[str, Any]] = {
    # -- toy sizes ------------------------------------------------------------
    "mixtral-small": {
        "torch_dtype": "float32",
        "model_type": "mixtral", "hidden_size": 64, "intermediate_size": 128,
        "num_local_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2,
        "hidden_act": "silu", "rms_norm_eps": 1e-5,
    },
    "qwen2-moe-small": {
        "torch_dtype": "float32",
        "model_type": "qwen2_moe", "hidden_size": 64, "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 128, "num_experts": 8,
        "num_experts_per_tok": 4, "norm_topk_prob": False, "num_hidden_layers": 2,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
    },
    "qwen3-moe-small": {
        "torch_dtype": "float32",
        "model_type": "qwen3_moe", "hidden_size": 64, "moe_intermediate_size": 32,
        "num_experts": 16, "num_experts_per_tok": 4, "norm_topk_prob": True,
        "num_hidden_layers": 2, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "hidden_act": "silu", "rms_norm_eps": 1e-6,
    },
    "olmoe-small": {
        "torch_dtype": "float32",
        "model_type": "olmoe", "hidden_size": 64, "intermediate_size": 32,
        "num_experts": 16, "num_experts_per_tok": 4, "norm_topk_prob": False,
        "num_hidden_layers": 2, "hidden_act": "silu", "rms_norm_eps": 1e-5,
    },
    "deepseek-v3-small": {
        "torch_dtype": "float32",
        "model_type": "deepseek_v3", "hidden_size": 64, "moe_intermediate_size": 32,
        "n_routed_experts": 16, "num_experts_per_tok": 4, "n_group": 4,
        "topk_group": 2, "routed_scaling_factor": 2.5, "norm_topk_prob": True,
        "n_shared_experts": 2, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
        "first_k_dense_replace": 1, "num_hidden_layers": 3, "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
    },
    "switch-small": {
        "torch_dtype": "float32",
        "model_type": "switch_transformers", "d_model": 64, "d_ff": 128,
        "num_experts": 8, "expert_capacity": 4, "router_bias": False,
        "router_dtype": "float32", "num_layers": 4, "num_sparse_encoder_layers": 2,
        "dense_act_fn": "relu", "layer_norm_epsilon": 1e-6,
    },
    # -- published checkpoints (MoE-relevant fields) ---------------------------
    "mixtral-8x7b": {
        "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
        "num_local_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 32,
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16",
    },
    "qwen1.5-moe-a2.7b": {
        "model_type": "qwen2_moe", "hidden_size": 2048, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts": 60,
        "num_experts_per_tok": 4, "norm_topk_prob": False, "num_hidden_layers": 24,
        "decoder_sparse_step": 1, "hidden_act": "silu", "rms_norm_eps": 1e-6,
        "torch_dtype": "bfloat16",
    },
    "qwen3-30b-a3b": {
        "model_type": "qwen3_moe", "hidden_size": 2048, "moe_intermediate_size": 768,
        "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": True,
        "num_hidden_layers": 48, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16",
    },
    "olmoe-1b-7b": {
        "model_type": "olmoe", "hidden_size": 2048, "intermediate_size": 1024,
        "num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": False,
        "num_hidden_layers": 16, "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "torch_dtype": "bfloat16",
    },
    "deepseek-v3": {
        "model_type": "deepseek_v3", "hidden_size": 7168, "moe_intermediate_size": 2048,
        "n_routed_experts": 256, "num_experts_per_tok": 8, "n_group": 8,
        "topk_group": 4, "routed_scaling_factor": 2.5, "norm_topk_prob": True,
        "n_shared_experts": 1, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
        "first_k_dense_replace": 3, "moe_layer_freq": 1, "num_hidden_layers": 61,
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16",
    },
    "switch-base-8": {
        "model_type": "switch_transformers", "d_model": 768, "d_ff": 3072,
        "num_experts": 8, "expert_capacity": 64, "router_bias": False,
        "router_dtype": "float32", "num_layers": 12, "num_sparse_encoder_layers": 6,
        "dense_act_fn": "relu", "layer_norm_epsilon": 1e-6, "torch_dtype": "float32",
    },
}


def preset_names() -> List[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> Dict[str, Any]:
    """A copy of the named preset config; ValueError lists the known names."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: "
                         + ", ".join(preset_names())) from None
