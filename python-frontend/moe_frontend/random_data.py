"""Deterministic random inputs and weights for a moe model, written as the
files moe-run reads: .safetensors for weights, .npy for inputs.

Needs numpy (Debian: python3-numpy for /usr/bin/python3); the rest of the
frontend is standard library only, so numpy is imported here alone.

    python3 -m moe_frontend.random_data MODEL.mlir --entry NAME --tokens T \
        --weights w.safetensors --inputs-dir DIR [--seed S]
"""

import argparse
import json
import os
import re
import struct
import sys

# An argument, its tensor type and (anywhere in its attribute dictionary)
# its moe.name.
ARG_RE = re.compile(r"%([\w.]+): tensor<([^>]*)>(?:\s*\{[^}]*?moe\.name = \"([^\"]+)\"[^}]*\})?")
NP_DTYPES = {"f32": "float32", "f16": "float16", "i32": "int32", "i64": "int64"}
# uint16 arrays carry bfloat16 bits (numpy has no bfloat16).
ST_DTYPES = {"float32": "F32", "float16": "F16", "int32": "I32", "int64": "I64",
             "uint16": "BF16"}


def parse_signature(text, entry=None):
    """[(ssa, name, shape with None for ?, element type)] of a function."""
    for m in re.finditer(r"func\.func @(\w+)\((.*?)\)\s*->", text, re.S):
        if entry is not None and m.group(1) != entry:
            continue
        args = []
        for i, a in enumerate(ARG_RE.finditer(m.group(2))):
            *dims, elem = a.group(2).split("x")
            shape = [None if d == "?" else int(d) for d in dims]
            args.append((a.group(1), a.group(3) or "arg%d" % i, shape, elem))
        return m.group(1), args
    raise ValueError("no function %s in the module" % (entry or ""))


def is_input(shape):
    """Activations are the arguments with a dynamic (token) dimension."""
    return any(d is None for d in shape)


def make_arrays(args, tokens, seed=0):
    """name -> array. Matrices are scaled by 1/sqrt(fan_in), RMSNorm weights
    are near 1, biases small, activations standard normal. Each array depends
    only on (seed, its name, its shape)."""
    import numpy as np
    out = {}
    for _, name, shape, elem in args:
        dims = [tokens if d is None else d for d in shape]
        name_seed = (seed * 1000003 + sum(ord(c) * (i + 1) for i, c in enumerate(name))) % (2**31)
        rng = np.random.RandomState(name_seed)
        if elem == "bf16":
            np_dtype = "float32"   # written as F32; the runtime converts
        else:
            np_dtype = NP_DTYPES[elem]
        if is_input(shape):
            a = rng.standard_normal(dims)
        elif name.endswith("norm"):
            a = 1.0 + 0.1 * rng.standard_normal(dims)
        elif "bias" in name or len(dims) < 2:
            a = 0.1 * rng.standard_normal(dims)
        else:
            a = rng.standard_normal(dims) / np.sqrt(dims[-2])
        out[name] = a.astype(np_dtype)
    return out


def write_safetensors(path, tensors):
    """Writes `tensors` (name -> numpy array) in the safetensors format."""
    import numpy as np
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        data = arr.tobytes()
        header[name] = {"dtype": ST_DTYPES[str(arr.dtype)], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    blob = json.dumps(header).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for b in blobs:
            f.write(b)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--entry")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", required=True, help="output .safetensors path")
    p.add_argument("--inputs-dir", required=True, help="directory for <name>.npy inputs")
    a = p.parse_args(argv)
    import numpy as np
    entry, args = parse_signature(open(a.model).read(), a.entry)
    arrays = make_arrays(args, a.tokens, a.seed)
    write_safetensors(a.weights, {n: v for (_, n, s, _) in args if not is_input(s) for v in [arrays[n]]})
    os.makedirs(a.inputs_dir, exist_ok=True)
    for _, n, s, _ in args:
        if is_input(s):
            np.save(os.path.join(a.inputs_dir, n + ".npy"), arrays[n])
            print("%s=%s" % (n, os.path.join(a.inputs_dir, n + ".npy")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
