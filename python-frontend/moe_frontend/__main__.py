"""Command line: Hugging Face config (or preset) -> moe dialect MLIR.

    python3 -m moe_frontend --hf-config config.json --layers 2 --tokens dynamic -o out.mlir
    python3 -m moe_frontend --preset mixtral-small --decompose
    python3 -m moe_frontend --list-presets

Exit status: 0 on success, 1 when the config cannot be mapped or moe-opt
rejects the IR (the message says why), 2 for command-line usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .compile import MoeOptError, ToolNotFoundError, compile_ir
from .hf import load_config, model_from_hf_config, supported_model_types
from .presets import get_preset, preset_names


def _tokens(text: str) -> Optional[int]:
    if text in ("dynamic", "?"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tokens must be a positive integer or "
                                         f"'dynamic', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--tokens must be positive, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _override(text: str):
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as silu
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m moe_frontend",
        description="Emit moe dialect MLIR for the MoE blocks of a Hugging Face model. "
                    "Supported model types: " + ", ".join(supported_model_types()) + ".")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--hf-config", metavar="PATH",
                     help="config.json (or a model directory holding one)")
    src.add_argument("--preset", metavar="NAME", help="a built-in config (see --list-presets)")
    src.add_argument("--list-presets", action="store_true", help="list presets and exit")
    p.add_argument("--layers", type=_positive, metavar="N",
                   help="number of MoE blocks to stack (default: all of the model's)")
    p.add_argument("--tokens", type=_tokens, default=None, metavar="T|dynamic",
                   help="static token count, or 'dynamic' (default)")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16", "config"],
                   help="element type; 'config' uses the config's torch_dtype (default f32)")
    p.add_argument("--layout", default="in_out", choices=["in_out", "out_in"],
                   help="weight orientation; out_in is nn.Linear's [out, in]")
    p.add_argument("--gate-up", default="separate",
                   choices=["separate", "concatenated", "interleaved"],
                   help="GLU gate/up storage; concatenated is Transformers v5 gate_up_proj")
    p.add_argument("--hidden-size", type=_positive, metavar="D", help="override model width")
    p.add_argument("--ffn-size", type=_positive, metavar="F",
                   help="override routed expert width")
    p.add_argument("--shared-ffn-size", type=_positive, metavar="FS",
                   help="override shared expert width")
    p.add_argument("--num-experts", type=_positive, metavar="E", help="override expert count")
    p.add_argument("--set", type=_override, action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field before import (VALUE parsed as JSON)")
    p.add_argument("--no-drop", action="store_true",
                   help="Switch: Transformers v5 behaviour, no capacity dropping")
    p.add_argument("--capacity-factor", type=float, metavar="CF",
                   help="Switch: capacity ceil(CF*T/E) instead of expert_capacity")
    p.add_argument("--group-mask-zero", action="store_true",
                   help="DeepSeek-V3: masked groups score 0.0 (late Transformers v4)")
    p.add_argument("--no-final-norm", action="store_true", help="omit the final RMSNorm")
    p.add_argument("--name", help="function name (default: the model type)")
    p.add_argument("--decompose", action="store_true",
                   help="run moe-opt -moe-decompose on the result")
    p.add_argument("--verify", action="store_true",
                   help="parse and verify the result with moe-opt")
    p.add_argument("-o", "--output", default="-", metavar="FILE",
                   help="output file (default: stdout)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_presets:
        for name in preset_names():
            print(name)
        return 0
    if not args.hf_config and not args.preset:
        parser.error("one of --hf-config or --preset is required")
    try:
        config = load_config(args.hf_config) if args.hf_config else get_preset(args.preset)
        model = model_from_hf_config(
            config, num_layers=args.layers, tokens=args.tokens, name=args.name,
            final_norm=not args.no_final_norm, dtype=args.dtype, layout=args.layout,
            gate_up=args.gate_up, overrides=dict(args.set), hidden_size=args.hidden_size,
            ffn_size=args.ffn_size, shared_ffn_size=args.shared_ffn_size,
            num_experts=args.num_experts, drop_tokens=False if args.no_drop else None,
            capacity_factor=args.capacity_factor,
            group_mask_with_zero=args.group_mask_zero)
        text = model.to_mlir()
        if args.decompose:
            text = compile_ir(text, "decomposed")
        elif args.verify:
            text = compile_ir(text, "moe")
    except (ValueError, MoeOptError, ToolNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.output == "-":
        sys.stdout.write(text)
    else:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            print(f"error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
