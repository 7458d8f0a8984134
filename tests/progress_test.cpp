// The evaluation progress line: done/total, the unit and an ETA; nothing before the quiet period.
#include "lofi/eval/progress.h"

#include <gtest/gtest.h>

namespace lofi::eval {
namespace {

TEST(Progress, LinesSayHowFarAndHowLong) {
  testing::internal::CaptureStderr();
  {
    Progress quiet("scoring", 10, "windows");  // within its first 2 s: silent
    quiet.update(5);
  }
  {
    Progress loud("scoring val", 10, "windows", /*quiet_s=*/0, /*every_s=*/0);
    loud.update(0);  // nothing done yet: no rate to project
    loud.update(4);
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("scoring:"), std::string::npos) << err;
  EXPECT_NE(err.find("scoring val: 4/10 windows, ETA 0:00:00\n"), std::string::npos) << err;
}

}  // namespace
}  // namespace lofi::eval
