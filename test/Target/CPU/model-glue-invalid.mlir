// RUN: not moe-translate --moe-to-model-glue %s 2>&1 | FileCheck %s

// CHECK: argument name 'x' is used twice
module {
  func.func @dup(%a: tensor<?x4xf32> {moe.name = "x"}, %b: tensor<?x4xf32> {moe.name = "x"}) -> tensor<?x4xf32> {
    return %a : tensor<?x4xf32>
  }
}
