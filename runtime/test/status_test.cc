//===- status_test.cc - moert_status_t -------------------------------------===//

#include "test_util.h"

using namespace moert_test;

TEST(Status, NullIsOk) {
  moert_status_t s = moert_ok_status();
  EXPECT_TRUE(moert_status_is_ok(s));
  EXPECT_EQ(moert_status_code(s), MOERT_STATUS_OK);
  EXPECT_STREQ(moert_status_message(s), "OK");
  moert_status_free(s); // no-op
}

TEST(Status, MakeCarriesCodeAndFormattedMessage) {
  moert_status_t s =
      moert_status_make(MOERT_STATUS_NOT_FOUND, "no tensor '%s' (%d)", "w", 7);
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(moert_status_is_ok(s));
  EXPECT_EQ(moert_status_code(s), MOERT_STATUS_NOT_FOUND);
  EXPECT_STREQ(moert_status_message(s), "no tensor 'w' (7)");
  moert_status_free(s);
}

TEST(Status, MakeWithOkCodeIsOk) {
  EXPECT_EQ(moert_status_make(MOERT_STATUS_OK, "ignored"), nullptr);
}

TEST(Status, LongMessagesAreKept) {
  std::string long_text(10000, 'x');
  moert_status_t s =
      moert_status_make(MOERT_STATUS_INTERNAL, "%s!", long_text.c_str());
  EXPECT_EQ(std::strlen(moert_status_message(s)), 10001u);
  moert_status_free(s);
}

TEST(Status, NullFormatUsesCodeName) {
  moert_status_t s = moert_status_make(MOERT_STATUS_DATA_LOSS, nullptr);
  EXPECT_STREQ(moert_status_message(s), "DATA_LOSS");
  moert_status_free(s);
}

TEST(Status, CodeStrings) {
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_OK), "OK");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_INVALID_ARGUMENT),
               "INVALID_ARGUMENT");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_NOT_FOUND), "NOT_FOUND");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_OUT_OF_RANGE),
               "OUT_OF_RANGE");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_RESOURCE_EXHAUSTED),
               "RESOURCE_EXHAUSTED");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_DATA_LOSS), "DATA_LOSS");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_UNIMPLEMENTED),
               "UNIMPLEMENTED");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_FAILED_PRECONDITION),
               "FAILED_PRECONDITION");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_UNAVAILABLE),
               "UNAVAILABLE");
  EXPECT_STREQ(moert_status_code_string(MOERT_STATUS_INTERNAL), "INTERNAL");
  // (15 is the largest value C++ allows in this enum's range.)
  EXPECT_STREQ(moert_status_code_string(static_cast<moert_status_code_t>(15)),
               "UNKNOWN");
}

TEST(Status, FreeNullAndMoertFreeNull) {
  moert_status_free(nullptr);
  moert_free(nullptr);
}
