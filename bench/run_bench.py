#!/usr/bin/env python3
"""moe-mlir CPU benchmark: compiled MoE layers against baselines measured in
the same run.

    /usr/bin/python3 bench/run_bench.py [--tokens 1,8,64,512,2048] [--rounds N]
        [--threads 1,2] [--configs mixtral-small,deepseek-fine,switch,mixtral-skewed,mixtral-bf16]
        [--runs N] [--skew-pairs N] [--packed-pairs N] [--bf16-pairs N]
        [--dram-pairs N] [--torch-pairs N]
        [--markdown FILE] [--json FILE]

For every configuration, token count and thread count it reports the time
per call of the compiled model (moe-compile + moe-run, weights from a
.safetensors file; at T <= 8 also with cold caches, moe-run --cold, the
honest weight bandwidth of a decode step), GFLOP/s of the expert work
actually done, GB/s of distinct expert weights touched, and ratios against:
  * loop:   a Hugging Face style per-expert loop on OpenBLAS (bench/baselines.c)
  * sgemm:  OpenBLAS cblas_sgemm on an equal-FLOP shape (rate ratio)
  * torch:  PyTorch eager, HF Mixtral-style block, when /usr/bin/python3 has torch
            (1 thread: torch and its BLAS pinned to one; N threads: the best
            of N x N, 1 x N and N x 1 intra-op x BLAS threads, see
            torch_threadings)
(loop and torch with each model's experts, for BASELINE_CONFIGS) and the
DRAM read bandwidth measured by bench/baselines.c. Ratios of two of
our own calls are measured interleaved (median and range): skewed against
balanced routing (T >= 64: mixtral-skewed against the same library with a
zero router bias, so that only the routing differs) and cold bf16 against
f32 weights (T <= 8) call by call in one process (moe-run --compare-model),
skewed against balanced tokens (T >= 64: the zero-bias weights, half of the
tokens moved so that they pick expert 0) call by call in one session
(moe-run --compare-input), the session's packed weights kept against
packed per call (T >= 512) as pairs of processes, and ours against
PyTorch (every row with a PyTorch time) as pairs of processes too.
Needs numpy and libopenblas-dev (python3-torch for the torch column);
builds bench/baselines.c with cc.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python-frontend"))
from moe_frontend import random_data  # noqa: E402

CONFIGS = {
    # name: (D, F, E, k, shared experts, shared F, form)
    "mixtral-small": (1024, 3584, 8, 2, 0, 0, "glu"),
    "deepseek-fine": (1024, 512, 64, 6, 2, 512, "glu"),
    "switch": (768, 3072, 16, 1, 0, 0, "mlp"),
    # Mixtral-small with a router bias of 0.75 on expert 0: about half of
    # the tokens pick expert 0 (a quarter of all pairs), the skewed case.
    "mixtral-skewed": (1024, 3584, 8, 2, 0, 0, "glu"),
    # Mixtral-small with bf16 expert weights (f32 activations and
    # accumulation): the same routing, half the weight bytes.
    "mixtral-bf16": (1024, 3584, 8, 2, 0, 0, "glu"),
}
SKEW_BIAS = 0.75
# The configurations the per-expert loop and PyTorch baselines are timed for.
BASELINE_CONFIGS = ("mixtral-small", "deepseek-fine", "switch")


def skewed_tokens(x, router, k, rng):
    """x with tokens moved along the router's expert-0 direction until half
    of them (with those that pick it already) have expert 0 among their top
    k, under a zero router bias: the skewed routing made by the tokens, for
    an A/B in one session against the unmoved ones (the same weights, the
    same memory)."""
    import numpy as np
    def has0(v):
        return (np.argsort(-(v @ router), axis=-1)[..., :k] == 0).any(-1)
    out = x.copy()
    free = np.flatnonzero(~has0(x))
    need = len(x) // 2 - (len(x) - len(free))
    d = router[:, 0] - router[:, 1:].mean(1)
    d = d / np.linalg.norm(d)
    steps = np.linspace(0.05, 20, 400, dtype=np.float32)
    for t in rng.choice(free, size=max(0, need), replace=False):
        cand = x[t] + steps[:, None] * d
        ok = np.flatnonzero(has0(cand))
        if len(ok):
            out[t] = cand[ok[0]] + 0.05 * d
    return out.astype(np.float32)


def weight_type(name):
    return "bf16" if name.endswith("bf16") else "f32"


def layer_mlir(name, D, F, E, k, S, FS, form):
    wt = weight_type(name)
    ffn = "#moe.ffn<>" if form == "glu" else "#moe.ffn<kind = mlp, activation = relu>"
    args = ['%%x: tensor<?x%dxf32> {moe.name = "x"}' % D,
            '%%router: tensor<%dx%dxf32> {moe.name = "router"}' % (D, E)]
    ops = []
    if name.endswith("skewed"):
        args.append('%%router_bias: tensor<%dxf32> {moe.name = "router_bias"}' % E)
        ops.append("router_bias(%%router_bias : tensor<%dxf32>)" % E)
    # Routed experts, then the shared ones (if any): w1, w3 (GLU only), w2.
    for prefix, n, f in (("", E, F), ("shared_", S, FS)):
        if not n:
            continue
        for w, shape in (("w1", (n, D, f)), ("w3", (n, D, f)), ("w2", (n, f, D))):
            if w == "w3" and form != "glu":
                continue
            w = prefix + w
            t = "tensor<%sx%s>" % ("x".join(map(str, shape)), wt)
            args.append('%%%s: %s {moe.name = "%s"}' % (w, t, w))
            ops.append("%s(%%%s : %s)" % (w, w, t))
    routing = "#moe.routing<k = %d, normalize = selected>" % k
    return """module @%s {
  func.func @layer(%s) -> tensor<?x%dxf32> {
    %%y = moe.layer %%x : tensor<?x%dxf32> router(%%router : tensor<%dx%dxf32>) %s
           {routing = %s, ffn = %s} -> tensor<?x%dxf32>
    return %%y : tensor<?x%dxf32>
  }
}
""" % (name.replace("-", "_"), ", ".join(args), D, D, D, E, " ".join(ops), routing, ffn, D, D)


def timed_calls(T, runs):
    """Calls to time: like the baselines, which take the best of at least
    ~0.5 s of repeats, short calls get enough repeats for a stable minimum
    (200 at T <= 8, 20 at T <= 64); longer ones take --runs."""
    if T <= 8:
        return max(runs, 200)
    if T <= 64:
        return max(runs, 20)
    return runs


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return p.stdout


def baseline(binary, args, threads):
    env = dict(os.environ, MOE_BENCH_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = run([binary] + [str(a) for a in args], env)
    m = re.search(r"ms=([0-9.]+)(?: gflops=([0-9.]+))?(?: gbps=([0-9.]+))?", out)
    return float(m.group(1)), float(m.group(2) or 0), float(m.group(3) or 0)


def torch_available():
    return subprocess.call(["/usr/bin/python3", "-c", "import torch"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


TORCH_SNIPPET = r"""
import sys, time, torch
D, F, E, k, T, th, S, FS = map(int, sys.argv[1:9])
glu = sys.argv[9] == "glu"  # SwiGLU experts (Mixtral, DeepSeek), else ReLU MLP ones (Switch)
torch.set_num_threads(th)
torch.manual_seed(0)
x = torch.randn(T, D)
gate = torch.nn.Linear(D, E, bias=False)
w1 = [torch.nn.Linear(D, F, bias=False) for _ in range(E)]
w3 = [torch.nn.Linear(D, F, bias=False) if glu else None for _ in range(E)]
w2 = [torch.nn.Linear(F, D, bias=False) for _ in range(E)]
# Shared experts (DeepSeek): one expert of width S * FS, added unweighted.
sw1 = torch.nn.Linear(D, S * FS, bias=False) if S else None
sw3 = torch.nn.Linear(D, S * FS, bias=False) if S and glu else None
sw2 = torch.nn.Linear(S * FS, D, bias=False) if S else None
def ffn(a, b, c, h):  # HF MixtralBlockSparseTop2MLP, or SwitchTransformersDenseActDense
    if glu:
        return c(torch.nn.functional.silu(a(h)) * b(h))
    return c(torch.relu(a(h)))
def block(h):  # Hugging Face MixtralSparseMoeBlock (+ DeepSeek shared experts), eval mode
    logits = gate(h)
    rw = torch.softmax(logits, dim=1, dtype=torch.float)
    rw, sel = torch.topk(rw, k, dim=-1)
    rw /= rw.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(h)
    mask = torch.nn.functional.one_hot(sel, num_classes=E).permute(2, 1, 0)
    for e in range(E):
        idx, top = torch.where(mask[e])
        if top.numel() == 0:
            continue
        cur = h[None, top].reshape(-1, D)
        y = ffn(w1[e], w3[e], w2[e], cur) * rw[top, idx, None]
        out.index_add_(0, top, y)
    if S:
        out = out + ffn(sw1, sw3, sw2, h)
    return out
with torch.no_grad():
    block(x)
    best, start = 1e30, time.perf_counter()
    while True:
        t0 = time.perf_counter(); block(x); best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - start > 0.5: break
print("ms=%.4f" % (best * 1e3))
"""


def torch_threadings(th):
    """The (intra-op threads, BLAS threads) pairs the PyTorch baseline is
    timed with on `th` cores. Debian's torch does its matmuls in the system
    BLAS (OpenBLAS), whose own thread pool ignores torch.set_num_threads: left
    alone it takes every core (a "1 thread" torch used 2), and with 2 torch
    threads as well the two pools fight over the cores (Mixtral T=512 on 2
    cores: 285 ms, against 131 ms with one torch thread). One core: both
    pinned to 1. Several: the best of the three ways to use them."""
    return [(1, 1)] if th == 1 else [(th, th), (1, th), (th, 1)]


def torch_time(name, T, intra, blas):
    """The PyTorch block of model `name` at T tokens: its best time (ms)
    with intra-op and BLAS threads."""
    D, F, E, k, S, FS, form = CONFIGS[name]
    env = dict(os.environ, OMP_NUM_THREADS=str(intra), OPENBLAS_NUM_THREADS=str(blas),
               MKL_NUM_THREADS=str(blas))
    tout = run(["/usr/bin/python3", "-c", TORCH_SNIPPET, str(D), str(F), str(E), str(k),
                str(T), str(intra), str(S), str(FS), form], env)
    return float(re.search(r"ms=([0-9.]+)", tout).group(1))


def torch_best(name, T, th):
    """The PyTorch block's best time over torch_threadings(th), and which
    one gave it ("intra-op x BLAS threads")."""
    best = (float("inf"), "")
    for intra, blas in torch_threadings(th):
        ms = torch_time(name, T, intra, blas)
        best = min(best, (ms, "%dx%d" % (intra, blas)))
    return best


def timed_run_cmd(bindir, lib, st, xin, calls, th):
    """moe-run timing `calls` calls of lib on x = xin, weights st, th threads."""
    return [os.path.join(bindir, "moe-run"), "--model", lib, "--weights", st,
            "--input", "x=" + xin, "--time", str(calls), "--threads", str(th)]


def our_time(lib, st, xin, T, th, bindir, runs):
    """Our call's best time (ms): moe-run --time, the minimum of its calls."""
    out = run(timed_run_cmd(bindir, lib, st, xin, timed_calls(T, runs), th))
    return float(re.search(r"min ([0-9.]+) ms", out).group(1))


def torch_pairs(name, lib, st, xin, T, th, threading, pairs, bindir, runs):
    """Ours against PyTorch as `pairs` interleaved pairs of one run of each
    (the order flipping every pair), PyTorch with the threading
    ("intra x BLAS") that won its row. The two sides of a row are measured
    seconds apart, and on a shared machine each can land in a slow spell
    alone (DeepSeek-fine T=512, 2 threads, four runs within half an hour:
    PyTorch 112-133 ms, ours 46.0-48.6 ms); pairs side by side and the median of
    their ratios damp that. Returns the median and range of the per-pair
    ratios PyTorch / ours and each side's best time."""
    intra, blas = (int(v) for v in threading.split("x"))
    ratios, best_ours, best_torch = [], float("inf"), float("inf")
    for i in range(pairs):
        ms = {}
        for side in ("ours", "torch") if i % 2 == 0 else ("torch", "ours"):
            ms[side] = (our_time(lib, st, xin, T, th, bindir, runs) if side == "ours" else
                        torch_time(name, T, intra, blas))
        best_ours, best_torch = min(best_ours, ms["ours"]), min(best_torch, ms["torch"])
        ratios.append(ms["torch"] / ms["ours"])
    ratios.sort()
    return dict(config=name, T=T, threads=th, pairs=pairs, torch_threads=threading,
                median=ratios[len(ratios) // 2], lo=ratios[0], hi=ratios[-1],
                ours_ms=best_ours, torch_ms=best_torch)


def cold_against_dram(cmd, baselines, th, wbytes, pairs):
    """Cold calls (moe-run --cold, the best of its calls) against the DRAM
    read bandwidth, as `pairs` interleaved pairs of one cold run and one
    bandwidth measurement right after it: the machine's bandwidth flips
    between two levels within seconds, so a cold run and a bandwidth test
    seconds apart can fall in different ones. Returns the cold time and the
    bandwidth of the pair whose share of the bandwidth is the median."""
    got = []
    for _ in range(max(1, pairs)):
        out = run(cmd + ["--cold"])
        cold_ms = float(re.search(r"min ([0-9.]+) ms", out).group(1))
        dram = baseline(baselines, ["bandwidth", 2048], th)[2]
        got.append((wbytes / cold_ms / 1e6 / dram, cold_ms, dram))
    got.sort()
    return got[len(got) // 2][1:]


def measure(a, name, lib, st, xin, T, th, bindir, work, baselines, has_torch):
    """One row: our time (and cold time at T <= 8) and the baselines'."""
    D, F, E, k, S, FS, form = CONFIGS[name]
    mats = 3 if form == "glu" else 2
    stats = os.path.join(work, "stats.json")
    cmd = timed_run_cmd(bindir, lib, st, xin, timed_calls(T, a.runs), th) + ["--stats", stats]
    out = run(cmd)
    ms = float(re.search(r"mean ([0-9.]+) ms, min ([0-9.]+) ms", out).group(2))
    # Decode sizes are memory bound: their weight bandwidth is measured with
    # cold caches (moe-run --cold), since a repeated token would find part of
    # its experts' weights in the LLC.
    counts = json.load(open(stats))["layers"][0]["tokens_per_expert"]
    active = sum(1 for c in counts if c > 0)
    wbytes = float((active * mats * D * F + S * mats * D * FS) * (2 if weight_type(name) == "bf16" else 4))
    cold_ms = float("nan")
    dram = float("nan")
    if T <= 8:
        cold_ms, dram = cold_against_dram(cmd, baselines, th, wbytes, a.dram_pairs)
    # The loop and PyTorch baselines run the f32 block of each model (their
    # own random weights and routing): not the skewed or bf16 variants of
    # Mixtral-small, whose differences they would not have.
    plain = name in BASELINE_CONFIGS
    loop_ms = (baseline(baselines, ["loop", D, F, E, k, T, S, FS, form], th)[0] if plain
               else float("nan"))
    sg = baseline(baselines, ["sgemm", max(1, T * k), mats * F, D], th)
    torch_ms, torch_threads = float("nan"), ""
    if has_torch and plain:
        torch_ms, torch_threads = torch_best(name, T, th)
    return dict(ms=ms, cold_ms=cold_ms, loop_ms=loop_ms, torch_ms=torch_ms,
                torch_threads=torch_threads, dram=dram,
                sgemm_gflops=sg[1], max_share=max(counts) / max(1, sum(counts)),
                wbytes=wbytes)


def interleaved(variants, T, th, pairs, bindir, runs, extra=()):
    """Two variants of a call measured interleaved: `pairs` alternations of
    one moe-run of each (the order flips every pair), so drift on a shared
    machine hits both alike. variants: [(key, lib, st, xin, moe-run options)]
    with the numerator first. Returns the median and range of the per-pair
    ratios first / second and each variant's best time."""
    best = {v[0]: 1e30 for v in variants}
    ratios = []
    for i in range(pairs):
        ms = {}
        for key, lib, st, xin, opts in variants if i % 2 == 0 else variants[::-1]:
            out = run(timed_run_cmd(bindir, lib, st, xin, timed_calls(T, runs), th) +
                      list(extra) + list(opts))
            ms[key] = float(re.search(r"min ([0-9.]+) ms", out).group(1))
            best[key] = min(best[key], ms[key])
        ratios.append(ms[variants[0][0]] / ms[variants[1][0]])
    ratios.sort()
    return dict(T=T, threads=th, pairs=pairs, median=ratios[len(ratios) // 2],
                lo=ratios[0], hi=ratios[-1], a_ms=best[variants[0][0]],
                b_ms=best[variants[1][0]])


def alternating(variants, T, th, runs_count, bindir, runs, extra=()):
    """Two variants of a call measured call by call inside one process
    (moe-run --compare-model/--compare-weights): `runs_count` runs of
    timed_calls(T, runs) rounds of one call of each, the order flipping every
    round, and which variant is moe-run's model flipping every run. The
    machine's memory bandwidth changes level within seconds, so two
    processes seconds apart can see different levels; consecutive calls
    almost always share one. variants: [(key, lib, st, xin, opts)] with the
    numerator first (both sides run with the same options). Returns the
    median and range of the runs' median per-round ratios first / second
    and each variant's best time."""
    best = {v[0]: 1e30 for v in variants}
    medians = []
    rounds = timed_calls(T, runs)
    # The same library and weights with other inputs: one session.
    same_session = variants[0][1:3] == variants[1][1:3]
    for i in range(runs_count):
        first, second = variants if i % 2 == 0 else variants[::-1]
        against = (["--compare-input", "x=" + second[3]] if same_session else
                   ["--compare-model", second[1], "--compare-weights", second[2]])
        out = run(timed_run_cmd(bindir, first[1], first[2], first[3], rounds, th) +
                  against + list(extra))
        best[first[0]] = min(best[first[0]], float(
            re.search(r"^time: .* min ([0-9.]+) ms", out, re.M).group(1)))
        best[second[0]] = min(best[second[0]], float(
            re.search(r"^compare time: .* min ([0-9.]+) ms", out, re.M).group(1)))
        median = float(re.search(r"^compare ratio: .* median ([0-9.]+)", out, re.M).group(1))
        medians.append(median if first is variants[0] else 1 / median)
    medians.sort()
    return dict(T=T, threads=th, pairs=runs_count, rounds=rounds, same_process=True,
                same_session=same_session, median=medians[len(medians) // 2], lo=medians[0], hi=medians[-1],
                a_ms=best[variants[0][0]], b_ms=best[variants[1][0]])


def model_variants(models, T, names, opts=((), ())):
    by = {name: (lib, st, inputs[T]) for name, lib, st, inputs in models if T in inputs}
    if not all(n in by for n in names):
        return None
    return [(n + (" " + " ".join(o) if o else ""),) + by[n] + (list(o),)
            for n, o in zip(names, opts)]


# The interleaved A/Bs: JSON key, the option giving the number of pairs (or
# of runs), which T, the two models (numerator first), their moe-run
# options, options for both, printed label, markdown title and column
# headers, names of the two best times. Kinds whose two sides take the same
# moe-run options run in one process, call by call (alternating()); the
# others as pairs of processes (interleaved()).
AbKind = collections.namedtuple(
    "AbKind", "key option want_T models opts extra label title columns times")
AB_KINDS = tuple(AbKind(*k) for k in (
    # The same library both times: its router bias of SKEW_BIAS against a
    # zero one (two different libraries differ by more than the routing:
    # code placement alone moved T=64 by 1-2% either way); one process.
    ("skew", "skew_pairs", lambda T: T >= 64, ["mixtral-skewed", "mixtral-skewed-balanced"],
     ((), ()), (), "skewed/balanced", "skewed / balanced",
     ("best skewed ms", "best balanced ms"), ("skewed_ms", "balanced_ms")),
    # The same skew made by the tokens instead (skewed_tokens), zero router
    # bias: one session (moe-run --compare-input), so both sides read the
    # same copy of the weights and packed panels; two sessions hold two,
    # and where they land moved whole calls by up to 10%.
    ("skew_tokens", "skew_pairs", lambda T: T >= 64,
     ["mixtral-skewed-tokens", "mixtral-skewed-balanced"], ((), ()), (),
     "skewed/balanced tokens", "skewed / balanced tokens, one session",
     ("best skewed ms", "best balanced ms"), ("skewed_ms", "balanced_ms")),
    # The session's packed weights kept (the default) against packing them on
    # every call (moe-run --packed-weights-mb 0).
    ("packed", "packed_pairs", lambda T: T >= 512, ["mixtral-small", "mixtral-small"],
     ((), ("--packed-weights-mb", "0")), (), "packed kept/per call",
     "packed weights kept / packed per call", ("best kept ms", "best per-call ms"),
     ("kept_ms", "per_call_ms")),
    # Cold bf16 against f32 weights, call by call in one process: as pairs
    # of processes, the two often ran at different bandwidth levels (2
    # threads: medians 0.61-0.63 where level-matched calls gave 0.51).
    ("bf16_cold", "bf16_pairs", lambda T: T <= 8, ["mixtral-bf16", "mixtral-small"],
     ((), ()), ("--cold",), "cold bf16/f32", "cold bf16 / f32",
     ("best bf16 ms", "best f32 ms"), ("bf16_ms", "f32_ms")),
))


def ab_what(r):
    """What an A/B's median and range are over."""
    if r.get("same_process"):
        return "the medians of %d runs of %d alternating calls each%s" % (
            r["pairs"], r["rounds"], " in one session" if r.get("same_session") else "")
    return "%d interleaved pairs" % r["pairs"]


def measure_ab(kind, models, T, th, pairs, bindir, runs):
    """One A/B of AB_KINDS at T tokens on th threads (None when its models
    are not configured), its two best times under the kind's names."""
    v = model_variants(models, T, kind.models, kind.opts)
    if not v:
        return None
    same_options = kind.opts[0] == kind.opts[1]
    r = (alternating if same_options else interleaved)(v, T, th, pairs, bindir, runs,
                                                       kind.extra)
    r[kind.times[0]], r[kind.times[1]] = r.pop("a_ms"), r.pop("b_ms")
    return r


def merge_rounds(old, new):
    """Best of two rounds of a row: the shortest times, the highest rate."""
    out = dict(new)
    for f in ("ms", "loop_ms"):
        if old[f] == old[f]:
            out[f] = min(old[f], new[f]) if new[f] == new[f] else old[f]
    if old["torch_ms"] == old["torch_ms"] and not new["torch_ms"] < old["torch_ms"]:
        out["torch_ms"], out["torch_threads"] = old["torch_ms"], old["torch_threads"]
    out["sgemm_gflops"] = max(old["sgemm_gflops"], new["sgemm_gflops"])
    # A cold time stays with the bandwidth measured next to it: the round
    # with the faster cold calls.
    if old["cold_ms"] == old["cold_ms"] and not new["cold_ms"] < old["cold_ms"]:
        out["cold_ms"], out["dram"] = old["cold_ms"], old["dram"]
    return out


def layer_flops(name, T):
    """FLOPs of the expert products a call does (routed and shared)."""
    D, F, E, k, S, FS, form = CONFIGS[name]
    mats = 3 if form == "glu" else 2
    return 2.0 * (T * k + T * S * (FS / F if F else 0)) * mats * D * F


def print_row(name, T, th, m, dram, note):
    flops = layer_flops(name, T)
    ms, cold_ms, sg = m["ms"], m["cold_ms"], m["sgemm_gflops"]
    print("%-14s T=%-5d th=%d  %9.3f ms  %7.1f GFLOP/s  %6.1f GB/s  x loop %5.2f  x sgemm-rate %5.2f  x torch %s  (DRAM %.1f GB/s)%s%s"
          % (name, T, th, ms, flops / ms / 1e6, m["wbytes"] / ms / 1e6, m["loop_ms"] / ms,
             flops / ms / 1e6 / sg if sg else float("nan"),
             "%.2f (%s)" % (m["torch_ms"] / ms, m["torch_threads"])
             if m["torch_ms"] == m["torch_ms"] else "n/a", dram,
             "  cold %.3f ms = %.1f GB/s = %.0f%% of DRAM %.1f GB/s now" % (
                 cold_ms, m["wbytes"] / cold_ms / 1e6,
                 100 * m["wbytes"] / cold_ms / 1e6 / m["dram"], m["dram"])
             if cold_ms == cold_ms else "", "  [%s]" % note if note else ""), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", default="1,8,64,512,2048")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the whole table this many times; every quantity "
                        "(ours and the baselines') keeps its best round")
    p.add_argument("--skew-pairs", type=int, default=7,
                   help="skewed against balanced routing (T >= 64, with "
                        "mixtral-skewed configured: its weights against the same "
                        "with a zero router bias, in one process; and skewed "
                        "against balanced tokens with the zero bias, in one "
                        "session): this many runs of alternating calls each; "
                        "0 skips them")
    p.add_argument("--packed-pairs", type=int, default=5,
                   help="packed weights kept against packed per call (mixtral-small, "
                        "T >= 512): this many interleaved pairs; 0 skips it")
    p.add_argument("--dram-pairs", type=int, default=3,
                   help="cold rows (T <= 8): this many interleaved pairs of a cold "
                        "run and a DRAM bandwidth measurement; the row shows the "
                        "pair with the median share of the bandwidth")
    p.add_argument("--bf16-pairs", type=int, default=7,
                   help="cold bf16 against f32 weights (T <= 8, with mixtral-small "
                        "and mixtral-bf16 configured): this many runs of "
                        "alternating calls in one process; 0 skips it")
    p.add_argument("--torch-pairs", type=int, default=3,
                   help="ours against PyTorch (rows with a PyTorch time): this many "
                        "interleaved pairs of one run of each, PyTorch with the "
                        "threading that won its row; median and range of the "
                        "ratios; 0 skips them")
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--markdown")
    p.add_argument("--json")
    a = p.parse_args()
    bindir = os.path.join(a.build, "bin")
    work = tempfile.mkdtemp(prefix="moe-bench-")
    baselines = os.path.join(work, "baselines")
    run(["cc", "-O3", "-march=native", "-o", baselines, os.path.join(HERE, "baselines.c"),
         "-lopenblas", "-lpthread", "-lm"])
    has_torch = torch_available()
    threads = [int(t) for t in a.threads.split(",")]
    # DRAM read bandwidth: the median of three best-of measurements, so one
    # timing glitch cannot inflate the reference the decode rows are held to.
    bw = {th: sorted(baseline(baselines, ["bandwidth", 2048], th)[2] for _ in range(3))[1]
          for th in threads}
    import numpy as np
    # Compile every configuration and write its weights once.
    models = []
    ab_models = []  # only measured in the interleaved A/Bs
    for name in a.configs.split(","):
        D, F, E, k, S, FS, form = CONFIGS[name]
        src = os.path.join(work, name + ".mlir")
        open(src, "w").write(layer_mlir(name, D, F, E, k, S, FS, form))
        lib = os.path.join(work, name + ".so")
        run([os.path.join(bindir, "moe-compile"), src, "--target=cpu", "-o", lib])
        entry, args = random_data.parse_signature(open(src).read())
        weights = random_data.make_arrays([a_ for a_ in args if a_[1] != "x"], 1, seed=1)
        st = os.path.join(work, name + ".safetensors")
        st_balanced = None
        if "router_bias" in weights:
            weights["router_bias"] = np.zeros(E, np.float32)
            st_balanced = os.path.join(work, name + "-balanced.safetensors")
            random_data.write_safetensors(st_balanced, weights)
            weights["router_bias"][0] = SKEW_BIAS
        random_data.write_safetensors(st, weights)
        router = weights["router"]
        del weights
        inputs, skewed = {}, {}
        for T in [int(t) for t in a.tokens.split(",")]:
            inputs[T] = os.path.join(work, "x-%s-%d.npy" % (name, T))
            x = random_data.make_arrays([a_ for a_ in args if a_[1] == "x"], T, seed=1)["x"]
            np.save(inputs[T], x)
            if st_balanced and T >= 64:
                skewed[T] = os.path.join(work, "x-%s-tokens-%d.npy" % (name, T))
                np.save(skewed[T], skewed_tokens(x, router, k, np.random.default_rng(T)))
        models.append((name, lib, st, inputs))
        if st_balanced:
            ab_models.append((name + "-balanced", lib, st_balanced, inputs))
            ab_models.append((name + "-tokens", lib, st_balanced, skewed))
    # Every round measures every row (ours and the baselines); each quantity
    # keeps its best value over the rounds, so a burst of noise on the
    # machine during one round does not decide a ratio.
    best = {}
    for rnd in range(a.rounds):
        for name, lib, st, inputs in models:
            for T, xin in inputs.items():
                for th in threads:
                    m = measure(a, name, lib, st, xin, T, th, bindir, work, baselines, has_torch)
                    key = (name, T, th)
                    if key in best:
                        m = merge_rounds(best[key], m)
                    best[key] = m
                    print_row(name, T, th, m, bw[th], "round %d/%d" % (rnd + 1, a.rounds)
                              if a.rounds > 1 else "")
    rows = []
    for (name, T, th), m in best.items():
        ms, cold_ms = m["ms"], m["cold_ms"]
        row = dict(config=name, T=T, threads=th, ms=ms, gflops=layer_flops(name, T) / ms / 1e6,
                   max_share=m["max_share"], gbps=m["wbytes"] / ms / 1e6, loop_ms=m["loop_ms"],
                   sgemm_gflops=m["sgemm_gflops"], torch_ms=m["torch_ms"],
                   torch_threads=m["torch_threads"], dram_gbps=bw[th],
                   cold_ms=cold_ms, cold_gbps=m["wbytes"] / cold_ms / 1e6, cold_dram_gbps=m["dram"])
        rows.append(row)
    if a.rounds > 1:
        print("best of %d rounds:" % a.rounds)
        for (name, T, th), m in best.items():
            print_row(name, T, th, m, bw[th], "")
    # bf16 weights against f32 (same routing, same run).
    f32 = {(r["T"], r["threads"]): r for r in rows if r["config"] == "mixtral-small"}
    bf16 = [(r, f32.get((r["T"], r["threads"]))) for r in rows if r["config"] == "mixtral-bf16"]
    bf16 = [(b, f) for b, f in bf16 if f]
    for b, f in bf16:
        print("bf16/f32 T=%-5d th=%d  %.3f / %.3f ms = %.2f%s" % (
            b["T"], b["threads"], b["ms"], f["ms"], b["ms"] / f["ms"],
            "  cold %.3f / %.3f ms = %.2f" % (b["cold_ms"], f["cold_ms"], b["cold_ms"] / f["cold_ms"])
            if b["cold_ms"] == b["cold_ms"] else ""))
    # Ratios of two of our own calls, interleaved (a ratio from two table
    # rows measured minutes apart would mostly measure the machine's drift).
    ab = {}
    for kind in AB_KINDS:
        k1, k2 = kind.times
        ab[kind.key] = []
        pairs = getattr(a, kind.option)
        if pairs <= 0:
            continue
        for T in sorted(int(t) for t in a.tokens.split(",")):
            for th in threads:
                r = (measure_ab(kind, models + ab_models, T, th, pairs, bindir, a.runs)
                     if kind.want_T(T) else None)
                if r:
                    ab[kind.key].append(r)
                    print("%s T=%-5d th=%d  median %.3f (range %.3f-%.3f over %s); "
                          "best %.3f / %.3f ms" % (
                              kind.label, T, th, r["median"], r["lo"], r["hi"], ab_what(r),
                              r[k1], r[k2]), flush=True)
    # Ours against PyTorch side by side (the row's ratio takes two times
    # measured seconds apart, each the best of its rounds).
    tp = []
    by_name = {name: (lib, st, inputs) for name, lib, st, inputs in models}
    for r in rows if a.torch_pairs > 0 else ():
        if r["torch_ms"] != r["torch_ms"]:
            continue
        lib, st, inputs = by_name[r["config"]]
        t = torch_pairs(r["config"], lib, st, inputs[r["T"]], r["T"], r["threads"],
                        r["torch_threads"], a.torch_pairs, bindir, a.runs)
        tp.append(t)
        print("torch/ours %-14s T=%-5d th=%d  median %.2f (range %.2f-%.2f over %d "
              "interleaved pairs); best %.3f / %.3f ms" % (
                  t["config"], t["T"], t["threads"], t["median"], t["lo"], t["hi"],
                  t["pairs"], t["torch_ms"], t["ours_ms"]), flush=True)
    if a.json:
        json.dump(dict(rows=rows, torch_pairs=tp, **ab), open(a.json, "w"), indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("| config | T | threads | ms | GFLOP/s | weights GB/s | cold ms (GB/s, % of DRAM then) | vs OpenBLAS loop | vs sgemm rate | vs torch (intra-op x BLAS threads) |\n")
            f.write("|---|---|---|---|---|---|---|---|---|---|\n")
            for r in rows:
                cold = ("%.3f (%.1f, %.0f%% of %.1f)" % (r["cold_ms"], r["cold_gbps"],
                                                       100 * r["cold_gbps"] / r["cold_dram_gbps"],
                                                       r["cold_dram_gbps"])
                        if r["cold_ms"] == r["cold_ms"] else "")
                f.write("| %s | %d | %d | %.3f | %.1f | %.1f | %s | %s | %.2f | %s |\n" % (
                    r["config"], r["T"], r["threads"], r["ms"], r["gflops"], r["gbps"], cold,
                    "%.2fx" % (r["loop_ms"] / r["ms"]) if r["loop_ms"] == r["loop_ms"] else "n/a",
                    r["gflops"] / r["sgemm_gflops"] if r["sgemm_gflops"] else float("nan"),
                    "%.2fx (%s)" % (r["torch_ms"] / r["ms"], r["torch_threads"])
                    if r["torch_ms"] == r["torch_ms"] else "n/a"))
            if bf16:
                f.write("\n| T | threads | f32 weights ms | bf16 weights ms | bf16 / f32 | cold f32 ms | cold bf16 ms | cold bf16 / f32 |\n")
                f.write("|---|---|---|---|---|---|---|---|\n")
                for b, r in bf16:
                    cold = b["cold_ms"] == b["cold_ms"]
                    f.write("| %d | %d | %.3f | %.3f | %.2f | %s | %s | %s |\n" % (
                        b["T"], b["threads"], r["ms"], b["ms"], b["ms"] / r["ms"],
                        "%.3f" % r["cold_ms"] if cold else "", "%.3f" % b["cold_ms"] if cold else "",
                        "%.2f" % (b["cold_ms"] / r["cold_ms"]) if cold else ""))
            if tp:
                f.write("\n| config | T | threads | PyTorch / ours, interleaved pairs: median (range) | best PyTorch ms (intra-op x BLAS threads) | best ours ms |\n")
                f.write("|---|---|---|---|---|---|\n")
                for t in tp:
                    f.write("| %s | %d | %d | %.2fx (%.2f-%.2f, %d pairs) | %.3f (%s) | %.3f |\n" % (
                        t["config"], t["T"], t["threads"], t["median"], t["lo"], t["hi"],
                        t["pairs"], t["torch_ms"], t["torch_threads"], t["ours_ms"]))
            for kind in AB_KINDS:
                rs, (c1, c2), (k1, k2) = ab[kind.key], kind.columns, kind.times
                if not rs:
                    continue
                f.write("\n| T | threads | %s: median (range) | %s | %s |\n"
                        % (kind.title, c1, c2))
                f.write("|---|---|---|---|---|\n")
                for r in rs:
                    f.write("| %d | %d | %.3f (%.3f-%.3f, %s) | %.3f | %.3f |\n" % (
                        r["T"], r["threads"], r["median"], r["lo"], r["hi"], ab_what(r),
                        r[k1], r[k2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
