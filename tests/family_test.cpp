// The model-family registry: each model.arch is built by one family, which picks the task the
// trainer runs and the scorer the CLI sweeps with.
#include "lofi/family/family.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace lofi::family {
namespace {

TEST(Family, EachArchHasOneFamily) {
  // Every architecture of model/archs/ is a causal LM, registered by adding its file there.
  EXPECT_EQ(known_archs(), (std::vector<std::string>{"gemma2", "gemma3_text", "gpt2", "gpt_oss", "granite", "llama", "mistral", "mixtral", "olmo2", "olmoe", "opt",
                                                     "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "smollm3", "vit"}));
  EXPECT_EQ(family_of("opt").name(), "causal-lm");
  for (const char* arch : {"gemma2", "gemma3_text", "gpt2", "gpt_oss", "granite", "llama", "mistral", "mixtral", "olmo2", "olmoe", "phi3", "qwen2", "qwen3",
                           "qwen2_moe", "qwen3_moe", "smollm3"}) EXPECT_EQ(&family_of(arch), &family_of("opt")) << arch;
  EXPECT_EQ(family_of("gpt2").kind(), Kind::language_model);
  EXPECT_EQ(family_of("vit").kind(), Kind::image_classifier);
}

TEST(Family, UnknownArchIsNamedWithTheKnownOnes) {
  const std::string why = test::error_of([] { family_of("llama-x"); });
  EXPECT_EQ(why, "model.arch = \"llama-x\": no model family builds it; lofi builds \"gemma2\", \"gemma3_text\", \"gpt2\", \"gpt_oss\", \"granite\", \"llama\", \"mistral\", \"mixtral\", "
                 "\"olmo2\", \"olmoe\", \"opt\", \"phi3\", \"qwen2\", \"qwen2_moe\", \"qwen3\", \"qwen3_moe\", \"smollm3\", \"vit\"");
}

class Stub : public Family {
 public:
  explicit Stub(std::vector<std::string> archs) : archs_(std::move(archs)) {}
  std::string name() const override { return "stub"; }
  std::vector<std::string> archs() const override { return archs_; }
  Kind kind() const override { return Kind::language_model; }
  std::unique_ptr<train::Task> make_task(const train::Config&, const dist::Topology&, uint64_t) const override { return nullptr; }
  WeightsScorer make_scorer(const train::Config&, const std::string&, const ScorerInputs&) const override { return {}; }
  std::unique_ptr<TableScorer> make_table_scorer(const train::Config&, const std::string&, const ScorerInputs&) const override {
    return nullptr;
  }

 private:
  std::vector<std::string> archs_;
};

TEST(Family, RegistryRefusesAnArchClaimedTwice) {
  FamilyRegistry registry;
  registry.add(std::make_unique<Stub>(std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(registry.find("b")->name(), "stub");
  EXPECT_EQ(registry.find("c"), nullptr);
  const std::string why = test::error_of([&] { registry.add(std::make_unique<Stub>(std::vector<std::string>{"c", "b"})); });
  EXPECT_EQ(why, "model.arch \"b\" is claimed by two model families: stub and stub");
  EXPECT_EQ(registry.archs(), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace lofi::family
