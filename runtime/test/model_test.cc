//===- model_test.cc - moert_model_load and description validation --------===//

#include <unistd.h>

#include "fake_model_util.h"

using namespace moert_test;

namespace {
class ModelTest : public FakeModelTest {};
} // namespace

TEST_F(ModelTest, LoadsFakeModel) {
  ModelPtr model;
  ASSERT_TRUE(IsOk(moert_model_load(MOERT_FAKE_MODEL_PATH, &model.m)));
  EXPECT_STREQ(moert_model_name(model.m), "fake");
  EXPECT_STREQ(moert_model_target(model.m), "cpu");
  EXPECT_STREQ(moert_model_path(model.m), MOERT_FAKE_MODEL_PATH);
  EXPECT_EQ(moert_model_has_stats(model.m), 1);
  ASSERT_EQ(moert_model_entry_count(model.m), 4);
  const moert_model_desc *desc = moert_model_description(model.m);
  ASSERT_NE(desc, nullptr);
  EXPECT_EQ(desc->abi_version, static_cast<uint32_t>(MOERT_MODEL_ABI_VERSION));

  int32_t index = -7;
  ASSERT_TRUE(IsOk(moert_model_find_entry(model.m, "pair", &index)));
  EXPECT_EQ(index, 1);
  const moert_entry_desc *pair = moert_model_entry(model.m, index);
  ASSERT_NE(pair, nullptr);
  EXPECT_STREQ(pair->name, "pair");
  ASSERT_EQ(pair->num_args, 2);
  EXPECT_STREQ(pair->args[1].name, "b");
  EXPECT_EQ(pair->args[1].dtype, MOERT_DTYPE_I32);
  EXPECT_EQ(moert_entry_find_arg(pair, "b"), 1);
  EXPECT_EQ(moert_entry_find_arg(pair, "zz"), -1);
  EXPECT_EQ(moert_entry_find_result(pair, "c"), 1);
  EXPECT_EQ(moert_model_entry(model.m, 4), nullptr);
  EXPECT_EQ(moert_model_entry(model.m, -1), nullptr);

  EXPECT_TRUE(IsError(moert_model_find_entry(model.m, "mul", &index),
                      MOERT_STATUS_NOT_FOUND,
                      {"'mul'", "add, pair, dup, ident"}));
  EXPECT_EQ(index, -1);
}

TEST_F(ModelTest, RetainKeepsTheModel) {
  moert_model_t *model;
  ASSERT_TRUE(IsOk(moert_model_load(MOERT_FAKE_MODEL_PATH, &model)));
  moert_model_retain(model);
  moert_model_release(model);
  EXPECT_STREQ(moert_model_name(model), "fake");
  moert_model_release(model);
  moert_model_release(nullptr);
}

TEST_F(ModelTest, MissingFile) {
  moert_model_t *model = reinterpret_cast<moert_model_t *>(0x1);
  EXPECT_TRUE(IsError(moert_model_load("/nonexistent/libm.so", &model),
                      MOERT_STATUS_NOT_FOUND,
                      {"model library '/nonexistent/libm.so'", "cannot open"}));
  EXPECT_EQ(model, nullptr);
  EXPECT_TRUE(IsError(moert_model_load("", &model),
                      MOERT_STATUS_INVALID_ARGUMENT));
  EXPECT_TRUE(IsError(moert_model_load(nullptr, &model),
                      MOERT_STATUS_INVALID_ARGUMENT));
}

TEST_F(ModelTest, NotASharedLibrary) {
  TempDir dir;
  std::string path = dir.File("libjunk.so");
  WriteFile(path, "this is not an ELF file");
  moert_model_t *model;
  EXPECT_TRUE(IsError(moert_model_load(path.c_str(), &model),
                      MOERT_STATUS_UNAVAILABLE,
                      {path, "cannot load the shared library"}));
  EXPECT_TRUE(IsError(moert_model_load(dir.path().c_str(), &model),
                      MOERT_STATUS_INVALID_ARGUMENT, {"not a regular file"}));
}

TEST_F(ModelTest, LibraryWithoutDescribeSymbol) {
  moert_model_t *model;
  EXPECT_TRUE(IsError(moert_model_load(MOERT_FAKE_MODEL_NOSYM_PATH, &model),
                      MOERT_STATUS_NOT_FOUND,
                      {MOERT_FAKE_MODEL_NOSYM_PATH, "moert_model_describe"}));
}

TEST_F(ModelTest, LibraryWithoutStats) {
  ModelPtr model;
  ASSERT_TRUE(IsOk(moert_model_load(MOERT_FAKE_MODEL_NOSTATS_PATH, &model.m)));
  EXPECT_EQ(moert_model_has_stats(model.m), 0);
}

TEST_F(ModelTest, BareNameIsRelativeToTheCurrentDirectory) {
  // "libm.so.6" exists in the system library path but not here: it must not
  // be found by the dynamic loader's search.
  TempDir dir;
  char old_cwd[4096];
  ASSERT_NE(getcwd(old_cwd, sizeof old_cwd), nullptr);
  ASSERT_EQ(chdir(dir.path().c_str()), 0);
  moert_model_t *model;
  EXPECT_TRUE(IsError(moert_model_load("libm.so.6", &model),
                      MOERT_STATUS_NOT_FOUND, {"libm.so.6"}));
  WriteFile(dir.File("libfake.so"), ReadFile(MOERT_FAKE_MODEL_NOSTATS_PATH));
  moert_status_t s = moert_model_load("libfake.so", &model);
  ASSERT_EQ(chdir(old_cwd), 0);
  ASSERT_TRUE(IsOk(s));
  EXPECT_STREQ(moert_model_name(model), "fake");
  moert_model_release(model);
}

struct BadDescription {
  int variant;
  moert_status_code_t code;
  std::vector<std::string> parts;
};

class BadDescriptionTest : public FakeModelTest,
                           public ::testing::WithParamInterface<BadDescription> {
};

TEST_P(BadDescriptionTest, IsRejectedWithAClearMessage) {
  const BadDescription &p = GetParam();
  SetFakeVariant(p.variant);
  moert_model_t *model = reinterpret_cast<moert_model_t *>(0x1);
  moert_status_t s = moert_model_load(MOERT_FAKE_MODEL_PATH, &model);
  ASSERT_NE(s, nullptr);
  std::string msg = moert_status_message(s);
  EXPECT_EQ(moert_status_code(s), p.code) << msg;
  EXPECT_NE(msg.find(MOERT_FAKE_MODEL_PATH), std::string::npos) << msg;
  for (const std::string &part : p.parts)
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  moert_status_free(s);
  EXPECT_EQ(model, nullptr);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, BadDescriptionTest,
    ::testing::Values(
        BadDescription{kFakeBadAbiVersion, MOERT_STATUS_FAILED_PRECONDITION,
                       {"ABI version 2", "supports version 1"}},
        BadDescription{kFakeNullModelName, MOERT_STATUS_FAILED_PRECONDITION,
                       {"model name is NULL"}},
        BadDescription{kFakeRankZero, MOERT_STATUS_FAILED_PRECONDITION,
                       {"entry 'add'", "argument 1 ('w')", "rank 0"}},
        BadDescription{kFakeRankTooBig, MOERT_STATUS_FAILED_PRECONDITION,
                       {"argument 1 ('w')", "rank 9"}},
        BadDescription{kFakeUnknownDtype, MOERT_STATUS_FAILED_PRECONDITION,
                       {"('w')", "unknown dtype 7"}},
        BadDescription{kFakeDuplicateArg, MOERT_STATUS_FAILED_PRECONDITION,
                       {"entry 'add'", "duplicate argument name 'x'"}},
        BadDescription{kFakeNullInvoke, MOERT_STATUS_FAILED_PRECONDITION,
                       {"entry 'pair'", "NULL invoke"}},
        BadDescription{kFakeDescribeNull, MOERT_STATUS_FAILED_PRECONDITION,
                       {"returned NULL"}},
        BadDescription{kFakeDynamicResultOnly, MOERT_STATUS_FAILED_PRECONDITION,
                       {"entry 'add'", "dynamic dimension"}},
        BadDescription{kFakeDuplicateEntry, MOERT_STATUS_FAILED_PRECONDITION,
                       {"duplicate entry name 'add'"}},
        BadDescription{kFakeNoEntries, MOERT_STATUS_FAILED_PRECONDITION,
                       {"no entry points"}},
        BadDescription{kFakeNullArgName, MOERT_STATUS_FAILED_PRECONDITION,
                       {"entry 'add': argument 0 has a NULL name"}}));
