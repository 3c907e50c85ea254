#!/usr/bin/env bash
# The main job: builds moe-mlir, then takes the Mixtral-like example through
# the compiler and prints the result. (EXAMPLE=examples/<name>.mlir picks
# another example.)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh > /dev/null
EXAMPLE=${EXAMPLE:-examples/mixtral.mlir}

echo "=== ${EXAMPLE} after moe-decompose ==="
"${BUILD_DIR:-build}/bin/moe-opt" "$EXAMPLE" -moe-decompose -cse -canonicalize
