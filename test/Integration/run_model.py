#!/usr/bin/env python3
"""Compiles a moe model with moe-compile, runs it with moe-run on random
inputs and weights, and compares every output with the numpy reference
(reference/moe_reference.py, written from docs/Semantics.md independently of
the compiler and the runtime kernels).

Usage:
  run_model.py MODEL.mlir --tokens 1,7,521 [--entry NAME] [--rtol 1e-4]
               [--seed N] [--build DIR] [--work DIR] [--ties]

Model kinds, recognised from the module:
  * one moe.layer per function (the examples): operands are bound by their
    moe.layer keyword and the reference is moe_layer();
  * a frontend model stack (arguments named layers.N.*): reference model();
  * a function whose body is a single moe.route (routing.mlir): outputs are
    the weights (checked to 1e-6; --rtol on GPU targets) and the expert ids
    (checked exactly).

Exits non-zero with a description of the first mismatch. Routing decisions
inside layers are checked through moe-run's statistics: tokens per expert
and dropped pairs must equal the reference's exactly.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python-frontend"))
import moe_reference as ref  # noqa: E402
from moe_frontend import random_data  # noqa: E402

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


# --------------------------------------------------------------------------
# Reading the model text
# --------------------------------------------------------------------------

def parse_functions(text):
    """name -> {'args': [(ssa, name, shape, elem)], 'body': text}"""
    funcs = {}
    for m in re.finditer(r"func\.func @(\w+)\(", text):
        name = m.group(1)
        _, args = random_data.parse_signature(text, name)
        depth, i = 0, text.index("{", text.index(") ->", m.end()))
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                break
        funcs[name] = {"args": args, "body": text[i:j]}
    return funcs


def attr(text, mnemonic):
    m = re.search(r"#moe\.%s<[^>]*>" % mnemonic, text)
    return m.group(0) if m else None


def layer_operands(op_text):
    """moe.layer keyword -> SSA name."""
    return {m.group(1): m.group(2)
            for m in re.finditer(r"\b(\w+)\(%([\w.]+) :", op_text)}


def layer_ops(body):
    return [m.group(0) for m in re.finditer(r"moe\.layer .*?-> tensor<[^>]*>", body, re.S)]


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        fail("command failed: %s\n%s%s" % (" ".join(cmd), proc.stdout, proc.stderr))
    return proc.stdout


# --------------------------------------------------------------------------
# Inputs and references
# --------------------------------------------------------------------------

def random_args(args, tokens, seed, ties):
    vals = random_data.make_arrays(args, tokens, seed)
    if ties and "logits" in vals:
        # Few distinct values: many exact ties in every row.
        vals["logits"] = (np.round(vals["logits"] * 2.0) / 2.0).astype(np.float32)
    return vals


def compare(name, got, want, rtol):
    if got.shape != want.shape:
        fail("%s: shape %s, reference %s" % (name, got.shape, want.shape))
    scale = max(float(np.max(np.abs(want))), 1e-6)
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) / scale
    if not err <= rtol:
        idx = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
        fail("%s: max relative error %.3g > %.1g (at %s: %r vs %r)"
             % (name, err, rtol, idx, got[idx], want[idx]))
    return err


def check_stats(stats_path, expected):
    """expected: list per dispatch call of (counts, dropped, gate mass or
    None, importance or None)."""
    with open(stats_path) as f:
        stats = json.load(f)
    calls = stats.get("dispatches", stats.get("layers", []))
    if len(calls) != len(expected):
        fail("statistics: %d dispatch calls, reference %d" % (len(calls), len(expected)))
    for i, (call, (counts, dropped, mass, importance)) in enumerate(zip(calls, expected)):
        got = list(call.get("tokens_per_expert", call.get("counts", [])))
        if got != [int(c) for c in counts]:
            fail("dispatch %d: tokens per expert %s, reference %s" % (i, got, list(counts)))
        if int(call.get("dropped", 0)) != int(dropped):
            fail("dispatch %d: %s dropped pairs, reference %d" % (i, call.get("dropped"), dropped))
        if mass is not None:
            got_mass = np.asarray(call.get("gate_mass", []), dtype=np.float64)
            if got_mass.shape != mass.shape or not np.allclose(got_mass, mass, rtol=1e-4, atol=1e-4):
                fail("dispatch %d: gate mass %s, reference %s" % (i, got_mass, mass))
        if importance is not None:
            got_imp = np.asarray(call.get("importance", []), dtype=np.float64)
            if got_imp.shape != importance.shape or not np.allclose(got_imp, importance, rtol=1e-4, atol=1e-4):
                fail("dispatch %d: importance %s, reference %s" % (i, got_imp, importance))


def layer_reference(x, params, op_text, dispatches):
    """Reference output of one moe.layer; appends the (tokens per expert,
    dropped pairs) the compiled layer's dispatch calls must report."""
    routing, ffn, cap = attr(op_text, "routing"), attr(op_text, "ffn"), attr(op_text, "capacity")
    y, inter = ref.moe_layer(x, params, routing, ffn, cap, return_intermediates=True)
    experts, slots = np.asarray(inter["experts"]), np.asarray(inter["token_slot"])
    weights = np.asarray(inter["weights"], dtype=np.float64)
    num_experts = len(inter["counts"])
    mass = np.array([weights[experts == e].sum() for e in range(num_experts)])
    # Output-norm-weighted importance: sum over kept pairs of combine weight
    # times the L2 norm of the expert's output row.
    out = np.asarray(inter["expert_out"], dtype=np.float64)
    counts = np.asarray(inter["counts"])
    rows = out.reshape(-1, out.shape[-1])
    owner = np.full(rows.shape[0], -1)
    if out.ndim == 3:
        cap = out.shape[1]
        for e in range(num_experts):
            owner[e * cap:e * cap + min(int(counts[e]), cap)] = e
    else:
        start = 0
        for e in range(num_experts):
            owner[start:start + int(counts[e])] = e
            start += int(counts[e])
    norms = np.sqrt((rows * rows).sum(axis=1))
    cw = np.asarray(inter["combine_weights"], dtype=np.float64)
    importance = np.zeros(num_experts)
    for (t, j), r in np.ndenumerate(slots):
        if r >= 0 and owner[r] >= 0:
            importance[owner[r]] += cw[t, j] * norms[r]
    dispatches.append((np.asarray(inter["counts"]),
                       int(np.sum((experts >= 0) & (slots < 0))), mass, importance))
    if params.get("shared_w1") is not None:
        # Shared experts are always-on experts with a dispatch of their own
        # (also when folded into the routed experts' call). Ungated, every
        # token adds weight 1 to each: gate mass T (a gate's mass is not
        # checked).
        num_shared = np.asarray(params["shared_w1"]).shape[0]
        tokens = x.shape[0]
        shared_mass = (np.full(num_shared, float(tokens))
                       if params.get("shared_gate") is None else None)
        dispatches.append((np.full(num_shared, tokens), 0, shared_mass, None))
    return y


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--tokens", default="1,7,521")
    p.add_argument("--entry")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build", default=os.environ.get("MOE_BUILD_DIR", os.path.join(HERE, "..", "..", "build")))
    p.add_argument("--work")
    p.add_argument("--ties", action="store_true", help="quantise logits to force ties")
    p.add_argument("--norm-eps", type=float, default=1e-5)
    p.add_argument("--no-stats", action="store_true")
    p.add_argument("--kernels", default="runtime",
                   help="moe-compile --kernels (runtime or loops; cpu only)")
    p.add_argument("--warm-calls", type=int, default=0,
                   help="moe-run --warm-calls: results of a call after N others")
    p.add_argument("--weights-placement", choices=["huge-pages", "map"],
                   help="moe-run --weights-placement (default: moe-run's)")
    p.add_argument("--target", default="cpu", choices=["cpu", "cuda", "rocm"],
                   help="moe-compile --target and moe-run --device; GPU "
                        "models report no routing statistics")
    p.add_argument("--model-lib",
                   help="use this model library, compiled beforehand for --target, "
                        "instead of running moe-compile (for a GPU machine without "
                        "LLVM/MLIR; see scripts/gpu-bundle.sh)")
    a = p.parse_args()

    bindir = os.path.join(a.build, "bin")
    work = a.work or tempfile.mkdtemp(prefix="moe-it-")
    os.makedirs(work, exist_ok=True)
    text = open(a.model).read()
    funcs = parse_functions(text)
    lib = os.path.join(work, "model.so")
    if a.target != "cpu":
        a.no_stats = True
    if a.model_lib:
        if not os.path.isfile(a.model_lib):
            fail("--model-lib %s: no such file" % a.model_lib)
        lib = a.model_lib
    else:
        compile_cmd = [os.path.join(bindir, "moe-compile"), a.model, "--target=" + a.target]
        if a.target == "cpu":
            compile_cmd.append("--kernels=" + a.kernels)
        run(compile_cmd + ["-o", lib, "--header", os.path.join(work, "model.h")])

    entries = [a.entry] if a.entry else list(funcs)
    for entry in entries:
        fn = funcs[entry]
        for tokens in [int(t) for t in a.tokens.split(",")]:
            seed = a.seed + tokens
            vals = random_args(fn["args"], tokens, seed, a.ties)
            # bf16 arguments travel as f32 in the weights file and are
            # rounded to bf16 by the runtime; the reference sees the rounded
            # values.
            ref_vals = {name: (ref.round_to_bf16(vals[name]) if elem == "bf16" else vals[name])
                        for _, name, _, elem in fn["args"]}
            by_ssa = {ssa: ref_vals[name] for ssa, name, _, _ in fn["args"]}
            inputs = [n for _, n, shape, _ in fn["args"] if random_data.is_input(shape)]
            if not inputs:
                fail("%s: no token-dependent input" % entry)
            first = inputs[0]
            if "load_balance" in fn["body"]:
                # Valid routing: ids in [-1, E), probabilities that sum to 1.
                rng = np.random.RandomState(seed)
                num_e = vals["probs"].shape[-1]
                vals["experts"] = rng.randint(-1, num_e, size=vals["experts"].shape).astype(np.int32)
                p = np.exp(vals["probs"])
                vals["probs"] = (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)
                ref_vals.update(experts=vals["experts"], probs=vals["probs"])
            st = os.path.join(work, "weights.safetensors")
            random_data.write_safetensors(st, {n: v for n, v in vals.items() if n not in inputs})
            input_files = []
            for n in inputs:
                path = os.path.join(work, "input-%s.npy" % n)
                np.save(path, vals[n])
                input_files.append((n, path))
            layers = layer_ops(fn["body"])
            routes = re.findall(r"moe\.route [^\n]*", fn["body"])
            nres = 2 if (routes and not layers) else 1
            outs = [os.path.join(work, "out%d.npy" % i) for i in range(nres)]
            stats = os.path.join(work, "stats.json")
            cmd = [os.path.join(bindir, "moe-run"), "--model", lib, "--entry", entry,
                   "--weights", st, "--device", a.target]
            if a.weights_placement:
                cmd += ["--weights-placement", a.weights_placement]
            if a.warm_calls:
                cmd += ["--warm-calls", str(a.warm_calls)]
            if not a.no_stats:
                cmd += ["--stats", stats]
            for n, path in input_files:
                cmd += ["--input", "%s=%s" % (n, path)]
            for i, o in enumerate(outs):
                cmd += ["--output", "result%d=%s" % (i, o)]
            run(cmd)
            got = [np.load(o) for o in outs]
            expected_stats = []
            if layers and all(n.startswith(("input", "layers.", "final_norm")) for _, n, _, _ in fn["args"]):
                # Frontend model stack.
                lay = []
                for i, op in enumerate(layers):
                    prefix = "layers.%d." % i
                    params = {k: ref_vals[prefix + k] for k in
                              ("router", "router_bias", "selection_bias", "w1", "w3", "w2", "b1", "b2",
                               "shared_w1", "shared_w3", "shared_w2", "shared_gate") if prefix + k in vals}
                    lay.append({"params": params, "routing": attr(op, "routing"), "ffn": attr(op, "ffn"),
                                "capacity": attr(op, "capacity"), "norm": vals[prefix + "norm"]})
                want = [ref.model(vals[first], lay, norm_eps=a.norm_eps, final_norm=vals.get("final_norm"))]
                expected_stats = None
            elif len(layers) == 1:
                ops = layer_operands(layers[0])
                params = {k: by_ssa[v] for k, v in ops.items()}
                want = [layer_reference(vals[first], params, layers[0], expected_stats)]
            elif "moe.load_balance" in fn["body"]:
                ex, pr = ref_vals["experts"], ref_vals["probs"]
                num_e = pr.shape[-1]
                if ex.ndim == 2:
                    value = ref.load_balancing(ex, pr, num_e)
                elif "global_batch" in fn["body"]:
                    value = ref.load_balancing(ex.reshape(-1, ex.shape[-1]),
                                               pr.reshape(-1, num_e), num_e)
                else:  # mean over micro-batches
                    value = np.mean([ref.load_balancing(ex[b], pr[b], num_e)
                                     for b in range(ex.shape[0])])
                want = [np.array([value], dtype=np.float32)]
            elif len(routes) == 1:
                r = attr(routes[0], "routing")
                bias = vals.get("bias")
                w, e = ref.route(vals[first], r, bias)
                want = [w, e]
                expected_stats = None
            else:
                fail("%s: unsupported model structure" % entry)
            if nres == 2:
                if not np.array_equal(got[1], want[1]):
                    bad = np.argwhere(got[1] != want[1])[0]
                    fail("%s T=%d: expert ids differ at token %d: %s vs reference %s"
                         % (entry, tokens, bad[0], got[1][bad[0]], want[1][bad[0]]))
                # GPU kernels compute exp with the hardware's exp2, which is
                # within a few ulp: routing weights get the --rtol there.
                wtol = 1e-6 if a.target == "cpu" else a.rtol
                err = compare("%s T=%d weights" % (entry, tokens), got[0], want[0], wtol)
            else:
                err = compare("%s T=%d" % (entry, tokens), got[0], want[0], a.rtol)
            if expected_stats and not a.no_stats:
                check_stats(stats, expected_stats)
            print("ok %s T=%d max-rel-err %.2e" % (entry, tokens, err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
