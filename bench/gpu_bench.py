#!/usr/bin/env python3
"""moe-mlir GPU benchmark: the compiled CUDA model library of a Mixtral-like
layer against PyTorch eager on the same GPU, measured in the same run.

    python3 bench/gpu_bench.py [--build build] [--tokens 1,64,512,4096]
        [--dtypes f32,bf16] [--runs 20] [--markdown FILE]

For every weight dtype and token count it reports the time per call of
`moe-run --device=cuda --time` (inputs copied to the device, kernels,
synchronisation), TFLOP/s of the expert work, and ratios against:
  * torch: PyTorch eager, the Hugging Face Mixtral block (loop over experts,
    index, matmul, index_add) on the same GPU, weights in the same dtype,
    timed with CUDA events after a warm-up;
  * gemm:  the bf16 dense-GEMM rate torch.matmul reaches on this GPU
    (8192^3), the "% of the measured bf16 dense-GEMM rate" column.
Shape: D=1024, F=3584, E=8, k=2, SwiGLU (examples/mixtral.mlir).

Needs a CUDA GPU with its driver, numpy, and torch with CUDA for the
baselines (the moe-mlir side needs neither torch nor a CUDA toolkit: the
library embeds PTX). Exits with a message where there is no GPU.

A GPU machine without LLVM/MLIR has no moe-compile: compile the two model
libraries on a build machine with `--compile-to DIR` (no GPU needed) and
run there with `--libs DIR` (scripts/gpu_check.py bundle does both parts).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python-frontend"))
from moe_frontend import random_data  # noqa: E402

D, F, E, K = 1024, 3584, 8, 2

TORCH_BLOCK = r"""
import sys, torch
Ts, D, F, E, K, dtype, runs = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                               int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7]))
dt = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
dev = "cuda"
torch.manual_seed(0)
gate = torch.nn.Linear(D, E, bias=False, device=dev, dtype=dt)
w1 = [torch.nn.Linear(D, F, bias=False, device=dev, dtype=dt) for _ in range(E)]
w3 = [torch.nn.Linear(D, F, bias=False, device=dev, dtype=dt) for _ in range(E)]
w2 = [torch.nn.Linear(F, D, bias=False, device=dev, dtype=dt) for _ in range(E)]
def block(h):
    logits = gate(h)
    rw = torch.softmax(logits, dim=1, dtype=torch.float)
    rw, sel = torch.topk(rw, K, dim=-1)
    rw = (rw / rw.sum(dim=-1, keepdim=True)).to(h.dtype)
    out = torch.zeros_like(h)
    mask = torch.nn.functional.one_hot(sel, num_classes=E).permute(2, 1, 0)
    for e in range(E):
        idx, top = torch.where(mask[e])
        cur = h[top]
        y = w2[e](torch.nn.functional.silu(w1[e](cur)) * w3[e](cur)) * rw[top, idx, None]
        out.index_add_(0, top, y)
    return out
with torch.no_grad():
    for T in [int(t) for t in Ts.split(",")]:
        x = torch.randn(T, D, device=dev, dtype=dt)
        for _ in range(3):
            block(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
            a.record(); block(x); b.record(); torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        print("T=%d ms=%.5f" % (T, min(times)), flush=True)
"""

GEMM_RATE = r"""
import torch
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
best = 1e9
for _ in range(10):
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    s.record(); a @ b; e.record(); torch.cuda.synchronize()
    best = min(best, s.elapsed_time(e))
print("tflops=%.3f name=%s" % (2 * n**3 / best / 1e9, torch.cuda.get_device_name()))
"""


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit("gpu_bench: %s failed:\n%s%s" % (cmd[0], r.stdout, r.stderr))
    return r.stdout


def model_text(dtype):
    text = open(os.path.join(ROOT, "examples", "mixtral.mlir")).read()
    if dtype == "bf16":
        # Expert weights in bf16 (f32 activations and accumulation).
        for shape in ("8x1024x3584", "8x3584x1024"):
            text = text.replace("tensor<%sxf32>" % shape, "tensor<%sxbf16>" % shape)
    return text


def torch_cuda():
    return subprocess.call([sys.executable, "-c",
                            "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def compile_model(bindir, work, dtype, extra=()):
    model = os.path.join(work, "mixtral_%s.mlir" % dtype)
    with open(model, "w") as f:
        f.write(model_text(dtype))
    lib = os.path.join(work, "libmixtral_%s.so" % dtype)
    run([os.path.join(bindir, "moe-compile"), model, "--target=cuda", "-o", lib] + list(extra))
    return model, lib


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--tokens", default="1,64,512,4096")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--markdown")
    p.add_argument("--compile-to", metavar="DIR",
                   help="only compile the model libraries into DIR (no GPU needed)")
    p.add_argument("--compile-arg", action="append", default=[], metavar="ARG",
                   help="extra moe-compile argument (repeatable), e.g. --compile-arg=--gpu-ffn=columns")
    p.add_argument("--libs", metavar="DIR",
                   help="use the libraries --compile-to wrote instead of moe-compile")
    a = p.parse_args()
    bindir = os.path.join(a.build, "bin")
    if a.compile_to:
        os.makedirs(a.compile_to, exist_ok=True)
        for dtype in a.dtypes.split(","):
            print(compile_model(bindir, a.compile_to, dtype, a.compile_arg)[1])
        return
    check = subprocess.run([os.path.join(bindir, "moe-run"), "--model", "/dev/null",
                            "--device", "cuda"], capture_output=True, text=True)
    if "not available" in check.stderr or "no CUDA device" in check.stderr:
        sys.exit("gpu_bench: no usable CUDA GPU here: " + check.stderr.strip())
    has_torch = torch_cuda()
    gemm, gpu = float("nan"), "unknown GPU"
    if has_torch:
        out = run([sys.executable, "-c", GEMM_RATE])
        gemm = float(re.search(r"tflops=([0-9.]+)", out).group(1))
        gpu = re.search(r"name=(.*)", out).group(1).strip()
    print("GPU: %s; bf16 dense GEMM (torch.matmul 8192^3): %.1f TFLOP/s" % (gpu, gemm))
    rows = []
    work = tempfile.mkdtemp(prefix="moe-gpu-bench-")
    for dtype in a.dtypes.split(","):
        if a.libs:
            model = os.path.join(a.libs, "mixtral_%s.mlir" % dtype)
            lib = os.path.join(a.libs, "libmixtral_%s.so" % dtype)
            if not os.path.isfile(lib):
                sys.exit("gpu_bench: %s missing (make it with --compile-to)" % lib)
        else:
            model, lib = compile_model(bindir, work, dtype, a.compile_arg)
        weights = os.path.join(work, "w_%s.safetensors" % dtype)
        torch_ms = {}
        if has_torch:
            tout = run([sys.executable, "-c", TORCH_BLOCK, a.tokens, str(D), str(F),
                        str(E), str(K), dtype, str(a.runs)])
            torch_ms = {int(t): float(m) for t, m in re.findall(r"T=(\d+) ms=([0-9.]+)", tout)}
        for T in [int(t) for t in a.tokens.split(",")]:
            inputs = os.path.join(work, "in_%s_%d" % (dtype, T))
            names = run([sys.executable, "-m", "moe_frontend.random_data", model,
                         "--tokens", str(T), "--seed", "0", "--weights", weights,
                         "--inputs-dir", inputs],
                        env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python-frontend"))).split()
            cmd = [os.path.join(bindir, "moe-run"), "--model", lib, "--device", "cuda",
                   "--weights", weights, "--time", str(a.runs)]
            for n in names:
                cmd += ["--input", n]
            out = run(cmd)
            ms = float(re.search(r"min ([0-9.]+) ms", out).group(1))
            flops = 2.0 * T * K * 3 * D * F
            tflops = flops / ms / 1e9
            tms = torch_ms.get(T, float("nan"))
            rows.append((dtype, T, ms, tflops, 100.0 * tflops / gemm, tms, tms / ms))
            print("%-5s T=%-5d %9.3f ms  %7.3f TFLOP/s  %5.1f%% of bf16 GEMM  torch %8.3f ms  x torch %.2f"
                  % rows[-1], flush=True)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("GPU: %s; bf16 dense GEMM %.1f TFLOP/s\n\n" % (gpu, gemm))
            f.write("| weights | T | ms | TFLOP/s | % of bf16 GEMM | torch ms | x torch |\n")
            f.write("|---|---|---|---|---|---|---|\n")
            for r in rows:
                f.write("| %s | %d | %.3f | %.3f | %.1f | %.3f | %.2f |\n" % r)


if __name__ == "__main__":
    main()
