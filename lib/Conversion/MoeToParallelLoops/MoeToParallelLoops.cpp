//===- MoeToParallelLoops.cpp - moe data movement to parallel loops -------===//
//
// Implements `convert-moe-to-parallel-loops`: the device-kernel form of
// routing, dispatch, the fused expert FFN, combine and statistics. Every
// kernel is a one-dimensional `scf.parallel` over a buffer whose iterations
// are independent (each writes its own elements and reads only what earlier
// loops wrote), so a GPU mapping needs no atomics or barriers, and the same
// loops run sequentially on the CPU, where the integration tests check them
// against the numpy reference.
//
// Arithmetic follows the CPU kernels (runtime/src/cpu/*.c) operation for
// operation where docs/Semantics.md leaves an order open, so both lowerings
// make the same routing decisions.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/MoeToParallelLoops/MoeToParallelLoops.h"
#include "moe/Conversion/Passes.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Utils/BufferBridge.h"
#include "moe/Dialect/Moe/Utils/Capacity.h"
#include "moe/Dialect/Moe/Utils/RouterMatmul.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

#include <cfloat>

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOPARALLELLOOPSPASS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

using arith::CmpFPredicate;
using arith::CmpIPredicate;

/// Scalar, buffer and loop building blocks of the kernels. All loops are
/// built with `b` itself, so lambdas can keep using the helpers inside
/// loop bodies.
class LoopBuilder {
public:
  LoopBuilder(RewriterBase &b, Location loc) : b(b), loc(loc) {}

  //===--- constants and scalar arithmetic --------------------------------===//
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value i32(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 32); }
  Value i64(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 64); }
  Value f32(float v) {
    return arith::ConstantFloatOp::create(b, loc, b.getF32Type(),
                                          llvm::APFloat(v));
  }
  Value boolean(bool v) { return arith::ConstantIntOp::create(b, loc, v, 1); }

  Value addf(Value x, Value y) { return arith::AddFOp::create(b, loc, x, y); }
  Value subf(Value x, Value y) { return arith::SubFOp::create(b, loc, x, y); }
  Value mulf(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value divf(Value x, Value y) { return arith::DivFOp::create(b, loc, x, y); }
  Value exp(Value x) { return math::ExpOp::create(b, loc, x); }
  Value addi(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value subi(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value muli(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }
  Value divu(Value x, Value y) { return arith::DivUIOp::create(b, loc, x, y); }
  Value remu(Value x, Value y) { return arith::RemUIOp::create(b, loc, x, y); }
  Value andi(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value ori(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  Value noti(Value x) { return arith::XOrIOp::create(b, loc, x, boolean(true)); }
  Value cmpf(CmpFPredicate p, Value x, Value y) {
    return arith::CmpFOp::create(b, loc, p, x, y);
  }
  Value cmpi(CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, loc, c, x, y);
  }
  Value minIdx(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value toIndex(Value v) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
  }
  Value toI32(Value v) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), v);
  }
  Value toF32(Value v) {
    return v.getType().isF32() ? v
                               : arith::ExtFOp::create(b, loc, b.getF32Type(), v)
                                     .getResult();
  }
  Value fromF32(Value v, Type t) {
    return t.isF32() ? v : arith::TruncFOp::create(b, loc, t, v).getResult();
  }

  //===--- buffers --------------------------------------------------------===//
  /// Tensors in and out (BufferBridge.h).
  Value input(Value tensor) { return readOnlyBuffer(b, loc, tensor); }
  Value alloc(ArrayRef<int64_t> shape, Type elem, ValueRange dyn) {
    return allocBuffer(b, loc, shape, elem, dyn);
  }
  Value alloc(RankedTensorType type, ValueRange dyn) {
    return alloc(type.getShape(), type.getElementType(), dyn);
  }
  Value toTensor(Value buffer, Type tensorType) {
    return bufferResult(b, loc, buffer, tensorType);
  }
  Value load(Value m, ValueRange ivs) {
    return memref::LoadOp::create(b, loc, m, ivs);
  }
  void store(Value v, Value m, ValueRange ivs) {
    memref::StoreOp::create(b, loc, v, m, ivs);
  }
  Value dim(Value m, int64_t i) {
    auto type = cast<ShapedType>(m.getType());
    if (!type.isDynamicDim(i))
      return idx(type.getDimSize(i));
    if (isa<RankedTensorType>(type))
      return tensor::DimOp::create(b, loc, m, i);
    return memref::DimOp::create(b, loc, m, i);
  }

  //===--- control flow ---------------------------------------------------===//
  /// One kernel: `body(i)` for every i in [0, n), iterations independent.
  void parallel(Value n, function_ref<void(Value)> body) {
    scf::ParallelOp::create(b, loc, ValueRange{idx(0)}, ValueRange{n},
                            ValueRange{idx(1)},
                            [&](OpBuilder &, Location, ValueRange ivs) {
                              body(ivs[0]);
                            });
  }
  /// A sequential loop over [lb, ub) carrying `inits`.
  SmallVector<Value>
  loop(Value lb, Value ub, ValueRange inits,
       function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto forOp = scf::ForOp::create(
        b, loc, lb, ub, idx(1), inits,
        [&](OpBuilder &, Location, Value iv, ValueRange args) {
          SmallVector<Value> next = body(iv, args);
          scf::YieldOp::create(b, loc, next);
        });
    return SmallVector<Value>(forOp.getResults());
  }
  void loop(Value lb, Value ub, function_ref<void(Value)> body) {
    loop(lb, ub, {}, [&](Value iv, ValueRange) -> SmallVector<Value> {
      body(iv);
      return {};
    });
  }
  void ifThen(Value cond, function_ref<void()> then) {
    scf::IfOp::create(b, loc, cond, [&](OpBuilder &, Location) {
      then();
      scf::YieldOp::create(b, loc);
    });
  }
  void ifElse(Value cond, function_ref<void()> then,
              function_ref<void()> otherwise) {
    scf::IfOp::create(
        b, loc, cond,
        [&](OpBuilder &, Location) {
          then();
          scf::YieldOp::create(b, loc);
        },
        [&](OpBuilder &, Location) {
          otherwise();
          scf::YieldOp::create(b, loc);
        });
  }
  /// A value computed only when `cond` holds, `otherwise` elsewhere.
  /// scf.if with both branches built lazily.
  Value ifElseValue(Value cond, function_ref<Value()> then,
                    function_ref<Value()> otherwise) {
    auto ifOp = scf::IfOp::create(
        b, loc, cond,
        [&](OpBuilder &, Location) { scf::YieldOp::create(b, loc, then()); },
        [&](OpBuilder &, Location) {
          scf::YieldOp::create(b, loc, otherwise());
        });
    return ifOp.getResult(0);
  }

  Value ifValue(Value cond, Value otherwise, function_ref<Value()> then) {
    return ifElseValue(cond, then, [&] { return otherwise; });
  }

  //===--- ranking (docs/Semantics.md 1.2) --------------------------------===//
  /// Whether (ka, a) ranks strictly before (kb, b): larger key first, NaN
  /// after every number, equal keys by index (`higherFirst`: higher first).
  Value ranksBefore(Value ka, Value a, Value kb, Value bIdx, bool higherFirst) {
    Value na = cmpf(CmpFPredicate::UNO, ka, ka);
    Value nb = cmpf(CmpFPredicate::UNO, kb, kb);
    Value tie = cmpi(higherFirst ? CmpIPredicate::sgt : CmpIPredicate::slt, a,
                     bIdx);
    // ONE is false when either is NaN: then both are (na == nb), a tie.
    Value byKey = select(cmpf(CmpFPredicate::ONE, ka, kb),
                         cmpf(CmpFPredicate::OGT, ka, kb), tie);
    return select(cmpi(CmpIPredicate::ne, na, nb), nb, byKey);
  }

  /// The best index in [lo, hi) by `key(i)` among those ranking strictly
  /// after (prevKey, prev) (all of them when `first`); -1 if none.
  std::pair<Value, Value> argBest(Value lo, Value hi,
                                  function_ref<Value(Value)> key, Value first,
                                  Value prevKey, Value prev, bool higherFirst) {
    SmallVector<Value> r = loop(
        lo, hi, {f32(0.0f), idx(-1)},
        [&](Value i, ValueRange acc) -> SmallVector<Value> {
          Value k = key(i);
          Value eligible =
              ori(first, ranksBefore(prevKey, prev, k, i, higherFirst));
          Value better =
              ori(cmpi(CmpIPredicate::slt, acc[1], idx(0)),
                  ranksBefore(k, i, acc[0], acc[1], higherFirst));
          Value take = andi(eligible, better);
          return {select(take, k, acc[0]), select(take, i, acc[1])};
        });
    return {r[0], r[1]};
  }

  /// out[j] = softmax over j < n of logit(j): max by `>` from -inf, sum in
  /// order (the CPU kernel's softmax).
  void softmaxInto(Value n, function_ref<Value(Value)> logit, Value out,
                   Value row) {
    Value m = loop(idx(0), n, {f32(-INFINITY)},
                   [&](Value j, ValueRange acc) -> SmallVector<Value> {
                     Value l = logit(j);
                     return {select(cmpf(CmpFPredicate::OGT, l, acc[0]), l,
                                    acc[0])};
                   })[0];
    Value s = loop(idx(0), n, {f32(0.0f)},
                   [&](Value j, ValueRange acc) -> SmallVector<Value> {
                     Value e = exp(subf(logit(j), m));
                     store(e, out, {row, j});
                     return {addf(acc[0], e)};
                   })[0];
    loop(idx(0), n, [&](Value j) {
      store(divf(load(out, {row, j}), s), out, {row, j});
    });
  }

  /// experts[t, j] as an expert id (i32), -1 outside [0, E): a corrupt id
  /// never addresses memory (Semantics 2).
  Value expertAt(Value experts, Value t, Value j, int64_t numExperts) {
    Value v = load(experts, {t, j});
    Value ok = andi(cmpi(CmpIPredicate::sge, v, i32(0)),
                    cmpi(CmpIPredicate::slt, v, i32(numExperts)));
    return select(ok, v, i32(-1));
  }

  RewriterBase &b;
  Location loc;
};

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

struct LowerRoute : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    RoutingAttr r = op.getRouting();
    RoutingPolicy policy = r.getPolicy();
    if (policy == RoutingPolicy::Sinkhorn ||
        policy == RoutingPolicy::ExpertChoice ||
        policy == RoutingPolicy::SparseMixer)
      return op.emitOpError("routing policy '")
             << stringifyRoutingPolicy(policy)
             << "' has no parallel-loop (GPU) lowering; supported: top_k, "
                "top_p, threshold, grouped_top_k";
    LoopBuilder kb(rewriter, op.getLoc());
    auto wType = op.getWeights().getType();
    auto eType = op.getExperts().getType();
    int64_t numCols = op.getLogits().getType().getDimSize(1);
    int64_t numExperts = op.getNumExperts();
    int64_t K = r.getK();
    int64_t n = std::min(K, numCols);
    bool higher = r.getTieBreak() == TieBreak::HigherIndex;
    bool grouped = policy == RoutingPolicy::GroupedTopK;
    bool hasBias = static_cast<bool>(op.getSelectionBias());
    bool scoreKey = hasBias || grouped;
    ScoreFunction score = r.getScore();
    bool selectedSoftmax = score == ScoreFunction::SoftmaxSelected;
    float epsilon = float(r.getEpsilon());
    bool normalize = r.getNormalize() == Normalization::Selected;
    bool renormalisedSoftmax =
        score == ScoreFunction::Softmax && normalize && epsilon == 0.0f;
    float threshold = float(r.getThreshold());
    bool skip = policy == RoutingPolicy::Threshold || threshold > 0.0f;

    Value logits = kb.input(op.getLogits());
    Value bias = hasBias ? kb.input(op.getSelectionBias()) : Value();
    Value T = kb.dim(op.getLogits(), 0);
    Value weights = kb.alloc(wType, wType.isDynamicDim(0) ? ValueRange{T}
                                                         : ValueRange{});
    Value experts = kb.alloc(eType, eType.isDynamicDim(0) ? ValueRange{T}
                                                         : ValueRange{});
    // Per-token scratch rows (global memory, one row per iteration).
    Type f32 = rewriter.getF32Type();
    Value probs = kb.alloc({ShapedType::kDynamic, numCols}, f32, T);
    Value keys = kb.alloc({ShapedType::kDynamic, numCols}, f32, T);
    Value sel = kb.alloc({ShapedType::kDynamic, n}, rewriter.getIndexType(), T);
    Value cand = kb.alloc({ShapedType::kDynamic, n}, f32, T);
    int64_t numGroups = grouped ? r.getNumGroups() : 0;
    Value groupScores =
        grouped ? kb.alloc({ShapedType::kDynamic, numGroups}, f32, T) : Value();

    Value E1 = kb.idx(numCols);
    kb.parallel(T, [&](Value t) {
      auto logit = [&](Value e) { return kb.toF32(kb.load(logits, {t, e})); };
      // 1. Scores (Semantics 1.1).
      switch (score) {
      case ScoreFunction::Softmax:
      case ScoreFunction::SoftmaxSelected:
        kb.softmaxInto(E1, logit, probs, t);
        break;
      case ScoreFunction::Sigmoid:
        kb.loop(kb.idx(0), E1, [&](Value e) {
          Value s = kb.divf(kb.f32(1.0f),
                            kb.addf(kb.f32(1.0f),
                                    kb.exp(kb.subf(kb.f32(0.0f), logit(e)))));
          kb.store(s, probs, {t, e});
        });
        break;
      case ScoreFunction::Identity:
        kb.loop(kb.idx(0), E1,
                [&](Value e) { kb.store(logit(e), probs, {t, e}); });
        break;
      }
      // 2. Selection keys (Semantics 1.2).
      kb.loop(kb.idx(0), E1, [&](Value e) {
        Value k = !scoreKey ? logit(e) : kb.load(probs, {t, e});
        if (hasBias)
          k = kb.addf(k, kb.toF32(kb.load(bias, {e})));
        kb.store(k, keys, {t, e});
      });
      auto key = [&](Value e) { return kb.load(keys, {t, e}); };
      // 3. Group masking (grouped_top_k).
      if (grouped) {
        int64_t size = numCols / numGroups;
        int64_t perGroup = std::min<int64_t>(r.getGroupScoreK(), size);
        kb.loop(kb.idx(0), kb.idx(numGroups), [&](Value g) {
          Value lo = kb.muli(g, kb.idx(size));
          Value hi = kb.addi(lo, kb.idx(size));
          SmallVector<Value> acc = kb.loop(
              kb.idx(0), kb.idx(perGroup), {kb.f32(0.0f), kb.f32(0.0f), kb.idx(-1)},
              [&](Value j, ValueRange a) -> SmallVector<Value> {
                Value first = kb.cmpi(CmpIPredicate::eq, j, kb.idx(0));
                auto [bk, bi] = kb.argBest(lo, hi, key, first, a[1], a[2], higher);
                return {kb.addf(a[0], bk), bk, bi};
              });
          kb.store(acc[0], groupScores, {t, g});
        });
        float fill = r.getMaskWithZero() ? 0.0f : -INFINITY;
        kb.loop(kb.idx(0), kb.idx(numGroups), [&](Value g) {
          // Kept iff fewer than top_groups groups rank before it (groups
          // tie to the lower index).
          Value gs = kb.load(groupScores, {t, g});
          Value before = kb.loop(
              kb.idx(0), kb.idx(numGroups), {kb.idx(0)},
              [&](Value h, ValueRange a) -> SmallVector<Value> {
                Value rb = kb.ranksBefore(kb.load(groupScores, {t, h}), h, gs,
                                          g, /*higherFirst=*/false);
                return {kb.select(rb, kb.addi(a[0], kb.idx(1)), a[0])};
              })[0];
          Value masked =
              kb.cmpi(CmpIPredicate::sge, before, kb.idx(r.getTopGroups()));
          kb.ifThen(masked, [&] {
            Value lo = kb.muli(g, kb.idx(size));
            kb.loop(lo, kb.addi(lo, kb.idx(size)),
                    [&](Value e) { kb.store(kb.f32(fill), keys, {t, e}); });
          });
        });
      }
      // 4. The n best keys, best first.
      kb.loop(kb.idx(0), kb.idx(n), {kb.f32(0.0f), kb.idx(-1)},
              [&](Value j, ValueRange a) -> SmallVector<Value> {
                Value first = kb.cmpi(CmpIPredicate::eq, j, kb.idx(0));
                auto [bk, bi] =
                    kb.argBest(kb.idx(0), E1, key, first, a[0], a[1], higher);
                kb.store(bi, sel, {t, j});
                return {bk, bi};
              });
      auto selLogit = [&](Value j) {
        return logit(kb.load(sel, {t, j}));
      };
      // 5. Candidate probabilities.
      if (selectedSoftmax)
        kb.softmaxInto(kb.idx(n), selLogit, cand, t);
      else
        kb.loop(kb.idx(0), kb.idx(n), [&](Value j) {
          kb.store(kb.load(probs, {t, kb.load(sel, {t, j})}), cand, {t, j});
        });
      // 6. top_p: the shortest prefix whose mass reaches top_p.
      Value kept = kb.idx(n);
      if (policy == RoutingPolicy::TopP) {
        Value topP = kb.f32(float(r.getTopP()));
        kept = kb.loop(kb.idx(0), kb.idx(n),
                       {kb.f32(0.0f), kb.idx(n), kb.boolean(false)},
                       [&](Value j, ValueRange a) -> SmallVector<Value> {
                         Value mass = kb.addf(a[0], kb.load(cand, {t, j}));
                         Value reached =
                             kb.cmpf(CmpFPredicate::OGE, mass, topP);
                         Value stop = kb.andi(kb.noti(a[2]), reached);
                         return {kb.select(a[2], a[0], mass),
                                 kb.select(stop, kb.addi(j, kb.idx(1)), a[1]),
                                 kb.ori(a[2], reached)};
                       })[1];
      }
      // 7. Skipping: keep slots with p >= threshold, compacted in order.
      if (skip) {
        Value thr = kb.f32(threshold);
        kept = kb.loop(kb.idx(0), kept, {kb.idx(0)},
                       [&](Value j, ValueRange a) -> SmallVector<Value> {
                         Value w = kb.load(cand, {t, j});
                         Value keep = kb.cmpf(CmpFPredicate::OGE, w, thr);
                         kb.ifThen(keep, [&] {
                           kb.store(kb.load(sel, {t, j}), sel, {t, a[0]});
                           kb.store(w, cand, {t, a[0]});
                         });
                         return {kb.select(keep, kb.addi(a[0], kb.idx(1)),
                                           a[0])};
                       })[0];
      }
      // 8. Softmax of the kept logits (Semantics 1.4).
      if (selectedSoftmax || renormalisedSoftmax)
        kb.softmaxInto(kept, selLogit, cand, t);
      // 9. Normalise, scale, write; unused and null slots get -1 / 0.
      Value denom = kb.f32(1.0f);
      if (normalize) {
        Value s = kb.loop(kb.idx(0), kept, {kb.f32(0.0f)},
                          [&](Value j, ValueRange a) -> SmallVector<Value> {
                            return {kb.addf(a[0], kb.load(cand, {t, j}))};
                          })[0];
        denom = kb.addf(s, kb.f32(epsilon));
      }
      Value scaling = kb.f32(float(r.getScaling()));
      Type wElem = wType.getElementType();
      kb.loop(kb.idx(0), kb.idx(K), [&](Value j) {
        Value jc = kb.minIdx(j, kb.idx(n - 1));
        Value e = kb.load(sel, {t, jc});
        Value used = kb.andi(kb.cmpi(CmpIPredicate::slt, j, kept),
                             kb.cmpi(CmpIPredicate::slt, e, kb.idx(numExperts)));
        Value w = kb.load(cand, {t, jc});
        if (normalize)
          w = kb.divf(w, denom);
        w = kb.mulf(w, scaling);
        kb.store(kb.fromF32(kb.select(used, w, kb.f32(0.0f)), wElem), weights,
                 {t, j});
        kb.store(kb.select(used, kb.toI32(e), kb.i32(-1)), experts, {t, j});
      });
    });
    rewriter.replaceOp(op, {kb.toTensor(weights, wType),
                            kb.toTensor(experts, eType)});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

struct LowerDispatch : OpRewritePattern<DispatchOp> {
  using OpRewritePattern::OpRewritePattern;
  /// Pairs of the queue one counting-sort iteration walks.
  static constexpr int64_t kQueueChunk = 256;
  LogicalResult matchAndRewrite(DispatchOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    LoopBuilder kb(rewriter, loc);
    Value x = kb.input(op.getInput());
    Value weights = kb.input(op.getWeights());
    Value experts = kb.input(op.getExperts());
    Value T = kb.dim(op.getInput(), 0);
    int64_t K = op.getExperts().getType().getDimSize(1);
    int64_t numExperts = op.getNumExperts();
    int64_t D = op.getInput().getType().getDimSize(1);
    auto dispType = op.getDispatched().getType();
    CapacityAttr cap = op.getCapacityAttr();
    Value E = kb.idx(numExperts), Kv = kb.idx(K), Dv = kb.idx(D);
    Value pairs = kb.muli(T, Kv);

    // Rows per expert segment: all T*K pairs (ragged) or the capacity C.
    Value C, rows;
    SmallVector<Value> dyn;
    if (cap) {
      C = dispType.isDynamicDim(1)
              ? emitCapacity(rewriter, loc, cap, T, K, numExperts)
              : kb.idx(dispType.getDimSize(1));
      if (dispType.isDynamicDim(1))
        dyn.push_back(C);
      rows = kb.muli(E, C);
    } else {
      rows = pairs;
      if (dispType.isDynamicDim(0))
        dyn.push_back(rows);
    }
    auto rowType = op.getRowToken().getType();
    auto countsType = op.getCounts().getType();
    auto slotType = op.getTokenSlot().getType();
    auto cwType = op.getCombineWeights().getType();
    Value rowToken = kb.alloc(rowType, dyn);
    Value counts = kb.alloc(countsType, {});
    SmallVector<Value> tDyn;
    if (slotType.isDynamicDim(0))
      tDyn.push_back(T);
    Value slots = kb.alloc(slotType, tDyn);
    Value cw = kb.alloc(cwType, tDyn);
    Type cwElem = cwType.getElementType();
    // row_token / dispatched are addressed by flat row r (e * C + c).
    auto rowIdx = [&](Value r) -> SmallVector<Value> {
      if (!cap)
        return {r};
      return {kb.divu(r, C), kb.remu(r, C)};
    };
    auto split = [&](Value i, Value inner) -> std::pair<Value, Value> {
      return {kb.divu(i, inner), kb.remu(i, inner)};
    };

    // No pair has a slot yet.
    kb.parallel(pairs, [&](Value i) {
      Value t, j;
        std::tie(t, j) = split(i, Kv);
      kb.store(kb.i32(-1), slots, {t, j});
    });

    if (!cap || cap.getOrder() != QueueOrder::Score) {
      // A counting sort in queue order (ragged and `position`: by (t, j);
      // `choice_major`: by (j, t)), parallel over (chunk of the queue,
      // expert) so no iteration walks more than kQueueChunk pairs:
      //  1. hist[c, e] = pairs of expert e in chunk c;
      //  2. per expert, hist becomes the exclusive prefix over chunks (the
      //     expert's pairs before chunk c) and counts[e] the total (capped
      //     at C when padded);
      //  3. per (chunk, expert), the chunk's pairs of e take consecutive
      //     slots from there, in queue order.
      bool choiceMajor = cap && cap.getOrder() == QueueOrder::ChoiceMajor;
      Value chunk = kb.idx(kQueueChunk);
      Value numChunks = arith::CeilDivUIOp::create(rewriter, loc, pairs, chunk);
      Value hist = kb.alloc({ShapedType::kDynamic, numExperts},
                            rewriter.getIndexType(), numChunks);
      // Pair q of the queue as (t, j).
      auto pairAt = [&](Value q) {
        Value o, in;
        std::tie(o, in) = split(q, choiceMajor ? T : Kv);
        return choiceMajor ? std::make_pair(in, o) : std::make_pair(o, in);
      };
      // Calls `body(q, t, j, hit, acc)` over chunk c's pairs of expert e,
      // carrying one index accumulator; returns its final value.
      auto walkChunk = [&](Value c, Value e, Value init,
                           function_ref<Value(Value, Value, Value, Value,
                                              Value)> body) {
        Value lo = kb.muli(c, chunk);
        Value hi = kb.minIdx(kb.addi(lo, chunk), pairs);
        Value e32 = kb.toI32(e);
        return kb.loop(lo, hi, {init},
                       [&](Value q, ValueRange acc) -> SmallVector<Value> {
                         auto [t, j] = pairAt(q);
                         Value hit = kb.cmpi(
                             CmpIPredicate::eq,
                             kb.expertAt(experts, t, j, numExperts), e32);
                         return {body(q, t, j, hit, acc[0])};
                       })[0];
      };
      kb.parallel(kb.muli(numChunks, E), [&](Value i) {
        Value c, e;
        std::tie(c, e) = split(i, E);
        Value n = walkChunk(c, e, kb.idx(0),
                            [&](Value, Value, Value, Value hit, Value acc) {
                              return kb.select(hit, kb.addi(acc, kb.idx(1)),
                                               acc);
                            });
        kb.store(n, hist, {c, e});
      });
      kb.parallel(E, [&](Value e) {
        Value total = kb.loop(kb.idx(0), numChunks, {kb.idx(0)},
            [&](Value c, ValueRange acc) -> SmallVector<Value> {
              Value n = kb.load(hist, {c, e});
              kb.store(acc[0], hist, {c, e});
              return {kb.addi(acc[0], n)};
            })[0];
        kb.store(kb.toI32(cap ? kb.minIdx(total, C) : total), counts, {e});
      });
      kb.parallel(kb.muli(numChunks, E), [&](Value i) {
        Value c, e;
        std::tie(c, e) = split(i, E);
        // Where expert e's rows start: after every lower expert's pairs
        // (ragged) or at e * C (padded).
        Value segment = cap ? kb.muli(e, C)
                            : kb.loop(kb.idx(0), e, {kb.idx(0)},
                                  [&](Value f, ValueRange a) -> SmallVector<Value> {
                                    return {kb.addi(a[0], kb.toIndex(kb.load(
                                                              counts, {f})))};
                                  })[0];
        Value limit = cap ? C : pairs;
        walkChunk(c, e, kb.load(hist, {c, e}),
                  [&](Value, Value t, Value j, Value hit, Value local) {
                    Value take = kb.andi(
                        hit, kb.cmpi(CmpIPredicate::slt, local, limit));
                    kb.ifThen(take, [&] {
                      Value r = kb.addi(segment, local);
                      kb.store(kb.toI32(t), rowToken, rowIdx(r));
                      kb.store(kb.toI32(r), slots, {t, j});
                    });
                    return kb.select(hit, kb.addi(local, kb.idx(1)), local);
                  });
      });
    } else {
      // `score`: a pair's slot is the number of its expert's pairs ranking
      // before it (weight descending, NaN last, ties by position).
      kb.parallel(pairs, [&](Value i) {
        Value t, j;
        std::tie(t, j) = split(i, Kv);
        Value e = kb.expertAt(experts, t, j, numExperts);
        Value w = kb.toF32(kb.load(weights, {t, j}));
        kb.ifThen(kb.cmpi(CmpIPredicate::sge, e, kb.i32(0)), [&] {
          Value rank = kb.loop(kb.idx(0), pairs, {kb.idx(0)},
              [&](Value i2, ValueRange a) -> SmallVector<Value> {
                Value t2, j2;
        std::tie(t2, j2) = split(i2, Kv);
                Value same = kb.cmpi(CmpIPredicate::eq,
                                     kb.expertAt(experts, t2, j2, numExperts), e);
                Value before = kb.ranksBefore(kb.toF32(kb.load(weights, {t2, j2})),
                                              i2, w, i, /*higherFirst=*/false);
                return {kb.select(kb.andi(same, before),
                                  kb.addi(a[0], kb.idx(1)), a[0])};
              })[0];
          kb.ifThen(kb.cmpi(CmpIPredicate::slt, rank, C), [&] {
            Value r = kb.addi(kb.muli(kb.toIndex(e), C), rank);
            kb.store(kb.toI32(t), rowToken, rowIdx(r));
            kb.store(kb.toI32(r), slots, {t, j});
          });
        });
      });
      kb.parallel(E, [&](Value e) {
        Value e32 = kb.toI32(e);
        Value n = kb.loop(kb.idx(0), pairs, {kb.idx(0)},
            [&](Value i, ValueRange a) -> SmallVector<Value> {
              Value t, j;
        std::tie(t, j) = split(i, Kv);
              Value hit = kb.cmpi(CmpIPredicate::eq,
                                  kb.expertAt(experts, t, j, numExperts), e32);
              return {kb.select(hit, kb.addi(a[0], kb.idx(1)), a[0])};
            })[0];
        kb.store(kb.toI32(kb.minIdx(n, C)), counts, {e});
      });
    }

    // Rows outside every segment: row_token -1.
    kb.parallel(rows, [&](Value r) {
      Value filled;
      if (cap) {
        Value e, c;
        std::tie(e, c) = split(r, C);
        filled = kb.cmpi(CmpIPredicate::slt, c,
                         kb.toIndex(kb.load(counts, {e})));
      } else {
        Value total = kb.loop(kb.idx(0), E, {kb.idx(0)},
            [&](Value e, ValueRange a) -> SmallVector<Value> {
              return {kb.addi(a[0], kb.toIndex(kb.load(counts, {e})))};
            })[0];
        filled = kb.cmpi(CmpIPredicate::slt, r, total);
      }
      kb.ifThen(kb.noti(filled),
                [&] { kb.store(kb.i32(-1), rowToken, rowIdx(r)); });
    });

    // Combine weights (Semantics 2.1 / 2.2).
    bool passThrough = cap && cap.getOnDrop() == DropPolicy::PassThrough;
    bool renormalize = cap && cap.getRenormalize();
    kb.parallel(T, [&](Value t) {
      Value keptSum = kb.loop(kb.idx(0), Kv, {kb.f32(0.0f)},
          [&](Value j, ValueRange a) -> SmallVector<Value> {
            Value w = kb.toF32(kb.load(weights, {t, j}));
            Value isPair = kb.cmpi(CmpIPredicate::sge,
                                   kb.expertAt(experts, t, j, numExperts),
                                   kb.i32(0));
            Value kept = kb.cmpi(CmpIPredicate::sge, kb.load(slots, {t, j}),
                                 kb.i32(0));
            Value keepW = passThrough ? isPair : kept;
            kb.store(kb.fromF32(kb.select(keepW, w, kb.f32(0.0f)), cwElem), cw,
                     {t, j});
            return {kb.select(kept, kb.addf(a[0], w), a[0])};
          })[0];
      if (renormalize) {
        Value eps = kb.f32(FLT_EPSILON);
        Value useSum = kb.ori(kb.cmpf(CmpFPredicate::UNO, keptSum, keptSum),
                              kb.cmpf(CmpFPredicate::OGT, keptSum, eps));
        Value denom = kb.select(useSum, keptSum, eps);
        kb.loop(kb.idx(0), Kv, [&](Value j) {
          Value kept = kb.cmpi(CmpIPredicate::sge, kb.load(slots, {t, j}),
                               kb.i32(0));
          kb.ifThen(kept, [&] {
            Value w = kb.toF32(kb.load(cw, {t, j}));
            kb.store(kb.fromF32(kb.divf(w, denom), cwElem), cw, {t, j});
          });
        });
      }
    });

    // The dispatched copy, unless a fused consumer gathers through row_token.
    Value dispatchedTensor;
    if (!op.getDispatched().use_empty()) {
      Value dispatched = kb.alloc(dispType, dyn);
      Type elem = dispType.getElementType();
      kb.parallel(kb.muli(rows, Dv), [&](Value i) {
        Value r, d;
        std::tie(r, d) = split(i, Dv);
        Value tok = kb.toIndex(kb.load(rowToken, rowIdx(r)));
        Value ok = kb.cmpi(CmpIPredicate::sge, tok, kb.idx(0));
        Value zero = kb.fromF32(kb.f32(0.0f), elem);
        Value v = kb.ifValue(ok, zero, [&] { return kb.load(x, {tok, d}); });
        SmallVector<Value> at = rowIdx(r);
        at.push_back(d);
        kb.store(v, dispatched, at);
      });
      dispatchedTensor = kb.toTensor(dispatched, dispType);
    } else {
      dispatchedTensor = tensor::EmptyOp::create(rewriter, loc,
                                                 dispType.getShape(),
                                                 dispType.getElementType(), dyn);
    }
    rewriter.replaceOp(op, {dispatchedTensor, kb.toTensor(rowToken, rowType),
                            kb.toTensor(counts, countsType),
                            kb.toTensor(slots, slotType),
                            kb.toTensor(cw, cwType)});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// moe.expert_ffn
//===----------------------------------------------------------------------===//

/// act(x) of `#moe.ffn` (Semantics 3); gelu through the erfc polynomial of
/// the CPU kernels (relative error < 1.2e-7), which needs only exp.
Value activation(LoopBuilder &kb, Activation act, Value x, float alpha) {
  switch (act) {
  case Activation::SiLU:
    return kb.divf(x, kb.addf(kb.f32(1.0f),
                              kb.exp(kb.mulf(kb.f32(-alpha), x))));
  case Activation::GELU: {
    Value a = math::AbsFOp::create(kb.b, kb.loc,
                                   kb.mulf(x, kb.f32(0.70710678118654752f)));
    Value t = kb.divf(kb.f32(1.0f),
                      kb.addf(kb.mulf(kb.f32(0.5f), a), kb.f32(1.0f)));
    const float coeffs[] = {0.17087277f,  -0.82215223f, 1.48851587f,
                            -1.13520398f, 0.27886807f,  -0.18628806f,
                            0.09678418f,  0.37409196f,  1.00002368f,
                            -1.26551223f};
    Value p = kb.f32(coeffs[0]);
    for (float c : ArrayRef<float>(coeffs).drop_front())
      p = kb.addf(kb.mulf(p, t), kb.f32(c));
    p = kb.subf(p, kb.mulf(a, a));
    Value erfc = kb.mulf(t, kb.exp(p));
    Value hxErfc = kb.mulf(kb.mulf(kb.f32(0.5f), x), erfc);
    Value neg = kb.cmpf(CmpFPredicate::OLT, x, kb.f32(0.0f));
    return kb.select(neg, hxErfc, kb.subf(x, hxErfc));
  }
  case Activation::GELUTanh: {
    Value x3 = kb.mulf(kb.mulf(x, x), x);
    Value z = kb.addf(kb.mulf(kb.f32(0.044715f), x3), x);
    Value e = kb.exp(kb.mulf(kb.f32(-2.0f * 0.79788456080286536f), z));
    return kb.divf(x, kb.addf(kb.f32(1.0f), e));
  }
  case Activation::ReLU:
    return arith::MaximumFOp::create(kb.b, kb.loc, kb.f32(0.0f), x);
  case Activation::Identity:
    return x;
  }
  llvm_unreachable("unknown activation");
}

/// The shared-memory tiled grouped GEMM of `shared-tiles`: a block of
/// kThreads threads computes a kTileM x kTileN tile of one expert's rows
/// (one entry of the tile table) for one or two products with the same
/// left operand, stepping through K kTileK at a time: each step stages the
/// gathered rows' K slice and each product's weight slice in workgroup
/// memory, then every thread accumulates its 4 x 4 results (rows 4ty + i,
/// columns 4tx + j), reading each K step's four lhs and four rhs values
/// with one 16-byte workgroup load each (a warp's reads are broadcasts or
/// consecutive 16-byte words, free of bank conflicts). Built before
/// bufferization, whose deallocation
/// rejects gpu.barrier and workgroup attributions, so the kernels call
/// kBarrierFn and use private workgroup globals, which
/// moe-resolve-workgroup-barriers rewrites after outlining.
namespace shared_tiles {
constexpr int64_t kTileM = 64, kTileN = 64, kTileK = 16, kThreads = 256;
constexpr int64_t kPerThread = 4; // rows and columns per thread
constexpr int64_t kUnroll = 4;    // K steps per inner-loop iteration
constexpr StringLiteral kBarrierFn = "__moe_workgroup_barrier";
constexpr StringLiteral kTileGlobals[] = {"__moe_tile_lhs", "__moe_tile_rhs0",
                                          "__moe_tile_rhs1"};

/// The [kTileK, 64] f32 workgroup-space type of every staged slice.
MemRefType sliceType(MLIRContext *ctx) {
  auto space = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  return MemRefType::get({kTileK, kTileM}, Float32Type::get(ctx),
                         MemRefLayoutAttrInterface(), space);
}

/// Declares the barrier function and the slice globals in `module` once.
void declareSymbols(RewriterBase &b, ModuleOp module, Location loc) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(module.getBody());
  if (!SymbolTable::lookupSymbolIn(module, kBarrierFn)) {
    auto fn = func::FuncOp::create(b, loc, kBarrierFn,
                                   b.getFunctionType({}, {}));
    fn.setPrivate();
  }
  for (StringRef name : kTileGlobals)
    if (!SymbolTable::lookupSymbolIn(module, name))
      memref::GlobalOp::create(b, loc, name, b.getStringAttr("private"),
                               sliceType(b.getContext()), Attribute(),
                               /*constant=*/false, b.getI64IntegerAttr(16));
}

/// What one tiled kernel computes; indices are within the tile.
struct TiledProduct {
  int64_t numRhs;                               // 1 or 2 products
  Value K, N;                                   // reduction and column sizes
  Value kBegin;                                 // first k of this block
  bool rhsKFastest;                             // weight stored [.., N, K]
  function_ref<Value(int64_t q, Value k)> lhs;  // row ty + 16q, column k
  function_ref<Value(int64_t p, Value k, Value n)> rhs; // in range
  /// Stores result (i, j) of every product: row 4ty + i, column n.
  function_ref<void(int64_t i, Value n, ArrayRef<Value> results)> store;
};

/// One block of the kernel: the tile `colBlock` of columns, thread `tid`.
void emitTile(LoopBuilder &kb, Value colBlock, Value tid,
              const TiledProduct &t) {
  RewriterBase &b = kb.b;
  Location loc = kb.loc;
  MemRefType slice = sliceType(b.getContext());
  Value lhsTile =
      memref::GetGlobalOp::create(b, loc, slice, kTileGlobals[0]);
  SmallVector<Value> rhsTiles;
  for (int64_t p = 0; p < t.numRhs; ++p)
    rhsTiles.push_back(
        memref::GetGlobalOp::create(b, loc, slice, kTileGlobals[1 + p]));
  auto barrier = [&] {
    func::CallOp::create(b, loc, kBarrierFn, TypeRange{}, ValueRange{});
  };
  Value c16 = kb.idx(16);
  Value tx = kb.remu(tid, c16), ty = kb.divu(tid, c16);
  Value n0 = kb.muli(colBlock, kb.idx(kTileN));
  Value zero = kb.f32(0.0f);
  // Staging slots: lhs (row ty + 16q, k tx); rhs by its storage order.
  auto rhsSlot = [&](int64_t q) -> std::pair<Value, Value> {
    if (t.rhsKFastest)
      return {tx, kb.addi(ty, kb.idx(16 * q))};
    return {kb.addi(kb.divu(tid, kb.idx(64)), kb.idx(4 * q)),
            kb.remu(tid, kb.idx(64))};
  };
  int64_t numAcc = t.numRhs * kPerThread * kPerThread;
  auto accAt = [&](int64_t p, int64_t i, int64_t j) {
    return (p * kPerThread + i) * kPerThread + j;
  };
  // This thread's results: rows rowBase + i, columns colBase + j (tile
  // coordinates), read from the staged slices four at a time.
  Value rowBase = kb.muli(ty, kb.idx(kPerThread));
  Value colBase = kb.muli(tx, kb.idx(kPerThread));
  auto vec4 = VectorType::get({kPerThread}, b.getF32Type());
  auto load4 = [&](Value tile, Value kk, Value at) {
    Value v = vector::LoadOp::create(b, loc, vec4, tile, ValueRange{kk, at},
                                     /*nontemporal=*/false,
                                     llvm::MaybeAlign(16));
    SmallVector<Value> parts;
    for (int64_t e = 0; e < kPerThread; ++e)
      parts.push_back(vector::ExtractOp::create(b, loc, v, e));
    return parts;
  };
  // K steps of [kBegin, K) (none when kBegin >= K).
  Value span = arith::MaxSIOp::create(b, loc, kb.subi(t.K, t.kBegin),
                                      kb.idx(0));
  Value steps = arith::CeilDivUIOp::create(b, loc, span, kb.idx(kTileK));
  // This thread's staging values of K step `step`: kPerThread lhs values,
  // then kPerThread per product. Past K (the step after the last
  // included) they are zeros, without loads.
  int64_t numStaged = (1 + t.numRhs) * kPerThread;
  auto loadStep = [&](Value step) {
    Value k0 = kb.addi(t.kBegin, kb.muli(step, kb.idx(kTileK)));
    SmallVector<Value> vals;
    Value k = kb.addi(k0, tx);
    Value kOk = kb.cmpi(CmpIPredicate::slt, k, t.K);
    for (int64_t q = 0; q < kPerThread; ++q)
      vals.push_back(kb.ifValue(kOk, zero, [&] { return t.lhs(q, k); }));
    for (int64_t p = 0; p < t.numRhs; ++p)
      for (int64_t q = 0; q < kPerThread; ++q) {
        auto [sk, sn] = rhsSlot(q);
        Value gk = kb.addi(k0, sk), gn = kb.addi(n0, sn);
        Value ok = kb.andi(kb.cmpi(CmpIPredicate::slt, gk, t.K),
                           kb.cmpi(CmpIPredicate::slt, gn, t.N));
        vals.push_back(kb.ifValue(ok, zero, [&] { return t.rhs(p, gk, gn); }));
      }
    return vals;
  };
  // Software pipelined: step s+1's global loads are issued before step s's
  // products, so their latency hides behind the arithmetic.
  SmallVector<Value> init(numAcc, zero);
  llvm::append_range(init, loadStep(kb.idx(0)));
  SmallVector<Value> acc = kb.loop(
      kb.idx(0), steps, init,
      [&](Value step, ValueRange a) -> SmallVector<Value> {
        ValueRange staged = a.drop_front(numAcc);
        for (int64_t q = 0; q < kPerThread; ++q)
          kb.store(staged[q], lhsTile, {tx, kb.addi(ty, kb.idx(16 * q))});
        for (int64_t p = 0; p < t.numRhs; ++p)
          for (int64_t q = 0; q < kPerThread; ++q) {
            auto [sk, sn] = rhsSlot(q);
            kb.store(staged[(1 + p) * kPerThread + q], rhsTiles[p], {sk, sn});
          }
        barrier();
        SmallVector<Value> nextStaged = loadStep(kb.addi(step, kb.idx(1)));
        // The kTileK steps, kUnroll at a time: little loop overhead between
        // the fused multiply-adds, yet few enough shared loads in flight to
        // keep two blocks per multiprocessor (fully unrolled, ptxas hoists
        // them all: 159 registers instead of ~100).
        SmallVector<Value> next = kb.loop(
            kb.idx(0), kb.idx(kTileK / kUnroll), a.take_front(numAcc),
            [&](Value group, ValueRange c) -> SmallVector<Value> {
              SmallVector<Value> out(c.begin(), c.end());
              Value kk0 = kb.muli(group, kb.idx(kUnroll));
              for (int64_t u = 0; u < kUnroll; ++u) {
                Value kk = kb.addi(kk0, kb.idx(u));
                SmallVector<Value> lv = load4(lhsTile, kk, rowBase);
                for (int64_t p = 0; p < t.numRhs; ++p) {
                  SmallVector<Value> rv = load4(rhsTiles[p], kk, colBase);
                  for (int64_t j = 0; j < kPerThread; ++j)
                    for (int64_t i = 0; i < kPerThread; ++i) {
                      int64_t at = accAt(p, i, j);
                      out[at] =
                          math::FmaOp::create(b, loc, lv[i], rv[j], out[at]);
                    }
                }
              }
              return out;
            });
        barrier();
        llvm::append_range(next, nextStaged);
        return next;
      });
  assert(static_cast<int64_t>(acc.size()) == numAcc + numStaged);
  for (int64_t i = 0; i < kPerThread; ++i)
    for (int64_t j = 0; j < kPerThread; ++j) {
      Value n = kb.addi(n0, kb.addi(colBase, kb.idx(j)));
      SmallVector<Value> results;
      for (int64_t p = 0; p < t.numRhs; ++p)
        results.push_back(acc[accAt(p, i, j)]);
      kb.ifThen(kb.cmpi(CmpIPredicate::slt, n, t.N),
                [&] { t.store(i, n, results); });
    }
}

/// gpu.launch over (tiles, column blocks of `N`, `splits`) with kThreads
/// threads; `body(tile, colBlock, split, tid)`.
void emitLaunch(LoopBuilder &kb, Value tiles, Value N, Value splits,
                function_ref<void(Value, Value, Value, Value)> body) {
  RewriterBase &b = kb.b;
  Value colBlocks =
      arith::CeilDivUIOp::create(b, kb.loc, N, kb.idx(kTileN));
  auto launch = gpu::LaunchOp::create(b, kb.loc, tiles, colBlocks, splits,
                                      kb.idx(kThreads), kb.idx(1), kb.idx(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&launch.getBody().front());
  body(launch.getBlockIds().x, launch.getBlockIds().y,
       launch.getBlockIds().z, launch.getThreadIds().x);
  gpu::TerminatorOp::create(b, kb.loc);
}

/// The K range of each split: whole K steps, the last range possibly short
/// or empty.
Value splitChunk(LoopBuilder &kb, Value K, Value splits) {
  auto ceilDiv = [&](Value x, Value y) {
    return arith::CeilDivUIOp::create(kb.b, kb.loc, x, y).getResult();
  };
  return kb.muli(ceilDiv(ceilDiv(K, kb.idx(kTileK)), splits), kb.idx(kTileK));
}

/// How many K ranges a product over `rows` rows splits into: enough blocks
/// to give every multiprocessor two (kTargetBlocks) when few row tiles
/// exist (decode), at most kMaxSplits, at least one K step each. The row
/// tiles are at most min(rows, ceil(rows / kTileM) + experts).
constexpr int64_t kTargetBlocks = 256, kMaxSplits = 8;
Value splitCount(LoopBuilder &kb, Value rows, Value N, Value K,
                 int64_t numExperts) {
  RewriterBase &b = kb.b;
  auto ceilDiv = [&](Value x, int64_t y) {
    return arith::CeilDivUIOp::create(b, kb.loc, x, kb.idx(y)).getResult();
  };
  Value one = kb.idx(1);
  Value rowTiles = kb.minIdx(
      rows, kb.addi(ceilDiv(rows, kTileM), kb.idx(numExperts)));
  rowTiles = arith::MaxUIOp::create(b, kb.loc, rowTiles, one);
  Value blocks = kb.muli(rowTiles, ceilDiv(N, kTileN));
  Value want = kb.divu(kb.idx(kTargetBlocks), blocks);
  Value splits = kb.minIdx(kb.idx(kMaxSplits), ceilDiv(K, kTileK));
  splits = kb.minIdx(splits, want);
  return arith::MaxSIOp::create(b, kb.loc, splits, one);
}
} // namespace shared_tiles

struct LowerExpertFFN : OpRewritePattern<ExpertFFNOp> {
  LowerExpertFFN(MLIRContext *ctx, int64_t tileRows, bool sharedTiles)
      : OpRewritePattern(ctx),
        kTileRows(sharedTiles ? shared_tiles::kTileM : tileRows),
        kSharedTiles(sharedTiles) {}
  /// Rows per tile: each weight element loaded serves this many rows.
  int64_t kTileRows;
  /// Whether the products are shared-memory tiled GPU kernels.
  bool kSharedTiles;
  LogicalResult matchAndRewrite(ExpertFFNOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    LoopBuilder kb(rewriter, loc);
    FFNAttr f = op.getFfn();
    bool glu = f.getKind() == FFNKind::GLU;
    bool inOut = f.getLayout() == WeightLayout::InOut;
    GateUpLayout gateUp = f.getGateUp();
    auto resType = op.getResult().getType();
    bool padded = resType.getRank() == 3;
    auto w2Type = op.getW2().getType();
    int64_t D = op.getInput().getType().getDimSize(1);
    int64_t F = w2Type.getDimSize(inOut ? 1 : 2);
    int64_t Dout = resType.getShape().back();
    // Routed experts, then (folded in by moe-fuse-experts) shared ones.
    int64_t numRouted = op.getNumRoutedExperts();
    int64_t numExperts = op.getCounts().getType().getDimSize(0);

    Value x = kb.input(op.getInput());
    Value rowToken = kb.input(op.getRowToken());
    Value counts = kb.input(op.getCounts());
    Value w1 = kb.input(op.getW1());
    Value w3 = op.getW3() ? kb.input(op.getW3()) : Value();
    Value w2 = kb.input(op.getW2());
    Value b1 = op.getB1() ? kb.input(op.getB1()) : Value();
    Value b2 = op.getB2() ? kb.input(op.getB2()) : Value();
    Value sw1 = op.getSharedW1() ? kb.input(op.getSharedW1()) : Value();
    Value sw3 = op.getSharedW3() ? kb.input(op.getSharedW3()) : Value();
    Value sw2 = op.getSharedW2() ? kb.input(op.getSharedW2()) : Value();
    Value T = kb.dim(op.getInput(), 0);
    Value C = padded ? kb.dim(op.getRowToken(), 1) : Value();
    Value rows = padded ? kb.muli(kb.idx(numExperts), C)
                        : kb.dim(op.getRowToken(), 0);
    auto rowIdx = [&](Value r) -> SmallVector<Value> {
      if (!padded)
        return {r};
      return {kb.divu(r, C), kb.remu(r, C)};
    };

    // Row tiles: every expert's segment is cut into tiles of kTileRows
    // rows, so a thread computing one column of a tile loads each weight
    // element once for all its rows. Tile s of the table belongs to expert
    // tileExpert[s] (-1: unused slot) and covers tileRows[s] rows from row
    // tileRow[s]. At most rows / kTileRows + E tiles exist.
    Value TR = kb.idx(kTileRows);
    Value maxTiles = kb.addi(arith::CeilDivUIOp::create(rewriter, loc, rows, TR),
                             kb.idx(numExperts));
    Type indexType = rewriter.getIndexType();
    Value tileExpert = kb.alloc({ShapedType::kDynamic}, indexType, maxTiles);
    Value tileRow = kb.alloc({ShapedType::kDynamic}, indexType, maxTiles);
    Value tileRows = kb.alloc({ShapedType::kDynamic}, indexType, maxTiles);
    kb.parallel(maxTiles, [&](Value t) {
      // Walk the experts' segments (clamped to the rows that exist, as the
      // CPU kernel does) counting tiles until the one holding slot t.
      SmallVector<Value> found = kb.loop(
          kb.idx(0), kb.idx(numExperts),
          {kb.idx(0), kb.idx(0), kb.idx(-1), kb.idx(0), kb.idx(0)},
          [&](Value e, ValueRange a) -> SmallVector<Value> {
            Value rowStart = padded ? kb.muli(e, C) : a[1];
            Value limit = padded ? C : kb.subi(rows, kb.minIdx(a[1], rows));
            Value n = arith::MaxSIOp::create(
                rewriter, loc, kb.toIndex(kb.load(counts, {e})), kb.idx(0));
            n = kb.minIdx(n, limit);
            Value tiles = arith::CeilDivUIOp::create(rewriter, loc, n, TR);
            Value end = kb.addi(a[0], tiles);
            Value hit = kb.andi(kb.cmpi(CmpIPredicate::sge, t, a[0]),
                                kb.cmpi(CmpIPredicate::slt, t, end));
            Value first = kb.muli(kb.subi(t, a[0]), TR);
            return {end, kb.addi(a[1], n), kb.select(hit, e, a[2]),
                    kb.select(hit, kb.addi(rowStart, first), a[3]),
                    kb.select(hit, kb.minIdx(TR, kb.subi(n, first)), a[4])};
          });
      kb.store(found[2], tileExpert, {t});
      kb.store(found[3], tileRow, {t});
      kb.store(found[4], tileRows, {t});
    });
    // The tokens of `count` rows of tile t, row rowOf(j) for j < count: -1
    // past the tile or for a row naming no valid token (such rows produce
    // zeros). tileTokens: rows 0 .. kTileRows-1 (per-column kernels).
    auto rowTokens = [&](Value t, int64_t count,
                         function_ref<Value(int64_t)> rowOf) {
      Value r0 = kb.load(tileRow, {t}), n = kb.load(tileRows, {t});
      SmallVector<Value> toks;
      for (int64_t j = 0; j < count; ++j) {
        Value m = rowOf(j);
        Value inTile = kb.cmpi(CmpIPredicate::slt, m, n);
        Value r = kb.addi(r0, kb.minIdx(m, kb.subi(n, kb.idx(1))));
        Value tok = kb.toIndex(kb.load(rowToken, rowIdx(r)));
        Value ok = kb.andi(inTile,
                           kb.andi(kb.cmpi(CmpIPredicate::sge, tok, kb.idx(0)),
                                   kb.cmpi(CmpIPredicate::slt, tok, T)));
        toks.push_back(kb.select(ok, tok, kb.idx(-1)));
      }
      return toks;
    };
    auto tileTokens = [&](Value t) {
      return rowTokens(t, kTileRows, [&](int64_t j) { return kb.idx(j); });
    };

    // W(e, k, n) of a logical [K, N] matrix stored [E, K, N] (in_out) or
    // [E, N, K] (out_in), in f32.
    // Expert e >= numRouted is shared expert e - numRouted (its own stack).
    auto weight = [&](Value w, Value e, Value k, Value n) {
      auto load = [&](Value m, Value i) {
        return kb.toF32(inOut ? kb.load(m, {i, k, n}) : kb.load(m, {i, n, k}));
      };
      if (!sw1)
        return load(w, e);
      Value shared = w == w1 ? sw1 : w == w2 ? sw2 : sw3;
      return kb.ifElseValue(
          kb.cmpi(CmpIPredicate::slt, e, kb.idx(numRouted)),
          [&] { return load(w, e); },
          [&] { return load(shared, kb.subi(e, kb.idx(numRouted))); });
    };
    // Bias b[e, c] in f32; shared experts have none (0).
    auto bias = [&](Value bv, Value e, Value c) {
      if (!sw1)
        return kb.toF32(kb.load(bv, {e, c}));
      return kb.ifValue(kb.cmpi(CmpIPredicate::slt, e, kb.idx(numRouted)),
                        kb.f32(0.0f),
                        [&] { return kb.toF32(kb.load(bv, {e, c})); });
    };
    // W1 columns of hidden unit `h`: gate and (glu) up.
    auto gateCol = [&](Value h) {
      return gateUp == GateUpLayout::Interleaved ? kb.muli(h, kb.idx(2)) : h;
    };
    auto upCol = [&](Value h) -> Value {
      switch (gateUp) {
      case GateUpLayout::Separate:
        return h;
      case GateUpLayout::Concatenated:
        return kb.addi(h, kb.idx(F));
      case GateUpLayout::Interleaved:
        return kb.addi(kb.muli(h, kb.idx(2)), kb.idx(1));
      }
      llvm_unreachable("unknown gate/up layout");
    };
    Value upMatrix = gateUp == GateUpLayout::Separate ? w3 : w1;
    float alpha = float(f.getAlpha()), shift = float(f.getUpShift()),
          limit = float(f.getLimit());

    // Hidden activations h[r, j], f32: one iteration per (tile, unit).
    Type f32 = rewriter.getF32Type();
    Value hidden = kb.alloc({ShapedType::kDynamic, F}, f32, rows);
    Value Fv = kb.idx(F);
    auto epilogue = [&](Value e, Value g, Value u, Value gc, Value uc) {
      if (b1)
        g = kb.addf(g, bias(b1, e, gc));
      if (!glu)
        return activation(kb, f.getActivation(), g, alpha);
      if (b1 && gateUp != GateUpLayout::Separate)
        u = kb.addf(u, bias(b1, e, uc));
      if (limit > 0.0f) {
        g = arith::MinimumFOp::create(rewriter, loc, kb.f32(limit), g);
        u = arith::MaximumFOp::create(
            rewriter, loc, kb.f32(-limit),
            arith::MinimumFOp::create(rewriter, loc, kb.f32(limit), u));
      }
      return kb.mulf(activation(kb, f.getActivation(), g, alpha),
                     kb.addf(u, kb.f32(shift)));
    };
    // body(e, r, col) for every row r of an active tile's segment and every
    // column col < N: one iteration per (tile slot, tile row, column).
    auto forEachTileRow = [&](int64_t N,
                              function_ref<void(Value, Value, Value)> body) {
      Value Nv = kb.idx(N);
      Value perTile = kb.idx(shared_tiles::kTileM * N);
      kb.parallel(kb.muli(maxTiles, perTile), [&](Value i) {
        Value t = kb.divu(i, perTile), rem = kb.remu(i, perTile);
        Value m = kb.divu(rem, Nv), col = kb.remu(rem, Nv);
        Value e = kb.load(tileExpert, {t});
        kb.ifThen(kb.cmpi(CmpIPredicate::sge, e, kb.idx(0)), [&] {
          Value r0 = kb.load(tileRow, {t}), n = kb.load(tileRows, {t});
          kb.ifThen(kb.cmpi(CmpIPredicate::slt, m, n),
                    [&] { body(e, kb.addi(r0, m), col); });
        });
      });
    };
    if (kSharedTiles) {
      shared_tiles::declareSymbols(rewriter, op->getParentOfType<ModuleOp>(),
                                   loc);
      // Decode (few row tiles): K split as for the down product, the gate
      // and up partial sums added in range order by a second kernel that
      // applies the epilogue; otherwise one kernel with the epilogue.
      Value splits = shared_tiles::splitCount(kb, rows, Fv, kb.idx(D),
                                              numExperts);
      auto emitHidden = [&](bool split) {
        Value kChunk, partialG, partialU;
        if (split) {
          kChunk = shared_tiles::splitChunk(kb, kb.idx(D), splits);
          partialG = kb.alloc({ShapedType::kDynamic, F}, f32,
                              kb.muli(splits, rows));
          if (glu)
            partialU = kb.alloc({ShapedType::kDynamic, F}, f32,
                                kb.muli(splits, rows));
        }
        shared_tiles::emitLaunch(
            kb, maxTiles, Fv, split ? splits : kb.idx(1),
            [&](Value t, Value cb, Value z, Value tid) {
              Value e = kb.load(tileExpert, {t});
              // Uniform per block: the barriers inside are reached by all or
              // none.
              kb.ifThen(kb.cmpi(CmpIPredicate::sge, e, kb.idx(0)), [&] {
                Value r0 = kb.load(tileRow, {t}), n = kb.load(tileRows, {t});
                Value ty = kb.divu(tid, kb.idx(16));
                // The gathered rows this thread stages: ty + 16q.
                SmallVector<Value> toks =
                    rowTokens(t, shared_tiles::kPerThread, [&](int64_t q) {
                      return kb.addi(ty, kb.idx(16 * q));
                    });
                shared_tiles::TiledProduct prod;
                prod.numRhs = glu ? 2 : 1;
                prod.kBegin = split ? kb.muli(z, kChunk) : kb.idx(0);
                prod.K = split ? kb.minIdx(kb.idx(D), kb.addi(prod.kBegin, kChunk))
                               : kb.idx(D);
                prod.N = Fv;
                prod.rhsKFastest = !inOut;
                auto lhs = [&](int64_t q, Value k) {
                  Value ok = kb.cmpi(CmpIPredicate::sge, toks[q], kb.idx(0));
                  return kb.ifValue(ok, kb.f32(0.0f), [&] {
                    return kb.toF32(kb.load(x, {toks[q], k}));
                  });
                };
                auto rhs = [&](int64_t p, Value k, Value h) {
                  return p == 0 ? weight(w1, e, k, gateCol(h))
                                : weight(upMatrix, e, k, upCol(h));
                };
                auto store = [&](int64_t i, Value h, ArrayRef<Value> res) {
                  Value m = kb.addi(
                      kb.muli(ty, kb.idx(shared_tiles::kPerThread)), kb.idx(i));
                  kb.ifThen(kb.cmpi(CmpIPredicate::slt, m, n), [&] {
                    if (split) {
                      Value r = kb.addi(kb.muli(z, rows), kb.addi(r0, m));
                      kb.store(res[0], partialG, {r, h});
                      if (glu)
                        kb.store(res[1], partialU, {r, h});
                      return;
                    }
                    Value v = epilogue(e, res[0], glu ? res[1] : Value(),
                                       gateCol(h), glu ? upCol(h) : Value());
                    kb.store(v, hidden, {kb.addi(r0, m), h});
                  });
                };
                prod.lhs = lhs;
                prod.rhs = rhs;
                prod.store = store;
                shared_tiles::emitTile(kb, cb, tid, prod);
              });
            });
        if (!split)
          return;
        forEachTileRow(F, [&](Value e, Value r, Value h) {
          SmallVector<Value> sums = kb.loop(
              kb.idx(0), splits, SmallVector<Value>(glu ? 2 : 1, kb.f32(0.0f)),
              [&](Value zi, ValueRange a) -> SmallVector<Value> {
                Value pr = kb.addi(kb.muli(zi, rows), r);
                SmallVector<Value> next{
                    kb.addf(a[0], kb.load(partialG, {pr, h}))};
                if (glu)
                  next.push_back(kb.addf(a[1], kb.load(partialU, {pr, h})));
                return next;
              });
          Value v = epilogue(e, sums[0], glu ? sums[1] : Value(), gateCol(h),
                             glu ? upCol(h) : Value());
          kb.store(v, hidden, {r, h});
        });
      };
      kb.ifElse(kb.cmpi(CmpIPredicate::ugt, splits, kb.idx(1)),
                [&] { emitHidden(/*split=*/true); },
                [&] { emitHidden(/*split=*/false); });
    } else
    kb.parallel(kb.muli(maxTiles, Fv), [&](Value i) {
      Value t = kb.divu(i, Fv), h = kb.remu(i, Fv);
      Value e = kb.load(tileExpert, {t});
      kb.ifThen(kb.cmpi(CmpIPredicate::sge, e, kb.idx(0)), [&] {
        SmallVector<Value> toks = tileTokens(t);
        Value gc = gateCol(h), uc = glu ? upCol(h) : Value();
        int64_t perRow = glu ? 2 : 1;
        SmallVector<Value> init(kTileRows * perRow, kb.f32(0.0f));
        SmallVector<Value> acc = kb.loop(
            kb.idx(0), kb.idx(D), init,
            [&](Value d, ValueRange a) -> SmallVector<Value> {
              // Each weight element once for the whole tile.
              Value wg = weight(w1, e, d, gc);
              Value wu = glu ? weight(upMatrix, e, d, uc) : Value();
              SmallVector<Value> next;
              for (int64_t j = 0; j < kTileRows; ++j) {
                Value ok = kb.cmpi(CmpIPredicate::sge, toks[j], kb.idx(0));
                Value row = kb.select(ok, toks[j], kb.idx(0));
                Value xv = kb.select(ok, kb.toF32(kb.load(x, {row, d})),
                                     kb.f32(0.0f));
                next.push_back(kb.addf(a[j * perRow], kb.mulf(xv, wg)));
                if (glu)
                  next.push_back(kb.addf(a[j * perRow + 1], kb.mulf(xv, wu)));
              }
              return next;
            });
        Value r0 = kb.load(tileRow, {t}), n = kb.load(tileRows, {t});
        for (int64_t j = 0; j < kTileRows; ++j)
          kb.ifThen(kb.cmpi(CmpIPredicate::slt, kb.idx(j), n), [&] {
            Value v = epilogue(e, acc[j * perRow],
                               glu ? acc[j * perRow + 1] : Value(), gc, uc);
            kb.store(v, hidden, {kb.addi(r0, kb.idx(j)), h});
          });
      });
    });

    // Output rows: y[r, d] = h[r] W2[e][:, d] + b2[e, d], one iteration per
    // (tile, column); rows outside every segment (or without a valid
    // token) stay zero.
    SmallVector<Value> dyn;
    for (int64_t i = 0; i < resType.getRank(); ++i)
      if (resType.isDynamicDim(i))
        dyn.push_back(kb.dim(op.getRowToken(), i));
    Value out = kb.alloc(resType, dyn);
    Type outElem = resType.getElementType();
    Value Dv = kb.idx(Dout);
    auto outAt = [&](Value r, Value d) {
      SmallVector<Value> at = rowIdx(r);
      at.push_back(d);
      return at;
    };
    kb.parallel(kb.muli(rows, Dv), [&](Value i) {
      kb.store(kb.fromF32(kb.f32(0.0f), outElem), out,
               outAt(kb.divu(i, Dv), kb.remu(i, Dv)));
    });
    if (kSharedTiles) {
      // Split K: block z sums hidden units [z * kChunk, (z + 1) * kChunk)
      // into partial[z * rows + r, d]; a second kernel adds the partial
      // sums in z order (and b2) for the rows with a valid token. Decode
      // has a few row tiles over a long K; without the split only
      // ceil(D / 64) blocks per tile would stream the whole of W2.
      Value splits = shared_tiles::splitCount(kb, rows, Dv, Fv, numExperts);
      Value kChunk = shared_tiles::splitChunk(kb, Fv, splits);
      Value partial =
          kb.alloc({ShapedType::kDynamic, Dout}, f32, kb.muli(splits, rows));
      shared_tiles::emitLaunch(kb, maxTiles, Dv, splits, [&](Value t, Value cb,
                                                             Value z,
                                                             Value tid) {
        Value e = kb.load(tileExpert, {t});
        kb.ifThen(kb.cmpi(CmpIPredicate::sge, e, kb.idx(0)), [&] {
          Value r0 = kb.load(tileRow, {t}), n = kb.load(tileRows, {t});
          Value ty = kb.divu(tid, kb.idx(16));
          shared_tiles::TiledProduct prod;
          prod.numRhs = 1;
          prod.kBegin = kb.muli(z, kChunk);
          prod.K = kb.minIdx(Fv, kb.addi(prod.kBegin, kChunk));
          prod.N = Dv;
          prod.rhsKFastest = !inOut;
          auto lhs = [&](int64_t q, Value k) {
            Value m = kb.addi(ty, kb.idx(16 * q));
            return kb.ifValue(kb.cmpi(CmpIPredicate::slt, m, n), kb.f32(0.0f),
                              [&] { return kb.load(hidden, {kb.addi(r0, m), k}); });
          };
          auto rhs = [&](int64_t, Value k, Value d) {
            return weight(w2, e, k, d);
          };
          auto store = [&](int64_t i, Value d, ArrayRef<Value> res) {
            Value m = kb.addi(kb.muli(ty, kb.idx(shared_tiles::kPerThread)),
                              kb.idx(i));
            kb.ifThen(kb.cmpi(CmpIPredicate::slt, m, n), [&] {
              Value r = kb.addi(kb.muli(z, rows), kb.addi(r0, m));
              kb.store(res[0], partial, {r, d});
            });
          };
          prod.lhs = lhs;
          prod.rhs = rhs;
          prod.store = store;
          shared_tiles::emitTile(kb, cb, tid, prod);
        });
      });
      forEachTileRow(Dout, [&](Value e, Value r, Value d) {
        Value tok = kb.toIndex(kb.load(rowToken, rowIdx(r)));
        Value ok = kb.andi(kb.cmpi(CmpIPredicate::sge, tok, kb.idx(0)),
                           kb.cmpi(CmpIPredicate::slt, tok, T));
        kb.ifThen(ok, [&] {
          Value y = kb.loop(kb.idx(0), splits, {kb.f32(0.0f)},
                            [&](Value zi, ValueRange a) -> SmallVector<Value> {
                              Value pr = kb.addi(kb.muli(zi, rows), r);
                              return {kb.addf(a[0], kb.load(partial, {pr, d}))};
                            })[0];
          if (b2)
            y = kb.addf(y, bias(b2, e, d));
          kb.store(kb.fromF32(y, outElem), out, outAt(r, d));
        });
      });
    } else
    kb.parallel(kb.muli(maxTiles, Dv), [&](Value i) {
      Value t = kb.divu(i, Dv), d = kb.remu(i, Dv);
      Value e = kb.load(tileExpert, {t});
      kb.ifThen(kb.cmpi(CmpIPredicate::sge, e, kb.idx(0)), [&] {
        SmallVector<Value> toks = tileTokens(t);
        Value r0 = kb.load(tileRow, {t}), n = kb.load(tileRows, {t});
        SmallVector<Value> hRows;
        for (int64_t j = 0; j < kTileRows; ++j)
          hRows.push_back(
              kb.addi(r0, kb.minIdx(kb.idx(j), kb.subi(n, kb.idx(1)))));
        SmallVector<Value> init(kTileRows, kb.f32(0.0f));
        SmallVector<Value> acc = kb.loop(
            kb.idx(0), Fv, init,
            [&](Value h, ValueRange a) -> SmallVector<Value> {
              Value w = weight(w2, e, h, d);
              SmallVector<Value> next;
              for (int64_t j = 0; j < kTileRows; ++j)
                next.push_back(
                    kb.addf(a[j], kb.mulf(kb.load(hidden, {hRows[j], h}), w)));
              return next;
            });
        for (int64_t j = 0; j < kTileRows; ++j)
          kb.ifThen(kb.cmpi(CmpIPredicate::sge, toks[j], kb.idx(0)), [&] {
            Value y = acc[j];
            if (b2)
              y = kb.addf(y, bias(b2, e, d));
            kb.store(kb.fromF32(y, outElem), out,
                     outAt(kb.addi(r0, kb.idx(j)), d));
          });
      });
    });
    rewriter.replaceOp(op, kb.toTensor(out, resType));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

struct LowerCombine : OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    LoopBuilder kb(rewriter, op.getLoc());
    auto eoType = cast<RankedTensorType>(op.getExpertOut().getType());
    bool padded = eoType.getRank() == 3;
    Value expertOut = kb.input(op.getExpertOut());
    Value slots = kb.input(op.getTokenSlot());
    Value weights = kb.input(op.getWeights());
    Value passthrough =
        op.getPassthrough() ? kb.input(op.getPassthrough()) : Value();
    auto outType = op.getResult().getType();
    Value T = kb.dim(op.getTokenSlot(), 0);
    int64_t K = op.getTokenSlot().getType().getDimSize(1);
    int64_t D = outType.getDimSize(1);
    Value C = padded ? kb.dim(op.getExpertOut(), 1) : Value();
    Value rows = padded ? kb.muli(kb.dim(op.getExpertOut(), 0), C)
                        : kb.dim(op.getExpertOut(), 0);
    Value out = kb.alloc(outType, outType.isDynamicDim(0) ? ValueRange{T}
                                                         : ValueRange{});
    Value Dv = kb.idx(D);
    kb.parallel(kb.muli(T, Dv), [&](Value i) {
      Value t = kb.divu(i, Dv), d = kb.remu(i, Dv);
      Value acc = kb.loop(kb.idx(0), kb.idx(K), {kb.f32(0.0f)},
          [&](Value j, ValueRange a) -> SmallVector<Value> {
            Value s = kb.toIndex(kb.load(slots, {t, j}));
            Value w = kb.toF32(kb.load(weights, {t, j}));
            Value routed = kb.andi(kb.cmpi(CmpIPredicate::sge, s, kb.idx(0)),
                                   kb.cmpi(CmpIPredicate::slt, s, rows));
            Value next = kb.ifValue(routed, a[0], [&] {
              SmallVector<Value> at;
              if (padded)
                at = {kb.divu(s, C), kb.remu(s, C), d};
              else
                at = {s, d};
              return kb.addf(a[0],
                             kb.mulf(w, kb.toF32(kb.load(expertOut, at))));
            });
            if (passthrough) {
              Value dropped =
                  kb.andi(kb.cmpi(CmpIPredicate::slt, s, kb.idx(0)),
                          kb.cmpf(CmpFPredicate::UNE, w, kb.f32(0.0f)));
              next = kb.ifValue(dropped, next, [&] {
                return kb.addf(
                    a[0], kb.mulf(w, kb.toF32(kb.load(passthrough, {t, d}))));
              });
            }
            return {next};
          })[0];
      kb.store(kb.fromF32(acc, outType.getElementType()), out, {t, d});
    });
    rewriter.replaceOp(op, kb.toTensor(out, outType));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// moe.expert_stats
//===----------------------------------------------------------------------===//

struct LowerExpertStats : OpRewritePattern<ExpertStatsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ExpertStatsOp op,
                                PatternRewriter &rewriter) const override {
    LoopBuilder kb(rewriter, op.getLoc());
    auto countsType = op.getCounts().getType();
    auto massType = op.getGateMass().getType();
    int64_t numExperts = countsType.getDimSize(0);
    int64_t K = op.getExperts().getType().getDimSize(1);
    Value experts = kb.input(op.getExperts());
    Value weights = kb.input(op.getWeights());
    Value T = kb.dim(op.getExperts(), 0);
    Value counts = kb.alloc(countsType, {});
    Value mass = kb.alloc(massType, {});
    Value Kv = kb.idx(K);
    kb.parallel(kb.idx(numExperts), [&](Value e) {
      Value e32 = kb.toI32(e);
      SmallVector<Value> acc = kb.loop(
          kb.idx(0), kb.muli(T, Kv), {kb.i64(0), kb.f32(0.0f)},
          [&](Value i, ValueRange a) -> SmallVector<Value> {
            Value t = kb.divu(i, Kv), j = kb.remu(i, Kv);
            Value hit = kb.cmpi(CmpIPredicate::eq,
                                kb.expertAt(experts, t, j, numExperts), e32);
            Value w = kb.toF32(kb.load(weights, {t, j}));
            return {kb.select(hit, kb.addi(a[0], kb.i64(1)), a[0]),
                    kb.select(hit, kb.addf(a[1], w), a[1])};
          });
      kb.store(acc[0], counts, {e});
      kb.store(acc[1], mass, {e});
    });
    rewriter.replaceOp(op, {kb.toTensor(counts, countsType),
                            kb.toTensor(mass, massType)});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// linalg.matmul (f32; the router product of every layer)
//===----------------------------------------------------------------------===//

/// One iteration per output element, accumulating in a register from the
/// init value in k order (linalg's own sum order). Left to
/// convert-linalg-to-parallel-loops, the accumulator would be stored to
/// and reloaded from memory at every k, which on a GPU serialises the
/// iterations on memory latency (the Mixtral router took 0.3 ms at T=1).
struct LowerMatmul : OpRewritePattern<linalg::MatmulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(linalg::MatmulOp op,
                                PatternRewriter &rewriter) const override {
    if (!isF32TensorMatmul(op))
      return failure();
    LoopBuilder kb(rewriter, op.getLoc());
    Value lhs = kb.input(op.getInputs()[0]), rhs = kb.input(op.getInputs()[1]);
    Value init = op.getOutputs()[0];
    auto outType = cast<RankedTensorType>(op.getResultTypes()[0]);
    Value M = kb.dim(init, 0), N = kb.dim(init, 1);
    Value K = kb.dim(op.getInputs()[0], 1);
    SmallVector<Value> dyn;
    for (int64_t i = 0; i < 2; ++i)
      if (outType.isDynamicDim(i))
        dyn.push_back(kb.dim(init, i));
    Value initBuf = kb.input(init);
    Value out = kb.alloc(outType, dyn);
    // kUnroll products per iteration: their loads are issued together (a
    // GPU thread otherwise waits one memory latency per k), the sum keeps
    // its order; the K % kUnroll tail is a second loop.
    constexpr int64_t kUnroll = 16;
    Value mainK = kb.muli(kb.divu(K, kb.idx(kUnroll)), kb.idx(kUnroll));
    kb.parallel(kb.muli(M, N), [&](Value i) {
      Value r = kb.divu(i, N), c = kb.remu(i, N);
      auto product = [&](Value k) {
        return kb.mulf(kb.load(lhs, {r, k}), kb.load(rhs, {k, c}));
      };
      Value acc = kb.loop(
          kb.idx(0), kb.divu(K, kb.idx(kUnroll)), {kb.load(initBuf, {r, c})},
          [&](Value step, ValueRange a) -> SmallVector<Value> {
            Value k0 = kb.muli(step, kb.idx(kUnroll));
            SmallVector<Value> products;
            for (int64_t u = 0; u < kUnroll; ++u)
              products.push_back(product(kb.addi(k0, kb.idx(u))));
            Value sum = a[0];
            for (Value p : products)
              sum = kb.addf(sum, p);
            return {sum};
          })[0];
      acc = kb.loop(mainK, K, {acc},
                    [&](Value k, ValueRange a) -> SmallVector<Value> {
                      return {kb.addf(a[0], product(k))};
                    })[0];
      kb.store(acc, out, {r, c});
    });
    rewriter.replaceOp(op, kb.toTensor(out, outType));
    return success();
  }
};

/// moe.expert_ffn ... combine(%slots, %weights) -> [T, D] as the op without
/// the combine (rows in the dispatched layout) and a moe.combine.
void splitFusedCombine(RewriterBase &rewriter, ExpertFFNOp op) {
  OpBuilder::InsertionGuard guard(rewriter);
  rewriter.setInsertionPoint(op);
  auto rowType = op.getRowToken().getType();
  int64_t d = op.getResult().getType().getDimSize(1);
  SmallVector<int64_t> rowsShape(rowType.getShape());
  rowsShape.push_back(d);
  auto rows = ExpertFFNOp::create(
      rewriter, op.getLoc(), RankedTensorType::get(rowsShape, rewriter.getF32Type()),
      op.getInput(), op.getRowToken(), op.getCounts(), op.getW1(), op.getW3(),
      op.getW2(), op.getB1(), op.getB2(), op.getSharedW1(), op.getSharedW3(),
      op.getSharedW2(), /*token_slot=*/Value(), /*combine_weights=*/Value(),
      op.getFfn());
  rewriter.replaceOpWithNewOp<CombineOp>(op, op.getResult().getType(),
                                         rows.getResult(), op.getTokenSlot(),
                                         op.getCombineWeights(), Value());
}

struct ConvertMoeToParallelLoopsPass
    : public mlir::moe::impl::ConvertMoeToParallelLoopsPassBase<
          ConvertMoeToParallelLoopsPass> {
  using ConvertMoeToParallelLoopsPassBase::ConvertMoeToParallelLoopsPassBase;
  void runOnOperation() override {
    if (tileRows < 1 || tileRows > 64) {
      getOperation().emitError("convert-moe-to-parallel-loops: tile-rows must "
                               "be in [1, 64], got ")
          << tileRows.getValue();
      return signalPassFailure();
    }
    // A combine fused into moe.expert_ffn becomes a moe.combine of the
    // op's rows again: these loops compute the rows in one kernel and
    // combine them in the next.
    IRRewriter rewriter(&getContext());
    getOperation()->walk([&](ExpertFFNOp op) {
      if (op.hasFusedCombine())
        splitFusedCombine(rewriter, op);
    });
    RewritePatternSet patterns(&getContext());
    populateMoeToParallelLoopsPatterns(patterns, tileRows, sharedTiles);
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

void mlir::moe::populateMoeToParallelLoopsPatterns(RewritePatternSet &patterns,
                                                    int64_t tileRows,
                                                    bool sharedTiles) {
  patterns.add<LowerRoute, LowerDispatch, LowerCombine, LowerExpertStats,
               LowerMatmul>(patterns.getContext());
  patterns.add<LowerExpertFFN>(patterns.getContext(), tileRows, sharedTiles);
}
