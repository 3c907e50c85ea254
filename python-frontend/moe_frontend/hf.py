"""Hugging Face `config.json` -> `MoELayer` / `Model`.

Each supported `model_type` is mapped field by field onto the moe dialect,
following the peer semantics in `/work/shared/SEMANTICS.md` (the reference
implementations are the Hugging Face modelling files). The goal is that the
compiled block picks the same experts, with the same weights, and drops the
same tokens as the Python model; where that depends on a library version the
importer takes an explicit option rather than guessing.

| model_type            | routing                                                        | experts / shared                                    |
|-----------------------|----------------------------------------------------------------|-----------------------------------------------------|
| `mixtral`             | softmax, top-k, always renormalised                            | silu GLU (`hidden_act`), F = `intermediate_size`     |
| `qwen2_moe`           | softmax, top-k, renormalised iff `norm_topk_prob`              | silu GLU, F = `moe_intermediate_size`; 1 shared GLU of `shared_expert_intermediate_size` x sigmoid(x g) |
| `qwen3_moe`           | softmax, top-k, renormalised iff `norm_topk_prob`              | silu GLU, F = `moe_intermediate_size`                |
| `olmoe`               | softmax, top-k, renormalised iff `norm_topk_prob`              | silu GLU, F = `intermediate_size`                    |
| `deepseek_v3`         | sigmoid, `e_score_correction_bias` for choice only, grouped top-k (`n_group`/`topk_group`, groups scored by the sum of their top-2), renormalised (+1e-20) iff `norm_topk_prob`, x `routed_scaling_factor` | silu GLU, F = `moe_intermediate_size`; `n_shared_experts` merged into one ungated GLU of width F x n_shared |
| `switch_transformers` | softmax (fp32), top-1, weight = p_max, optional router bias   | `dense_act_fn` MLP (no bias), F = `d_ff`; capacity = `expert_capacity` in token order, dropped tokens pass through x p_max |

Behavioural flags missing from a config take the Hugging Face config-class
default (that is what `from_pretrained` does); the structural sizes (model
width, expert width, expert count, k) are required and a missing one raises
`ValueError`.

Known limits, stated rather than approximated:

* Switch Transformers computes capacity per *group* (one batch row): the
  compiled layer sees `[T, D]` tokens as one group, so feed one sequence per
  call. `drop_tokens=False` gives the Transformers v5 behaviour, where the
  capacity check never drops.
* DeepSeek-V3 masks discarded groups with -inf (reference implementation);
  late Transformers v4 releases used 0.0: pass `group_mask_with_zero=True`.
* Router jitter noise (Mixtral, Switch) is a training-time feature and is
  ignored.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from .ir import FLOAT_TYPES
from .layers import FFN, Capacity, Model, MoELayer, Routing, WEIGHT_LAYOUTS

ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]

#: Hugging Face `hidden_act` / `dense_act_fn` -> `#moe.ffn` activation.
HF_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "linear": "identity",
    "identity": "identity",
}

#: Hugging Face `torch_dtype` / `dtype` -> MLIR element type.
HF_DTYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def load_config(source: ConfigSource) -> Dict[str, Any]:
    """Reads a config from a dict, a `config.json` path, or a model directory."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    path = os.fspath(source)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read Hugging Face config {path!r}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path!r} must hold a JSON object, got {type(data).__name__}")
    return data


class _Fields:
    """Typed access to a config dict with errors that name the model and key."""

    def __init__(self, config: Mapping[str, Any], model_type: str) -> None:
        self.config = config
        self.model_type = model_type

    def _missing(self, key: str) -> ValueError:
        return ValueError(f"{self.model_type} config is missing required field '{key}'")

    def _bad(self, key: str, what: str) -> ValueError:
        return ValueError(f"{self.model_type} config field '{key}' must be {what}, "
                          f"got {self.config.get(key)!r}")

    def get_int(self, key: str, default: Any = ..., minimum: int = 1) -> int:
        if key not in self.config or self.config[key] is None:
            if default is ...:
                raise self._missing(key)
            return default
        value = self.config[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        if value < minimum:
            raise self._bad(key, f"at least {minimum}")
        return value

    def get_float(self, key: str, default: Any = ...) -> float:
        if key not in self.config or self.config[key] is None:
            if default is ...:
                raise self._missing(key)
            return default
        value = self.config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(key, "a number")
        return float(value)

    def get_bool(self, key: str, default: Any = ...) -> bool:
        if key not in self.config or self.config[key] is None:
            if default is ...:
                raise self._missing(key)
            return default
        value = self.config[key]
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def get_str(self, key: str, default: Any = ...) -> str:
        if key not in self.config or self.config[key] is None:
            if default is ...:
                raise self._missing(key)
            return default
        value = self.config[key]
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def int_list(self, key: str) -> List[int]:
        value = self.config.get(key) or []
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self._bad(key, "a list of integers")
        return value

    def activation(self, key: str, default: str) -> str:
        name = self.get_str(key, default)
        if name not in HF_ACTIVATIONS:
            raise ValueError(f"{self.model_type} config field '{key}' = {name!r} is not a "
                             f"supported activation ({', '.join(sorted(HF_ACTIVATIONS))})")
        return HF_ACTIVATIONS[name]


# ----------------------------------------------------------------------------
# Per-model mappings. Each returns (layer, MoE layer indices, norm eps, prefix
# template); `opts` holds the importer options.
# ----------------------------------------------------------------------------


def _glu(opts: Dict[str, Any], activation: str) -> FFN:
    return FFN(kind="glu", activation=activation, gate_up=opts["gate_up"],
               layout=opts["layout"])


def _topk_normalize(flag: bool) -> str:
    return "selected" if flag else "none"


def _sparse_step_layers(c: _Fields) -> List[int]:
    """Qwen-MoE layer placement: `(i + 1) % decoder_sparse_step == 0`, not in
    `mlp_only_layers`."""
    n = c.get_int("num_hidden_layers", 1)
    step = c.get_int("decoder_sparse_step", 1)
    dense = set(c.int_list("mlp_only_layers"))
    return [i for i in range(n) if i not in dense and (i + 1) % step == 0]


def _mixtral(c: _Fields, opts: Dict[str, Any]):
    layer = MoELayer(
        d_model=c.get_int("hidden_size"),
        d_ff=c.get_int("intermediate_size"),
        num_experts=c.get_int("num_local_experts"),
        # softmax(fp32) over all experts, top-k, then w /= w.sum(): no epsilon.
        routing=Routing(k=c.get_int("num_experts_per_tok"), normalize="selected"),
        ffn=_glu(opts, c.activation("hidden_act", "silu")),
    )
    layers = list(range(c.get_int("num_hidden_layers", 1)))
    return layer, layers, c.get_float("rms_norm_eps", 1e-5), "layers.{}."


def _qwen2_moe(c: _Fields, opts: Dict[str, Any]):
    layer = MoELayer(
        d_model=c.get_int("hidden_size"),
        d_ff=c.get_int("moe_intermediate_size"),
        num_experts=c.get_int("num_experts"),
        routing=Routing(k=c.get_int("num_experts_per_tok"),
                        normalize=_topk_normalize(c.get_bool("norm_topk_prob", False))),
        ffn=_glu(opts, c.activation("hidden_act", "silu")),
        # One shared GLU expert whose output is multiplied by
        # sigmoid(shared_expert_gate(x)), a Linear(hidden, 1, bias=False).
        num_shared_experts=1,
        shared_d_ff=c.get_int("shared_expert_intermediate_size"),
        shared_gate=True,
    )
    return layer, _sparse_step_layers(c), c.get_float("rms_norm_eps", 1e-6), "layers.{}."


def _routed_glu_layer(c: _Fields, opts: Dict[str, Any], d_ff_key: str) -> MoELayer:
    """Softmax top-k over GLU experts with `norm_topk_prob` (default False),
    the block Qwen3-MoE and OLMoE share."""
    return MoELayer(
        d_model=c.get_int("hidden_size"),
        d_ff=c.get_int(d_ff_key),
        num_experts=c.get_int("num_experts"),
        routing=Routing(k=c.get_int("num_experts_per_tok"),
                        normalize=_topk_normalize(c.get_bool("norm_topk_prob", False))),
        ffn=_glu(opts, c.activation("hidden_act", "silu")),
    )


def _qwen3_moe(c: _Fields, opts: Dict[str, Any]):
    # Qwen3MoeConfig defaults norm_topk_prob to False; the released
    # checkpoints set it to true in config.json.
    layer = _routed_glu_layer(c, opts, "moe_intermediate_size")
    return layer, _sparse_step_layers(c), c.get_float("rms_norm_eps", 1e-6), "layers.{}."


def _olmoe(c: _Fields, opts: Dict[str, Any]):
    layer = _routed_glu_layer(c, opts, "intermediate_size")
    layers = list(range(c.get_int("num_hidden_layers", 1)))
    return layer, layers, c.get_float("rms_norm_eps", 1e-5), "layers.{}."


def _deepseek_v3(c: _Fields, opts: Dict[str, Any]):
    scoring = c.get_str("scoring_func", "sigmoid")
    if scoring != "sigmoid":
        raise ValueError(f"deepseek_v3 config has scoring_func = {scoring!r}; only "
                         "'sigmoid' (DeepSeek-V3) is supported")
    method = c.get_str("topk_method", "noaux_tc")
    if method != "noaux_tc":
        raise ValueError(f"deepseek_v3 config has topk_method = {method!r}; only "
                         "'noaux_tc' (DeepSeek-V3) is supported")
    f = c.get_int("moe_intermediate_size")
    n_group = c.get_int("n_group", 8)
    topk_group = c.get_int("topk_group", 4)
    norm = c.get_bool("norm_topk_prob", True)
    routing = Routing(
        # One group keeps every expert: plain top-k is the same function.
        policy="grouped_top_k" if n_group > 1 else "top_k",
        k=c.get_int("num_experts_per_tok"),
        score="sigmoid",
        # w / (w.sum() + 1e-20) on the uncorrected sigmoid scores, then x rsf.
        normalize=_topk_normalize(norm),
        epsilon=1e-20 if norm else 0.0,
        scaling=c.get_float("routed_scaling_factor", 2.5),
        num_groups=n_group if n_group > 1 else 1,
        top_groups=topk_group if n_group > 1 else 1,
        group_score_k=2,
        mask_with_zero=bool(opts["group_mask_with_zero"]) and n_group > 1,
    )
    n_shared = c.get_int("n_shared_experts", 1, minimum=0)
    layer = MoELayer(
        d_model=c.get_int("hidden_size"),
        d_ff=f,
        num_experts=c.get_int("n_routed_experts"),
        routing=routing,
        ffn=_glu(opts, c.activation("hidden_act", "silu")),
        # e_score_correction_bias: added to the scores for the choice only.
        selection_bias=True,
        # DeepseekV3MoE builds one MLP of width F * n_shared_experts, added
        # without a gate.
        num_shared_experts=1 if n_shared else 0,
        shared_d_ff=f * n_shared,
    )
    n = c.get_int("num_hidden_layers", 1)
    first_dense = c.get_int("first_k_dense_replace", 3, minimum=0)
    freq = c.get_int("moe_layer_freq", 1)
    layers = [i for i in range(n) if i >= first_dense and i % freq == 0]
    return layer, layers, c.get_float("rms_norm_eps", 1e-6), "layers.{}."


def _switch_transformers(c: _Fields, opts: Dict[str, Any]):
    router_dtype = c.get_str("router_dtype", "float32")
    if router_dtype != "float32":
        raise ValueError(f"switch_transformers config has router_dtype = {router_dtype!r}; "
                         "the compiler computes the router in float32 only")
    if opts["gate_up"] != "separate":
        raise ValueError("switch_transformers experts are plain MLPs; gate_up must be "
                         "'separate'")
    drop = opts["drop_tokens"]
    drop = True if drop is None else drop
    capacity: Optional[Capacity] = None
    if drop:
        factor = opts["capacity_factor"]
        if factor is not None:
            # Original Switch: capacity = ceil(capacity_factor * tokens / E).
            capacity = Capacity(factor=float(factor), formula="gshard",
                                on_drop="pass_through")
        else:
            # HF v4: token_priority = cumsum over the sequence, kept while
            # <= expert_capacity; a dropped token's output is p_max * x.
            capacity = Capacity(formula="fixed", fixed=c.get_int("expert_capacity", 64),
                                order="position", on_drop="pass_through")
    layer = MoELayer(
        d_model=c.get_int("d_model"),
        d_ff=c.get_int("d_ff"),
        num_experts=c.get_int("num_experts"),
        # softmax, argmax (first index wins ties), weight = max probability.
        routing=Routing(k=1),
        ffn=FFN(kind="mlp", activation=c.activation("dense_act_fn", "relu"),
                layout=opts["layout"]),
        capacity=capacity,
        router_bias=c.get_bool("router_bias", False),
    )
    # Encoder MoE blocks, as SwitchTransformersStack places them.
    n = c.get_int("num_layers", 12)
    n_sparse = c.get_int("num_sparse_encoder_layers", 3, minimum=0)
    step = n // n_sparse if n_sparse > 0 else n
    layers = [i for i in range(n) if step > 0 and (step == 1 or i % step == 1)]
    return layer, layers, c.get_float("layer_norm_epsilon", 1e-6), "encoder.layers.{}."


_MAPPERS: Dict[str, Callable] = {
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen3_moe,
    "olmoe": _olmoe,
    "deepseek_v3": _deepseek_v3,
    "switch_transformers": _switch_transformers,
}


#: Config keys of (model width, routed expert width, routed expert count).
_SIZE_KEYS: Dict[str, Dict[str, str]] = {
    "mixtral": dict(hidden="hidden_size", ffn="intermediate_size",
                    experts="num_local_experts"),
    "qwen2_moe": dict(hidden="hidden_size", ffn="moe_intermediate_size",
                      experts="num_experts"),
    "qwen3_moe": dict(hidden="hidden_size", ffn="moe_intermediate_size",
                      experts="num_experts"),
    "olmoe": dict(hidden="hidden_size", ffn="intermediate_size", experts="num_experts"),
    "deepseek_v3": dict(hidden="hidden_size", ffn="moe_intermediate_size",
                        experts="n_routed_experts"),
    "switch_transformers": dict(hidden="d_model", ffn="d_ff", experts="num_experts"),
}


def supported_model_types() -> List[str]:
    return sorted(_MAPPERS)


def _model_type(config: Mapping[str, Any]) -> str:
    model_type = config.get("model_type")
    if model_type is None:
        raise ValueError("config has no 'model_type'; supported model types: "
                         + ", ".join(supported_model_types()))
    if model_type not in _MAPPERS:
        raise ValueError(f"unsupported model_type {model_type!r}; supported model types: "
                         + ", ".join(supported_model_types()))
    return model_type


def _resolve_dtype(config: Mapping[str, Any], dtype: Optional[str]) -> str:
    if dtype is None:
        return "f32"
    if dtype == "config":
        name = config.get("torch_dtype", config.get("dtype"))
        if name is None:
            raise ValueError("dtype='config' but the config has no 'torch_dtype'")
        if name not in HF_DTYPES:
            raise ValueError(f"config torch_dtype {name!r} is not one of "
                             + ", ".join(sorted(HF_DTYPES)))
        return HF_DTYPES[name]
    if dtype in HF_DTYPES:
        return HF_DTYPES[dtype]
    if dtype not in FLOAT_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(FLOAT_TYPES)} or 'config'; "
                         f"got {dtype!r}")
    return dtype


def _import(config: ConfigSource, *, dtype: Optional[str] = None, layout: str = "in_out",
            gate_up: str = "separate", overrides: Optional[Mapping[str, Any]] = None,
            hidden_size: Optional[int] = None, ffn_size: Optional[int] = None,
            shared_ffn_size: Optional[int] = None, num_experts: Optional[int] = None,
            drop_tokens: Optional[bool] = None, capacity_factor: Optional[float] = None,
            group_mask_with_zero: bool = False):
    cfg = load_config(config)
    if overrides:
        cfg.update(dict(overrides))
    model_type = _model_type(cfg)
    if layout not in WEIGHT_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(WEIGHT_LAYOUTS)}; got {layout!r}")
    if gate_up not in ("separate", "concatenated", "interleaved"):
        raise ValueError(f"gate_up must be separate, concatenated or interleaved; "
                         f"got {gate_up!r}")
    # Model-specific options on another model would be silently meaningless.
    if model_type != "switch_transformers" and (drop_tokens is not None
                                                or capacity_factor is not None):
        raise ValueError(f"drop_tokens / capacity_factor apply to switch_transformers "
                         f"only, not {model_type}")
    if model_type != "deepseek_v3" and group_mask_with_zero:
        raise ValueError(f"group_mask_with_zero applies to deepseek_v3 only, not {model_type}")
    opts = dict(layout=layout, gate_up=gate_up, drop_tokens=drop_tokens,
                capacity_factor=capacity_factor,
                group_mask_with_zero=group_mask_with_zero)
    # Size overrides shrink a real architecture into a test model while
    # keeping its routing and FFN semantics. They are applied to the config
    # fields, so derived sizes follow (DeepSeek's merged shared expert is
    # F x n_shared_experts of the overridden F).
    keys = _SIZE_KEYS[model_type]
    for option, value in (("hidden", hidden_size), ("ffn", ffn_size),
                          ("experts", num_experts)):
        if value is not None:
            cfg[keys[option]] = value
    layer, indices, eps, prefix = _MAPPERS[model_type](_Fields(cfg, model_type), opts)
    layer.dtype = _resolve_dtype(cfg, dtype)
    if shared_ffn_size is not None:
        if not layer.num_shared_experts:
            raise ValueError(f"{model_type} layers have no shared expert to resize")
        layer.shared_d_ff = shared_ffn_size
    layer.validate()
    return layer, indices, eps, prefix


def layer_from_hf_config(config: ConfigSource, **options: Any) -> MoELayer:
    """The MoE block of a Hugging Face model as a `MoELayer`.

    Options: `dtype` (`f32` default, `f16`, `bf16`, or `'config'` for the
    config's `torch_dtype`), `layout` (`in_out`, or `out_in` for `nn.Linear`
    storage), `gate_up` (`separate`, or `concatenated` for Transformers v5's
    fused `gate_up_proj`), `overrides` (dict merged into the config first),
    `hidden_size` / `ffn_size` / `shared_ffn_size` / `num_experts` (shrink a
    real architecture for tests), `drop_tokens` (Switch: False for the
    Transformers v5 no-drop behaviour), `capacity_factor` (Switch: use
    `ceil(cf * T / E)` instead of `expert_capacity`), `group_mask_with_zero`
    (DeepSeek-V3: masked groups score 0.0 as in late Transformers v4).
    """
    return _import(config, **options)[0]


def moe_layer_indices(config: ConfigSource, **options: Any) -> List[int]:
    """Indices of the decoder (Switch: encoder) layers that hold an MoE block."""
    return _import(config, **options)[1]


def model_from_hf_config(config: ConfigSource, *, num_layers: Optional[int] = None,
                         tokens: Optional[int] = None, name: Optional[str] = None,
                         final_norm: bool = True, **options: Any) -> Model:
    """A `Model` of the first `num_layers` MoE blocks (default: all of them).

    Weights are named after the original layer index (`layers.3.w1` is the
    MoE block of decoder layer 3), so names stay stable whatever `num_layers`
    is. RMSNorm epsilon comes from the config.
    """
    cfg = load_config(config)
    layer, indices, eps, prefix = _import(cfg, **options)
    if not indices:
        raise ValueError(f"{cfg.get('model_type')} config has no MoE layers")
    if num_layers is not None:
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if num_layers > len(indices):
            # A test model may ask for more blocks than the config names: keep
            # numbering past the last real MoE layer.
            step = indices[-1] - indices[-2] if len(indices) > 1 else 1
            while len(indices) < num_layers:
                indices.append(indices[-1] + step)
        indices = indices[:num_layers]
    model_name = name or str(cfg["model_type"])
    return Model(layers=[copy.deepcopy(layer) for _ in indices], norm_eps=eps,
                 tokens=tokens, name=model_name, final_norm=final_norm,
                 layer_prefixes=[prefix.format(i) for i in indices])
