"""Pure-Python frontend of moe-mlir.

Describe Mixture-of-Experts layers (or import them from a Hugging Face
`config.json`), emit textual MLIR in the `moe` dialect, and run `moe-opt` on
it. Standard library only: the IR is built as text because the project has
no MLIR Python bindings.

    from moe_frontend import MoELayer, Routing, compile_ir
    layer = MoELayer(d_model=64, d_ff=128, num_experts=8,
                     routing=Routing(k=2, normalize="selected"))
    print(compile_ir(layer.to_mlir(), "decomposed"))
"""

from .compile import (STAGES, MoeOptError, ToolNotFoundError, compile_ir, find_moe_opt,
                      run_moe_opt, verify)
from .hf import (layer_from_hf_config, load_config, model_from_hf_config,
                 moe_layer_indices, supported_model_types)
from .ir import DYNAMIC, Function, Module, TensorType, Value, format_float
from .layers import FFN, NAME_ATTR, Capacity, Model, MoELayer, Routing
from .presets import PRESETS, get_preset, preset_names

__all__ = [
    "Capacity", "DYNAMIC", "FFN", "Function", "Model", "Module", "MoELayer", "MoeOptError",
    "NAME_ATTR", "PRESETS", "Routing", "STAGES", "TensorType", "ToolNotFoundError", "Value",
    "compile_ir", "find_moe_opt", "format_float", "get_preset", "layer_from_hf_config",
    "load_config", "model_from_hf_config", "moe_layer_indices", "preset_names",
    "run_moe_opt", "supported_model_types", "verify",
]

__version__ = "0.1.0"
