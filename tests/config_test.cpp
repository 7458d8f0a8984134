#include "lofi/train/config.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "lofi/error.h"
#include "test_util.h"

namespace lofi::train {
namespace {

TEST(Config, TomlThenOverrides) {
  Config c;
  apply_toml_text(c, "[model]\nn_layer = 6\n[train]\nlr = 1e-3\nsteps = 7\n", "x.toml");
  apply_override(c, "train.steps=9");
  apply_override(c, "dist.data_split=shard");
  apply_override(c, "train.lr=2");  // integers are numbers too
  EXPECT_EQ(c.model.n_layer, 6);
  EXPECT_EQ(c.train.steps, 9);
  EXPECT_DOUBLE_EQ(c.train.lr, 2.0);
  EXPECT_EQ(c.dist.data_split, "shard");
}

TEST(Config, PrintedConfigReadsBackEqual) {
  Config c;
  c.model.d_model = 96;
  c.train.lr = 1.234e-4;
  c.data.train = "a.bin,b.bin";
  Config back;
  apply_toml_text(back, to_toml(c), "printed");
  EXPECT_EQ(to_toml(back), to_toml(c));
  EXPECT_EQ(back.model.d_model, 96);
  EXPECT_EQ(back.train.lr, 1.234e-4);  // bit for bit
  // Floats as the shortest text that reads back, and strings that need escapes.
  c.train.lr = 6e-4;
  c.train.min_lr = 3;
  c.data.train = "dir with \"quotes\"\\and\ttab.bin";
  const std::string text = to_toml(c);
  EXPECT_NE(text.find("\nlr = 0.0006\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmin_lr = 3.0\n"), std::string::npos) << text;
  apply_toml_text(back, text, "printed");
  EXPECT_EQ(back.train.lr, 6e-4);
  EXPECT_EQ(back.train.min_lr, 3.0);
  EXPECT_EQ(back.data.train, c.data.train);
  EXPECT_EQ(shortest_double(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(shortest_double(1e30), "1e+30");
}

TEST(Config, UnknownKeysAndWrongTypesAreErrors) {
  Config c;
  EXPECT_NE(test::error_of([&] { apply_toml_text(c, "[train]\nstepz = 3\n", "cfg.toml"); })
                .find("cfg.toml: unknown config key 'train.stepz'; did you mean 'train.steps'?"),
            std::string::npos);
  // Nothing near: the known keys are listed instead.
  EXPECT_NE(test::error_of([&] { apply_override(c, "zzz.qqqqqq=1"); }).find("known keys: run.dir"), std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_toml_text(c, "[train]\nsteps = \"3\"\n", "cfg.toml"); }).find("expects an integer"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_override(c, "model.nope=1"); }).find("model.nope"), std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_override(c, "train.steps=1.5"); }).find("train.steps"), std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_override(c, "train.steps"); }).find("section.key=value"), std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_toml_text(c, "[train\n", "broken.toml"); }).find("broken.toml"), std::string::npos);
  // A key without its section, or in capitals, points at the key; a list item that is no name is
  // named; a number a double cannot hold says so.
  EXPECT_NE(test::error_of([&] { apply_toml_text(c, "steps = 3\n", "cfg.toml"); }).find("did you mean 'train.steps'?"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_override(c, "dropout=0.1"); }).find("did you mean 'model.dropout' or 'lora.dropout'?"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_override(c, "TRAIN.STEPS=3"); }).find("did you mean 'train.steps'? (keys are lower case)"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_toml_text(c, "[lora]\ntarget = [\"q_proj\", 5]\n", "cfg.toml"); })
                .find("'lora.target': item 2 of the list is integer"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { apply_override(c, "train.lr=1e-400"); }).find("'1e-400' is out of range"), std::string::npos);
}

TEST(Config, ValidationNamesTheKey) {
  Config c;
  c.train.batch_size = 30;
  c.dist.nodes = 4;
  EXPECT_NE(test::error_of([&] { validate(c); }).find("train.batch_size (30) must be divisible by dist.nodes (4)"),
            std::string::npos);
  c = Config();
  c.model.n_head = 3;
  EXPECT_NE(test::error_of([&] { validate(c); }).find("model.n_head"), std::string::npos);
  c = Config();
  c.dist.node_id = 1;
  c.dist.nodes = 2;
  c.dist.sync_every = 5;
  EXPECT_NE(test::error_of([&] { validate(c); }).find("sync_every"), std::string::npos);
  EXPECT_NO_THROW(validate(Config()));
}

TEST(Config, OnlySettingsThatTakeEffectChangeTheTrajectory) {
  Config a, b;
  b.train.tensorboard = false;         // logging
  b.train.lp_lr = 0.5;                 // LP-FT is off in both
  b.dist.outer_momentum = 0.5;         // the outer optimizer is plain averaging in both
  EXPECT_TRUE(trajectory_changes(a, b).empty());
  b.train.head_init = "lp";
  b.dist.outer_optimizer = "nesterov";
  const auto changes = trajectory_changes(a, b);
  auto has = [&](const std::string& key) {
    return std::any_of(changes.begin(), changes.end(), [&](const std::string& c) { return c.rfind(key + " =", 0) == 0; });
  };
  EXPECT_TRUE(has("train.lp_lr"));
  EXPECT_TRUE(has("dist.outer_momentum"));
  EXPECT_TRUE(has("train.head_init"));
}

TEST(Config, OuterOptimizerNeedsNodesASyncAndAPositiveRate) {
  Config c;
  c.dist.nodes = 2, c.dist.sync_every = 10, c.dist.outer_optimizer = "nesterov";
  EXPECT_NO_THROW(validate(c));
  Config alone = c;
  alone.dist.nodes = 1;
  EXPECT_NE(test::error_of([&] { validate(alone); }).find("dist.outer_optimizer = \"nesterov\" with dist.nodes = 1"),
            std::string::npos);
  Config never = c;
  never.dist.sync_every = 0;
  EXPECT_NE(test::error_of([&] { validate(never); }).find("set dist.sync_every"), std::string::npos);
  Config stalled = c;
  stalled.dist.outer_lr = 0;
  EXPECT_NE(test::error_of([&] { validate(stalled); }).find("dist.outer_lr must be > 0, found 0"), std::string::npos);
  Config runaway = c;
  runaway.dist.outer_momentum = 1.0;
  EXPECT_NE(test::error_of([&] { validate(runaway); }).find("dist.outer_momentum must be in [0, 1)"), std::string::npos);
  Config unknown = c;
  unknown.dist.outer_optimizer = "adam";
  EXPECT_NE(test::error_of([&] { validate(unknown); }).find("found \"adam\""), std::string::npos);
}

}  // namespace
}  // namespace lofi::train
