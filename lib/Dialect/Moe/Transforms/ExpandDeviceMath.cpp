//===- ExpandDeviceMath.cpp - math ops to natively selected intrinsics ----===//
//
// Implements `moe-expand-device-math`: GPU kernels must not depend on the
// vendor device libraries (libdevice, ocml), which are only found where a
// CUDA or ROCm installation is, so the math ops the moe lowerings produce
// are rewritten into LLVM intrinsics both GPU back ends select natively.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEXPANDDEVICEMATHPASS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

constexpr float kLog2E = 1.44269504088896340736f;
constexpr float kLn2 = 0.69314718055994530942f;

/// One native f32 instruction per primitive, as inline assembly.
struct NativeOps {
  const char *exp2, *log2, *sqrt, *floor, *constraints;
};
constexpr NativeOps kNVVM = {"ex2.approx.ftz.f32 $0, $1;",
                             "lg2.approx.ftz.f32 $0, $1;", "sqrt.rn.f32 $0, $1;",
                             "cvt.rmi.f32.f32 $0, $1;", "=f,f"};
constexpr NativeOps kROCDL = {"v_exp_f32 $0, $1", "v_log_f32 $0, $1",
                              "v_sqrt_f32 $0, $1", "v_floor_f32 $0, $1",
                              "=v,v"};

/// Scalar f32 building blocks.
struct F32Builder {
  F32Builder(OpBuilder &b, Location loc, const NativeOps &native)
      : b(b), loc(loc), native(native) {}
  Value c(float v) {
    return arith::ConstantFloatOp::create(b, loc, b.getF32Type(),
                                          llvm::APFloat(v));
  }
  Value add(Value x, Value y) { return arith::AddFOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubFOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, loc, x, y); }
  Value neg(Value x) { return arith::NegFOp::create(b, loc, x); }
  Value asm1(const char *text, Value x) {
    return LLVM::InlineAsmOp::create(
               b, loc, b.getF32Type(), ValueRange{x}, text, native.constraints,
               /*has_side_effects=*/false, /*is_align_stack=*/false,
               LLVM::tailcallkind::TailCallKind::None,
               /*asm_dialect=*/LLVM::AsmDialectAttr(),
               /*operand_attrs=*/ArrayAttr())
        .getResult(0);
  }
  Value exp2(Value x) { return asm1(native.exp2, x); }
  Value log2(Value x) { return asm1(native.log2, x); }
  Value sqrt(Value x) { return asm1(native.sqrt, x); }
  Value floor(Value x) { return asm1(native.floor, x); }
  Value exp(Value x) { return exp2(mul(x, c(kLog2E))); }
  /// |x| by clearing the sign bit.
  Value abs(Value x) {
    Value bits = arith::BitcastOp::create(b, loc, b.getI32Type(), x);
    Value mask = arith::ConstantIntOp::create(b, loc, 0x7fffffff, 32);
    return arith::BitcastOp::create(b, loc, b.getF32Type(),
                                    arith::AndIOp::create(b, loc, bits, mask));
  }
  /// erfc(a) for a >= 0 (Numerical Recipes erfcc, relative error < 1.2e-7).
  Value erfcNonNegative(Value a) {
    Value t = div(c(1.0f), add(mul(c(0.5f), a), c(1.0f)));
    const float coeffs[] = {0.17087277f,  -0.82215223f, 1.48851587f,
                            -1.13520398f, 0.27886807f,  -0.18628806f,
                            0.09678418f,  0.37409196f,  1.00002368f,
                            -1.26551223f};
    Value p = c(coeffs[0]);
    for (float k : ArrayRef<float>(coeffs).drop_front())
      p = add(mul(p, t), c(k));
    return mul(t, exp(sub(p, mul(a, a))));
  }
  OpBuilder &b;
  Location loc;
  const NativeOps &native;
};

/// The f32 expansion of `op` (operands already widened), or null if the op
/// has none.
Value expand(Operation *op, F32Builder &f, ValueRange x) {
  return TypeSwitch<Operation *, Value>(op)
      .Case([&](math::ExpOp) { return f.exp(x[0]); })
      .Case([&](math::Exp2Op) { return f.exp2(x[0]); })
      .Case([&](math::LogOp) { return f.mul(f.log2(x[0]), f.c(kLn2)); })
      .Case([&](math::Log2Op) { return f.log2(x[0]); })
      .Case([&](math::SqrtOp) { return f.sqrt(x[0]); })
      .Case([&](math::RsqrtOp) { return f.div(f.c(1.0f), f.sqrt(x[0])); })
      .Case([&](math::AbsFOp) { return f.abs(x[0]); })
      // llvm.intr.fma: one fused instruction on both back ends (fma.rn.f32,
      // v_fma_f32); math.fma's own lowering would call the device library.
      .Case([&](math::FmaOp) {
        return LLVM::FMAOp::create(f.b, f.loc, x[0], x[1], x[2]).getResult();
      })
      .Case([&](math::FloorOp) { return f.floor(x[0]); })
      .Case([&](math::CeilOp) { return f.neg(f.floor(f.neg(x[0]))); })
      .Case([&](math::TanhOp) {
        Value e = f.exp(f.mul(f.c(2.0f), x[0]));
        return f.sub(f.c(1.0f), f.div(f.c(2.0f), f.add(e, f.c(1.0f))));
      })
      .Case([&](math::ErfOp) {
        Value mag = f.sub(f.c(1.0f), f.erfcNonNegative(f.abs(x[0])));
        Value negative = arith::CmpFOp::create(
            f.b, f.loc, arith::CmpFPredicate::OLT, x[0], f.c(0.0f));
        return arith::SelectOp::create(f.b, f.loc, negative, f.neg(mag), mag)
            .getResult();
      })
      .Case([&](math::PowFOp) { return f.exp2(f.mul(x[1], f.log2(x[0]))); })
      .Default([](Operation *) { return Value(); });
}

struct MoeExpandDeviceMathPass
    : public mlir::moe::impl::MoeExpandDeviceMathPassBase<
          MoeExpandDeviceMathPass> {
  using MoeExpandDeviceMathPassBase::MoeExpandDeviceMathPassBase;
  void runOnOperation() override {
    if (target != "nvvm" && target != "rocdl") {
      getOperation().emitError("moe-expand-device-math: unknown target '")
          << target << "' (nvvm or rocdl)";
      return signalPassFailure();
    }
    const NativeOps &native = target == "nvvm" ? kNVVM : kROCDL;
    SmallVector<Operation *> mathOps;
    getOperation()->walk([&](Operation *op) {
      if (isa<math::MathDialect>(op->getDialect()))
        mathOps.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    bool failedAny = false;
    for (Operation *op : mathOps) {
      Type type = op->getNumResults() == 1 ? op->getResult(0).getType() : Type();
      auto floatType = dyn_cast_or_null<FloatType>(type);
      if (!floatType || floatType.getWidth() > 32) {
        op->emitOpError("has no GPU lowering without the vendor device "
                        "library (only scalar f32, f16 and bf16 math is "
                        "expanded)");
        failedAny = true;
        continue;
      }
      rewriter.setInsertionPoint(op);
      F32Builder f(rewriter, op->getLoc(), native);
      SmallVector<Value> wide;
      for (Value v : op->getOperands())
        wide.push_back(v.getType().isF32()
                           ? v
                           : arith::ExtFOp::create(rewriter, op->getLoc(),
                                                   rewriter.getF32Type(), v)
                                 .getResult());
      Value r = expand(op, f, wide);
      if (!r) {
        op->emitOpError("has no GPU lowering without the vendor device "
                        "library; supported: exp, exp2, log, log2, sqrt, "
                        "rsqrt, absf, fma, floor, ceil, tanh, erf, powf");
        failedAny = true;
        continue;
      }
      if (!floatType.isF32())
        r = arith::TruncFOp::create(rewriter, op->getLoc(), floatType, r);
      rewriter.replaceOp(op, r);
    }
    if (failedAny)
      signalPassFailure();
  }
};

} // namespace
