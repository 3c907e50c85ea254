"""MoE layer descriptions and the model builder.

`Routing`, `Capacity` and `FFN` mirror the `#moe.routing`, `#moe.capacity`
and `#moe.ffn` attributes field for field (same names, same defaults, same
order), so what a user sets here is exactly what the compiler sees. They
render only fields that differ from the dialect default, in declaration
order: that is moe-opt's own canonical printing, so the frontend's text
round-trips unchanged.

Each description also checks the rules the C++ verifiers enforce and raises
`ValueError` naming the offending field. Catching mistakes here gives a
Python stack trace at the line that built the layer, instead of a moe-opt
diagnostic about generated text.

`MoELayer` adds the shapes (D, F, E, shared experts, dtype and which optional
operands exist) and emits one `moe.layer`. `Model` stacks layers with RMSNorm
and residual adds written as ordinary linalg/arith/math/tensor ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional, Sequence, Tuple

from .ir import (
    FLOAT_TYPES,
    Function,
    Module,
    TensorType,
    Value,
    affine_map,
    format_bool,
    format_float,
    format_string,
)

# Enumerations, spelled as the dialect spells them (MoeEnums.td).
ROUTING_POLICIES = ("top_k", "top_p", "grouped_top_k", "sinkhorn",
                    "expert_choice", "threshold", "sparse_mixer")
SCORE_FUNCTIONS = ("softmax", "sigmoid", "softmax_selected", "identity")
NORMALIZATIONS = ("none", "selected")
TIE_BREAKS = ("lower_index", "higher_index")
CAPACITY_FORMULAS = ("gshard", "tutel", "fixed")
QUEUE_ORDERS = ("position", "choice_major", "score")
DROP_POLICIES = ("zero", "pass_through")
ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "identity")
FFN_KINDS = ("mlp", "glu")
GATE_UP_LAYOUTS = ("separate", "concatenated", "interleaved")
WEIGHT_LAYOUTS = ("in_out", "out_in")

#: Name of the argument attribute that carries a weight's stable name.
NAME_ATTR = "moe.name"


def _enum(choices: Tuple[str, ...]):
    return {"kind": "enum", "choices": choices}


_INT = {"kind": "int"}
_FLOAT = {"kind": "float"}
_BOOL = {"kind": "bool"}


def _check_field_types(obj) -> None:
    """Type-checks dataclass fields against their `kind` metadata."""
    cls = type(obj).__name__
    for f in fields(obj):
        kind = f.metadata.get("kind")
        value = getattr(obj, f.name)
        if kind == "enum":
            if value not in f.metadata["choices"]:
                raise ValueError(
                    f"{cls}.{f.name} must be one of {', '.join(f.metadata['choices'])}; "
                    f"got {value!r}")
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{cls}.{f.name} must be an integer, got {value!r}")
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{cls}.{f.name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"{cls}.{f.name} must be finite, got {value!r}")
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{cls}.{f.name} must be a bool, got {value!r}")


def _render_struct(mnemonic: str, obj, required: Sequence[str] = (),
                   order: Optional[Sequence[str]] = None) -> str:
    """`#moe.<mnemonic><field = value, ...>` with defaults omitted.

    Fields print in `order` (default: declaration order), which must be the
    dialect's parameter order for the text to match moe-opt's printer.
    """
    by_name = {f.name: f for f in fields(obj)}
    parts = []
    for name in (order or list(by_name)):
        f = by_name[name]
        value = getattr(obj, f.name)
        kind = f.metadata["kind"]
        if f.name not in required:
            default = f.default
            same = (float(value) == float(default)) if kind == "float" else value == default
            if same:
                continue
        if kind == "float":
            text = format_float(value)
        elif kind == "bool":
            text = format_bool(value)
        else:
            text = str(value)
        parts.append(f"{f.name} = {text}")
    return f"#moe.{mnemonic}<{', '.join(parts)}>"


@dataclass
class Routing:
    """How router logits become expert choices and gate weights.

    Fields and defaults follow `#moe.routing` (MoeAttrs.td); see the dialect
    documentation for their exact meaning. `k` has no default in the dialect
    either, so it is the one required (and first positional) field; the
    attribute prints in the dialect's order, `policy` first.
    """

    PRINT_ORDER = ("policy", "k", "score", "normalize", "tie_break", "scaling", "top_p",
                   "threshold", "num_groups", "top_groups", "group_score_k",
                   "mask_with_zero", "null_experts", "sinkhorn_iterations",
                   "capacity_factor", "jitter_eps", "epsilon")

    k: int = field(metadata=_INT)
    policy: str = field(default="top_k", metadata=_enum(ROUTING_POLICIES))
    score: str = field(default="softmax", metadata=_enum(SCORE_FUNCTIONS))
    normalize: str = field(default="none", metadata=_enum(NORMALIZATIONS))
    tie_break: str = field(default="lower_index", metadata=_enum(TIE_BREAKS))
    scaling: float = field(default=1.0, metadata=_FLOAT)
    top_p: float = field(default=1.0, metadata=_FLOAT)
    threshold: float = field(default=0.0, metadata=_FLOAT)
    num_groups: int = field(default=1, metadata=_INT)
    top_groups: int = field(default=1, metadata=_INT)
    group_score_k: int = field(default=2, metadata=_INT)
    mask_with_zero: bool = field(default=False, metadata=_BOOL)
    null_experts: int = field(default=0, metadata=_INT)
    sinkhorn_iterations: int = field(default=3, metadata=_INT)
    capacity_factor: float = field(default=1.0, metadata=_FLOAT)
    jitter_eps: float = field(default=0.01, metadata=_FLOAT)
    epsilon: float = field(default=0.0, metadata=_FLOAT)

    def validate(self) -> None:
        """The checks of `RoutingAttr::verify`, as ValueErrors."""
        _check_field_types(self)
        if self.k < 1:
            raise ValueError(f"routing k must be at least 1, got {self.k}")
        if not self.scaling > 0.0:
            raise ValueError(f"routing scaling must be positive, got {self.scaling}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"routing top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"routing threshold must be in [0, 1], got {self.threshold}")
        if self.null_experts < 0:
            raise ValueError(f"null_experts must not be negative, got {self.null_experts}")
        if not self.epsilon >= 0.0:
            raise ValueError(f"routing epsilon must be >= 0, got {self.epsilon}")
        if min(self.num_groups, self.top_groups, self.group_score_k) < 1:
            raise ValueError("num_groups, top_groups and group_score_k must be at least 1")
        if self.top_groups > self.num_groups:
            raise ValueError(f"top_groups ({self.top_groups}) exceeds num_groups "
                             f"({self.num_groups})")
        if self.policy != "grouped_top_k" and self.num_groups != 1:
            raise ValueError("num_groups is only meaningful for policy = grouped_top_k")
        if self.policy == "sinkhorn" and self.sinkhorn_iterations < 1:
            raise ValueError("sinkhorn needs at least one iteration")
        if self.policy == "expert_choice" and not self.capacity_factor > 0.0:
            raise ValueError("expert_choice capacity_factor must be positive")
        if self.policy == "sparse_mixer":
            if self.k != 2:
                raise ValueError(f"sparse_mixer selects exactly 2 experts, got k = {self.k}")
            if not 0.0 < self.jitter_eps < 1.0:
                raise ValueError("sparse_mixer jitter_eps must be in (0, 1)")
        if self.score == "softmax_selected" and self.normalize == "selected":
            raise ValueError("softmax_selected weights already sum to 1; "
                             "normalize = selected is redundant")
        if self.policy == "expert_choice" and self.null_experts != 0:
            raise ValueError("expert_choice cannot be combined with null experts")

    def render(self) -> str:
        """The `#moe.routing<...>` attribute text (defaults omitted; k always)."""
        self.validate()
        return _render_struct("routing", self, required=("k",), order=self.PRINT_ORDER)


@dataclass
class Capacity:
    """Per-expert capacity and what happens to overflow (`#moe.capacity`).

    Its presence on a layer selects padded-capacity dispatch with dropping;
    a layer without one is dropless.
    """

    factor: float = field(default=1.0, metadata=_FLOAT)
    formula: str = field(default="gshard", metadata=_enum(CAPACITY_FORMULAS))
    fixed: int = field(default=0, metadata=_INT)
    min_capacity: int = field(default=0, metadata=_INT)
    align: int = field(default=1, metadata=_INT)
    order: str = field(default="position", metadata=_enum(QUEUE_ORDERS))
    on_drop: str = field(default="zero", metadata=_enum(DROP_POLICIES))
    renormalize: bool = field(default=False, metadata=_BOOL)

    def validate(self) -> None:
        """The checks of `CapacityAttr::verify`, as ValueErrors."""
        _check_field_types(self)
        if self.formula == "fixed":
            if self.fixed < 1:
                raise ValueError(f"fixed capacity must be at least 1, got {self.fixed}")
        elif not self.factor > 0.0:
            raise ValueError(f"capacity factor must be positive, got {self.factor}")
        if self.min_capacity < 0:
            raise ValueError(f"min_capacity must not be negative, got {self.min_capacity}")
        if self.align < 1:
            raise ValueError(f"capacity align must be at least 1, got {self.align}")
        if self.on_drop == "pass_through" and self.renormalize:
            raise ValueError("on_drop = pass_through keeps dropped weights; it cannot "
                             "be combined with renormalize")

    def render(self) -> str:
        self.validate()
        return _render_struct("capacity", self)

    def capacity_for(self, num_tokens: int, k: int, num_experts: int) -> int:
        """Per-expert capacity C, by the formula documented in MoeAttrs.td."""
        if self.formula == "fixed":
            c = self.fixed
        elif self.formula == "gshard":
            c = math.ceil(self.factor * num_tokens * k / num_experts)
        else:  # tutel
            c = k * math.floor(self.factor * math.ceil(num_tokens / num_experts))
        c = max(c, self.min_capacity)
        return -(-c // self.align) * self.align


@dataclass
class FFN:
    """The feed-forward form of every (routed and shared) expert (`#moe.ffn`)."""

    kind: str = field(default="glu", metadata=_enum(FFN_KINDS))
    activation: str = field(default="silu", metadata=_enum(ACTIVATIONS))
    gate_up: str = field(default="separate", metadata=_enum(GATE_UP_LAYOUTS))
    layout: str = field(default="in_out", metadata=_enum(WEIGHT_LAYOUTS))
    alpha: float = field(default=1.0, metadata=_FLOAT)
    up_shift: float = field(default=0.0, metadata=_FLOAT)
    limit: float = field(default=0.0, metadata=_FLOAT)

    def validate(self) -> None:
        """The checks of `FFNAttr::verify`, as ValueErrors."""
        _check_field_types(self)
        if self.kind == "mlp" and self.gate_up != "separate":
            raise ValueError("gate_up layout only applies to kind = glu")
        if not self.alpha > 0.0:
            raise ValueError(f"activation alpha must be positive, got {self.alpha}")
        if not self.limit >= 0.0:
            raise ValueError(f"clamp limit must be >= 0 (0 disables it), got {self.limit}")
        if self.kind == "mlp" and (self.up_shift != 0.0 or self.limit != 0.0):
            raise ValueError("up_shift and limit only apply to kind = glu")
        if float(self.alpha) != 1.0 and self.activation != "silu":
            raise ValueError(f"alpha scales the sigmoid of silu; it cannot be used with "
                             f"activation {self.activation}")

    @property
    def fused(self) -> bool:
        """True when W1 holds gate and up projections together ([.., 2F])."""
        return self.kind == "glu" and self.gate_up != "separate"

    @property
    def needs_w3(self) -> bool:
        return self.kind == "glu" and self.gate_up == "separate"

    def render(self) -> str:
        self.validate()
        return _render_struct("ffn", self)


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class MoELayer:
    """One Mixture-of-Experts block: router, E routed experts, optional shared.

    Sizes: `d_model` D, `d_ff` F (per routed expert), `num_experts` E (real
    experts; the router has E + routing.null_experts columns),
    `num_shared_experts` S with width `shared_d_ff` Fs. The boolean flags say
    which optional operands of `moe.layer` exist. `k` lives in `routing` (it
    is part of the routing function) and is mirrored by the `k` property.
    """

    d_model: int
    d_ff: int
    num_experts: int
    routing: Routing
    ffn: FFN = field(default_factory=FFN)
    capacity: Optional[Capacity] = None
    num_shared_experts: int = 0
    shared_d_ff: int = 0
    shared_gate: bool = False
    router_bias: bool = False
    selection_bias: bool = False
    b1: bool = False
    b2: bool = False
    dtype: str = "f32"

    @property
    def k(self) -> int:
        return self.routing.k

    @property
    def num_router_columns(self) -> int:
        return self.num_experts + self.routing.null_experts

    def validate(self) -> None:
        """Checks the layer against the rules of the moe.layer verifier."""
        self.routing.validate()
        self.ffn.validate()
        if self.capacity is not None:
            self.capacity.validate()
        _positive_int("d_model", self.d_model)
        _positive_int("d_ff", self.d_ff)
        _positive_int("num_experts", self.num_experts)
        if self.dtype not in FLOAT_TYPES:
            raise ValueError(f"dtype must be one of {', '.join(FLOAT_TYPES)}; got {self.dtype!r}")
        r = self.routing
        columns = self.num_router_columns
        if r.k > columns:
            raise ValueError(f"k ({r.k}) exceeds the number of experts ({columns})")
        if r.policy == "expert_choice" and r.k > self.num_experts:
            raise ValueError(f"expert_choice k ({r.k}) exceeds the number of experts "
                             f"({self.num_experts})")
        if r.policy == "grouped_top_k":
            if columns % r.num_groups != 0:
                raise ValueError(f"grouped_top_k: num_groups ({r.num_groups}) must divide "
                                 f"the number of experts ({columns})")
            group_size = columns // r.num_groups
            if r.group_score_k > group_size:
                raise ValueError(f"grouped_top_k: group_score_k ({r.group_score_k}) "
                                 f"exceeds the group size ({group_size})")
            if r.top_groups * group_size < r.k:
                raise ValueError(f"grouped_top_k: the {r.top_groups} kept groups hold "
                                 f"{r.top_groups * group_size} experts, fewer than "
                                 f"k = {r.k}")
        if r.policy == "top_p" and r.score == "softmax_selected":
            raise ValueError("top_p needs probabilities over all experts; "
                             "score = softmax_selected is not allowed")
        if self.selection_bias and r.policy not in ("top_k", "grouped_top_k", "top_p",
                                                    "threshold"):
            raise ValueError(f"a selection bias is not supported by policy {r.policy}")
        if self.capacity is not None and r.policy == "expert_choice":
            raise ValueError("expert_choice routing is balanced by construction and "
                             "takes no capacity")
        if self.num_shared_experts < 0:
            raise ValueError("num_shared_experts must not be negative")
        if self.num_shared_experts:
            _positive_int("shared_d_ff", self.shared_d_ff)
        elif self.shared_gate:
            raise ValueError("shared_gate needs shared experts (num_shared_experts >= 1)")

    # -- shapes --------------------------------------------------------------
    def _matrix(self, lead: Tuple[int, ...], n_in: int, n_out: int) -> TensorType:
        """A (stacked) matrix mapping n_in -> n_out in the FFN's layout."""
        dims = (n_in, n_out) if self.ffn.layout == "in_out" else (n_out, n_in)
        return TensorType(lead + dims, self.dtype)

    def operand_types(self) -> List[Tuple[str, TensorType]]:
        """The weight operands of `moe.layer`, in assembly order, with types."""
        self.validate()
        d, f, e = self.d_model, self.d_ff, self.num_experts
        cols = self.num_router_columns
        width1 = 2 * f if self.ffn.fused else f
        ops: List[Tuple[str, TensorType]] = [("router", self._matrix((), d, cols))]
        if self.router_bias:
            ops.append(("router_bias", TensorType((cols,), self.dtype)))
        if self.selection_bias:
            # The verifier sizes the selection bias by the router columns.
            ops.append(("selection_bias", TensorType((cols,), self.dtype)))
        ops.append(("w1", self._matrix((e,), d, width1)))
        if self.ffn.needs_w3:
            ops.append(("w3", self._matrix((e,), d, f)))
        ops.append(("w2", self._matrix((e,), f, d)))
        if self.b1:
            ops.append(("b1", TensorType((e, width1), self.dtype)))
        if self.b2:
            ops.append(("b2", TensorType((e, d), self.dtype)))
        if self.num_shared_experts:
            s, fs = self.num_shared_experts, self.shared_d_ff
            ops.append(("shared_w1", self._matrix((s,), d, 2 * fs if self.ffn.fused else fs)))
            if self.ffn.needs_w3:
                ops.append(("shared_w3", self._matrix((s,), d, fs)))
            ops.append(("shared_w2", self._matrix((s,), fs, d)))
            if self.shared_gate:
                ops.append(("shared_gate", self._matrix((), d, 1)))
        return ops

    def input_type(self, tokens: Optional[int] = None) -> TensorType:
        return TensorType((tokens, self.d_model), self.dtype)

    def attribute_dict(self) -> str:
        """`{capacity = ..., ffn = ..., routing = ...}` in printer order."""
        attrs = []
        if self.capacity is not None:
            attrs.append(f"capacity = {self.capacity.render()}")
        attrs.append(f"ffn = {self.ffn.render()}")
        attrs.append(f"routing = {self.routing.render()}")
        return "{" + ", ".join(attrs) + "}"

    # -- emission ------------------------------------------------------------
    def add_weight_arguments(self, fn: Function, prefix: str) -> Dict[str, Value]:
        """Adds one function argument per weight, named `<prefix><operand>`."""
        weights = {}
        for keyword, type_ in self.operand_types():
            name = prefix + keyword
            weights[keyword] = fn.add_argument(name, type_, {NAME_ATTR: format_string(name)})
        return weights

    def emit(self, fn: Function, x: Value, weights: Dict[str, Value]) -> Value:
        """Emits the `moe.layer` on input `x` and returns its result."""
        if not isinstance(x.type, TensorType) or x.type.rank != 2 \
                or x.type.shape[1] != self.d_model or x.type.dtype != self.dtype:
            raise ValueError(f"layer input must be tensor<?x{self.d_model}x{self.dtype}>, "
                             f"got {x.type}")
        groups = [f"{x} : {x.type}"]
        for keyword, type_ in self.operand_types():
            groups.append(f"{keyword}({weights[keyword]} : {type_})")
        text = ("moe.layer " + " ".join(groups) + " " + self.attribute_dict()
                + f" -> {x.type}")
        return fn.op("moe", x.type, text)

    def to_module(self, tokens: Optional[int] = None, func_name: str = "moe_layer",
                  prefix: str = "") -> Module:
        """A module with one function computing just this layer."""
        module = Module()
        fn = module.add_function(func_name)
        x = fn.add_argument("input", self.input_type(tokens),
                            {NAME_ATTR: format_string("input")})
        weights = self.add_weight_arguments(fn, prefix)
        fn.ret([self.emit(fn, x, weights)])
        return module

    def to_mlir(self, tokens: Optional[int] = None, func_name: str = "moe_layer") -> str:
        return self.to_module(tokens, func_name).render()


# ----------------------------------------------------------------------------
# Dense helpers: RMSNorm and residual adds as linalg on tensors.
# ----------------------------------------------------------------------------

_ID2 = affine_map(2, ["d0", "d1"])
_ROW = affine_map(2, ["d0"])
_COL = affine_map(2, ["d1"])


class _DenseEmitter:
    """Emits the non-MoE ops of a model into one function.

    The token count is read once from the model input (`tensor.dim`) when it
    is dynamic; every activation has that many rows.
    """

    def __init__(self, fn: Function, x: Value) -> None:
        self.fn = fn
        self.tokens_value: Optional[Value] = None
        if x.type.is_dynamic(0):
            c0 = fn.index_constant(0)
            self.tokens_value = fn.op("tokens", "index", f"tensor.dim {x}, {c0} : {x.type}")

    def empty(self, type_: TensorType) -> Value:
        dyn = [self.tokens_value for d in type_.shape if d is None]
        operands = ", ".join(str(v) for v in dyn)
        return self.fn.op("empty", type_, f"tensor.empty({operands}) : {type_}")

    def rms_norm(self, x: Value, weight: Value, eps: float) -> Value:
        """`weight * (x * rsqrt(mean(x^2) + eps)).to(dtype)`, as Hugging Face.

        The statistics are computed in f32 whatever the storage type, the
        normalised activations are rounded to the storage type, and the
        weight multiply happens in the storage type, matching
        `LlamaRMSNorm`/`MixtralRMSNorm`/`T5LayerNorm`.
        """
        fn = self.fn
        t: TensorType = x.type
        dtype, width = t.dtype, t.shape[1]
        low = dtype != "f32"
        sums_type = TensorType((t.shape[0],), "f32")
        zero = fn.float_constant(0.0)
        init = fn.op("sumsq_init", sums_type,
                     f"linalg.fill ins({zero} : f32) outs({self.empty(sums_type)} : "
                     f"{sums_type}) -> {sums_type}")
        sums = fn.fresh("sumsq", sums_type)
        fn.open_region(
            f"{sums} = linalg.generic {{indexing_maps = [{_ID2}, {_ROW}], "
            f'iterator_types = ["parallel", "reduction"]}} ins({x} : {t}) '
            f"outs({init} : {sums_type})")
        a, acc = fn.fresh("x", dtype), fn.fresh("acc", "f32")
        fn.emit_label(f"^bb0({a}: {dtype}, {acc}: f32):")
        if low:
            a = fn.op("xf", "f32", f"arith.extf {a} : {dtype} to f32")
        sq = fn.op("sq", "f32", f"arith.mulf {a}, {a} : f32")
        s = fn.op("sum", "f32", f"arith.addf {acc}, {sq} : f32")
        fn.emit(f"linalg.yield {s} : f32")
        fn.close_region(f" -> {sums_type}")

        width_c = fn.float_constant(float(width))
        eps_c = fn.float_constant(eps)
        out = fn.fresh("rms", t)
        init2 = self.empty(t)
        fn.open_region(
            f"{out} = linalg.generic {{indexing_maps = [{_ID2}, {_ROW}, {_COL}, {_ID2}], "
            f'iterator_types = ["parallel", "parallel"]}} '
            f"ins({x}, {sums}, {weight} : {t}, {sums_type}, {weight.type}) "
            f"outs({init2} : {t})")
        a, s, g, o = (fn.fresh("x", dtype), fn.fresh("ss", "f32"),
                      fn.fresh("g", dtype), fn.fresh("o", dtype))
        fn.emit_label(f"^bb0({a}: {dtype}, {s}: f32, {g}: {dtype}, {o}: {dtype}):")
        mean = fn.op("mean", "f32", f"arith.divf {s}, {width_c} : f32")
        var = fn.op("var", "f32", f"arith.addf {mean}, {eps_c} : f32")
        inv = fn.op("inv", "f32", f"math.rsqrt {var} : f32")
        if low:
            a = fn.op("xf", "f32", f"arith.extf {a} : {dtype} to f32")
        normed = fn.op("n", "f32", f"arith.mulf {a}, {inv} : f32")
        if low:
            normed = fn.op("nt", dtype, f"arith.truncf {normed} : f32 to {dtype}")
        y = fn.op("y", dtype, f"arith.mulf {g}, {normed} : {dtype}")
        fn.emit(f"linalg.yield {y} : {dtype}")
        fn.close_region(f" -> {t}")
        return out

    def add(self, a: Value, b: Value) -> Value:
        """Element-wise `a + b` in the storage type (a residual connection)."""
        fn = self.fn
        t: TensorType = a.type
        out = fn.fresh("residual", t)
        init = self.empty(t)
        fn.open_region(
            f"{out} = linalg.generic {{indexing_maps = [{_ID2}, {_ID2}, {_ID2}], "
            f'iterator_types = ["parallel", "parallel"]}} ins({a}, {b} : {t}, {t}) '
            f"outs({init} : {t})")
        x, y, o = fn.fresh("a", t.dtype), fn.fresh("b", t.dtype), fn.fresh("o", t.dtype)
        fn.emit_label(f"^bb0({x}: {t.dtype}, {y}: {t.dtype}, {o}: {t.dtype}):")
        s = fn.op("sum", t.dtype, f"arith.addf {x}, {y} : {t.dtype}")
        fn.emit(f"linalg.yield {s} : {t.dtype}")
        fn.close_region(f" -> {t}")
        return out


@dataclass
class Model:
    """A stack of MoE blocks: `h = h + moe_i(rms_norm_i(h))`, then a final norm.

    Attention is not modelled; the stack is the part of a transformer the MoE
    compiler is about, with the dense glue a real model has between blocks so
    that passes see more than one isolated `moe.layer`.

    Every weight becomes a function argument carrying its stable name in a
    `{moe.name = "..."}` argument attribute (moe-opt preserves it), e.g.
    `layers.0.norm`, `layers.0.router`, `layers.0.w1`, `final_norm`.
    `layer_prefixes` overrides the `layers.<i>.` prefixes (the Hugging Face
    importer uses the original decoder-layer indices).
    """

    layers: List[MoELayer]
    norm_eps: float = 1e-6
    tokens: Optional[int] = None
    name: str = "moe_model"
    rms_norm: bool = True
    residual: bool = True
    final_norm: bool = True
    layer_prefixes: Optional[List[str]] = None

    def validate(self) -> None:
        if not self.layers:
            raise ValueError("a model needs at least one MoE layer")
        first = self.layers[0]
        for i, layer in enumerate(self.layers):
            layer.validate()
            if layer.d_model != first.d_model or layer.dtype != first.dtype:
                raise ValueError(
                    f"layer {i} has d_model={layer.d_model}, dtype={layer.dtype} but "
                    f"layer 0 has d_model={first.d_model}, dtype={first.dtype}; "
                    "stacked layers must agree")
        if self.tokens is not None:
            _positive_int("tokens", self.tokens)
        if not (self.norm_eps > 0.0 and math.isfinite(self.norm_eps)):
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if self.layer_prefixes is not None and len(self.layer_prefixes) != len(self.layers):
            raise ValueError("layer_prefixes must have one entry per layer")

    def prefixes(self) -> List[str]:
        if self.layer_prefixes is not None:
            return list(self.layer_prefixes)
        return [f"layers.{i}." for i in range(len(self.layers))]

    def build(self) -> Module:
        self.validate()
        first = self.layers[0]
        module = Module()
        fn = module.add_function(self.name)
        x = fn.add_argument("input", first.input_type(self.tokens),
                            {NAME_ATTR: format_string("input")})
        norm_type = TensorType((first.d_model,), first.dtype)
        # Arguments first, in a stable order: per layer norm then MoE weights.
        per_layer = []
        for prefix, layer in zip(self.prefixes(), self.layers):
            norm = None
            if self.rms_norm:
                norm = fn.add_argument(prefix + "norm", norm_type,
                                       {NAME_ATTR: format_string(prefix + "norm")})
            per_layer.append((norm, layer.add_weight_arguments(fn, prefix)))
        final = None
        if self.final_norm:
            final = fn.add_argument("final_norm", norm_type,
                                    {NAME_ATTR: format_string("final_norm")})

        dense = _DenseEmitter(fn, x)
        h = x
        for (norm, weights), layer in zip(per_layer, self.layers):
            inp = dense.rms_norm(h, norm, self.norm_eps) if norm is not None else h
            y = layer.emit(fn, inp, weights)
            h = dense.add(h, y) if self.residual else y
        if final is not None:
            h = dense.rms_norm(h, final, self.norm_eps)
        fn.ret([h])
        return module

    def to_mlir(self) -> str:
        return self.build().render()
