# RUN: %PYTHON %s | moe-opt | FileCheck %s
# RUN: %PYTHON -m moe_frontend --preset qwen3-moe-small --layers 1 --tokens 4 --decompose | FileCheck %s --check-prefix=DECOMP
# RUN: %PYTHON %s bad-config 2>&1 | FileCheck %s --check-prefix=ERR

# The command line, in-process (first and third RUN) and as a subprocess.
# The error case prints the exit status itself rather than relying on `not`.

import sys

from moe_frontend.__main__ import main

if sys.argv[1:] == ["bad-config"]:
    sys.stderr.flush()
    code = main(["--preset", "switch-small", "--set", "num_experts=0"])
    sys.stdout.write(f"exit status {code}\n")
    sys.exit(0)

sys.exit(main(["--preset", "qwen3-moe-small", "--layers", "2", "--layout", "out_in",
               "--gate-up", "concatenated"]))

# CHECK-LABEL: func.func @qwen3_moe(
# CHECK-SAME: tensor<16x64xf32> {moe.name = "layers.0.router"}
# CHECK-SAME: tensor<16x64x64xf32> {moe.name = "layers.0.w1"}
# CHECK-SAME: tensor<16x64x32xf32> {moe.name = "layers.0.w2"}
# CHECK: moe.layer {{.*}}{ffn = #moe.ffn<gate_up = concatenated, layout = out_in>, routing = #moe.routing<k = 4, normalize = selected>}
# CHECK: moe.layer

# DECOMP-LABEL: func.func @qwen3_moe(
# DECOMP: moe.route {{.*}} : tensor<4x16xf32> -> tensor<4x4xf32>, tensor<4x4xi32>

# ERR: error: switch_transformers config field 'num_experts' must be at least 1, got 0
# ERR-NEXT: exit status 1
