//===- ResolveWorkgroupBarriers.cpp - barrier placeholders to gpu.barrier ===//
//
// Implements `moe-resolve-workgroup-barriers`, the second half of the
// shared-memory kernels of `convert-moe-to-parallel-loops{shared-tiles}`:
// those kernels exist before bufferization, whose ownership-based
// deallocation rejects gpu.barrier (no declared memory effects) and
// workgroup attributions, so they synchronise through calls to a private
// declaration and address their tiles through private workgroup globals.
// After gpu-kernel-outlining has copied both into each kernel's gpu.module,
// the calls become gpu.barrier there, and the host's copies, which host
// code cannot lower, go.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/SymbolTable.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOERESOLVEWORKGROUPBARRIERSPASS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

constexpr StringLiteral kBarrierFn = "__moe_workgroup_barrier";

bool isWorkgroupGlobal(memref::GlobalOp global) {
  auto space = dyn_cast_or_null<gpu::AddressSpaceAttr>(
      global.getType().getMemorySpace());
  return space && space.getValue() == gpu::AddressSpace::Workgroup;
}

struct MoeResolveWorkgroupBarriersPass
    : public mlir::moe::impl::MoeResolveWorkgroupBarriersPassBase<
          MoeResolveWorkgroupBarriersPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Device side: every placeholder call becomes a barrier.
    WalkResult result = module.walk([&](func::CallOp call) {
      if (call.getCallee() != kBarrierFn)
        return WalkResult::advance();
      if (!call->getParentOfType<gpu::GPUModuleOp>()) {
        call.emitError("moe-resolve-workgroup-barriers: a workgroup barrier "
                       "outside a kernel (run gpu-kernel-outlining first)");
        return WalkResult::interrupt();
      }
      OpBuilder b(call);
      gpu::BarrierOp::create(b, call.getLoc());
      call.erase();
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      return signalPassFailure();
    // Declarations: the placeholder everywhere, the workgroup globals on
    // the host (kernels keep theirs).
    SmallVector<Operation *> dead;
    module.walk([&](Operation *op) {
      if (auto fn = dyn_cast<func::FuncOp>(op)) {
        if (fn.getSymName() == kBarrierFn && fn.isDeclaration())
          dead.push_back(fn);
      } else if (auto global = dyn_cast<memref::GlobalOp>(op)) {
        if (isWorkgroupGlobal(global) &&
            !global->getParentOfType<gpu::GPUModuleOp>()) {
          if (!SymbolTable::symbolKnownUseEmpty(global, module)) {
            global.emitError("moe-resolve-workgroup-barriers: a workgroup "
                             "global still used by host code");
            return signalPassFailure();
          }
          dead.push_back(global);
        }
      }
    });
    for (Operation *op : dead)
      op->erase();
  }
};

} // namespace
