#!/usr/bin/env bash
# Reruns the CPU benchmark with one command: installs what it needs
# (OpenBLAS and PyTorch for the baselines, numpy for the data), builds
# moe-mlir, runs
# bench/run_bench.py and writes the table to bench/results.md.
#   TOKENS=1,8,64,512,2048 THREADS=1,2 ROUNDS=2 CONFIGS=mixtral-small,deepseek-fine,switch,mixtral-skewed,mixtral-bf16
# ROUNDS: the table is measured this many times and every quantity (ours and
# the baselines') keeps its best round, which damps noise from other work on
# the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
missing=()
# python3-torch: Debian's PyTorch, for the PyTorch eager baseline.
for pkg in libopenblas-dev python3-numpy python3-torch; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
bash scripts/build.sh > /dev/null
lscpu | grep -E "Model name|^CPU\(s\)|L2|L3" | sed 's/^/# /'
/usr/bin/python3 bench/run_bench.py --tokens "${TOKENS:-1,8,64,512,2048}" \
  --threads "${THREADS:-1,2}" --rounds "${ROUNDS:-2}" --configs "${CONFIGS:-mixtral-small,deepseek-fine,switch,mixtral-skewed,mixtral-bf16}" \
  --markdown bench/results.md --json bench/results.json
