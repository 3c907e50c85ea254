//===- GPUPipeline.cpp - moe to LLVM plus NVIDIA / AMD device code ---------===//
//
// Shaped like upstream GPUToNVVMPipeline.cpp, with the moe front stages and
// a hand-built ROCDL counterpart (MLIR 22 has no ROCDL pipeline):
//
//   1-2. moe ops -> parallel loops over buffers, bufferized (Stages.h);
//   3.   every parallel loop (moe kernels and linalg alike) tiled by
//        `block-size`, mapped to blocks x threads and outlined into a
//        gpu.module, with the expert FFN's shared-memory kernels
//        (`shared-tiles`), whose barrier placeholders become gpu.barrier;
//   4.   kernels: device math expanded (no vendor library), then NVVM/ROCDL;
//   5.   host: buffers through the runtime's device allocator
//        (finalize-memref-to-llvm with generic allocation functions),
//        launches through the mgpu* ABI (gpu-to-llvm), device code
//        serialized into the module (gpu-module-to-binary).
//
//===----------------------------------------------------------------------===//

#include "moe/Pipelines/Pipelines.h"
#include "Stages.h"

#include "llvm/ADT/Twine.h"

using namespace mlir;

namespace {

std::string kernelStages(int64_t blockSize) {
  return (llvm::Twine("func.func(convert-linalg-to-parallel-loops,"
                      "canonicalize,scf-parallel-loop-tiling{"
                      "parallel-loop-tile-sizes=") +
          llvm::Twine(blockSize) +
          " no-min-max-bounds=true},gpu-map-parallel-loops,"
          "convert-parallel-loops-to-gpu),lower-affine,gpu-kernel-outlining,"
                      "moe-resolve-workgroup-barriers,")
      .str();
}

std::string hostStages(StringRef format, StringRef toolkit) {
  std::string binary = ("gpu-module-to-binary{format=" + format).str();
  if (!toolkit.empty())
    binary += (" toolkit=" + toolkit).str();
  binary += "},";
  return "convert-scf-to-cf,expand-strided-metadata,lower-affine,"
         "finalize-memref-to-llvm{use-generic-functions=true},"
         "gpu-to-llvm," +
         binary +
         "convert-math-to-llvm,convert-math-to-libm,convert-to-llvm,"
         "canonicalize,cse,reconcile-unrealized-casts";
}

} // namespace

void mlir::moe::buildMoeLowerToNVVMPipeline(
    OpPassManager &pm, const MoeNVVMPipelineOptions &options) {
  std::string stages = detail::bufferizedStages(
      /*fuseExperts=*/true, /*parallelLoops=*/true, options.exportEntryPoints,
      options.tileRows, options.sharedTiles, /*foldSharedExperts=*/false);
  stages += kernelStages(options.blockSize);
  stages += (llvm::Twine("nvvm-attach-target{chip=") + options.chip +
             " features=" + options.features +
             " O=" + llvm::Twine(options.optLevel) + "},")
                .str();
  stages += "gpu.module(moe-expand-device-math{target=nvvm},convert-scf-to-cf,"
            "convert-gpu-to-nvvm,canonicalize,cse,reconcile-unrealized-casts),";
  stages += hostStages(options.format, options.toolkit);
  detail::addStages(pm, stages, "moe-lower-to-nvvm-pipeline");
}

void mlir::moe::buildMoeLowerToROCDLPipeline(
    OpPassManager &pm, const MoeROCDLPipelineOptions &options) {
  std::string stages = detail::bufferizedStages(
      /*fuseExperts=*/true, /*parallelLoops=*/true, options.exportEntryPoints,
      options.tileRows, options.sharedTiles, /*foldSharedExperts=*/false);
  stages += kernelStages(options.blockSize);
  std::string attach = "rocdl-attach-target{chip=" + options.chip;
  if (!options.features.empty())
    attach += " features=" + options.features;
  attach += " O=" + std::to_string(options.optLevel) + "},";
  stages += attach;
  stages += "gpu.module(moe-expand-device-math{target=rocdl},"
            "convert-scf-to-cf,convert-gpu-to-rocdl{chipset=" +
            options.chip +
            "},canonicalize,cse,reconcile-unrealized-casts),";
  stages += hostStages(options.format, options.toolkit);
  detail::addStages(pm, stages, "moe-lower-to-rocdl-pipeline");
}

void mlir::moe::registerMoePipelines() {
  PassPipelineRegistration<MoeCPUPipelineOptions>(
      "moe-lower-to-cpu-pipeline",
      "Lower moe (and tensor/linalg/arith/math) to the LLVM dialect for CPU "
      "model libraries",
      buildMoeLowerToCPUPipeline);
  PassPipelineRegistration<MoeNVVMPipelineOptions>(
      "moe-lower-to-nvvm-pipeline",
      "Lower moe (and tensor/linalg/arith/math) to host LLVM dialect plus "
      "embedded NVVM device code (PTX or cubin) for CUDA model libraries",
      buildMoeLowerToNVVMPipeline);
  PassPipelineRegistration<MoeROCDLPipelineOptions>(
      "moe-lower-to-rocdl-pipeline",
      "Lower moe (and tensor/linalg/arith/math) to host LLVM dialect plus "
      "embedded ROCDL device code (GCN assembly or HSACO) for ROCm model "
      "libraries",
      buildMoeLowerToROCDLPipeline);
}
