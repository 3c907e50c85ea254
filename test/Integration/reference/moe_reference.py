"""Independent numpy reference implementation of the `moe` dialect semantics.

Written from docs/Semantics.md (the contract) and the attribute definitions in
MoeAttrs.td, without looking at any lowering or runtime kernel, so that the
integration tests compare the compiler against a second implementation.

Conventions
-----------
* Routing arithmetic is float32, as the spec requires: softmax is
  ``exp(l - max) / sum`` in f32, every sum the spec orders (cumulative top-p
  mass, normalisation denominators, combine) is accumulated *sequentially* in
  f32 in the order the spec names (``np.cumsum`` is a sequential accumulate).
  Attribute doubles that enter f32 routing arithmetic (``top_p``,
  ``threshold``, ``scaling``, ``epsilon``, ``2 * jitter_eps``) are rounded to
  f32 first; capacities (``ceil``/``floor`` formulas) are evaluated in double.
* Matrix products (router, expert FFNs, shared-expert gate) and the RMSNorm
  sum of squares are computed in float64 and rounded once to float32 at the
  end, which keeps the reference independent of any summation order; the
  element-wise FFN algebra (activation, clamp, gate * up) is float64 too.
* ``routing``/``capacity``/``ffn`` arguments accept either the textual
  attribute (``"#moe.routing<k = 2, normalize = selected>"``) or a dict of
  field values (missing fields take the dialect defaults).

Only numpy and the standard library are used.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

F32 = np.float32
FLT_EPSILON = np.float32(np.finfo(np.float32).eps)

__all__ = [
    "ROUTING_FIELDS", "CAPACITY_FIELDS", "FFN_FIELDS",
    "parse_attr", "parse_attr_kind", "routing_attr", "capacity_attr", "ffn_attr",
    "scores", "selection_keys", "rank_order", "route", "capacity_for",
    "dispatch", "activation", "expert_ffn", "run_experts", "combine",
    "expert_stats", "load_balancing", "router_logits", "moe_layer", "rmsnorm",
    "model", "all_to_all", "all_gather", "reduce_scatter", "make_inputs", "make_layer_params", "key_gap", "round_to_bf16",
]

# ----------------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------------

_ENUM = "enum"
_INT = "int"
_FLOAT = "float"
_BOOL = "bool"

_REQUIRED = object()

#: (name, kind, default, choices) in declaration order (MoeAttrs.td).
ROUTING_FIELDS = (
    ("policy", _ENUM, "top_k", ("top_k", "top_p", "grouped_top_k", "sinkhorn",
                                "expert_choice", "threshold", "sparse_mixer")),
    ("k", _INT, _REQUIRED, None),
    ("score", _ENUM, "softmax", ("softmax", "sigmoid", "softmax_selected", "identity")),
    ("normalize", _ENUM, "none", ("none", "selected")),
    ("tie_break", _ENUM, "lower_index", ("lower_index", "higher_index")),
    ("scaling", _FLOAT, 1.0, None),
    ("top_p", _FLOAT, 1.0, None),
    ("threshold", _FLOAT, 0.0, None),
    ("num_groups", _INT, 1, None),
    ("top_groups", _INT, 1, None),
    ("group_score_k", _INT, 2, None),
    ("mask_with_zero", _BOOL, False, None),
    ("null_experts", _INT, 0, None),
    ("sinkhorn_iterations", _INT, 3, None),
    ("capacity_factor", _FLOAT, 1.0, None),
    ("jitter_eps", _FLOAT, 0.01, None),
    ("epsilon", _FLOAT, 0.0, None),
)

CAPACITY_FIELDS = (
    ("factor", _FLOAT, 1.0, None),
    ("formula", _ENUM, "gshard", ("gshard", "tutel", "fixed")),
    ("fixed", _INT, 0, None),
    ("min_capacity", _INT, 0, None),
    ("align", _INT, 1, None),
    ("order", _ENUM, "position", ("position", "choice_major", "score")),
    ("on_drop", _ENUM, "zero", ("zero", "pass_through")),
    ("renormalize", _BOOL, False, None),
)

FFN_FIELDS = (
    ("kind", _ENUM, "glu", ("mlp", "glu")),
    ("activation", _ENUM, "silu", ("silu", "gelu", "gelu_tanh", "relu", "identity")),
    ("gate_up", _ENUM, "separate", ("separate", "concatenated", "interleaved")),
    ("layout", _ENUM, "in_out", ("in_out", "out_in")),
    ("alpha", _FLOAT, 1.0, None),
    ("up_shift", _FLOAT, 0.0, None),
    ("limit", _FLOAT, 0.0, None),
)

_FIELDS = {"routing": ROUTING_FIELDS, "capacity": CAPACITY_FIELDS, "ffn": FFN_FIELDS}

_ATTR_RE = re.compile(r"^\s*#?(?:moe\.)?(routing|capacity|ffn)\s*<(.*)>\s*$", re.S)


def _convert(mnemonic: str, name: str, kind: str, choices, value):
    where = f"#moe.{mnemonic} field '{name}'"
    if kind == _ENUM:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
        return value
    if kind == _BOOL:
        if isinstance(value, str):
            if value not in ("true", "false"):
                raise ValueError(f"{where}: expected true or false, got {value!r}")
            return value == "true"
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ValueError(f"{where}: expected a bool, got {value!r}")
    if kind == _INT:
        if isinstance(value, str):
            try:
                return int(value, 10)
            except ValueError:
                raise ValueError(f"{where}: expected an integer, got {value!r}") from None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    # float
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a float, got {value!r}") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise ValueError(f"{where}: expected a float, got {value!r}")
    return float(value)


def _complete(mnemonic: str, given: Mapping) -> Dict:
    fields = _FIELDS[mnemonic]
    names = {f[0] for f in fields}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"#moe.{mnemonic} has no field(s) {', '.join(unknown)}")
    out = {}
    for name, kind, default, choices in fields:
        if name in given:
            out[name] = _convert(mnemonic, name, kind, choices, given[name])
        elif default is _REQUIRED:
            raise ValueError(f"#moe.{mnemonic} needs field '{name}'")
        else:
            out[name] = default
    return out


def parse_attr(text: str) -> Dict:
    """Parses `#moe.routing<...>`, `#moe.capacity<...>` or `#moe.ffn<...>`.

    Returns a dict holding every field of the attribute (the given ones
    converted to int / float / bool / enum string, the others at their
    dialect defaults). The attribute kind is not part of the dict; use
    `parse_attr_kind` for it.
    """
    return _parse(text)[1]


def parse_attr_kind(text: str) -> Tuple[str, Dict]:
    """Like `parse_attr` but also returns the mnemonic ('routing', ...)."""
    return _parse(text)


def _parse(text: str) -> Tuple[str, Dict]:
    m = _ATTR_RE.match(text)
    if not m:
        raise ValueError(f"not a #moe.routing / #moe.capacity / #moe.ffn attribute: {text!r}")
    mnemonic, body = m.group(1), m.group(2).strip()
    given = {}
    if body:
        for part in body.split(","):
            if "=" not in part:
                raise ValueError(f"#moe.{mnemonic}: expected 'name = value', got {part.strip()!r}")
            name, value = (s.strip() for s in part.split("=", 1))
            if name in given:
                raise ValueError(f"#moe.{mnemonic}: field '{name}' given twice")
            given[name] = value
    return mnemonic, _complete(mnemonic, given)


def _as_attr(mnemonic: str, value) -> Dict:
    if isinstance(value, str):
        kind, fields = _parse(value)
        if kind != mnemonic:
            raise ValueError(f"expected a #moe.{mnemonic} attribute, got #moe.{kind}")
        return fields
    if isinstance(value, Mapping):
        return _complete(mnemonic, value)
    raise TypeError(f"expected #moe.{mnemonic} text or a dict, got {type(value).__name__}")


def routing_attr(value=None, **fields) -> Dict:
    """A complete routing dict from text, a dict, and/or keyword fields."""
    base = dict(_as_attr("routing", value)) if value is not None else {}
    base.update(fields)
    return _as_attr("routing", base)


def capacity_attr(value=None, **fields) -> Dict:
    base = dict(_as_attr("capacity", value)) if value is not None else {}
    base.update(fields)
    return _as_attr("capacity", base)


def ffn_attr(value=None, **fields) -> Dict:
    base = dict(_as_attr("ffn", value)) if value is not None else {}
    base.update(fields)
    return _as_attr("ffn", base)


# ----------------------------------------------------------------------------
# Small f32 helpers
# ----------------------------------------------------------------------------

def _seq_sum(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sequential f32 sum along `axis` (index order)."""
    a = np.asarray(a, dtype=F32)
    if a.shape[axis] == 0:
        return np.sum(a, axis=axis, dtype=F32)
    return np.take(np.cumsum(a, axis=axis, dtype=F32), -1, axis=axis)


def _softmax_rows(l: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in f32: exp(l - max) / sequential sum."""
    l = np.asarray(l, dtype=F32)
    with np.errstate(all="ignore"):
        m = np.fmax.reduce(l, axis=-1, keepdims=True)   # NaN entries ignored
        e = np.exp((l - m).astype(F32)).astype(F32)
        return (e / _seq_sum(e)[..., None]).astype(F32)


def _masked_softmax_rows(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax of each row of `v` restricted to `mask` (0 elsewhere), f32."""
    v = np.asarray(v, dtype=F32)
    with np.errstate(all="ignore"):
        vm = np.where(mask, v, F32(-np.inf)).astype(F32)
        m = np.fmax.reduce(vm, axis=-1, keepdims=True)
        e = np.where(mask, np.exp((v - m).astype(F32)), F32(0)).astype(F32)
        s = _seq_sum(e)[..., None]
        return np.where(mask, e / s, F32(0)).astype(F32)


def _sigmoid32(l: np.ndarray) -> np.ndarray:
    l = np.asarray(l, dtype=F32)
    with np.errstate(all="ignore"):
        return (F32(1) / (F32(1) + np.exp(-l))).astype(F32)


def rank_order(keys: np.ndarray, tie_break: str = "lower_index") -> np.ndarray:
    """Indices sorting every row of `keys` descending (the spec's rank order).

    Equal keys (including -0.0 == 0.0) are ordered by index ascending for
    `lower_index`, descending for `higher_index`; NaN ranks after every number
    (NaNs among themselves follow the same index order).
    """
    keys = np.asarray(keys, dtype=F32)
    if keys.ndim == 1:
        return rank_order(keys[None, :], tie_break)[0]
    n = keys.shape[-1]
    nan = np.isnan(keys)
    neg = np.where(nan, 0.0, -keys.astype(np.float64)) + 0.0   # +0.0 folds -0.0
    idx = np.broadcast_to(np.arange(n), keys.shape)
    if tie_break == "lower_index":
        sec = idx
    elif tie_break == "higher_index":
        sec = -idx
    else:
        raise ValueError(f"unknown tie_break {tie_break!r}")
    return np.lexsort((sec, neg, nan), axis=-1)


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take_along_axis(a, idx, axis=-1)


# ----------------------------------------------------------------------------
# Routing
# ----------------------------------------------------------------------------

_BIAS_POLICIES = ("top_k", "top_p", "threshold", "grouped_top_k")


def scores(logits: np.ndarray, score: str) -> np.ndarray:
    """`p[t, e]` over all router columns (Semantics 1.1).

    `softmax_selected` is only defined after selection; for the places that
    need a score over all columns before selection (selection key with a
    bias, expert_choice picking, load-balancing statistics) this returns the
    softmax over all columns.
    """
    l = np.asarray(logits, dtype=F32)
    if score in ("softmax", "softmax_selected"):
        return _softmax_rows(l)
    if score == "sigmoid":
        return _sigmoid32(l)
    if score == "identity":
        return l.copy()
    raise ValueError(f"unknown score function {score!r}")


def _bias_vector(bias, num_columns: int, num_real: int) -> np.ndarray:
    b = np.asarray(bias, dtype=F32).reshape(-1)
    if b.size == num_columns:
        return b
    if b.size == num_real:
        # The op description says [E]; null-expert columns then get bias 0.
        return np.concatenate([b, np.zeros(num_columns - num_real, F32)])
    raise ValueError(f"selection bias has {b.size} entries, expected {num_columns}")


def selection_keys(logits: np.ndarray, routing, bias=None) -> np.ndarray:
    """The selection key per column (Semantics 1.2): the logit without a bias,
    `p + b` with one; grouped_top_k always ranks `p + b` (b = 0 if absent),
    because its group scores are sums of scores."""
    r = _as_attr("routing", routing)
    l = np.asarray(logits, dtype=F32)
    n = l.shape[-1]
    if bias is None:
        if r["policy"] != "grouped_top_k":
            return l.copy()
        b = np.zeros(n, F32)
    else:
        b = _bias_vector(bias, n, n - r["null_experts"])
    with np.errstate(all="ignore"):
        return (scores(l, r["score"]) + b).astype(F32)


def key_gap(keys: np.ndarray, k: int) -> float:
    """Smallest per-token gap between the k-th and (k+1)-th best key.

    Integration tests can use it to check that random inputs are far from a
    selection tie (a compiled router's logits differ from the reference's by
    rounding, which could otherwise swap experts).
    """
    keys = np.asarray(keys, dtype=np.float64)
    if k >= keys.shape[-1]:
        return math.inf
    s = -np.sort(-keys, axis=-1)
    return float(np.min(s[:, k - 1] - s[:, k])) if keys.shape[0] else math.inf


def _validate_routing(r: Dict, num_columns: int, has_bias: bool) -> None:
    k, policy = r["k"], r["policy"]
    if k < 1:
        raise ValueError(f"routing k must be at least 1, got {k}")
    if r["null_experts"] < 0 or r["null_experts"] >= num_columns:
        raise ValueError(f"null_experts ({r['null_experts']}) leaves no real expert among "
                         f"{num_columns} router columns")
    if k > num_columns:
        raise ValueError(f"k ({k}) exceeds the number of router columns ({num_columns})")
    if policy == "top_p" and r["score"] == "softmax_selected":
        raise ValueError("top_p needs probabilities over all experts; "
                         "score = softmax_selected is not allowed")
    if policy == "sparse_mixer" and k != 2:
        raise ValueError(f"sparse_mixer selects exactly 2 experts, got k = {k}")
    if policy == "expert_choice" and r["null_experts"]:
        raise ValueError("expert_choice cannot be combined with null experts")
    if policy == "grouped_top_k":
        g = r["num_groups"]
        if num_columns % g:
            raise ValueError(f"grouped_top_k: num_groups ({g}) must divide {num_columns}")
        size = num_columns // g
        if r["group_score_k"] > size:
            raise ValueError("grouped_top_k: group_score_k exceeds the group size")
        if r["top_groups"] > g:
            raise ValueError("grouped_top_k: top_groups exceeds num_groups")
        if r["top_groups"] * size < k:
            raise ValueError("grouped_top_k: the kept groups hold fewer than k experts")
    if has_bias and policy not in _BIAS_POLICIES:
        raise ValueError(f"a selection bias is not supported by policy {policy}")


def route(logits: np.ndarray, routing, bias=None) -> Tuple[np.ndarray, np.ndarray]:
    """`moe.route`: router logits `[T, E']` -> (weights f32 [T, K], experts i32 [T, K]).

    `routing` is `#moe.routing` text or a dict; `bias` the optional selection
    bias `[E']` (`[E]` is accepted too, null columns then get 0).
    """
    r = _as_attr("routing", routing)
    l = np.asarray(logits, dtype=F32)
    if l.ndim != 2:
        raise ValueError(f"logits must be [T, E'], got shape {l.shape}")
    T, N = l.shape
    E = N - r["null_experts"]
    K = r["k"]
    _validate_routing(r, N, bias is not None)
    policy, score, tb = r["policy"], r["score"], r["tie_break"]

    # cols: kept router columns in slot order, -2 for unused slots.
    cols = np.full((T, K), -2, dtype=np.int64)
    w = np.zeros((T, K), dtype=F32)

    with np.errstate(all="ignore"):
        if policy in ("top_k", "top_p", "threshold", "grouped_top_k"):
            p = scores(l, score)
            key = selection_keys(l, r, bias)
            if policy == "grouped_top_k":
                key = _group_mask(key, r)
            order = rank_order(key, tb)
            sel = order[:, :K]
            if policy in ("top_k", "grouped_top_k"):
                keep = np.ones((T, K), dtype=bool)
            elif policy == "top_p":
                mass = np.cumsum(_take(p, sel), axis=-1, dtype=F32)
                reach = mass >= F32(r["top_p"])
                count = np.where(reach.any(axis=-1), np.argmax(reach, axis=-1) + 1, K)
                keep = np.arange(K)[None, :] < count[:, None]
            else:  # threshold
                keep = np.ones((T, K), dtype=bool)
            if policy == "threshold" or r["threshold"] > 0.0:
                # Skipping (Semantics 1.3): drop kept slots with p < threshold.
                if score == "softmax_selected":
                    psel = _softmax_rows(_take(l, sel))
                else:
                    psel = _take(p, sel)
                keep = keep & (psel >= F32(r["threshold"]))
            cols = _compact(sel, keep)
            used = cols >= 0
            # Renormalised softmax without epsilon is computed as the softmax
            # of the kept logits (Semantics 1.4), like softmax_selected.
            renormalised = (score == "softmax" and r["normalize"] == "selected"
                            and r["epsilon"] == 0.0)
            if score == "softmax_selected" or renormalised:
                w = _masked_softmax_rows(_take(l, np.maximum(cols, 0)), used)
            else:
                w = np.where(used, _take(p, np.maximum(cols, 0)), F32(0)).astype(F32)

        elif policy == "sinkhorn":
            M = _sinkhorn(l, r["sinkhorn_iterations"])
            cols = rank_order(M, tb)[:, :K]
            w = _take(M, cols).astype(F32)

        elif policy == "expert_choice":
            p = scores(l, score)
            ce = min(T, int(math.ceil(r["capacity_factor"] * T * K / N)))
            picked = np.zeros((T, N), dtype=bool)
            if ce > 0:
                tok = rank_order(p.T, "lower_index")[:, :ce]       # [N, ce]
                picked[tok, np.arange(N)[:, None]] = True
            for t in range(T):
                cand = np.nonzero(picked[t])[0]                    # ascending ids
                if cand.size == 0:
                    continue
                o = rank_order(p[t, cand], tb)[:K]
                chosen = cand[o]
                cols[t, :chosen.size] = chosen
            used = cols >= 0
            if score == "softmax_selected":
                w = _masked_softmax_rows(_take(l, np.maximum(cols, 0)), used)
            else:
                w = np.where(used, _take(p, np.maximum(cols, 0)), F32(0)).astype(F32)

        elif policy == "sparse_mixer":
            eps2 = F32(2.0 * r["jitter_eps"])
            e1 = rank_order(l, tb)[:, 0]
            w1 = _sparse_mixer_weight(l, e1, eps2)
            l2 = l.copy()
            l2[np.arange(T), e1] = F32(-np.inf)
            e2 = rank_order(l2, tb)[:, 0]
            w2 = _sparse_mixer_weight(l2, e2, eps2)
            cols = np.stack([e1, e2], axis=-1).astype(np.int64)
            w = np.stack([w1, w2], axis=-1).astype(F32)
        else:
            raise ValueError(f"unknown routing policy {policy!r}")

        used = cols >= 0
        w = np.where(used, w, F32(0)).astype(F32)
        # 1.4 (2): normalise over the kept weights, null experts included.
        if r["normalize"] == "selected":
            denom = (_seq_sum(w) + F32(r["epsilon"])).astype(F32)
            w = np.where(used, w / denom[:, None], F32(0)).astype(F32)
        # 1.4 (3): routed scaling factor.
        w = np.where(used, w * F32(r["scaling"]), F32(0)).astype(F32)
        # 1.4 (4): null experts and unused slots -> -1 / 0.
        real = used & (cols < E)
        experts = np.where(real, cols, -1).astype(np.int32)
        w = np.where(real, w, F32(0)).astype(F32)
    return w, experts


def _compact(sel: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Moves the kept entries of each row to the front (stable); -2 elsewhere."""
    T, K = sel.shape
    out = np.full((T, K), -2, dtype=np.int64)
    for t in range(T):
        kept = sel[t][keep[t]]
        out[t, :kept.size] = kept
    return out


def _group_mask(key: np.ndarray, r: Dict) -> np.ndarray:
    """grouped_top_k: keys outside the kept groups -> -inf (or 0.0)."""
    T, N = key.shape
    G, size = r["num_groups"], N // r["num_groups"]
    gk = key.reshape(T * G, size)
    best = _take(gk, rank_order(gk, "lower_index")[:, :r["group_score_k"]])
    gscore = _seq_sum(best).reshape(T, G)                   # summed in rank order
    kept_groups = rank_order(gscore, "lower_index")[:, :r["top_groups"]]
    gmask = np.zeros((T, G), dtype=bool)
    gmask[np.arange(T)[:, None], kept_groups] = True
    cmask = np.repeat(gmask, size, axis=1)
    fill = F32(0.0) if r["mask_with_zero"] else F32(-np.inf)
    return np.where(cmask, key, fill).astype(F32)


def _sinkhorn(l: np.ndarray, iterations: int) -> np.ndarray:
    T, N = l.shape
    if T == 0:
        return l.copy()
    m = np.fmax.reduce(l, axis=None)                          # global max
    M = np.exp((l - m).astype(F32)).astype(F32)
    target = F32(T) / F32(N)
    for _ in range(iterations):
        col = _seq_sum(M, axis=0)                              # token order
        M = (M * (target / col)[None, :]).astype(F32)
        row = _seq_sum(M, axis=1)                              # column order
        M = (M / row[:, None]).astype(F32)
    return M


def _sparse_mixer_weight(l: np.ndarray, e: np.ndarray, eps2: np.float32) -> np.ndarray:
    T = l.shape[0]
    m = l[np.arange(T), e][:, None]
    factor = np.maximum(np.abs(l), m)
    ratio = ((m - l) / factor).astype(F32)
    masked = ratio > eps2          # NaN ratio (0/0, inf/inf) is not masked
    ex = np.where(masked, F32(0), np.exp((l - m).astype(F32))).astype(F32)
    return (ex[np.arange(T), e] / _seq_sum(ex)).astype(F32)


# ----------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------

def capacity_for(capacity, num_tokens: int, k: int, num_experts: int) -> int:
    """Per-expert capacity C (Semantics 2.2), evaluated in double."""
    c = _as_attr("capacity", capacity)
    if c["formula"] == "fixed":
        cap = c["fixed"]
    elif c["formula"] == "gshard":
        cap = int(math.ceil(c["factor"] * num_tokens * k / num_experts))
    else:  # tutel
        cap = k * int(math.floor(c["factor"] * (-(-num_tokens // num_experts))))
    cap = max(cap, c["min_capacity"])
    align = c["align"]
    return -(-cap // align) * align


def dispatch(x: np.ndarray, weights: np.ndarray, experts: np.ndarray, num_experts: int,
             capacity=None):
    """`moe.dispatch` -> (dispatched, row_token, counts, token_slot, combine_weights).

    Ragged (capacity None): dispatched [T*K, D], row_token [T*K].
    Padded: dispatched [E, C, D], row_token [E, C].
    counts [E], token_slot [T, K] and row_token are int32; combine_weights f32.
    """
    x = np.asarray(x)
    T, D = x.shape
    E = int(num_experts)
    ex = np.asarray(experts).astype(np.int64)
    wt = np.asarray(weights, dtype=F32)
    K = ex.shape[1]
    valid = (ex >= 0) & (ex < E)          # a pair; anything else behaves as -1
    token_slot = np.full((T, K), -1, dtype=np.int32)
    cw = np.where(valid, wt, F32(0)).astype(F32)
    ts, js = np.nonzero(valid)            # (t, j) row-major order

    if capacity is None:
        es = ex[ts, js]
        perm = np.argsort(es, kind="stable")          # by (expert, t, j)
        N = T * K
        dispatched = np.zeros((N, D), dtype=x.dtype)
        row_token = np.full(N, -1, dtype=np.int32)
        for r_, i in enumerate(perm):
            t, j = ts[i], js[i]
            dispatched[r_] = x[t]
            row_token[r_] = t
            token_slot[t, j] = r_
        counts = np.bincount(es, minlength=E).astype(np.int32)
        return dispatched, row_token, counts, token_slot, cw

    cap = _as_attr("capacity", capacity)
    C = capacity_for(cap, T, K, E)
    if cap["order"] == "position":
        seq = np.arange(ts.size)
    elif cap["order"] == "choice_major":
        seq = np.lexsort((ts, js))
    else:  # score: weight descending (NaN last), ties by (t, j)
        wv = wt[ts, js]
        nan = np.isnan(wv)
        neg = np.where(nan, 0.0, -wv.astype(np.float64)) + 0.0
        seq = np.lexsort((js, ts, neg, nan))
    dispatched = np.zeros((E, C, D), dtype=x.dtype)
    row_token = np.full((E, C), -1, dtype=np.int32)
    counts = np.zeros(E, dtype=np.int32)
    kept = np.zeros((T, K), dtype=bool)
    for i in seq:
        t, j = ts[i], js[i]
        e = ex[t, j]
        if counts[e] >= C:
            continue                                   # dropped
        c = counts[e]
        counts[e] += 1
        dispatched[e, c] = x[t]
        row_token[e, c] = t
        token_slot[t, j] = e * C + c
        kept[t, j] = True
    dropped = valid & ~kept
    if cap["on_drop"] == "zero":
        cw = np.where(dropped, F32(0), cw).astype(F32)
    if cap["renormalize"]:
        s = _seq_sum(np.where(kept, cw, F32(0)))
        denom = np.maximum(s, FLT_EPSILON).astype(F32)
        cw = np.where(kept, cw / denom[:, None], cw).astype(F32)
    return dispatched, row_token, counts, token_slot, cw


# ----------------------------------------------------------------------------
# Experts
# ----------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def activation(x: np.ndarray, name: str, alpha: float = 1.0) -> np.ndarray:
    """The `#moe.ffn` activations, in float64."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        if name == "silu":
            return x / (1.0 + np.exp(-alpha * x))
        if name == "gelu":
            return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))
        if name == "gelu_tanh":
            return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
        if name == "relu":
            return np.maximum(x, 0.0)
        if name == "identity":
            return x.copy()
    raise ValueError(f"unknown activation {name!r}")


def _mat(w, layout: str) -> Optional[np.ndarray]:
    """A stored matrix as [in, out] float64."""
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    return w.T if layout == "out_in" else w


def expert_ffn(x_rows: np.ndarray, w1, w3, w2, b1=None, b2=None, ffn=None,
               out_dtype=None) -> np.ndarray:
    """One expert's FFN on rows `x_rows` [n, D] with that expert's matrices
    (w1 [D, F] / [D, 2F] fused, w3 [D, F], w2 [F, D]; transposed for out_in).
    Computed in float64, returned as `out_dtype` (default: x_rows' dtype)."""
    f = _as_attr("ffn", ffn if ffn is not None else {})
    x_rows = np.asarray(x_rows)
    dt = np.dtype(out_dtype) if out_dtype is not None else x_rows.dtype
    x = x_rows.astype(np.float64)
    W1, W3, W2 = _mat(w1, f["layout"]), _mat(w3, f["layout"]), _mat(w2, f["layout"])
    B1 = None if b1 is None else np.asarray(b1, dtype=np.float64)
    B2 = None if b2 is None else np.asarray(b2, dtype=np.float64)
    act, alpha = f["activation"], f["alpha"]
    if f["kind"] == "mlp":
        h = x @ W1
        if B1 is not None:
            h = h + B1
        h = activation(h, act, alpha)
    else:
        if f["gate_up"] == "separate":
            if W3 is None:
                raise ValueError("a GLU with gate_up = separate needs w3")
            Wg, Wu, bg, bu = W1, W3, B1, None
        elif f["gate_up"] == "concatenated":
            F_ = W1.shape[1] // 2
            Wg, Wu = W1[:, :F_], W1[:, F_:]
            bg, bu = (None, None) if B1 is None else (B1[:F_], B1[F_:])
        else:  # interleaved
            Wg, Wu = W1[:, 0::2], W1[:, 1::2]
            bg, bu = (None, None) if B1 is None else (B1[0::2], B1[1::2])
        g = x @ Wg
        u = x @ Wu
        if bg is not None:
            g = g + bg
        if bu is not None:
            u = u + bu
        if f["limit"] > 0:
            g = np.minimum(g, f["limit"])
            u = np.clip(u, -f["limit"], f["limit"])
        h = activation(g, act, alpha) * (u + f["up_shift"])
    y = h @ W2
    if B2 is not None:
        y = y + B2
    return y.astype(dt)


def _dout(w2, layout: str) -> int:
    w2 = np.asarray(w2)
    return w2.shape[-2] if layout == "out_in" else w2.shape[-1]


def run_experts(dispatched: np.ndarray, counts: np.ndarray, w1, w3, w2, b1=None, b2=None,
                ffn=None) -> np.ndarray:
    """`moe.experts` with the `moe-decompose` FFN body: every expert's segment
    through `expert_ffn` with its slice of the stacked weights; rows outside
    every segment are zero. Ragged [N, D] or padded [E, C, D]."""
    f = _as_attr("ffn", ffn if ffn is not None else {})
    d = np.asarray(dispatched)
    counts = np.asarray(counts).astype(np.int64)
    E = counts.size
    dout = _dout(w2, f["layout"])
    out = np.zeros(d.shape[:-1] + (dout,), dtype=d.dtype)
    sl = lambda a, e: None if a is None else np.asarray(a)[e]
    start = 0
    for e in range(E):
        n = int(counts[e])
        if n == 0:
            continue
        if d.ndim == 3:
            rows = d[e, :n]
        else:
            rows = d[start:start + n]
        y = expert_ffn(rows, sl(w1, e), sl(w3, e), sl(w2, e), sl(b1, e), sl(b2, e), f)
        if d.ndim == 3:
            out[e, :n] = y
        else:
            out[start:start + n] = y
            start += n
    return out


# ----------------------------------------------------------------------------
# Combine and statistics
# ----------------------------------------------------------------------------

def combine(expert_out: np.ndarray, token_slot: np.ndarray, weights: np.ndarray,
            passthrough=None) -> np.ndarray:
    """`moe.combine`: y[t] = sum_j in slot order of c_j, from 0 in f32."""
    out = np.asarray(expert_out)
    D = out.shape[-1]
    flat = out.reshape(-1, D).astype(F32)
    ts = np.asarray(token_slot).astype(np.int64)
    w = np.asarray(weights, dtype=F32)
    T, K = ts.shape
    if np.any(ts >= flat.shape[0]):
        raise ValueError("token_slot addresses a row past the end of expert_out")
    pt = None if passthrough is None else np.asarray(passthrough).astype(F32)
    y = np.zeros((T, D), dtype=F32)
    for j in range(K):
        s = ts[:, j]
        has = s >= 0
        c = np.zeros((T, D), dtype=F32)
        c[has] = w[has, j][:, None] * flat[s[has]]
        if pt is not None:
            p_ = (~has) & (w[:, j] != 0)
            c[p_] = w[p_, j][:, None] * pt[p_]
        y = (y + c).astype(F32)
    return y.astype(out.dtype) if np.issubdtype(out.dtype, np.floating) else y


def expert_stats(experts: np.ndarray, weights: np.ndarray,
                 num_experts: int) -> Tuple[np.ndarray, np.ndarray]:
    """`moe.expert_stats` -> (counts i64 [E], gate_mass f32 [E]); the mass is
    accumulated in f32 in (t, j) order; slots outside [0, E) are ignored."""
    ex = np.asarray(experts).astype(np.int64).reshape(-1)
    w = np.asarray(weights, dtype=F32).reshape(-1)
    E = int(num_experts)
    counts = np.zeros(E, dtype=np.int64)
    mass = np.zeros(E, dtype=F32)
    for e in range(E):
        sel = ex == e
        counts[e] = int(sel.sum())
        if counts[e]:
            mass[e] = _seq_sum(w[sel])
    return counts, mass


def load_balancing(experts: np.ndarray, probs: np.ndarray, num_experts: int) -> float:
    """E * sum_e f_e P_e with f_e = counts[e] / (T*K) and P_e the batch mean of
    the router probability `probs[:, e]` (Semantics 6). Float64."""
    ex = np.asarray(experts)
    T, K = ex.shape
    counts, _ = expert_stats(ex, np.zeros(ex.shape, F32), num_experts)
    f = counts.astype(np.float64) / (T * K)
    P = np.asarray(probs, dtype=np.float64)[:, :num_experts].mean(axis=0)
    return float(num_experts * np.sum(f * P))


# ----------------------------------------------------------------------------
# Whole layer and model
# ----------------------------------------------------------------------------

def _matmul32(x, w) -> np.ndarray:
    return (np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64)).astype(F32)


def router_logits(x: np.ndarray, params: Mapping, ffn=None) -> np.ndarray:
    """Router logits `x @ router (+ router_bias)` in f32 (`router` transposed
    for `ffn.layout = out_in`)."""
    f = _as_attr("ffn", ffn if ffn is not None else {})
    router = np.asarray(params["router"])
    if f["layout"] == "out_in":
        router = router.T
    logits = _matmul32(x, router)
    if params.get("router_bias") is not None:
        logits = (logits + np.asarray(params["router_bias"], dtype=F32)).astype(F32)
    return logits


def moe_layer(x: np.ndarray, params: Mapping, routing, ffn=None, capacity=None,
              return_intermediates: bool = False):
    """`moe.layer` (Semantics 1-5).

    `params` holds the operands by their `moe.layer` keyword: router,
    router_bias, selection_bias, w1, w3, w2, b1, b2, shared_w1, shared_w3,
    shared_w2, shared_gate (missing / None = absent).

    For activations other than f32 the router logits, routing weights and
    shared gate are rounded to the activation dtype (moe.route's weights have
    the logits' type) and every op's result is cast back to it.
    """
    r = _as_attr("routing", routing)
    f = _as_attr("ffn", ffn if ffn is not None else {})
    x = np.asarray(x)
    dt = x.dtype
    get = lambda name: params.get(name) if params.get(name) is not None else None
    logits = router_logits(x, params, f).astype(dt).astype(F32)
    weights, experts = route(logits, r, get("selection_bias"))
    weights = weights.astype(dt)
    E = np.asarray(params["w1"]).shape[0]
    dispatched, row_token, counts, token_slot, cw = dispatch(x, weights, experts, E, capacity)
    cw = cw.astype(dt)
    expert_out = run_experts(dispatched, counts, get("w1"), get("w3"), get("w2"),
                             get("b1"), get("b2"), f)
    pt = None
    if capacity is not None and _as_attr("capacity", capacity)["on_drop"] == "pass_through":
        pt = x
    routed = combine(expert_out, token_slot, cw, pt)
    y = routed
    shared = None
    if get("shared_w1") is not None:
        sw1, sw2, sw3 = get("shared_w1"), get("shared_w2"), get("shared_w3")
        S = np.asarray(sw1).shape[0]
        T = x.shape[0]
        if get("shared_gate") is not None:
            g = np.asarray(get("shared_gate"))
            if f["layout"] == "out_in":
                g = g.T
            gate = _sigmoid32(_matmul32(x, g).astype(dt).astype(F32)).astype(dt)   # [T, 1]
            sweights = np.repeat(gate.astype(F32), S, axis=1)
        else:
            sweights = np.ones((T, S), dtype=F32)
        outs = [expert_ffn(x, np.asarray(sw1)[s], None if sw3 is None else np.asarray(sw3)[s],
                           np.asarray(sw2)[s], None, None, f) for s in range(S)]
        shared = np.zeros((T, x.shape[1]), dtype=F32)
        for s in range(S):
            shared = (shared + sweights[:, s:s + 1] * outs[s].astype(F32)).astype(F32)
        shared = shared.astype(dt)
        y = (routed.astype(F32) + shared.astype(F32)).astype(dt)
    y = y.astype(dt)
    if not return_intermediates:
        return y
    return y, {
        "logits": logits, "weights": weights, "experts": experts,
        "dispatched": dispatched, "row_token": row_token, "counts": counts,
        "token_slot": token_slot, "combine_weights": cw, "expert_out": expert_out,
        "routed": routed, "shared": shared,
    }


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """`w * (x * rsqrt(mean(x^2) + eps))` as the frontend's Model emits it:
    statistics in f32 (sum of squares in float64, rounded once), the
    normalised activations rounded to the storage type, then the weight
    multiply in the storage type."""
    x = np.asarray(x)
    dt = x.dtype
    x32 = x.astype(F32)
    ss = np.sum(x32.astype(np.float64) ** 2, axis=-1).astype(F32)
    mean = (ss / F32(x.shape[-1])).astype(F32)
    inv = (F32(1) / np.sqrt((mean + F32(eps)).astype(F32))).astype(F32)
    normed = (x32 * inv[:, None]).astype(F32).astype(dt)
    return (np.asarray(w).astype(dt) * normed).astype(dt)


def model(x: np.ndarray, layers: Sequence[Mapping], norm_eps: float = 1e-6,
          final_norm=None, rms_norm: bool = True, residual: bool = True) -> np.ndarray:
    """A stack of MoE blocks: h = h + moe_i(rmsnorm(h, norm_i)), then an
    optional final RMSNorm (`final_norm` weights).

    Every layer is a mapping with `params`, `routing`, optional `ffn`,
    `capacity` and `norm` (RMSNorm weight, needed when `rms_norm`).
    """
    h = np.asarray(x)
    dt = h.dtype
    for i, layer in enumerate(layers):
        inp = h
        if rms_norm:
            if layer.get("norm") is None:
                raise ValueError(f"layer {i} has no 'norm' weight")
            inp = rmsnorm(h, layer["norm"], norm_eps)
        y = moe_layer(inp, layer["params"], layer["routing"], layer.get("ffn"),
                      layer.get("capacity"))
        h = (h + y).astype(dt) if residual else y
    if final_norm is not None:
        h = rmsnorm(h, final_norm, norm_eps)
    return h


# ----------------------------------------------------------------------------
# Collectives (Semantics 7), simulated over a list holding every rank's input
# ----------------------------------------------------------------------------

def all_to_all(inputs: Sequence[np.ndarray], split_dim: int,
               concat_dim: int) -> list:
    """Rank i's input is split along `split_dim` into G chunks, chunk j goes
    to rank j; every rank concatenates what it receives along `concat_dim`
    in rank order. Returns every rank's result."""
    G = len(inputs)
    chunks = [np.split(np.asarray(a), G, axis=split_dim) for a in inputs]
    return [np.concatenate([chunks[src][dst] for src in range(G)], axis=concat_dim)
            for dst in range(G)]


def all_gather(inputs: Sequence[np.ndarray], dim: int) -> list:
    out = np.concatenate([np.asarray(a) for a in inputs], axis=dim)
    return [out.copy() for _ in inputs]


def reduce_scatter(inputs: Sequence[np.ndarray], dim: int) -> list:
    """Element-wise sum over ranks (in rank order, in the input dtype), then
    rank i keeps chunk i along `dim`."""
    arrs = [np.asarray(a) for a in inputs]
    total = arrs[0].copy()
    for a in arrs[1:]:
        total = (total + a).astype(arrs[0].dtype)
    return np.split(total, len(arrs), axis=dim)


# ----------------------------------------------------------------------------
# Deterministic inputs
# ----------------------------------------------------------------------------

def _stream(seed: int, name: str) -> np.random.RandomState:
    # RandomState's stream is frozen by numpy's compatibility policy; the
    # per-name seed keeps one array independent of which others are drawn.
    return np.random.RandomState(zlib.crc32(f"{int(seed)}:{name}".encode()) & 0xFFFFFFFF)


def make_inputs(shapes: Mapping, seed: int = 0, dtype=F32) -> Dict[str, np.ndarray]:
    """Deterministic standard-normal arrays.

    `shapes` maps a name to a shape, or to `(shape, scale)` (the array is
    multiplied by `scale`). Each array depends only on (seed, name, shape,
    scale), not on the other entries.
    """
    out = {}
    for name in sorted(shapes):
        spec = shapes[name]
        scale = 1.0
        if (isinstance(spec, (tuple, list)) and len(spec) == 2
                and isinstance(spec[0], (tuple, list))):
            spec, scale = spec
        shape = tuple(int(s) for s in spec)
        a = _stream(seed, name).standard_normal(shape) * scale
        out[name] = a.astype(dtype)
    return out


def make_layer_params(d_model: int, d_ff: int, num_experts: int, routing, ffn=None,
                      seed: int = 0, num_shared_experts: int = 0, shared_d_ff: int = 0,
                      shared_gate: bool = False, router_bias: bool = False,
                      selection_bias: bool = False, b1: bool = False, b2: bool = False,
                      dtype=F32, router_scale: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Random `moe.layer` operands with the shapes `moe.layer` expects (and
    the frontend's operand names), matrices scaled by 1/sqrt(fan_in)."""
    r = _as_attr("routing", routing)
    f = _as_attr("ffn", ffn if ffn is not None else {})
    D, F_, E = d_model, d_ff, num_experts
    cols = E + r["null_experts"]
    fused = f["kind"] == "glu" and f["gate_up"] != "separate"
    needs_w3 = f["kind"] == "glu" and f["gate_up"] == "separate"
    width1 = 2 * F_ if fused else F_

    def mat(lead, n_in, n_out, scale=None):
        dims = (n_in, n_out) if f["layout"] == "in_out" else (n_out, n_in)
        return (tuple(lead) + dims, (1.0 / math.sqrt(n_in)) if scale is None else scale)

    shapes = {"router": mat((), D, cols, router_scale), "w1": mat((E,), D, width1),
              "w2": mat((E,), F_, D)}
    if needs_w3:
        shapes["w3"] = mat((E,), D, F_)
    if router_bias:
        shapes["router_bias"] = ((cols,), 0.5)
    if selection_bias:
        shapes["selection_bias"] = ((cols,), 0.1)
    if b1:
        shapes["b1"] = ((E, width1), 0.1)
    if b2:
        shapes["b2"] = ((E, D), 0.1)
    if num_shared_experts:
        S, Fs = num_shared_experts, shared_d_ff
        shapes["shared_w1"] = mat((S,), D, 2 * Fs if fused else Fs)
        if needs_w3:
            shapes["shared_w3"] = mat((S,), D, Fs)
        shapes["shared_w2"] = mat((S,), Fs, D)
        if shared_gate:
            shapes["shared_gate"] = mat((), D, 1)
    return make_inputs(shapes, seed, dtype)


def round_to_bf16(a: np.ndarray) -> np.ndarray:
    """Rounds f32 values to bfloat16 (nearest even), returned as f32."""
    a = np.ascontiguousarray(a, dtype=F32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(F32).copy()
    nan = np.isnan(a)
    out[nan] = a[nan]
    return out
