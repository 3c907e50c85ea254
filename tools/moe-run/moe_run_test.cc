//===- moe_run_test.cc - end-to-end tests of the moe-run tool -------------===//

#include <sys/wait.h>

#include "test_util.h"

#ifndef MOE_RUN_PATH
#error "MOE_RUN_PATH must name the moe-run executable"
#endif

using namespace moert_test;

namespace {

struct RunResult {
  int status = -1;
  std::string output; // stdout and stderr
};

std::string Quote(const std::string &s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

RunResult RunTool(const std::vector<std::string> &args) {
  std::string cmd = Quote(MOE_RUN_PATH);
  for (const std::string &a : args)
    cmd += " " + Quote(a);
  cmd += " 2>&1";
  RunResult r;
  FILE *p = popen(cmd.c_str(), "r");
  if (!p)
    return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    r.output.append(buf, n);
  int status = pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool Contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

class MoeRunTest : public ::testing::Test {
protected:
  void SetUp() override {
    TensorPtr x(F32({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}));
    x_ = dir_.File("x.npy");
    ASSERT_TRUE(IsOk(moert_npy_write(x_.c_str(), x.get())));
    // w = {10, 20, 30, 40} as bf16 in a safetensors file.
    weights_ = dir_.File("w.safetensors");
    WriteFile(weights_,
              Safetensors(R"({"w": {"dtype": "BF16", "shape": [4], )"
                          R"("data_offsets": [0, 8]}})",
                          Bytes<uint16_t>({0x4120, 0x41a0, 0x41f0, 0x4220})));
  }

  TempDir dir_;
  std::string x_, weights_;
};

} // namespace

TEST_F(MoeRunTest, Help) {
  RunResult r = RunTool({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(Contains(r.output, "usage: moe-run")) << r.output;
}

TEST_F(MoeRunTest, UsageErrors) {
  RunResult r = RunTool({});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "moe-run: error: --model is required"))
      << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--frobnicate"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "unknown option '--frobnicate'")) << r.output;
  r = RunTool({"--model"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--model needs a value")) << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--input", "x"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "expects NAME=PATH")) << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--time", "0"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--time expects a positive integer"))
      << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--output", "y=a.npy",
           "--output-dir", "d"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "cannot be combined")) << r.output;
}

TEST_F(MoeRunTest, List) {
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--weights", weights_,
                     "--list"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "model 'fake'")) << r.output;
  EXPECT_TRUE(Contains(r.output, "entry add")) << r.output;
  EXPECT_TRUE(Contains(r.output, "entry pair")) << r.output;
  EXPECT_TRUE(Contains(r.output, "arg    x  f32  [?, 4]")) << r.output;
  EXPECT_TRUE(Contains(r.output, "arg    w  f32  [4]  (from weights)"))
      << r.output;
  EXPECT_TRUE(Contains(r.output, "result y  f32  [?, 4]")) << r.output;
  EXPECT_TRUE(Contains(r.output, "result c  i64  [2]")) << r.output;
}

TEST_F(MoeRunTest, RunsWithWeightsAndWritesOutputs) {
  std::string y = dir_.File("y.npy");
  std::string stats = dir_.File("stats.json");
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                     "--weights", weights_, "--input", "x=" + x_, "--output",
                     "y=" + y, "--stats", stats, "--print"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "y: f32 [2, 4]")) << r.output;
  EXPECT_TRUE(Contains(r.output, "[[11, 22, 33, 44],\n [15, 26, 37, 48]]"))
      << r.output;
  TensorPtr out;
  ASSERT_TRUE(IsOk(moert_npy_read(y.c_str(), out.out())));
  EXPECT_EQ(Values<float>(out.get()),
            (std::vector<float>{11, 22, 33, 44, 15, 26, 37, 48}));
  std::string json = ReadFile(stats);
  EXPECT_TRUE(Contains(json, "\"calls\": 1")) << json;
  EXPECT_TRUE(Contains(json, "\"stats_supported\": true")) << json;
  EXPECT_TRUE(Contains(json, "\"tokens_per_expert\": [2, 4, 0, 2]")) << json;
}

TEST_F(MoeRunTest, OutputDirAndMultipleResults) {
  TensorPtr a(F32({2, 3}, {1, 2, 3, 4, 5, 6}));
  std::string a_path = dir_.File("a.npy");
  ASSERT_TRUE(IsOk(moert_npy_write(a_path.c_str(), a.get())));
  TensorPtr b;
  const int64_t s[] = {2};
  std::vector<int32_t> bv = {10, 20};
  ASSERT_TRUE(IsOk(moert_tensor_create_copy(MOERT_DTYPE_I32, 1, s, bv.data(), 8,
                                            b.out())));
  std::string b_path = dir_.File("b.npy");
  ASSERT_TRUE(IsOk(moert_npy_write(b_path.c_str(), b.get())));
  std::string out_dir = dir_.File("out/nested");
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "pair",
                     "--input", "a=" + a_path, "--input", "b=" + b_path,
                     "--output-dir", out_dir});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "s: f32 [2]")) << r.output;
  EXPECT_TRUE(Contains(r.output, "c: i64 [2]")) << r.output;
  TensorPtr sres, cres;
  ASSERT_TRUE(IsOk(moert_npy_read((out_dir + "/s.npy").c_str(), sres.out())));
  ASSERT_TRUE(IsOk(moert_npy_read((out_dir + "/c.npy").c_str(), cres.out())));
  EXPECT_EQ(Values<float>(sres.get()), (std::vector<float>{16, 35}));
  EXPECT_EQ(Values<int64_t>(cres.get()), (std::vector<int64_t>{2, 30}));
}

TEST_F(MoeRunTest, ConvertsF16Inputs) {
  TensorPtr x(F32({1, 4}, {1, 2, 3, 4}));
  TensorPtr x16;
  ASSERT_TRUE(IsOk(moert_tensor_convert(x.get(), MOERT_DTYPE_F16, x16.out())));
  std::string path = dir_.File("x16.npy");
  ASSERT_TRUE(IsOk(moert_npy_write(path.c_str(), x16.get())));
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                     "--weights", weights_, "--input", "x=" + path, "--print"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "[[11, 22, 33, 44]]")) << r.output;
}

TEST_F(MoeRunTest, Time) {
  std::string stats = dir_.File("stats.json");
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                     "--weights", weights_, "--input", "x=" + x_, "--time",
                     "3", "--stats", stats});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "3 calls after 1 warm-up: mean")) << r.output;
  EXPECT_TRUE(Contains(r.output, "ms, min")) << r.output;
  // Statistics describe the call whose results are written.
  EXPECT_TRUE(Contains(ReadFile(stats), "\"calls\": 1"));
}

TEST_F(MoeRunTest, TimeWithColdCaches) {
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                         "--weights", weights_, "--input", "x=" + x_, "--time",
                         "2", "--cold"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "2 calls after 1 warm-up (cold caches): mean"))
      << r.output;
}

// --compare-model / --compare-weights: both models timed call by call, each
// bound to its own weights, with the ratio of their per-round times.
TEST_F(MoeRunTest, CompareAnotherModelAndOtherWeights) {
  std::string other = dir_.File("w2.safetensors");
  WriteFile(other, Safetensors(R"({"w": {"dtype": "F32", "shape": [4], )"
                               R"("data_offsets": [0, 16]}})",
                               Bytes<float>({1, 2, 3, 4})));
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                         "--weights", weights_, "--input", "x=" + x_, "--time",
                         "4", "--cold", "--compare-model",
                         MOERT_FAKE_MODEL_NOSTATS_PATH, "--compare-weights",
                         other, "--print"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "time: add, 4 calls after 1 warm-up (cold "
                                 "caches): mean"))
      << r.output;
  EXPECT_TRUE(Contains(r.output, "compare time: add, 4 calls after 1 warm-up "
                                 "(cold caches): mean"))
      << r.output;
  EXPECT_TRUE(Contains(r.output, "compare ratio: model / compare per round: "
                                 "median "))
      << r.output;
  EXPECT_TRUE(Contains(r.output, "over 4 rounds")) << r.output;
  // The printed results are the model's own (w = 10, 20, 30, 40).
  EXPECT_TRUE(Contains(r.output, "[[11, 22, 33, 44],")) << r.output;

  // --compare-weights alone: the same library bound to other weights.
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "2",
               "--compare-weights", other});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "over 2 rounds")) << r.output;
}

TEST_F(MoeRunTest, CompareErrors) {
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                         "--weights", weights_, "--input", "x=" + x_,
                         "--compare-model", MOERT_FAKE_MODEL_PATH});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--compare-model, --compare-weights and "
                                 "--compare-input need --time"))
      << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--list", "--time", "1",
               "--compare-weights", weights_});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "cannot be combined with --list")) << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "1",
               "--compare-model", dir_.File("libnope.so")});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "libnope.so")) << r.output;
  // The compared model's weights lack 'w': its first call says so.
  std::string empty = dir_.File("empty.safetensors");
  WriteFile(empty, Safetensors(R"({"v": {"dtype": "F32", "shape": [1], )"
                               R"("data_offsets": [0, 4]}})",
                               Bytes<float>({1})));
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "1",
               "--compare-weights", empty});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "compared model: warm-up call")) << r.output;
  EXPECT_TRUE(Contains(r.output, "missing argument 'w'")) << r.output;
}

// --compare-input: the model against itself called with other inputs, in
// the same session.
TEST_F(MoeRunTest, CompareOtherInputsInTheSameSession) {
  TensorPtr x2(F32({2, 4}, {0, 0, 0, 0, 1, 1, 1, 1}));
  std::string x2_path = dir_.File("x2.npy");
  ASSERT_TRUE(IsOk(moert_npy_write(x2_path.c_str(), x2.get())));
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                         "--weights", weights_, "--input", "x=" + x_, "--time",
                         "3", "--compare-input", "x=" + x2_path, "--print"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "compare time: add, 3 calls after 1 warm-up: "
                                 "mean"))
      << r.output;
  EXPECT_TRUE(Contains(r.output, "over 3 rounds")) << r.output;
  // The printed results are the model's own inputs' (x + w).
  EXPECT_TRUE(Contains(r.output, "[[11, 22, 33, 44],")) << r.output;

  // A compared input the entry rejects: the compared warm-up call says so.
  TensorPtr bad(F32({2, 3}, {1, 2, 3, 4, 5, 6}));
  std::string bad_path = dir_.File("bad.npy");
  ASSERT_TRUE(IsOk(moert_npy_write(bad_path.c_str(), bad.get())));
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "1",
               "--compare-input", "x=" + bad_path});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "compared model: warm-up call")) << r.output;
  EXPECT_TRUE(Contains(r.output, "dimension 1 is 3, expected 4")) << r.output;

  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "1",
               "--compare-input", "x=" + dir_.File("nope.npy")});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--compare-input 'x'")) << r.output;

  // Only inputs given with --input can be replaced, once each, and not
  // together with another model or other weights.
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "1",
               "--compare-input", "w=" + x2_path});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--compare-input 'w': no --input 'w' to "
                                 "replace"))
      << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "1",
               "--compare-input", "x=" + x2_path, "--compare-input",
               "x=" + x2_path});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--compare-input 'x' is given twice"))
      << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--time", "1",
               "--compare-input", "x=" + x2_path, "--compare-weights",
               weights_});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--compare-input cannot be combined"))
      << r.output;
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
               weights_, "--input", "x=" + x_, "--compare-input",
               "x=" + x2_path});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "need --time")) << r.output;
}

TEST_F(MoeRunTest, CallErrors) {
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add",
                     "--input", "x=" + x_});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "missing argument 'w'")) << r.output;

  TensorPtr bad(F32({2, 3}, {1, 2, 3, 4, 5, 6}));
  std::string bad_path = dir_.File("bad.npy");
  ASSERT_TRUE(IsOk(moert_npy_write(bad_path.c_str(), bad.get())));
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--weights",
           weights_, "--input", "x=" + bad_path});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "dimension 1 is 3, expected 4")) << r.output;

  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--weights", weights_, "--input",
           "x=" + x_});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "has 4 entry points; choose one with --entry"))
      << r.output;

  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "mul"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "no entry point 'mul'")) << r.output;

  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--input",
           "z=" + x_});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "--input 'z'")) << r.output;
  EXPECT_TRUE(Contains(r.output, "arguments: x, w")) << r.output;

  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--output",
           "q=" + dir_.File("q.npy")});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "results: y")) << r.output;

  std::string missing = dir_.File("missing.npy");
  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--entry", "add", "--input",
           "x=" + missing});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, missing)) << r.output;

  r = RunTool({"--model", dir_.File("libnope.so")});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "libnope.so")) << r.output;

  r = RunTool({"--model", MOERT_FAKE_MODEL_PATH, "--weights",
           dir_.File("nope.safetensors"), "--list"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(Contains(r.output, "nope.safetensors")) << r.output;
}

TEST_F(MoeRunTest, StatsFromAModelWithoutStats) {
  std::string stats = dir_.File("stats.json");
  RunResult r = RunTool({"--model", MOERT_FAKE_MODEL_NOSTATS_PATH, "--entry",
                     "add", "--weights", weights_, "--input", "x=" + x_,
                     "--stats", stats});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "reports no routing statistics")) << r.output;
  EXPECT_TRUE(Contains(ReadFile(stats), "\"stats_supported\": false"));
}
