#!/usr/bin/env python3
"""Expert skipping benchmark: time of a compiled Mixtral-small layer as the
fraction of skipped (token, expert) pairs grows.

    /usr/bin/python3 bench/skip_bench.py [--tokens 512] [--threads 2]
        [--fractions 0,0.25,0.5,0.75] [--runs 5]

For each target fraction f the gate-probability threshold tau is the f
quantile of the selected pairs' probabilities p on the benchmark's own
inputs (what moe-skip-experts="threshold=tau" writes into #moe.routing);
the model is compiled with that threshold, run through moe-run, and the
skipped fraction is read back from the routing statistics. Reported:
time, skipped fraction, and time / expected-time, where expected-time =
time(0%) * (1 - skipped fraction) scales the unskipped expert work.
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python-frontend"))
sys.path.insert(0, os.path.join(ROOT, "test", "Integration", "reference"))
from moe_frontend import random_data  # noqa: E402
import run_bench  # noqa: E402

D, F, E, K = 1024, 3584, 8, 2


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fractions", default="0,0.25,0.5,0.75")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    bindir = os.path.join(a.build, "bin")
    work = tempfile.mkdtemp(prefix="moe-skip-")
    base = run_bench.layer_mlir("mixtral-small", D, F, E, K, 0, 0, "glu")
    _, args = random_data.parse_signature(base)
    weights = random_data.make_arrays([x for x in args if x[1] != "x"], 1, seed=1)
    st = os.path.join(work, "w.safetensors")
    random_data.write_safetensors(st, weights)
    x = random_data.make_arrays([x_ for x_ in args if x_[1] == "x"], a.tokens, seed=1)["x"]
    xin = os.path.join(work, "x.npy")
    np.save(xin, x)
    # Gate probabilities of the selected pairs (softmax over all experts).
    logits = x.astype(np.float64) @ weights["router"].astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    selected = -np.sort(-p, axis=1)[:, :K].reshape(-1)

    base_ms = None
    print("%-9s %-10s %10s %9s %18s" % ("target", "threshold", "ms", "skipped", "time/expected"))
    for f in [float(v) for v in a.fractions.split(",")]:
        tau = 0.0 if f <= 0 else float(np.quantile(selected, f))
        src = base.replace("#moe.routing<k = 2, normalize = selected>",
                           "#moe.routing<k = 2, normalize = selected, threshold = %.6f>" % tau
                           if tau > 0 else "#moe.routing<k = 2, normalize = selected>")
        path = os.path.join(work, "skip.mlir")
        open(path, "w").write(src)
        lib = os.path.join(work, "skip.so")
        run([os.path.join(bindir, "moe-compile"), path, "--target=cpu", "-o", lib])
        stats = os.path.join(work, "stats.json")
        out = run([os.path.join(bindir, "moe-run"), "--model", lib, "--weights", st,
                   "--input", "x=" + xin, "--time", str(a.runs), "--threads", str(a.threads),
                   "--stats", stats])
        ms = float(re.search(r"min ([0-9.]+) ms", out).group(1))
        layer = json.load(open(stats))["layers"][0]
        skipped = layer["skipped"] / float(a.tokens * K)
        if base_ms is None:
            base_ms = ms
        expected = base_ms * (1.0 - skipped)
        print("%-9.2f %-10.4g %10.3f %8.1f%% %18.2f" % (f, tau, ms, 100 * skipped,
                                                      ms / expected if expected > 0 else float("nan")),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
