//===- RaiseExpertLoops.cpp - per-expert loops to moe.experts -------------===//
//
// Horizontal fusion of traced expert loops, the first step of
// `moe-fuse-experts`. A frontend that traces "for each expert: take its
// rows, run its FFN, put the rows back" produces
//
//   %r:2 = scf.for %e = 0 to E step 1 iter_args(%acc = %zeros, %off = 0) {
//     %n   = <index_cast / clamps of> tensor.extract %counts[%e]
//     %seg = tensor.extract_slice %dispatched[%off, 0] [%n, Din] [1, 1]
//     %w_i = tensor.extract_slice %W_i[%e, 0, ..] [1, ..] [1, ..]   (rank-reducing)
//     %out = <pure tensor ops on %seg, %w_i and constants>
//     %acc2 = tensor.insert_slice %out into %acc[%off, 0] [%n, Dout] [1, 1]
//     scf.yield %acc2, %off + %n
//   }
//
// with `%zeros` a zero-filled tensor: E separate computations over ragged
// segments. It becomes one `moe.experts` whose body is the loop body's
// computation, which the rest of the pass can fuse vertically (and the
// lowerings run as one grouped computation). Anything else is left alone.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/Transforms/Transforms.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace mlir::moe;

namespace {

bool isConstantIndex(Value v, int64_t expected) {
  APInt value;
  return matchPattern(v, m_ConstantInt(&value)) &&
         value.getSExtValue() == expected;
}

bool isConstantIndex(OpFoldResult ofr, int64_t expected) {
  std::optional<int64_t> c = getConstantIntValue(ofr);
  return c && *c == expected;
}

/// True if `v` is a tensor filled with zeros (linalg.fill of a zero
/// constant, or a zero constant tensor).
bool isZeroTensor(Value v) {
  if (auto fill = v.getDefiningOp<linalg::FillOp>())
    return matchPattern(fill.getInputs()[0], m_AnyZeroFloat()) ||
           matchPattern(fill.getInputs()[0], m_Zero());
  return matchPattern(v, m_AnyZeroFloat());
}

/// What one matched loop is made of.
struct ExpertLoop {
  scf::ForOp loop;
  Value dispatched, counts;
  tensor::ExtractSliceOp segment;
  tensor::InsertSliceOp insert;
  SmallVector<tensor::ExtractSliceOp> weightSlices;
  SmallVector<Operation *> compute; // in block order
  llvm::SmallPtrSet<Operation *, 8> countOps; // computing the row count
  Value rowCount;
};

/// `n`'s computation inside the body: arith ops over one tensor.extract of
/// a loop-invariant i32 counts tensor [E] at the induction variable.
LogicalResult matchRowCount(ExpertLoop &m, Value n, int64_t numExperts) {
  Block *body = m.loop.getBody();
  SmallVector<Value> work = {n};
  while (!work.empty()) {
    Value v = work.pop_back_val();
    Operation *def = v.getDefiningOp();
    if (!def || def->getBlock() != body)
      continue; // loop-invariant or a block argument
    if (!m.countOps.insert(def).second)
      continue;
    if (auto extract = dyn_cast<tensor::ExtractOp>(def)) {
      auto type = cast<RankedTensorType>(extract.getTensor().getType());
      if (m.counts || extract.getIndices().size() != 1 ||
          extract.getIndices()[0] != m.loop.getInductionVar() ||
          !type.getElementType().isInteger(32) ||
          type.getShape() != ArrayRef<int64_t>{numExperts} ||
          !m.loop.isDefinedOutsideOfLoop(extract.getTensor()))
        return failure();
      m.counts = extract.getTensor();
      continue;
    }
    if (!isa<arith::ArithDialect>(def->getDialect()))
      return failure();
    for (Value operand : def->getOperands())
      if (operand != m.loop.getRegionIterArgs()[1])
        work.push_back(operand);
  }
  return success(static_cast<bool>(m.counts));
}

FailureOr<ExpertLoop> matchExpertLoop(scf::ForOp loop) {
  ExpertLoop m;
  m.loop = loop;
  APInt ub;
  if (!isConstantIndex(loop.getLowerBound(), 0) ||
      !isConstantIndex(loop.getStep(), 1) ||
      !matchPattern(loop.getUpperBound(), m_ConstantInt(&ub)) ||
      loop.getNumRegionIterArgs() != 2 || !loop.getResult(1).use_empty() ||
      !isZeroTensor(loop.getInitArgs()[0]) ||
      !isConstantIndex(loop.getInitArgs()[1], 0))
    return failure();
  int64_t numExperts = ub.getSExtValue();
  Value acc = loop.getRegionIterArgs()[0], offset = loop.getRegionIterArgs()[1];
  auto yield = cast<scf::YieldOp>(loop.getBody()->getTerminator());
  // acc' = insert_slice %out into %acc[%off, 0] [%n, Dout] [1, 1]
  m.insert = yield.getOperand(0).getDefiningOp<tensor::InsertSliceOp>();
  if (!m.insert || m.insert.getDest() != acc ||
      m.insert.getSourceType().getRank() != 2 ||
      !m.insert.getSourceType().isDynamicDim(0) ||
      m.insert.getType().getRank() != 2)
    return failure();
  auto offsets = m.insert.getMixedOffsets();
  auto sizes = m.insert.getMixedSizes();
  if (offsets[0] != OpFoldResult(offset) || !isConstantIndex(offsets[1], 0) ||
      !isa<Value>(sizes[0]) || !m.insert.hasUnitStride())
    return failure();
  m.rowCount = cast<Value>(sizes[0]);
  // off' = off + n
  auto next = yield.getOperand(1).getDefiningOp<arith::AddIOp>();
  if (!next || !((next.getLhs() == offset && next.getRhs() == m.rowCount) ||
                 (next.getRhs() == offset && next.getLhs() == m.rowCount)))
    return failure();
  if (failed(matchRowCount(m, m.rowCount, numExperts)))
    return failure();

  // Classify every other op of the body.
  for (Operation &op : loop.getBody()->without_terminator()) {
    if (m.countOps.contains(&op) || &op == m.insert.getOperation() ||
        &op == next.getOperation())
      continue;
    if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op)) {
      auto srcOffsets = slice.getMixedOffsets();
      if (!slice.hasUnitStride() ||
          !loop.isDefinedOutsideOfLoop(slice.getSource()))
        return failure();
      if (srcOffsets[0] == OpFoldResult(offset)) {
        // The segment: rows [off, off + n) of the dispatched tensor.
        auto segSizes = slice.getMixedSizes();
        if (m.segment || slice.getSourceType().getRank() != 2 ||
            segSizes[0] != OpFoldResult(m.rowCount) ||
            !isConstantIndex(srcOffsets[1], 0) ||
            !isConstantIndex(segSizes[1],
                             slice.getSourceType().getDimSize(1)))
          return failure();
        m.segment = slice;
        m.dispatched = slice.getSource();
        continue;
      }
      if (srcOffsets[0] == OpFoldResult(loop.getInductionVar())) {
        // Expert e's weight: [e, 0, ...] x [1, full...], leading dim dropped.
        auto srcType = slice.getSourceType();
        if (srcType.getDimSize(0) != numExperts ||
            slice.getType().getShape() != srcType.getShape().drop_front())
          return failure();
        for (int64_t i = 1; i < srcType.getRank(); ++i)
          if (!isConstantIndex(srcOffsets[i], 0))
            return failure();
        m.weightSlices.push_back(slice);
        continue;
      }
      return failure();
    }
    // The expert computation: pure, no regions reaching outside, operands
    // from inside the computation, the slices, constants or the row count.
    if (!isMemoryEffectFree(&op))
      return failure();
    m.compute.push_back(&op);
  }
  if (!m.segment)
    return failure();
  // The computation may not read loop state other than through the slices
  // and the row count (which the body recovers from the segment's size).
  for (Operation *op : m.compute) {
    WalkResult escapes = op->walk([&](Operation *nested) {
      for (Value v : nested->getOperands()) {
        if (v == loop.getInductionVar() || v == offset || v == acc)
          return WalkResult::interrupt();
        Operation *def = v.getDefiningOp();
        if (def && m.countOps.contains(def) && v != m.rowCount)
          return WalkResult::interrupt();
        if (!def || loop->isAncestor(def))
          continue;
        if (!def->hasTrait<OpTrait::ConstantLike>())
          return WalkResult::interrupt(); // captured from above
      }
      return WalkResult::advance();
    });
    if (escapes.wasInterrupted())
      return failure();
  }
  return m;
}

/// Replaces the loop by moe.experts over the same segments and weights.
void raise(RewriterBase &rewriter, ExpertLoop &m) {
  Location loc = m.loop.getLoc();
  rewriter.setInsertionPoint(m.loop);
  SmallVector<Value> weights;
  for (tensor::ExtractSliceOp slice : m.weightSlices)
    weights.push_back(slice.getSource());
  auto resultType = cast<RankedTensorType>(m.loop.getResult(0).getType());
  auto experts = ExpertsOp::create(rewriter, loc, resultType, m.dispatched,
                                   m.counts, weights);
  SmallVector<Type> argTypes = {m.segment.getType()};
  SmallVector<Location> argLocs = {loc};
  for (tensor::ExtractSliceOp slice : m.weightSlices) {
    argTypes.push_back(slice.getType());
    argLocs.push_back(slice.getLoc());
  }
  Block *body = rewriter.createBlock(&experts.getBody(),
                                     experts.getBody().end(), argTypes, argLocs);
  IRMapping map;
  map.map(m.segment.getResult(), body->getArgument(0));
  for (auto [i, slice] : llvm::enumerate(m.weightSlices))
    map.map(slice.getResult(), body->getArgument(i + 1));
  rewriter.setInsertionPointToStart(body);
  // The row count is the segment's size inside the body.
  map.map(m.rowCount,
          tensor::DimOp::create(rewriter, loc, body->getArgument(0), 0));
  // Constants the computation captured from above are cloned in.
  for (Operation *op : m.compute)
    op->walk([&](Operation *nested) {
      for (Value v : nested->getOperands())
        if (Operation *def = v.getDefiningOp())
          if (!m.loop->isAncestor(def) && !map.contains(v))
            map.map(v, rewriter.clone(*def)->getResult(0));
    });
  for (Operation *op : m.compute)
    rewriter.clone(*op, map);
  YieldOp::create(rewriter, loc, map.lookup(m.insert.getSource()));
  rewriter.replaceAllUsesWith(m.loop.getResult(0), experts.getResult());
  rewriter.eraseOp(m.loop);
}

} // namespace

int64_t mlir::moe::raiseExpertLoops(RewriterBase &rewriter, Operation *root) {
  SmallVector<scf::ForOp> loops;
  root->walk([&](scf::ForOp loop) { loops.push_back(loop); });
  int64_t raised = 0;
  for (scf::ForOp loop : loops) {
    FailureOr<ExpertLoop> m = matchExpertLoop(loop);
    if (failed(m))
      continue;
    raise(rewriter, *m);
    ++raised;
  }
  return raised;
}
