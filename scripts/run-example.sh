#!/usr/bin/env bash
# The main job: builds moe-mlir, compiles the Mixtral-like example (D = 1024,
# F = 3584, 8 experts, top-2, SwiGLU) into a CPU model library, makes
# deterministic random weights and tokens, runs the model through moe-run and
# prints the output checksum, the time per call and the routing statistics.
#
#   EXAMPLE=examples/<name>.mlir  another example (default examples/mixtral.mlir)
#   TOKENS=N                      tokens per call (default 64)
#   RUNS=N                        timed calls (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
BUILD_DIR="$BUILD_DIR" bash scripts/build.sh > "${TMPDIR:-/tmp}/moe-build.log" 2>&1 || {
  cat "${TMPDIR:-/tmp}/moe-build.log"; echo "build failed"; exit 1; }

EXAMPLE=${EXAMPLE:-examples/mixtral.mlir}
TOKENS=${TOKENS:-64}
RUNS=${RUNS:-3}
WORK=${WORK:-$BUILD_DIR/run-example}
NAME=$(basename "$EXAMPLE" .mlir)
PY=/usr/bin/python3
mkdir -p "$WORK"

echo "=== compiling $EXAMPLE for the CPU ==="
"$BUILD_DIR/bin/moe-compile" "$EXAMPLE" --target=cpu -o "$WORK/lib$NAME.so" --header "$WORK/$NAME.h"
ls -l "$WORK/lib$NAME.so" "$WORK/$NAME.h" | awk '{print "  " $5 " bytes  " $9}'
"$BUILD_DIR/bin/moe-run" --model "$WORK/lib$NAME.so" --list

echo "=== deterministic random weights and $TOKENS tokens (seed 0) ==="
inputs=$(PYTHONPATH=python-frontend $PY -m moe_frontend.random_data "$EXAMPLE" \
           --tokens "$TOKENS" --seed 0 --weights "$WORK/weights.safetensors" \
           --inputs-dir "$WORK/inputs")
input_args=()
for i in $inputs; do input_args+=(--input "$i"); done
ls -l "$WORK/weights.safetensors" | awk '{print "  weights: " $5 " bytes"}'

echo "=== running ($RUNS timed calls after a warm-up) ==="
"$BUILD_DIR/bin/moe-run" --model "$WORK/lib$NAME.so" --weights "$WORK/weights.safetensors" \
  "${input_args[@]}" --output-dir "$WORK/outputs" --time "$RUNS" --stats "$WORK/stats.json"

echo "=== output ==="
$PY - "$WORK/outputs" <<'PYEOF'
import glob, os, sys
import numpy as np
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.npy"))):
    a = np.load(path).astype(np.float64)
    print("  %s: shape %s  checksum (sum) %.6f  sum|x| %.6f  first %s"
          % (os.path.basename(path), a.shape, a.sum(), np.abs(a).sum(),
             np.array2string(a.reshape(-1)[:4], precision=5)))
PYEOF
echo "=== routing statistics ($WORK/stats.json) ==="
cat "$WORK/stats.json"
