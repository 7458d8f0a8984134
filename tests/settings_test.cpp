// Settings: one declaration per key serves reading, rules, printing and the trajectory comparison.
#include "lofi/settings.h"

#include <gtest/gtest.h>

#include <set>

#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

struct Example {
  int64_t count = 2;
  double rate = 0.5;
  std::string mode = "a";
  bool loud = false;
  double extra = 1.0;

  void declare(Settings& s) {
    s(count, "count", "how many").at_least(1);
    s(rate, "rate", "a fraction\nover two lines").in(0, 1);
    s(mode, "mode", "a or b").one_of({"a", "b"});
    s(loud, "loud", "print more").free();
    s(extra, "extra", "only for mode b").above(0).applies(mode == "b");
  }
};

std::string violation_of(Example e) {
  Settings s;
  s.section("ex", e);
  for (const auto& setting : s.all())
    if (std::string why = setting.violation(); !why.empty()) return why;
  return "";
}

TEST(Settings, RulesNameTheKeyTheRangeAndTheValue) {
  EXPECT_EQ(violation_of({}), "");
  Example e;
  e.count = 0;
  EXPECT_EQ(violation_of(e), "ex.count must be >= 1, found 0");
  e = {};
  e.rate = 1;
  EXPECT_EQ(violation_of(e), "ex.rate must be in [0, 1), found 1");
  e = {};
  e.mode = "c";
  EXPECT_EQ(violation_of(e), "ex.mode must be \"a\" or \"b\", found \"c\"");
  e = {};
  e.extra = -1;  // the rule holds only where the setting applies
  EXPECT_EQ(violation_of(e), "");
  e.mode = "b";
  EXPECT_EQ(violation_of(e), "ex.extra must be > 0, found -1");
  e = {};
  e.extra = std::numeric_limits<double>::infinity();  // finite everywhere, applying or not
  EXPECT_EQ(violation_of(e), "ex.extra must be a finite number, found inf");
}

TEST(Settings, AssignParsesByTypeAndRefusesByName) {
  Example e;
  Settings s;
  s.section("ex", e);
  s.assign("ex.count", "7");
  s.assign("ex.rate", "0.25");
  s.assign("ex.mode", "\"b\"");
  s.assign("ex.loud", "true");
  EXPECT_EQ(e.count, 7);
  EXPECT_EQ(e.rate, 0.25);
  EXPECT_EQ(e.mode, "b");
  EXPECT_TRUE(e.loud);
  EXPECT_NE(test::error_of([&] { s.assign("ex.count", "7.5"); }).find("--set ex.count: expects an integer, found '7.5'"),
            std::string::npos);
  const std::string slip = test::error_of([&] { s.assign("ex.laud", "true"); });
  EXPECT_NE(slip.find("did you mean 'ex.loud'?"), std::string::npos) << slip;
}

TEST(Settings, TomlWithHelpReadsBackAndReferenceListsEveryKey) {
  train::Config c;
  c.train.lr = 6e-4;
  c.model.arch = "llama";
  const std::string with_help = train::to_toml(c, /*help=*/true);
  EXPECT_NE(with_help.find("# peak learning rate\nlr = 0.0006\n"), std::string::npos) << with_help;
  train::Config back;
  train::apply_toml_text(back, with_help, "printed");
  EXPECT_EQ(train::to_toml(back), train::to_toml(c));

  // Every key once, each with its default and help, in --help's list.
  const std::string reference = train::config_reference();
  train::Config defaults;
  std::set<std::string> keys;
  const Settings declared = train::settings_of(defaults);
  for (const auto& s : declared.all()) {
    EXPECT_TRUE(keys.insert(s.key()).second) << "declared twice: " << s.key();
    EXPECT_FALSE(s.help().empty()) << s.key() << " has no help";
    EXPECT_NE(reference.find("  " + s.key() + " = " + s.text() + " "), std::string::npos) << s.key();
  }
  EXPECT_GT(keys.size(), 70u);
}

TEST(Settings, AChangeCountsOnlyWhereTheKeyChangesTheTrajectoryAndApplies) {
  train::Config a, b;
  b.train.log_every = 3;      // free: how often it reports
  b.train.lp_steps = 7;       // applies in neither (no linear probe)
  b.dist.outer_lr = 0.3;      // applies in neither (no DiLoCo)
  EXPECT_TRUE(train::trajectory_changes(a, b).empty());
  b.train.head_init = "lp";   // now the probe's steps matter
  const auto changes = train::trajectory_changes(a, b);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0], "train.head_init = \"random\" -> \"lp\"");
  EXPECT_EQ(changes[1], "train.lp_steps = 100 -> 7");
}

}  // namespace
}  // namespace lofi
