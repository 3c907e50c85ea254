//===- AttrParsingTest.cpp - moe attributes from text and back ------------===//
//
// Parses attributes and whole modules from strings, checks the parsed fields,
// the defaults, the printed form and the verifier messages.
//
//===----------------------------------------------------------------------===//

#include "moe/Dialect/Moe/IR/MoeOps.h"
#include "moe/Dialect/Moe/Transforms/Transforms.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::moe;

namespace {

class MoeAttrTest : public ::testing::Test {
protected:
  MoeAttrTest() {
    context.loadDialect<MoeDialect, func::FuncDialect>();
    handler = std::make_unique<ScopedDiagnosticHandler>(
        &context, [this](Diagnostic &diag) {
          diagnostics += diag.str() + "\n";
          return success();
        });
  }

  Attribute parse(StringRef text) { return parseAttribute(text, &context); }

  std::string print(Attribute attr) {
    std::string s;
    llvm::raw_string_ostream os(s);
    attr.print(os);
    return s;
  }

  MLIRContext context;
  std::unique_ptr<ScopedDiagnosticHandler> handler;
  std::string diagnostics;
};

TEST_F(MoeAttrTest, RoutingDefaults) {
  auto r = dyn_cast_or_null<RoutingAttr>(parse("#moe.routing<k = 2>"));
  ASSERT_TRUE(r) << diagnostics;
  EXPECT_EQ(r.getPolicy(), RoutingPolicy::TopK);
  EXPECT_EQ(r.getK(), 2);
  EXPECT_EQ(r.getScore(), ScoreFunction::Softmax);
  EXPECT_EQ(r.getNormalize(), Normalization::None);
  EXPECT_EQ(r.getTieBreak(), TieBreak::LowerIndex);
  EXPECT_EQ(double(r.getScaling()), 1.0);
  EXPECT_EQ(r.getNullExperts(), 0);
  // Defaults are elided when printing.
  EXPECT_EQ(print(r), "#moe.routing<k = 2>");
}

TEST_F(MoeAttrTest, DeepSeekRoutingRoundTrips) {
  StringRef text = "#moe.routing<policy = grouped_top_k, k = 6, score = sigmoid, "
                   "normalize = selected, scaling = 2.5, num_groups = 8, "
                   "top_groups = 3, epsilon = 1.0e-20>";
  auto r = dyn_cast_or_null<RoutingAttr>(parse(text));
  ASSERT_TRUE(r) << diagnostics;
  EXPECT_EQ(r.getPolicy(), RoutingPolicy::GroupedTopK);
  EXPECT_EQ(r.getScore(), ScoreFunction::Sigmoid);
  EXPECT_EQ(double(r.getScaling()), 2.5);
  EXPECT_EQ(double(r.getEpsilon()), 1.0e-20);
  EXPECT_EQ(r.getNumGroups(), 8);
  EXPECT_EQ(r.getTopGroups(), 3);
  EXPECT_EQ(print(r), text);
  // The printed form parses back to the same (uniqued) attribute.
  EXPECT_EQ(parse(print(r)), r);
}

TEST_F(MoeAttrTest, IntegerLiteralForDouble) {
  auto r = dyn_cast_or_null<RoutingAttr>(parse("#moe.routing<k = 1, scaling = 2>"));
  ASSERT_TRUE(r) << diagnostics;
  EXPECT_EQ(double(r.getScaling()), 2.0);
  EXPECT_EQ(print(r), "#moe.routing<k = 1, scaling = 2.0>");
}

TEST_F(MoeAttrTest, RoutingVerifierMessages) {
  EXPECT_FALSE(parse("#moe.routing<policy = top_p, k = 4, top_p = 1.5>"));
  EXPECT_NE(diagnostics.find("top_p must be in (0, 1]"), std::string::npos)
      << diagnostics;
  diagnostics.clear();
  EXPECT_FALSE(parse("#moe.routing<k = 0>"));
  EXPECT_NE(diagnostics.find("k must be at least 1"), std::string::npos);
}

TEST_F(MoeAttrTest, CapacityAndFFN) {
  auto c = dyn_cast_or_null<CapacityAttr>(
      parse("#moe.capacity<factor = 1.25, order = choice_major, "
            "on_drop = pass_through>"));
  ASSERT_TRUE(c) << diagnostics;
  EXPECT_EQ(c.getOrder(), QueueOrder::ChoiceMajor);
  EXPECT_EQ(c.getOnDrop(), DropPolicy::PassThrough);
  EXPECT_EQ(c.computeCapacity(512, 1, 16), 40);

  EXPECT_FALSE(parse("#moe.capacity<factor = 0.0>"));
  EXPECT_NE(diagnostics.find("capacity factor must be positive"),
            std::string::npos);

  auto f = dyn_cast_or_null<FFNAttr>(
      parse("#moe.ffn<kind = glu, gate_up = interleaved, alpha = 1.702, "
            "up_shift = 1.0, limit = 7.0>"));
  ASSERT_TRUE(f) << diagnostics;
  EXPECT_EQ(f.getGateUp(), GateUpLayout::Interleaved);
  EXPECT_EQ(double(f.getAlpha()), 1.702);
  EXPECT_EQ(f.getActivation(), Activation::SiLU);
}

TEST_F(MoeAttrTest, DecomposeInfersPaddedCapacity) {
  // A static token count lets decomposition compute C = ceil(1.25*64*1/16) = 5.
  const char *ir = R"MLIR(
    func.func @f(%x: tensor<64x8xf32>, %wg: tensor<8x16xf32>,
                 %w1: tensor<16x8x32xf32>, %w2: tensor<16x32x8xf32>) -> tensor<64x8xf32> {
      %y = moe.layer %x : tensor<64x8xf32> router(%wg : tensor<8x16xf32>)
             w1(%w1 : tensor<16x8x32xf32>) w2(%w2 : tensor<16x32x8xf32>)
             {ffn = #moe.ffn<kind = mlp, activation = relu>,
              routing = #moe.routing<k = 1>,
              capacity = #moe.capacity<factor = 1.25, on_drop = pass_through>}
             -> tensor<64x8xf32>
      return %y : tensor<64x8xf32>
    })MLIR";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(ir, &context);
  ASSERT_TRUE(module) << diagnostics;
  LayerOp layer;
  module->walk([&](LayerOp op) { layer = op; });
  ASSERT_TRUE(layer);
  IRRewriter rewriter(&context);
  ASSERT_TRUE(succeeded(decomposeLayer(rewriter, layer)));
  DispatchOp dispatch;
  CombineOp combine;
  module->walk([&](DispatchOp op) { dispatch = op; });
  module->walk([&](CombineOp op) { combine = op; });
  ASSERT_TRUE(dispatch && combine);
  EXPECT_EQ(dispatch.getDispatched().getType().getShape(),
            ArrayRef<int64_t>({16, 5, 8}));
  // Switch semantics: dropped tokens pass through.
  EXPECT_TRUE(combine.getPassthrough());
  EXPECT_TRUE(succeeded(mlir::verify(*module)));
}

} // namespace
