//===- Pipelines.h - moe lowering pipelines ----------------------*- C++ -*-===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace mlir::moe {

/// Options of `moe-lower-to-cpu-pipeline`.
struct MoeCPUPipelineOptions
    : public PassPipelineOptions<MoeCPUPipelineOptions> {
  PassOptions::Option<bool> exportEntryPoints{
      *this, "export-entry-points",
      llvm::cl::desc("Give public functions a C interface "
                     "(_mlir_ciface_<name>) for model libraries"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseExperts{
      *this, "fuse-experts",
      llvm::cl::desc("Fuse token gather and standard expert FFNs into "
                     "moe.expert_ffn (the tiled, multi-threaded CPU kernel)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> foldSharedExperts{
      *this, "fold-shared-experts",
      llvm::cl::desc("With fuse-experts: fold shared experts into the routed "
                     "experts' call as always-selected experts"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseCombine{
      *this, "fuse-combine",
      llvm::cl::desc("With fuse-experts: fuse the gate-weighted combine into "
                     "moe.expert_ffn (no [T*K, D] rows in the program)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> parallelLoops{
      *this, "parallel-loops",
      llvm::cl::desc("Lower routing, dispatch, expert FFN and combine to the "
                     "parallel loops the GPU pipelines map to kernels "
                     "(convert-moe-to-parallel-loops) instead of calls of the "
                     "CPU runtime kernels; runs the GPU kernels' semantics on "
                     "the CPU"),
      llvm::cl::init(false)};
};

/// Options shared by `moe-lower-to-nvvm-pipeline` and
/// `moe-lower-to-rocdl-pipeline`.
template <typename Derived>
struct MoeGPUPipelineOptionsBase : public PassPipelineOptions<Derived> {
  using Base = PassPipelineOptions<Derived>;
  typename Base::template Option<bool> exportEntryPoints{
      *this, "export-entry-points",
      llvm::cl::desc("Give public functions a C interface "
                     "(_mlir_ciface_<name>) for model libraries"),
      llvm::cl::init(true)};
  typename Base::template Option<std::string> format{
      *this, "format",
      llvm::cl::desc("What gpu-module-to-binary embeds: isa (PTX / GCN "
                     "text; no toolkit needed), bin (cubin / HSACO) or "
                     "fatbin"),
      llvm::cl::init("isa")};
  typename Base::template Option<int64_t> blockSize{
      *this, "block-size",
      llvm::cl::desc("Threads per block of every parallel-loop kernel"),
      llvm::cl::init(256)};
  typename Base::template Option<int64_t> tileRows{
      *this, "tile-rows",
      llvm::cl::desc("Rows of an expert-FFN tile (each weight element loaded "
                     "serves this many rows)"),
      llvm::cl::init(16)};
  typename Base::template Option<bool> sharedTiles{
      *this, "shared-tiles",
      llvm::cl::desc("Expert FFN products as shared-memory tiled grouped "
                     "GEMM kernels (64x64 tiles); false: one thread per "
                     "output column of a `tile-rows` row tile"),
      llvm::cl::init(true)};
  typename Base::template Option<int64_t> optLevel{
      *this, "opt-level",
      llvm::cl::desc("Optimisation level of the device code (0-3)"),
      llvm::cl::init(3)};
  typename Base::template Option<std::string> toolkit{
      *this, "toolkit",
      llvm::cl::desc("CUDA / ROCm toolkit directory for gpu-module-to-binary "
                     "(ptxas, fatbinary; ROCm: llvm/bin/ld.lld); empty: the "
                     "serializer's default"),
      llvm::cl::init("")};
};

/// Options of `moe-lower-to-nvvm-pipeline`.
struct MoeNVVMPipelineOptions
    : public MoeGPUPipelineOptionsBase<MoeNVVMPipelineOptions> {
  Option<std::string> chip{*this, "chip",
                           llvm::cl::desc("NVIDIA GPU architecture (sm_80 "
                                          "PTX also runs on sm_90 through the "
                                          "driver's JIT)"),
                           llvm::cl::init("sm_80")};
  Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX features (the PTX ISA version)"),
      llvm::cl::init("+ptx80")};
};

/// Options of `moe-lower-to-rocdl-pipeline`.
struct MoeROCDLPipelineOptions
    : public MoeGPUPipelineOptionsBase<MoeROCDLPipelineOptions> {
  Option<std::string> chip{*this, "chip",
                           llvm::cl::desc("AMD GPU architecture (gfx90a, "
                                          "gfx942, ...)"),
                           llvm::cl::init("gfx90a")};
  Option<std::string> features{*this, "features",
                               llvm::cl::desc("AMDGPU target features"),
                               llvm::cl::init("")};
};

/// moe to host LLVM dialect plus an embedded NVIDIA device binary
/// (gpu.binary): the parallel-loop kernels mapped to blocks of `block-size`
/// threads, every buffer allocated through the runtime's device allocator
/// (`_mlir_memref_to_llvm_alloc`), kernels launched through the `mgpu*` ABI.
void buildMoeLowerToNVVMPipeline(OpPassManager &pm,
                                 const MoeNVVMPipelineOptions &options);

/// The same for AMD GPUs (ROCDL, HSACO).
void buildMoeLowerToROCDLPipeline(OpPassManager &pm,
                                  const MoeROCDLPipelineOptions &options);

/// moe dialect (and ordinary tensor/linalg/arith/math ops) to the LLVM
/// dialect for the CPU: decompose, lower experts to loops and data movement
/// to runtime kernel calls, bufferize, lower to LLVM.
void buildMoeLowerToCPUPipeline(OpPassManager &pm,
                                const MoeCPUPipelineOptions &options);

/// Registers `moe-lower-to-{cpu,nvvm,rocdl}-pipeline`.
void registerMoePipelines();

} // namespace mlir::moe

#endif // MOE_PIPELINES_PIPELINES_H
