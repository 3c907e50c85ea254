"""A tiny textual MLIR builder.

There are no MLIR Python bindings in this project, so the frontend writes the
textual IR itself. This module holds everything that is about *syntax* and
nothing that is about MoE: tensor types, float/attribute formatting that the
MLIR lexer accepts, unique SSA names, and functions/modules that print
themselves. Keeping syntax here means `layers.py` can talk about layers and
weights instead of string escaping.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

#: Element types the `moe` dialect accepts for activations and weights.
FLOAT_TYPES = ("f32", "f16", "bf16")

#: Marker for a dynamic dimension (printed as `?`).
DYNAMIC = None

Dim = Optional[int]


def format_float(value: float) -> str:
    """Formats a double the way the moe dialect prints it.

    MLIR's lexer only reads a float literal with a '.' in the mantissa
    (`1.0e-20`, never `1e-20`), and the dialect prints the shortest `%g` form
    that reads back to the same double. Producing exactly that text means the
    frontend's output is already in moe-opt's canonical form, so round trips
    are textually stable and tests can compare strings.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot print non-finite float {value!r} in MLIR")
    text = ""
    for precision in range(1, 18):
        text = "%.*g" % (precision, value)
        if float(text) == value:
            break
    if "." not in text:
        e_pos = text.find("e")
        text = text + ".0" if e_pos < 0 else text[:e_pos] + ".0" + text[e_pos:]
    return text


def format_bool(value: bool) -> str:
    return "true" if value else "false"


def format_string(value: str) -> str:
    """A string attribute literal with MLIR escapes."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\%02X" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def format_attr_dict(attrs: Dict[str, str]) -> str:
    """`{a = 1, b = "x"}` from already-formatted values (empty dict -> '')."""
    if not attrs:
        return ""
    return "{" + ", ".join(f"{k} = {v}" for k, v in attrs.items()) + "}"


@dataclass(frozen=True)
class TensorType:
    """A ranked tensor type; `None` dimensions are dynamic (`?`)."""

    shape: Tuple[Dim, ...]
    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        for dim in self.shape:
            if dim is not None and (not isinstance(dim, int) or dim < 0):
                raise ValueError(f"invalid tensor dimension {dim!r} in {self.shape}")
        if not re.fullmatch(r"(f16|bf16|f32|f64|i1|i8|i16|i32|i64|index)", self.dtype):
            raise ValueError(f"unsupported element type {self.dtype!r}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    def is_dynamic(self, index: int) -> bool:
        return self.shape[index] is None

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(self.shape, dtype)

    def with_shape(self, shape: Sequence[Dim]) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def __str__(self) -> str:
        dims = "".join(("?" if d is None else str(d)) + "x" for d in self.shape)
        return f"tensor<{dims}{self.dtype}>"


Type = Union[TensorType, str]


@dataclass(frozen=True)
class Value:
    """An SSA value: its name (without `%`) and its type."""

    name: str
    type: Type

    def __str__(self) -> str:
        return "%" + self.name


_SSA_SAFE = re.compile(r"[^A-Za-z0-9_.$-]")


class Namer:
    """Hands out unique SSA names.

    Names are derived from a hint ("layers.0.w1", "rms") so the text is
    readable before moe-opt renumbers it; MLIR accepts `.`, `$`, `-` and `_`
    in value names. Names are unique per function, including inside nested
    regions, which sidesteps any question of shadowing.
    """

    def __init__(self) -> None:
        self._used: Dict[str, int] = {}

    def fresh(self, hint: str = "v") -> str:
        base = _SSA_SAFE.sub("_", hint) or "v"
        if base[0].isdigit() or base[0] in ".$-":
            base = "v" + base
        count = self._used.get(base)
        if count is None:
            self._used[base] = 0
            return base
        while True:
            count += 1
            candidate = f"{base}_{count}"
            if candidate not in self._used:
                self._used[base] = count
                self._used[candidate] = 0
                return candidate


@dataclass
class Argument:
    value: Value
    attrs: Dict[str, str]


class Function:
    """A `func.func` being built: arguments, body lines and a return.

    Body text is appended line by line through `emit`; `block` opens a nested
    region indented one level deeper. The builder does not check types: the
    callers are the layer emitters, and moe-opt verifies the result.
    """

    INDENT = "  "

    def __init__(self, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.]*", name):
            raise ValueError(f"invalid function name {name!r}")
        self.name = name
        self.namer = Namer()
        self.arguments: List[Argument] = []
        self.results: List[Value] = []
        self._lines: List[str] = []
        self._depth = 1
        self._constants: Dict[Tuple[str, str], Value] = {}
        self._prologue: List[str] = []

    # -- arguments -----------------------------------------------------------
    def add_argument(self, hint: str, type: Type,
                     attrs: Optional[Dict[str, str]] = None) -> Value:
        """Adds a function argument named after `hint`."""
        value = Value(self.namer.fresh(hint), type)
        self.arguments.append(Argument(value, dict(attrs or {})))
        return value

    # -- body ----------------------------------------------------------------
    def fresh(self, hint: str, type: Type) -> Value:
        return Value(self.namer.fresh(hint), type)

    def emit(self, line: str) -> None:
        self._lines.append(self.INDENT * self._depth + line)

    def op(self, hint: str, type: Type, text: str) -> Value:
        """Emits `%name = <text>` and returns the new value."""
        value = self.fresh(hint, type)
        self.emit(f"{value} = {text}")
        return value

    def constant(self, literal: str, type: str) -> Value:
        """An `arith.constant`, defined once per (literal, type).

        Constants are hoisted to the function entry so they dominate every
        use, including uses inside `linalg.generic` bodies and in later
        layers, and so repeated layers share them.
        """
        key = (literal, type)
        cached = self._constants.get(key)
        if cached is not None:
            return cached
        hint = "c" + re.sub(r"[^A-Za-z0-9]", "_", literal) if type == "index" else "cst"
        value = self.fresh(hint, type)
        self._prologue.append(self.INDENT + f"{value} = arith.constant {literal} : {type}")
        self._constants[key] = value
        return value

    def float_constant(self, value: float, type: str = "f32") -> Value:
        return self.constant(format_float(value), type)

    def index_constant(self, value: int) -> Value:
        return self.constant(str(int(value)), "index")

    def emit_label(self, line: str) -> None:
        """A block label (`^bb0(...):`), outdented like moe-opt prints it."""
        self._lines.append(self.INDENT * (self._depth - 1) + line)

    def open_region(self, header: str) -> None:
        """Emits `header {` and indents what follows."""
        self.emit(header + " {")
        self._depth += 1

    def close_region(self, trailer: str = "") -> None:
        self._depth -= 1
        if self._depth < 1:
            raise RuntimeError("close_region without open_region")
        self.emit("}" + trailer)

    def ret(self, values: Iterable[Value]) -> None:
        self.results = list(values)

    # -- printing ------------------------------------------------------------
    def render(self) -> str:
        if self._depth != 1:
            raise RuntimeError(f"function @{self.name} has unclosed regions")
        args = []
        for arg in self.arguments:
            text = f"{arg.value}: {arg.value.type}"
            if arg.attrs:
                text += " " + format_attr_dict(arg.attrs)
            args.append(text)
        result_types = [str(v.type) for v in self.results]
        if len(result_types) == 1:
            sig = f" -> {result_types[0]}"
        elif result_types:
            sig = " -> (" + ", ".join(result_types) + ")"
        else:
            sig = ""
        lines = [f"func.func @{self.name}(" + ", ".join(args) + ")" + sig + " {"]
        lines.extend(self._prologue)
        lines.extend(self._lines)
        if self.results:
            names = ", ".join(str(v) for v in self.results)
            lines.append(self.INDENT + f"return {names} : " + ", ".join(result_types))
        else:
            lines.append(self.INDENT + "return")
        lines.append("}")
        return "\n".join(lines)


class Module:
    """A list of functions printed as one `module`."""

    def __init__(self) -> None:
        self.functions: List[Function] = []

    def add_function(self, name: str) -> Function:
        if any(f.name == name for f in self.functions):
            raise ValueError(f"function @{name} already exists in the module")
        fn = Function(name)
        self.functions.append(fn)
        return fn

    def render(self) -> str:
        body = "\n\n".join(f.render() for f in self.functions)
        indented = "\n".join(("  " + line) if line else line for line in body.splitlines())
        return "module {\n" + indented + "\n}\n"

    def __str__(self) -> str:
        return self.render()


def affine_map(num_dims: int, results: Sequence[str]) -> str:
    """`affine_map<(d0, d1) -> (d0)>` from result expressions."""
    dims = ", ".join(f"d{i}" for i in range(num_dims))
    return f"affine_map<({dims}) -> ({', '.join(results)})>"
