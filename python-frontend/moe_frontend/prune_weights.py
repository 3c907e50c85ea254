"""Writes the .safetensors of a model pruned by `moe-prune-experts`.

    python3 -m moe_frontend.prune_weights PRUNED.mlir IN.safetensors OUT.safetensors

Every entry-point argument the pass shrank carries `moe.prune_dim` and
`moe.prune_keep` (the kept indices along that dimension); the tensor of the
same `moe.name` is sliced accordingly, the others are copied. Needs numpy.
"""

import json
import re
import struct
import sys

from . import random_data

ST_TO_NP = {"F32": "float32", "F16": "float16", "I32": "int32", "I64": "int64",
            "BF16": "uint16"}   # bf16 bits are carried unchanged


def read_safetensors(path):
    """name -> (safetensors dtype, numpy array) of every tensor in the file."""
    import numpy as np
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: truncated safetensors file" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError("%s: header length %d exceeds the file" % (path, n))
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] not in ST_TO_NP or not 0 <= begin <= end <= len(data):
            raise ValueError("%s: tensor %s is malformed or of an unsupported dtype" % (path, name))
        arr = np.frombuffer(data[begin:end], dtype=ST_TO_NP[info["dtype"]]).reshape(info["shape"])
        out[name] = (info["dtype"], arr)
    return out


def pruned_arguments(text):
    """moe.name -> (dim, kept indices) for every pruned argument."""
    out = {}
    for m in re.finditer(r"%[\w.]+: tensor<[^>]*>\s*\{([^}]*)\}", text):
        attrs = m.group(1)
        name = re.search(r'moe\.name = "([^"]+)"', attrs)
        dim = re.search(r"moe\.prune_dim = (\d+)", attrs)
        keep = re.search(r"moe\.prune_keep = array<i64: ([0-9, ]+)>", attrs)
        if name and dim and keep:
            out[name.group(1)] = (int(dim.group(1)), [int(v) for v in keep.group(1).split(",")])
    return out


def main(argv=None):
    import numpy as np
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    model, src, dst = argv
    plan = pruned_arguments(open(model).read())
    tensors = read_safetensors(src)
    out = {}
    for name, (dtype, arr) in tensors.items():
        if name in plan:
            dim, keep = plan[name]
            if dim >= arr.ndim or max(keep) >= arr.shape[dim]:
                raise ValueError("%s: cannot keep %s along dimension %d of shape %s"
                                 % (name, keep, dim, arr.shape))
            arr = np.take(arr, keep, axis=dim)
        out[name] = arr
    missing = sorted(set(plan) - set(tensors))
    if missing:
        raise ValueError("the weights file lacks pruned arguments %s" % missing)
    random_data.write_safetensors(dst, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
