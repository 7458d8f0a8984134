// `lofi generate`: greedy continuations equal transformers' generate() on the same Hugging Face
// directories; sampling is seeded and stays among the top-k tokens.
#include "lofi/eval/generate.h"
#include "lofi/family/lm_model.h"

#include <gtest/gtest.h>

#include <sstream>

#include "lofi/train/config.h"
#include "lofi/train/trainer.h"
#include "test_util.h"

namespace lofi::eval {
namespace {

model::CausalLm load(const std::string& dir) {
  train::ModelConfig m;
  m.init = dir;
  return family::make_lm(m, 0);
}

TEST(Generate, GreedyEqualsTransformers) {
  for (const char* name : {"opt-125m-like", "gpt2", "llama-gqa", "qwen2", "mistral-window", "qwen3", "gemma3", "phi3", "smollm3", "gemma2", "gpt-oss"}) {
    const std::string dir = std::string(LOFI_FIXTURES) + "/hf/transformers/" + name;
    model::CausalLm lm = load(dir);
    const std::vector<int64_t> prompt{5, 17, 3, 42};
    GenerateOptions o;
    o.max_new_tokens = 10;
    const std::vector<int64_t> mine = generate(*lm, prompt, o);
    std::string text;
    for (int64_t id : mine) text += (text.empty() ? "" : ",") + std::to_string(id);
    test::CommandResult hf = test::run_python("hf/greedy_generate.py", dir + " 5,17,3,42 10");
    ASSERT_EQ(hf.status, 0) << hf.output;
    // The last line is the ids (transformers may warn and show progress above it).
    std::string last = hf.output.substr(0, hf.output.find_last_not_of('\n') + 1);
    last = last.substr(last.rfind('\n') + 1);
    EXPECT_EQ(text, last) << name << ": " << hf.output;
  }
}

TEST(Generate, SamplingIsSeededAndKeepsToTopK) {
  model::CausalLm lm = load(std::string(LOFI_FIXTURES) + "/hf/transformers/gpt2");
  GenerateOptions o;
  o.max_new_tokens = 8;
  o.temperature = 1.5;
  o.top_k = 1;  // top-1 sampling is greedy whatever the temperature
  GenerateOptions greedy;
  greedy.max_new_tokens = 8;
  EXPECT_EQ(generate(*lm, {1, 2}, o), generate(*lm, {1, 2}, greedy));
  o.top_k = 0;
  o.seed = 7;
  const auto a = generate(*lm, {1, 2}, o), b = generate(*lm, {1, 2}, o);
  EXPECT_EQ(a, b);
  o.seed = 8;
  EXPECT_NE(generate(*lm, {1, 2}, o), a);  // 8 draws at temperature 1.5 from a random model: a different seed differs
  EXPECT_NE(test::error_of([&] { generate(*lm, {}, o); }).find("no tokens"), std::string::npos);
  EXPECT_NE(test::error_of([&] { generate(*lm, {100000}, o); }).find("not below model.vocab_size"), std::string::npos);
}

TEST(CliGenerate, ContinuesAPromptAndNamesAMissingTokenizer) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(test::run_lofi("train " + test::tiny_train_flags(data, dir + "/run")).status, 0);
  const std::string model = dir + "/run/node-00/final.safetensors";
  auto r = test::run_lofi("generate --model " + model + " --prompt 'abc' --tokenizer bytes --max-new-tokens 5");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.rfind("abc", 0), 0u) << r.output;
  EXPECT_EQ(r.output.size(), 3u + 5u + 1u) << r.output;  // the prompt, 5 bytes, a newline
  auto none = test::run_lofi("generate --model " + model + " --prompt abc");
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.output.find("give --tokenizer DIR"), std::string::npos) << none.output;
}

}  // namespace
}  // namespace lofi::eval
