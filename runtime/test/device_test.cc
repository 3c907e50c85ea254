//===- device_test.cc - GPU devices and the mgpu* host ABI ----------------===//
//
// What a machine without a GPU driver must get: clear errors, no crashes,
// launches that do nothing, allocation that stays defined. Where a device
// exists, the tests that assume its absence are skipped and one allocation
// round trip runs on it instead.
//
//===----------------------------------------------------------------------===//

#include "fake_model_util.h"

extern "C" {
void *mgpuModuleLoad(void *data, size_t size);
void *mgpuModuleLoadJIT(void *data, int optLevel);
void *mgpuModuleGetFunction(void *module, const char *name);
void *mgpuStreamCreate(void);
void mgpuStreamSynchronize(void *stream);
void mgpuStreamDestroy(void *stream);
void mgpuLaunchKernel(void *function, intptr_t gx, intptr_t gy, intptr_t gz,
                      intptr_t bx, intptr_t by, intptr_t bz, int32_t smem,
                      void *stream, void **params, void **extra,
                      size_t paramsCount);
void *_mlir_memref_to_llvm_alloc(size_t bytes);
void *_mlir_memref_to_llvm_aligned_alloc(size_t alignment, size_t bytes);
void _mlir_memref_to_llvm_free(void *ptr);
}

using namespace moert_test;

namespace {

/// True if a CUDA device is usable here (then the absence tests skip).
bool HaveCuda() {
  moert_status_t s = moert_device_init(MOERT_DEVICE_CUDA);
  moert_status_free(s);
  return s == nullptr;
}

class DeviceTest : public ::testing::Test {
protected:
  void SetUp() override { moert_device_clear_error(); }
  void TearDown() override { moert_device_clear_error(); }
};

} // namespace

TEST_F(DeviceTest, KindNames) {
  EXPECT_EQ(moert_device_kind_from_name("cpu"), MOERT_DEVICE_CPU);
  EXPECT_EQ(moert_device_kind_from_name("cuda"), MOERT_DEVICE_CUDA);
  EXPECT_EQ(moert_device_kind_from_name("rocm"), MOERT_DEVICE_ROCM);
  EXPECT_EQ(moert_device_kind_from_name("tpu"), -1);
  EXPECT_EQ(moert_device_kind_from_name(nullptr), -1);
}

TEST_F(DeviceTest, CpuNeedsNoInit) {
  EXPECT_TRUE(IsOk(moert_device_init(MOERT_DEVICE_CPU)));
  EXPECT_TRUE(IsError(moert_device_init(static_cast<moert_device_kind_t>(7)),
                      MOERT_STATUS_INVALID_ARGUMENT, {"unknown device kind"}));
}

TEST_F(DeviceTest, MissingCudaDriverIsAClearError) {
  if (HaveCuda())
    GTEST_SKIP() << "a CUDA device is present";
  moert_status_t s = moert_device_init(MOERT_DEVICE_CUDA);
  ASSERT_NE(s, nullptr);
  std::string msg = moert_status_message(s);
  EXPECT_EQ(moert_status_code(s), MOERT_STATUS_UNAVAILABLE);
  EXPECT_TRUE(msg.find("libcuda.so.1") != std::string::npos ||
              msg.find("no CUDA device") != std::string::npos)
      << msg;
  moert_status_free(s);
  // The answer is cached and stays the same.
  EXPECT_TRUE(IsError(moert_device_init(MOERT_DEVICE_CUDA),
                      MOERT_STATUS_UNAVAILABLE, {"CUDA"}));
  EXPECT_STREQ(moert_device_name(), "");
}

TEST_F(DeviceTest, MissingHipRuntimeIsAClearError) {
  moert_status_t s = moert_device_init(MOERT_DEVICE_ROCM);
  if (!s)
    GTEST_SKIP() << "a ROCm device is present";
  EXPECT_EQ(moert_status_code(s), MOERT_STATUS_UNAVAILABLE);
  moert_status_free(s);
}

TEST_F(DeviceTest, HostAbiWithoutDeviceDoesNothingHarmful) {
  if (HaveCuda())
    GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(moert_device_alloc(64), nullptr);
  EXPECT_EQ(mgpuModuleGetFunction(nullptr, "kernel"), nullptr);
  void *stream = mgpuStreamCreate();
  mgpuLaunchKernel(nullptr, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr, 0);
  mgpuStreamSynchronize(stream);
  mgpuStreamDestroy(stream);
  // Allocation falls back to zeroed host memory and records why.
  auto *p = static_cast<unsigned char *>(_mlir_memref_to_llvm_alloc(256));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 256; ++i)
    ASSERT_EQ(p[i], 0);
  _mlir_memref_to_llvm_free(p);
  EXPECT_TRUE(IsError(moert_device_status(), MOERT_STATUS_UNAVAILABLE,
                      {"device memory is unavailable"}));
  moert_device_clear_error();
  void *q = _mlir_memref_to_llvm_aligned_alloc(4096, 16);
  ASSERT_NE(q, nullptr);
  _mlir_memref_to_llvm_free(q);
  EXPECT_TRUE(IsError(moert_device_status(), MOERT_STATUS_UNAVAILABLE,
                      {"unsupported buffer alignment 4096"}));
}

TEST_F(DeviceTest, DeviceCodeWithoutDriverIsRecorded) {
  if (HaveCuda())
    GTEST_SKIP() << "a CUDA device is present";
  char ptx[] = ".version 8.0\n.target sm_80\n.address_size 64\n";
  EXPECT_EQ(mgpuModuleLoadJIT(ptx, 3), nullptr);
  EXPECT_TRUE(IsError(moert_device_status(), MOERT_STATUS_UNAVAILABLE,
                      {"CUDA driver is not available"}));
}

TEST_F(DeviceTest, GcnAssemblyIsRejected) {
  char gcn[] = "\t.amdgcn_target \"amdgcn-amd-amdhsa--gfx90a\"\n";
  EXPECT_EQ(mgpuModuleLoadJIT(gcn, 3), nullptr);
  EXPECT_TRUE(IsError(moert_device_status(), MOERT_STATUS_UNAVAILABLE,
                      {"format=bin"}));
}

TEST_F(DeviceTest, CudaModelLibraryWithoutDriverFailsToLoad) {
  if (HaveCuda())
    GTEST_SKIP() << "a CUDA device is present";
  ModelPtr model;
  EXPECT_TRUE(IsError(moert_model_load(MOERT_FAKE_MODEL_CUDA_PATH, &model.m),
                      MOERT_STATUS_UNAVAILABLE,
                      {"model library", "CUDA driver is not available"}));
  EXPECT_EQ(model.m, nullptr);
}

TEST_F(DeviceTest, UnknownTargetIsUnimplemented) {
  ModelPtr model;
  EXPECT_TRUE(IsError(moert_model_load(MOERT_FAKE_MODEL_TPU_PATH, &model.m),
                      MOERT_STATUS_UNIMPLEMENTED, {"targets 'tpu'"}));
}

TEST_F(DeviceTest, ManagedMemoryRoundTripOnDevice) {
  if (!HaveCuda())
    GTEST_SKIP() << "no CUDA device";
  auto *p = static_cast<float *>(moert_device_alloc(1024 * sizeof(float)));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 1024; ++i)
    p[i] = float(i);
  EXPECT_TRUE(IsOk(moert_device_synchronize()));
  EXPECT_EQ(p[1023], 1023.0f);
  moert_device_free(p);
  EXPECT_STRNE(moert_device_name(), "");
}
