//===- Decompose.cpp - moe.layer to route/dispatch/experts/combine ---------===//
//
// Implements `moe-decompose`. The expert body is emitted on tensors with
// linalg/arith/math ops, accumulating in f32 whatever the storage type, so
// bf16/f16 weights and activations keep the f32-accumulate semantics the
// peers use.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/Passes.h"
#include "moe/Dialect/Moe/Transforms/Transforms.h"

#include "moe/Dialect/Moe/IR/MoeShapes.h"
#include "moe/Dialect/Moe/Utils/TensorBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSEPASS
#include "moe/Dialect/Moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// Emits `act(x)` for an f32 scalar following the FFN attribute.
Value emitActivation(OpBuilder &b, Location loc, Value x, FFNAttr ffn) {
  TensorBuilder tb(b, loc);
  switch (ffn.getActivation()) {
  case Activation::Identity:
    return x;
  case Activation::ReLU:
    return arith::MaximumFOp::create(b, loc, x, tb.f32(0.0));
  case Activation::SiLU: {
    // x * sigmoid(alpha * x) = x / (1 + exp(-alpha * x))
    Value scaled = arith::MulFOp::create(b, loc, x, tb.f32(-ffn.getAlpha()));
    Value e = math::ExpOp::create(b, loc, scaled);
    Value denom = arith::AddFOp::create(b, loc, tb.f32(1.0), e);
    return arith::DivFOp::create(b, loc, x, denom);
  }
  case Activation::GELU: {
    // 0.5 * x * (1 + erf(x / sqrt(2)))
    Value s = arith::MulFOp::create(b, loc, x, tb.f32(M_SQRT1_2));
    Value erf = math::ErfOp::create(b, loc, s);
    Value onePlus = arith::AddFOp::create(b, loc, tb.f32(1.0), erf);
    Value half = arith::MulFOp::create(b, loc, x, tb.f32(0.5));
    return arith::MulFOp::create(b, loc, half, onePlus);
  }
  case Activation::GELUTanh: {
    // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
    Value x3 = arith::MulFOp::create(
        b, loc, arith::MulFOp::create(b, loc, x, x), x);
    Value inner = arith::AddFOp::create(
        b, loc, x, arith::MulFOp::create(b, loc, x3, tb.f32(0.044715)));
    Value t = math::TanhOp::create(
        b, loc,
        arith::MulFOp::create(b, loc, inner, tb.f32(std::sqrt(2.0 / M_PI))));
    Value onePlus = arith::AddFOp::create(b, loc, tb.f32(1.0), t);
    Value half = arith::MulFOp::create(b, loc, x, tb.f32(0.5));
    return arith::MulFOp::create(b, loc, half, onePlus);
  }
  }
  llvm_unreachable("unknown activation");
}

} // namespace

void mlir::moe::buildExpertFFNBody(OpBuilder &b, Location loc,
                                   ExpertsOp expertsOp,
                                   const StackedFFN &ffnWeights, FFNAttr ffn) {
  SmallVector<Value> weights = ffnWeights.operands();
  auto dispType = cast<RankedTensorType>(expertsOp.getDispatched().getType());
  Type elemType = dispType.getElementType();
  int64_t d = dispType.getShape().back();
  SmallVector<Type> argTypes = {RankedTensorType::get(
      {ShapedType::kDynamic, d}, elemType)};
  SmallVector<Location> argLocs = {loc};
  for (Value w : weights) {
    auto t = cast<RankedTensorType>(w.getType());
    argTypes.push_back(
        RankedTensorType::get(t.getShape().drop_front(), t.getElementType()));
    argLocs.push_back(loc);
  }
  OpBuilder::InsertionGuard guard(b);
  Block *block = b.createBlock(&expertsOp.getBody(), {}, argTypes, argLocs);
  TensorBuilder tb(b, loc);

  // Map each stacked weight to its block argument.
  unsigned next = 1;
  auto argFor = [&](Value w) -> Value {
    return w ? block->getArgument(next++) : Value();
  };
  Value seg = block->getArgument(0);
  Value w1 = argFor(ffnWeights.w1), w3 = argFor(ffnWeights.w3),
        b1 = argFor(ffnWeights.b1), w2 = argFor(ffnWeights.w2),
        b2 = argFor(ffnWeights.b2);
  bool transposed = ffn.getLayout() == WeightLayout::OutIn;
  Type f32 = b.getF32Type();

  auto addBias = [&](Value h, Value bias) -> Value {
    if (!bias)
      return h;
    auto ht = cast<RankedTensorType>(h.getType());
    return tb.map2d(ValueRange{h}, ValueRange{bias}, f32,
                    {tb.dim(h, 0), b.getIndexAttr(ht.getDimSize(1))},
                    [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                      TensorBuilder t(nb, nl);
                      return arith::AddFOp::create(nb, nl, a[0], t.toF32(a[1]));
                    });
  };

  Value h = addBias(tb.matmul(seg, w1, transposed), b1);
  int64_t f = cast<RankedTensorType>(w2.getType())
                  .getDimSize(transposed ? 1 : 0);
  SmallVector<OpFoldResult> hiddenSizes = {tb.dim(seg, 0), b.getIndexAttr(f)};
  Value hidden;
  if (ffn.getKind() == FFNKind::MLP) {
    hidden = tb.map2d(ValueRange{h}, {}, f32, hiddenSizes,
                      [&](OpBuilder &nb, Location nl, ValueRange a) {
                        return emitActivation(nb, nl, a[0], ffn);
                      });
  } else {
    Value gate, up;
    switch (ffn.getGateUp()) {
    case GateUpLayout::Separate:
      gate = h;
      up = tb.matmul(seg, w3, transposed);
      break;
    case GateUpLayout::Concatenated:
    case GateUpLayout::Interleaved: {
      bool inter = ffn.getGateUp() == GateUpLayout::Interleaved;
      auto sliceType = RankedTensorType::get({ShapedType::kDynamic, f}, f32);
      auto slice = [&](int64_t colOffset) -> Value {
        SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0),
                                             b.getIndexAttr(colOffset)};
        SmallVector<OpFoldResult> strides = {b.getIndexAttr(1),
                                             b.getIndexAttr(inter ? 2 : 1)};
        return tensor::ExtractSliceOp::create(b, loc, sliceType, h, offsets,
                                              hiddenSizes, strides);
      };
      gate = slice(0);
      up = slice(inter ? 1 : f);
      break;
    }
    }
    double limit = ffn.getLimit();
    double upShift = ffn.getUpShift();
    hidden = tb.map2d(
        ValueRange{gate, up}, {}, f32, hiddenSizes,
        [&](OpBuilder &nb, Location nl, ValueRange a) -> Value {
          TensorBuilder t(nb, nl);
          Value g = a[0], u = a[1];
          if (limit > 0.0) {
            g = arith::MinimumFOp::create(nb, nl, g, t.f32(limit));
            u = arith::MinimumFOp::create(nb, nl, u, t.f32(limit));
            u = arith::MaximumFOp::create(nb, nl, u, t.f32(-limit));
          }
          if (upShift != 0.0)
            u = arith::AddFOp::create(nb, nl, u, t.f32(upShift));
          return arith::MulFOp::create(nb, nl, emitActivation(nb, nl, g, ffn),
                                       u);
        });
  }
  Value out = tb.truncTo(addBias(tb.matmul(hidden, w2, transposed), b2),
                         elemType);
  YieldOp::create(b, loc, out);
}

namespace {

/// dispatch -> experts -> combine for one group of experts and a routing.
Value emitDispatchedFFN(OpBuilder &b, Location loc, Value input, Value weights,
                        Value experts, const StackedFFN &ffnWeights,
                        FFNAttr ffn, CapacityAttr capacity) {
  auto inType = cast<RankedTensorType>(input.getType());
  auto routeType = cast<RankedTensorType>(experts.getType());
  int64_t t = inType.getDimSize(0), d = inType.getDimSize(1);
  int64_t k = routeType.getDimSize(1);
  int64_t e = cast<RankedTensorType>(ffnWeights.w1.getType()).getDimSize(0);
  Type i32 = b.getI32Type();
  Type elemType = inType.getElementType();

  SmallVector<Type> resultTypes;
  if (!capacity) {
    int64_t n = mulDims(t, k);
    resultTypes = {RankedTensorType::get({n, d}, elemType),
                   RankedTensorType::get({n}, i32)};
  } else {
    int64_t c = ShapedType::kDynamic;
    if (!ShapedType::isDynamic(t) ||
        capacity.getFormula() == CapacityFormula::Fixed)
      c = capacity.computeCapacity(ShapedType::isDynamic(t) ? 0 : t, k, e);
    resultTypes = {RankedTensorType::get({e, c, d}, elemType),
                   RankedTensorType::get({e, c}, i32)};
  }
  resultTypes.push_back(RankedTensorType::get({e}, i32));
  resultTypes.push_back(routeType);
  resultTypes.push_back(weights.getType());
  auto dispatch = DispatchOp::create(b, loc, resultTypes, input, weights,
                                     experts, capacity);

  auto dispType = cast<RankedTensorType>(dispatch.getDispatched().getType());
  auto expertsOp = ExpertsOp::create(
      b, loc, TypeRange{dispType}, dispatch.getDispatched(),
      dispatch.getCounts(), ffnWeights.operands());
  buildExpertFFNBody(b, loc, expertsOp, ffnWeights, ffn);
  // Record the form so moe-fuse-experts can recognise (and re-verify) it.
  expertsOp->setAttr(kExpertsFFNFormAttr, ffn);
  expertsOp->setAttr(kExpertsFFNRolesAttr, ffnWeights.rolesAttr(b));

  Value passthrough;
  if (capacity && capacity.getOnDrop() == DropPolicy::PassThrough)
    passthrough = input;
  return CombineOp::create(b, loc, inType, expertsOp.getResult(),
                           dispatch.getTokenSlot(),
                           dispatch.getCombineWeights(), passthrough);
}

} // namespace

FailureOr<Value> mlir::moe::decomposeLayer(RewriterBase &rewriter,
                                           LayerOp layer) {
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPoint(layer);
  Location loc = layer.getLoc();
  TensorBuilder tb(rewriter, loc);
  TypedValue<RankedTensorType> x = layer.getInput();
  FFNAttr ffn = layer.getFfn();
  bool transposed = ffn.getLayout() == WeightLayout::OutIn;
  Type f32 = rewriter.getF32Type();
  int64_t numColumns = layer.getNumRouterColumns();
  RoutingAttr routing = layer.getRouting();
  int64_t k = routing.getK();

  // 1. Router logits in f32 (the peers compute the router in fp32).
  Value logits = tb.matmul(x, layer.getRouter(), transposed);
  if (Value bias = layer.getRouterBias())
    logits = tb.map2d(ValueRange{logits}, ValueRange{bias}, f32,
                      {tb.dim(x, 0), rewriter.getIndexAttr(numColumns)},
                      [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                        TensorBuilder t(nb, nl);
                        return arith::AddFOp::create(nb, nl, a[0],
                                                     t.toF32(a[1]));
                      });

  // 2. Routing.
  int64_t t = x.getType().getDimSize(0);
  auto weightsType = RankedTensorType::get({t, k}, f32);
  auto expertsType = RankedTensorType::get({t, k}, rewriter.getI32Type());
  Value selectionBias = layer.getSelectionBias();
  if (selectionBias && !getElementTypeOrSelf(selectionBias).isF32()) {
    // Widen a low-precision bias to f32 to match the logits.
    MLIRContext *ctx = rewriter.getContext();
    auto id = AffineMap::getMultiDimIdentityMap(1, ctx);
    Value init = tb.empty({rewriter.getIndexAttr(numColumns)}, f32);
    selectionBias =
        linalg::GenericOp::create(
            rewriter, loc, TypeRange{init.getType()}, ValueRange{selectionBias},
            ValueRange{init}, SmallVector<AffineMap>{id, id},
            SmallVector<utils::IteratorType>{utils::IteratorType::parallel},
            [](OpBuilder &nb, Location nl, ValueRange a) {
              linalg::YieldOp::create(nb, nl, TensorBuilder(nb, nl).toF32(a[0]));
            })
            .getResult(0);
  }
  auto route = RouteOp::create(rewriter, loc, TypeRange{weightsType, expertsType},
                               logits, selectionBias, routing);

  // 3-5. Routed experts.
  StackedFFN routed{layer.getW1(), layer.getW3(), layer.getW2(), layer.getB1(),
                    layer.getB2()};
  Value result = emitDispatchedFFN(rewriter, loc, x, route.getWeights(),
                                   route.getExperts(), routed, ffn,
                                   layer.getCapacityAttr());

  // 6. Shared experts: every token routed to each of them.
  if (int64_t s = layer.getNumSharedExperts()) {
    SmallVector<OpFoldResult> sizes = {tb.dim(x, 0), rewriter.getIndexAttr(s)};
    Value ids = tb.map2d({}, {}, rewriter.getI32Type(), sizes,
                         [](OpBuilder &nb, Location nl, ValueRange) -> Value {
                           Value col = linalg::IndexOp::create(nb, nl, 1);
                           return arith::IndexCastOp::create(
                               nb, nl, nb.getI32Type(), col);
                         });
    Value sharedWeights;
    if (Value gate = layer.getSharedGate()) {
      Value gateLogit = tb.matmul(x, gate, transposed); // [T, 1]
      sharedWeights = tb.map2d(
          {}, {}, f32, sizes,
          [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
            // sigmoid(g) = 1 / (1 + exp(-g))
            TensorBuilder t(nb, nl);
            Value neg = arith::NegFOp::create(nb, nl, a[0]);
            Value e = math::ExpOp::create(nb, nl, neg);
            return arith::DivFOp::create(
                nb, nl, t.f32(1.0), arith::AddFOp::create(nb, nl, t.f32(1.0), e));
          },
          ValueRange{gateLogit});
    } else {
      sharedWeights = tb.filled(sizes, rewriter.getF32FloatAttr(1.0));
    }
    StackedFFN shared{layer.getSharedW1(), layer.getSharedW3(),
                      layer.getSharedW2(), Value(), Value()};
    Value sharedOut = emitDispatchedFFN(rewriter, loc, x, sharedWeights, ids,
                                        shared, ffn, CapacityAttr());
    Type elemType = x.getType().getElementType();
    result = tb.map2d(ValueRange{result, sharedOut}, {}, elemType,
                      {tb.dim(x, 0), tb.dim(x, 1)},
                      [](OpBuilder &nb, Location nl, ValueRange a) -> Value {
                        return arith::AddFOp::create(nb, nl, a[0], a[1]);
                      });
  }
  rewriter.replaceOp(layer, result);
  return result;
}

namespace {
struct DecomposeLayerPattern : OpRewritePattern<LayerOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LayerOp op,
                                PatternRewriter &rewriter) const override {
    return success(succeeded(decomposeLayer(rewriter, op)));
  }
};

struct MoeDecomposePass
    : public mlir::moe::impl::MoeDecomposePassBase<MoeDecomposePass> {
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    SmallVector<LayerOp> layers;
    getOperation()->walk([&](LayerOp op) { layers.push_back(op); });
    for (LayerOp layer : layers) {
      if (failed(decomposeLayer(rewriter, layer))) {
        layer.emitOpError("could not be decomposed");
        return signalPassFailure();
      }
    }
  }
};
} // namespace

void mlir::moe::populateDecomposeLayerPatterns(RewritePatternSet &patterns) {
  patterns.add<DecomposeLayerPattern>(patterns.getContext());
}
