#!/usr/bin/env bash
# Configures and builds moe-mlir into ${BUILD_DIR:-build}. Extra arguments
# are passed to cmake (e.g. -DMOE_ENABLE_SANITIZERS=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

if [ ! -f "$BUILD_DIR/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -G Ninja -S . -B "$BUILD_DIR" \
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DLLVM_USE_LINKER=lld "$@"
fi
ninja -C "$BUILD_DIR"
