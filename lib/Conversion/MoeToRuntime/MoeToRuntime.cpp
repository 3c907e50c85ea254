//===- MoeToRuntime.cpp - routing/dispatch/combine to CPU kernel calls -----===//
//
// Implements `convert-moe-to-runtime`. Each op becomes:
//
//   %in  = bufferization.to_buffer %t read_only   (operands)
//   %out = memref.alloc(...)                       (results)
//   func.call @moert_cpu_<op>(casts of %in..., casts of %out..., scalars)
//   %r   = bufferization.to_tensor %out restrict writable
//
// Memrefs are cast to fully dynamic strided types so one declaration serves
// every shape; the kernels read sizes and strides from the descriptors.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/MoeToRuntime/MoeToRuntime.h"
#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Utils/BufferBridge.h"
#include "moe/Dialect/Moe/Utils/Capacity.h"
#include "moe/Dialect/Moe/Utils/RouterMatmul.h"
#include "moe/Dialect/Moe/Utils/TensorBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETORUNTIMEPASS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Element type codes of cpu_kernels.h.
FailureOr<int64_t> elemTypeCode(Type t) {
  if (t.isF32())
    return 0;
  if (t.isF16())
    return 1;
  if (t.isBF16())
    return 2;
  return failure();
}

/// Shared experts that moe-fuse-experts folded into `dispatch` (its last
/// slots and experts), which the statistics report as a dispatch of their
/// own; 0 if none.
int64_t sharedExpertsOf(DispatchOp dispatch) {
  auto attr = dispatch->getAttrOfType<IntegerAttr>(kDispatchSharedExpertsAttr);
  return attr ? attr.getInt() : 0;
}

/// Builds the memref plumbing around one kernel call.
class KernelCallBuilder {
public:
  KernelCallBuilder(RewriterBase &b, Location loc, Operation *anchor)
      : b(b), loc(loc),
        module(anchor->getParentOfType<ModuleOp>()) {}

  /// The fully dynamic strided memref type of a given rank and element type.
  static MemRefType genericType(MLIRContext *ctx, int64_t rank, Type elem) {
    SmallVector<int64_t> dyn(rank, ShapedType::kDynamic);
    return MemRefType::get(
        dyn, elem,
        StridedLayoutAttr::get(ctx, ShapedType::kDynamic, dyn));
  }

  Value castGeneric(Value memref) {
    auto type = cast<MemRefType>(memref.getType());
    return memref::CastOp::create(
        b, loc, genericType(b.getContext(), type.getRank(), type.getElementType()),
        memref);
  }

  /// A read-only view of a tensor operand, as a generic memref.
  Value input(Value tensor) {
    return castGeneric(readOnlyBuffer(b, loc, tensor));
  }

  /// A generic memref with a zero leading size: an absent optional operand.
  Value absent(ArrayRef<int64_t> shape, Type elem) {
    auto type = MemRefType::get(shape, elem);
    return castGeneric(memref::AllocaOp::create(b, loc, type));
  }

  /// A fresh buffer of `type` (identity layout); `dynSizes` for `?` dims.
  Value alloc(RankedTensorType type, ValueRange dynSizes) {
    return allocBuffer(b, loc, type.getShape(), type.getElementType(),
                       dynSizes);
  }

  Value toTensor(Value buffer, Type tensorType) {
    return bufferResult(b, loc, buffer, tensorType);
  }

  Value i64(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 64); }
  Value f64(double v) {
    return arith::ConstantFloatOp::create(b, loc, b.getF64Type(),
                                          llvm::APFloat(v));
  }

  Value indexToI64(Value v) {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), v);
  }

  /// Calls `name`, declaring it (private, C interface) on first use.
  void call(StringRef name, ValueRange args) {
    auto fnType = b.getFunctionType(TypeRange(args), {});
    auto fn = module.lookupSymbol<func::FuncOp>(name);
    if (!fn) {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(module.getBody());
      fn = func::FuncOp::create(b, loc, name, fnType);
      fn.setPrivate();
      fn->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), b.getUnitAttr());
    }
    func::CallOp::create(b, loc, fn, args);
  }

  /// Dynamic sizes of `type` taken from the same dimensions of `like`.
  SmallVector<Value> dynSizesFrom(RankedTensorType type, Value like) {
    SmallVector<Value> sizes;
    for (int64_t i = 0; i < type.getRank(); ++i)
      if (type.isDynamicDim(i))
        sizes.push_back(tensor::DimOp::create(b, loc, like, i));
    return sizes;
  }

  RewriterBase &b;
  Location loc;
  ModuleOp module;
};

struct LowerRoute : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getLogits().getType().getElementType().isF32())
      return op.emitOpError(
          "the CPU kernels route f32 logits; extend the logits to f32 first");
    KernelCallBuilder kb(rewriter, op.getLoc(), op);
    RoutingAttr r = op.getRouting();
    Value logits = kb.input(op.getLogits());
    Value bias = op.getSelectionBias()
                     ? kb.input(op.getSelectionBias())
                     : kb.absent({0}, rewriter.getF32Type());
    if (op.getSelectionBias() &&
        !op.getSelectionBias().getType().getElementType().isF32())
      return op.emitOpError("the CPU kernels need an f32 selection bias");
    auto wType = op.getWeights().getType();
    auto eType = op.getExperts().getType();
    Value w = kb.alloc(wType, kb.dynSizesFrom(wType, op.getLogits()));
    Value e = kb.alloc(eType, kb.dynSizesFrom(eType, op.getLogits()));
    kb.call("moert_cpu_route",
            {logits, bias, kb.castGeneric(w), kb.castGeneric(e),
             kb.i64(int64_t(r.getPolicy())), kb.i64(r.getK()),
             kb.i64(int64_t(r.getScore())), kb.i64(int64_t(r.getNormalize())),
             kb.i64(int64_t(r.getTieBreak())), kb.f64(r.getScaling()),
             kb.f64(r.getTopP()), kb.f64(r.getThreshold()),
             kb.i64(r.getNumGroups()), kb.i64(r.getTopGroups()),
             kb.i64(r.getGroupScoreK()), kb.i64(r.getMaskWithZero()),
             kb.i64(r.getNullExperts()), kb.i64(r.getSinkhornIterations()),
             kb.f64(r.getCapacityFactor()), kb.f64(r.getJitterEps()),
             kb.f64(r.getEpsilon())});
    rewriter.replaceOp(op, {kb.toTensor(w, wType), kb.toTensor(e, eType)});
    return success();
  }
};

struct LowerDispatch : OpRewritePattern<DispatchOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(DispatchOp op,
                                PatternRewriter &rewriter) const override {
    auto elem = elemTypeCode(op.getInput().getType().getElementType());
    if (failed(elem))
      return op.emitOpError("unsupported activation element type");
    if (!op.getWeights().getType().getElementType().isF32())
      return op.emitOpError("the CPU kernels need f32 routing weights");
    Location loc = op.getLoc();
    KernelCallBuilder kb(rewriter, loc, op);
    Value x = kb.input(op.getInput());
    Value weights = kb.input(op.getWeights());
    Value experts = kb.input(op.getExperts());
    Value tokens = tensor::DimOp::create(rewriter, loc, op.getInput(), 0);
    int64_t k = op.getExperts().getType().getDimSize(1);
    int64_t numExperts = op.getNumExperts();
    auto dispType = op.getDispatched().getType();
    auto rowType = op.getRowToken().getType();
    CapacityAttr cap = op.getCapacityAttr();

    // The one dynamic size of the dispatched layout: rows (T*K) when
    // ragged, the capacity C when padded.
    SmallVector<Value> dyn;
    Value capacityArg;
    if (cap) {
      Value c = dispType.isDynamicDim(1)
                    ? emitCapacity(rewriter, loc, cap, tokens, k, numExperts)
                    : arith::ConstantIndexOp::create(rewriter, loc,
                                                     dispType.getDimSize(1))
                          .getResult();
      if (dispType.isDynamicDim(1))
        dyn.push_back(c);
      capacityArg = kb.indexToI64(c);
    } else {
      if (dispType.isDynamicDim(0))
        dyn.push_back(arith::MulIOp::create(
            rewriter, loc, tokens,
            arith::ConstantIndexOp::create(rewriter, loc, k)));
      capacityArg = kb.i64(-1);
    }
    // Padded buffers are handed to the kernel collapsed to rows.
    auto flatten = [&](Value buffer) -> Value {
      if (!cap)
        return buffer;
      auto rank = cast<MemRefType>(buffer.getType()).getRank();
      SmallVector<ReassociationIndices> groups = {{0, 1}};
      if (rank == 3)
        groups.push_back({2});
      return memref::CollapseShapeOp::create(rewriter, loc, buffer, groups);
    };

    // A fused consumer (moe.expert_ffn) gathers rows through row_token; then
    // nothing reads the dispatched copy and the kernel gets no row buffer.
    bool rowsNeeded = !op.getDispatched().use_empty();
    Value dispatched, dispatchedArg;
    if (rowsNeeded) {
      dispatched = kb.alloc(dispType, dyn);
      dispatchedArg = kb.castGeneric(flatten(dispatched));
    } else {
      dispatchedArg = kb.absent({0, dispType.getShape().back()},
                                dispType.getElementType());
    }
    Value rowToken = kb.alloc(rowType, dyn);
    auto countsType = op.getCounts().getType();
    auto slotType = op.getTokenSlot().getType();
    auto cwType = op.getCombineWeights().getType();
    Value counts = kb.alloc(countsType, {});
    Value slots = kb.alloc(slotType, kb.dynSizesFrom(slotType, op.getExperts()));
    Value cw = kb.alloc(cwType, kb.dynSizesFrom(cwType, op.getExperts()));
    kb.call("moert_cpu_dispatch",
            {x, weights, experts, dispatchedArg,
             kb.castGeneric(flatten(rowToken)), kb.castGeneric(counts),
             kb.castGeneric(slots), kb.castGeneric(cw), capacityArg,
             kb.i64(cap ? int64_t(cap.getOrder()) : 0),
             kb.i64(cap ? int64_t(cap.getOnDrop()) : 0),
             kb.i64(cap ? int64_t(cap.getRenormalize()) : 0), kb.i64(*elem),
             kb.i64(sharedExpertsOf(op))});
    Value dispatchedTensor =
        rowsNeeded ? kb.toTensor(dispatched, dispType)
                   : tensor::EmptyOp::create(rewriter, loc, dispType.getShape(),
                                             dispType.getElementType(), dyn)
                         .getResult();
    rewriter.replaceOp(op, {dispatchedTensor, kb.toTensor(rowToken, rowType),
                            kb.toTensor(counts, countsType),
                            kb.toTensor(slots, slotType),
                            kb.toTensor(cw, cwType)});
    return success();
  }
};

/// moe.expert_ffn -> moert_cpu_expert_ffn (gather + fused FFN kernel).
struct LowerExpertFFN : OpRewritePattern<ExpertFFNOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ExpertFFNOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getInput().getType().getElementType().isF32())
      return op.emitOpError("the CPU expert kernel takes f32 activations");
    Type weightElem = op.getW1().getType().getElementType();
    auto weightCode = elemTypeCode(weightElem);
    for (Value w : {op.getW3(), op.getW2(), op.getB1(), op.getB2(),
                    op.getSharedW1(), op.getSharedW3(), op.getSharedW2()})
      if (w && cast<RankedTensorType>(w.getType()).getElementType() != weightElem)
        return op.emitOpError("the CPU expert kernel needs one element type "
                              "for all expert weights");
    if (failed(weightCode))
      return op.emitOpError("unsupported weight element type");
    Location loc = op.getLoc();
    KernelCallBuilder kb(rewriter, loc, op);
    auto resType = op.getResult().getType();
    bool combined = op.hasFusedCombine();
    bool padded = op.getRowToken().getType().getRank() == 2;
    Value rowToken = op.getRowToken();
    if (padded)
      rowToken = tensor::CollapseShapeOp::create(
          rewriter, loc, rowToken, ArrayRef<ReassociationIndices>{{0, 1}});
    // Dynamic sizes: rows or capacity (at the same positions in row_token),
    // or the tokens of a combined [T, D] result.
    SmallVector<Value> dyn = kb.dynSizesFrom(
        resType, combined ? op.getTokenSlot() : op.getRowToken());
    Value out = kb.alloc(resType, dyn);
    Value outFlat = out;
    if (padded && !combined)
      outFlat = memref::CollapseShapeOp::create(
          rewriter, loc, out, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
    Value segmentStride =
        padded ? kb.indexToI64(tensor::DimOp::create(rewriter, loc,
                                                     op.getRowToken(), 1))
               : kb.i64(-1);
    // The fused combine, and what its routing statistics need: the
    // dispatch's routing when it has shared experts folded in (-1: the
    // slots come from no moe.dispatch, no statistics, as for moe.combine).
    Type i32 = rewriter.getI32Type();
    Value tokenSlot = combined ? kb.input(op.getTokenSlot())
                               : kb.absent({0, 0}, i32);
    Value combineWeights = combined
                               ? kb.input(op.getCombineWeights())
                               : kb.absent({0, 0}, rewriter.getF32Type());
    int64_t shared = -1;
    Value experts = kb.absent({0, 0}, i32);
    if (auto dispatch = combined
                            ? op.getTokenSlot().getDefiningOp<DispatchOp>()
                            : DispatchOp()) {
      if ((shared = sharedExpertsOf(dispatch)))
        experts = kb.input(dispatch.getExperts());
    }
    auto optional = [&](Value v, int64_t rank) -> Value {
      if (v)
        return kb.input(v);
      SmallVector<int64_t> shape(rank, 0);
      return kb.absent(shape, weightElem);
    };
    FFNAttr f = op.getFfn();
    kb.call("moert_cpu_expert_ffn",
            {kb.input(op.getInput()), kb.input(rowToken), kb.input(op.getCounts()),
             kb.input(op.getW1()), optional(op.getW3(), 3), kb.input(op.getW2()),
             optional(op.getB1(), 2), optional(op.getB2(), 2),
             optional(op.getSharedW1(), 3), optional(op.getSharedW3(), 3),
             optional(op.getSharedW2(), 3), tokenSlot, combineWeights, experts,
             kb.castGeneric(outFlat), segmentStride,
             kb.i64(int64_t(f.getKind())), kb.i64(int64_t(f.getActivation())),
             kb.i64(int64_t(f.getGateUp())), kb.i64(int64_t(f.getLayout())),
             kb.f64(f.getAlpha()), kb.f64(f.getUpShift()), kb.f64(f.getLimit()),
             kb.i64(*weightCode), kb.i64(combined), kb.i64(shared)});
    rewriter.replaceOp(op, kb.toTensor(out, resType));
    return success();
  }
};

struct LowerCombine : OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    Type elemType = op.getResult().getType().getElementType();
    auto elem = elemTypeCode(elemType);
    if (failed(elem))
      return op.emitOpError("unsupported activation element type");
    if (!op.getWeights().getType().getElementType().isF32())
      return op.emitOpError("the CPU kernels need f32 combine weights");
    Location loc = op.getLoc();
    KernelCallBuilder kb(rewriter, loc, op);
    Value expertOut = op.getExpertOut();
    if (cast<RankedTensorType>(expertOut.getType()).getRank() == 3)
      expertOut = tensor::CollapseShapeOp::create(
          rewriter, loc, expertOut, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
    int64_t d = op.getResult().getType().getDimSize(1);
    Value passthrough = op.getPassthrough()
                            ? kb.input(op.getPassthrough())
                            : kb.absent({0, d}, elemType);
    auto outType = op.getResult().getType();
    Value out = kb.alloc(outType, kb.dynSizesFrom(outType, op.getTokenSlot()));
    Value expertOutBuf = kb.input(expertOut);
    Value slotBuf = kb.input(op.getTokenSlot());
    Value weightsBuf = kb.input(op.getWeights());
    kb.call("moert_cpu_combine", {expertOutBuf, slotBuf, weightsBuf,
                                  passthrough, kb.castGeneric(out),
                                  kb.i64(*elem)});
    // Routing statistics: when the slots come from a moe.dispatch, also
    // report each expert's output-norm-weighted importance (a no-op in the
    // kernel unless a statistics sink is installed).
    if (auto dispatch = op.getTokenSlot().getDefiningOp<DispatchOp>()) {
      Value capacity = kb.i64(-1);
      if (dispatch.isPadded())
        capacity = kb.indexToI64(
            tensor::DimOp::create(rewriter, loc, op.getExpertOut(), 1));
      int64_t shared = sharedExpertsOf(dispatch);
      Value experts = shared ? kb.input(dispatch.getExperts())
                             : kb.absent({0, 0}, rewriter.getI32Type());
      kb.call("moert_cpu_expert_importance",
              {expertOutBuf, slotBuf, weightsBuf,
               kb.input(dispatch.getCounts()), capacity, kb.i64(*elem),
               experts, kb.i64(shared)});
    }
    rewriter.replaceOp(op, kb.toTensor(out, outType));
    return success();
  }
};

struct LowerExpertStats : OpRewritePattern<ExpertStatsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ExpertStatsOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getWeights().getType().getElementType().isF32())
      return op.emitOpError("the CPU kernels need f32 routing weights");
    KernelCallBuilder kb(rewriter, op.getLoc(), op);
    auto countsType = op.getCounts().getType();
    auto massType = op.getGateMass().getType();
    Value counts = kb.alloc(countsType, {});
    Value mass = kb.alloc(massType, {});
    kb.call("moert_cpu_expert_stats",
            {kb.input(op.getExperts()), kb.input(op.getWeights()),
             kb.castGeneric(counts), kb.castGeneric(mass)});
    rewriter.replaceOp(op, {kb.toTensor(counts, countsType),
                            kb.toTensor(mass, massType)});
    return success();
  }
};

/// f32 linalg.matmul (the router product of every layer) ->
/// moert_cpu_matmul, which computes the same sums in the same order,
/// vectorised and on the runtime's threads.
struct LowerMatmul : OpRewritePattern<linalg::MatmulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(linalg::MatmulOp op,
                                PatternRewriter &rewriter) const override {
    if (!isF32TensorMatmul(op))
      return failure();
    KernelCallBuilder kb(rewriter, op.getLoc(), op);
    auto outType = cast<RankedTensorType>(op.getResultTypes()[0]);
    Value init = op.getOutputs()[0];
    Value out = kb.alloc(outType, kb.dynSizesFrom(outType, init));
    kb.call("moert_cpu_matmul", {kb.input(op.getInputs()[0]),
                                 kb.input(op.getInputs()[1]), kb.input(init),
                                 kb.castGeneric(out)});
    rewriter.replaceOp(op, kb.toTensor(out, outType));
    return success();
  }
};

struct ConvertMoeToRuntimePass
    : public mlir::moe::impl::ConvertMoeToRuntimePassBase<
          ConvertMoeToRuntimePass> {
  void runOnOperation() override {
    // Combines (also those fused into moe.expert_ffn) first: while their
    // slots still come from a moe.dispatch, the lowering can attach the
    // expert-importance statistics.
    RewritePatternSet combines(&getContext());
    combines.add<LowerCombine, LowerExpertFFN>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(combines));
    RewritePatternSet patterns(&getContext());
    populateMoeToRuntimePatterns(patterns);
    walkAndApplyPatterns(getOperation(), std::move(patterns));
    // A pattern that cannot lower its op has emitted the reason.
    WalkResult leftover = getOperation()->walk([](Operation *op) {
      return isa<RouteOp, DispatchOp, CombineOp, ExpertStatsOp, ExpertFFNOp>(op)
                 ? WalkResult::interrupt()
                 : WalkResult::advance();
    });
    if (leftover.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace

void mlir::moe::populateMoeToRuntimePatterns(RewritePatternSet &patterns) {
  patterns.add<LowerRoute, LowerDispatch, LowerCombine, LowerExpertStats,
               LowerExpertFFN, LowerMatmul>(patterns.getContext());
}
