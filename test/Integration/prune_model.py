#!/usr/bin/env python3
"""Static pruning end to end: calibrate a model with moe-run, prune half of
its experts with moe-prune-experts, slice the weights with
moe_frontend.prune_weights, run both models on new tokens and check that

  * the pruned library's expert weights are half the original bytes;
  * every token whose routing never selected a pruned expert gets the same
    output: max relative error <= 1e-5, and with --require-bit-identical the
    very same bits (true while every kept expert stays on the same kernel
    path: the fused kernel picks its path by segment size, which rerouted
    tokens can change in larger models);
  * tokens that did select a pruned expert exist (the test is not vacuous).

Usage: prune_model.py MODEL.mlir --build DIR --work DIR
"""

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python-frontend"))
sys.path.insert(0, os.path.join(HERE, "reference"))
from moe_frontend import random_data  # noqa: E402
import moe_reference as ref  # noqa: E402


FRONTEND = os.path.join(HERE, "..", "..", "python-frontend")


def run(cmd):
    env = dict(os.environ)
    env["PYTHONPATH"] = FRONTEND + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print("FAIL: %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
        sys.exit(1)
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--metric", default="gate_mass")
    ap.add_argument("--require-bit-identical", action="store_true",
                    help="fail unless every unaffected token is bit-identical")
    a = ap.parse_args()
    b = lambda tool: os.path.join(a.build, "bin", tool)
    os.makedirs(a.work, exist_ok=True)
    w = lambda name: os.path.join(a.work, name)
    text = open(a.model).read()
    _, args = random_data.parse_signature(text)
    weights = random_data.make_arrays([x for x in args if x[1] != "x"], 1, seed=3)
    random_data.write_safetensors(w("full.safetensors"), weights)
    xs = {T: random_data.make_arrays([x for x in args if x[1] == "x"], T, seed=T)["x"] for T in (256, 97)}
    for T, x in xs.items():
        np.save(w("x%d.npy" % T), x)

    # 1. Calibrate the full model.
    run([b("moe-compile"), a.model, "--target=cpu", "-o", w("full.so")])
    run([b("moe-run"), "--model", w("full.so"), "--weights", w("full.safetensors"),
         "--input", "x=" + w("x256.npy"), "--stats", w("profile.json")])
    # 2. Prune half of the experts by gate mass, slice the weights.
    run([b("moe-opt"), a.model, "-moe-prune-experts=profile=%s keep-fraction=0.5 metric=%s" % (w("profile.json"), a.metric),
         "-o", w("pruned.mlir")])
    run([sys.executable, "-m", "moe_frontend.prune_weights", w("pruned.mlir"),
         w("full.safetensors"), w("pruned.safetensors")])
    run([b("moe-compile"), w("pruned.mlir"), "--target=cpu", "-o", w("pruned.so")])

    # Expert weight bytes described by each library.
    def expert_bytes(lib):
        listing = run([b("moe-run"), "--model", lib, "--list"])
        total = 0
        for m in re.finditer(r"arg\s+(w[123])\s+f32\s+\[([0-9, ]+)\]", listing):
            total += 4 * int(np.prod([int(v) for v in m.group(2).split(",")]))
        return total
    full_bytes, pruned_bytes = expert_bytes(w("full.so")), expert_bytes(w("pruned.so"))
    print("expert weight bytes: full %d, pruned %d" % (full_bytes, pruned_bytes))
    if pruned_bytes * 2 != full_bytes:
        print("FAIL: pruning half the experts did not halve the expert weight bytes")
        return 1

    # 3. New tokens through both models.
    outs = {}
    for tag in ("full", "pruned"):
        run([b("moe-run"), "--model", w(tag + ".so"), "--weights", w(tag + ".safetensors"),
             "--input", "x=" + w("x97.npy"), "--output", "result0=" + w(tag + "-y.npy")])
        outs[tag] = np.load(w(tag + "-y.npy"))
    kept = re.search(r'moe\.name = "w1", moe\.prune_dim = 0 : i64, moe\.prune_keep = array<i64: ([0-9, ]+)>',
                     open(w("pruned.mlir")).read())
    kept = {int(v) for v in kept.group(1).split(",")}
    routing = re.search(r"#moe\.routing<[^>]*>", text).group(0)
    logits = (xs[97].astype(np.float32) @ weights["router"]).astype(np.float32)
    _, experts = ref.route(logits, routing)
    unaffected = np.array([all(int(e) in kept for e in row if e >= 0) for row in experts])
    if unaffected.all() or not unaffected.any():
        print("FAIL: the test needs tokens on both sides (%d of %d unaffected)"
              % (unaffected.sum(), len(unaffected)))
        return 1
    full, pruned = outs["full"][unaffected], outs["pruned"][unaffected]
    err = float(np.max(np.abs(full - pruned))) / max(float(np.max(np.abs(full))), 1e-6)
    identical = int(np.sum(np.all(full == pruned, axis=1)))
    print("unaffected tokens %d of %d, max relative error %.2e, bit-identical %d"
          % (unaffected.sum(), len(unaffected), err, identical))
    if not err <= 1e-5:
        print("FAIL: unaffected tokens changed")
        return 1
    if a.require_bit_identical and identical != int(unaffected.sum()):
        print("FAIL: %d unaffected tokens are not bit-identical"
              % (int(unaffected.sum()) - identical))
        return 1
    print("ok prune")
    return 0


if __name__ == "__main__":
    sys.exit(main())
