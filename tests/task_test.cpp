// Task accuracy as lm-evaluation-harness scores it: per-choice log-likelihoods equal transformers'
// (fixtures/chat/make_task_fixtures.py) for a model and an ensemble, short answers generated
// greedily as transformers' generate(), acc / acc_norm / exact_match with standard errors in the
// table and the JSON; bad task files named by line.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "lofi/data/tokenizer.h"
#include "lofi/eval/generate.h"
#include "lofi/family/generate_text.h"
#include "lofi/family/lm_evaluator.h"
#include "lofi/io/atomic_file.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi::family {
namespace {

using nlohmann::json;

const std::string kChat = LOFI_FIXTURES "/chat";
const std::string kModel = kChat + "/tiny-llama";

json expected() { return json::parse(io::read_text_file(kChat + "/expected_tasks.json")); }

LmScores score_tasks(const std::vector<NamedPath>& tasks, bool ensemble = false) {
  EvalSettings settings;
  settings.batch = 3;  // batches that cut across items
  settings.max_new_tokens = 12;
  LmEvaluator evaluator(train::config_for_model(kModel, "", {}), {}, settings, tasks, kModel);
  return ensemble ? evaluator.score_ensemble({kModel, kModel}) : evaluator.score_file(kModel);
}

TEST(TaskAccuracy, LogLikelihoodsEqualTransformersForAModelAndAnEnsemble) {
  const json want = expected();
  for (bool ensemble : {false, true}) {
    const eval::TaskScore s = score_tasks({{"mc", kChat + "/mc.jsonl"}}, ensemble).tasks.at(0);
    ASSERT_EQ(s.log_likelihoods.size(), want["loglikelihoods"].size());
    for (size_t i = 0; i < s.log_likelihoods.size(); ++i)
      for (size_t c = 0; c < s.log_likelihoods[i].size(); ++c)
        EXPECT_NEAR(s.log_likelihoods[i][c], want["loglikelihoods"][i][c].get<double>(), 1e-4) << "item " << i << " choice " << c;
    // The accuracies as the fixture script computes them from transformers' log-likelihoods.
    EXPECT_DOUBLE_EQ(s.acc, want["acc"].get<double>());
    EXPECT_DOUBLE_EQ(s.acc_norm, want["acc_norm"].get<double>());
    EXPECT_DOUBLE_EQ(s.acc_bytes, want["acc_bytes"].get<double>());
    EXPECT_DOUBLE_EQ(s.acc_stderr, std::sqrt(s.acc * (1 - s.acc) / 3));
  }
}

// A stand-in model for scoring rules: every token equally likely, or a scripted generation.
eval::LogProbs uniform_log_probs(int64_t vocab) {
  const double each = -std::log(static_cast<double>(vocab));
  return {[each](const torch::Tensor& x, const torch::Tensor&) { return torch::full({x.size(0), x.size(1)}, each); },
          [each, vocab](const torch::Tensor& x) { return torch::full({x.size(0), vocab}, each); }};
}

TEST(TaskAccuracy, AccNormDividesByCharactersAccBytesByBytes) {
  const std::string dir = test::scratch_dir();
  const data::Tokenizer tokenizer = data::Tokenizer::load(kModel);
  // Under equal token probabilities a choice's log-likelihood is -(its tokens) log V. " xyz" is 3
  // tokens over 4 characters and 4 bytes; " 日本" 5 tokens over 3 characters and 7 bytes: per
  // character " xyz" wins (-0.75 against -1.67 log V), per byte " 日本" (-0.71 against -0.75).
  auto tokens = [&](const std::string& choice) {
    return tokenizer.encode("Q:" + choice, false).size() - tokenizer.encode("Q:", false).size();
  };
  ASSERT_EQ(tokens(" xyz"), 3u);
  ASSERT_EQ(tokens(" 日本"), 5u);
  io::write_file_atomic(dir + "/t.jsonl", R"({"context": "Q:", "choices": [" xyz", " 日本"], "answer": 1})" "\n");
  const eval::TaskScorer scorer(eval::read_task("t", dir + "/t.jsonl"), tokenizer, {}, 128, {});
  const eval::TaskScore s = scorer.score(uniform_log_probs(tokenizer.vocab_size()), torch::kCPU);
  EXPECT_EQ(s.acc, 0);        // " xyz" has fewer tokens
  EXPECT_EQ(s.acc_norm, 0);   // and wins per character
  EXPECT_EQ(s.acc_bytes, 1);  // " 日本" wins per byte
}

TEST(TaskAccuracy, AnAnswerEndsAtALineBreakAfterText) {
  const std::string dir = test::scratch_dir();
  const data::Tokenizer tokenizer = data::Tokenizer::load(kModel);
  const std::string context = "Question: What is the capital of Italy?\nAnswer:";
  const int64_t context_tokens = static_cast<int64_t>(tokenizer.encode(context, false).size());
  std::vector<int64_t> script;  // a model that says this, a token a step
  for (uint32_t id : tokenizer.encode("\n Rome.\nQuestion: and of France?", false)) script.push_back(id);
  const int64_t vocab = tokenizer.vocab_size();
  eval::LogProbs scripted;  // generation reads the next token alone
  scripted.of_next = [&](const torch::Tensor& x) {
    torch::Tensor lp = torch::full({1, vocab}, -30.0);
    lp[0][script.at(static_cast<size_t>(x.size(1) - context_tokens))] = 0.0;
    return lp;
  };
  io::write_file_atomic(dir + "/t.jsonl", nlohmann::json{{"context", context}, {"answer", "Rome."}}.dump() + "\n" +
                                              nlohmann::json{{"context", context}, {"answer", "Rome"}}.dump() + "\n");
  const eval::TaskScorer scorer(eval::read_task("t", dir + "/t.jsonl"), tokenizer, {}, 128, {});
  const eval::TaskScore s = scorer.score(scripted, torch::kCPU);
  ASSERT_EQ(s.generations.size(), 2u);
  EXPECT_EQ(s.generations[0], "\n Rome.");  // the leading line break does not end it; the next does
  EXPECT_EQ(s.exact_match, 0.5);            // "Rome." matches, "Rome" does not
  EXPECT_DOUBLE_EQ(s.exact_match_stderr, 0.5);
}

TEST(TaskAccuracy, ShortAnswersAreGreedyGenerationsAsTransformers) {
  const json want = expected()["short"];
  const eval::TaskScore s = score_tasks({{"short", kChat + "/short.jsonl"}}).tasks.at(0);
  const data::Tokenizer tokenizer = data::Tokenizer::load(kModel);
  ASSERT_EQ(s.generations.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    std::string text = tokenizer.decode(want[i].get<std::vector<uint32_t>>(), /*skip_special_tokens=*/true);
    // lofi stops at a line break after some text (transformers ran on).
    for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', nl + 1))
      if (text.substr(0, nl).find_first_not_of(" \t\r\n") != std::string::npos) {
        text.resize(nl);
        break;
      }
    EXPECT_EQ(s.generations[i], text) << "item " << i;
  }
  EXPECT_EQ(s.exact_match, 0);  // a random model
}

TEST(TaskAccuracy, BadTaskFilesAreNamedByLine) {
  const std::string dir = test::scratch_dir();
  auto refusal = [&](const std::string& lines) {
    io::write_file_atomic(dir + "/t.jsonl", lines);
    return test::error_of([&] { eval::read_task("t", dir + "/t.jsonl"); });
  };
  const std::string mc = R"({"context": "a", "choices": ["x", "y"], "answer": 1})" "\n";
  EXPECT_NE(refusal(mc + R"({"context": "a", "choices": ["x", "y"], "answer": 2})").find("t.jsonl:2: answer 2 is not among its 2 choices"),
            std::string::npos);
  EXPECT_NE(refusal(mc + R"({"context": "a", "answer": "x"})").find("t.jsonl:2: a short-answer line in a multiple-choice task"),
            std::string::npos);
  EXPECT_NE(refusal(mc + "{oops\n").find("t.jsonl:2: not JSON"), std::string::npos);
  EXPECT_NE(refusal(R"({"question": "a"})").find("t.jsonl:1: expected {\"context\""), std::string::npos);
  EXPECT_NE(refusal(R"({"context": "a", "choices": ["x"], "answer": 0})").find("at least two"), std::string::npos);
  EXPECT_NE(refusal("\n").find("holds no items"), std::string::npos);
  // A choice longer than the model's positions, named by line.
  io::write_file_atomic(dir + "/long.jsonl", R"({"context": "Q:", "choices": [" a", " abcdefgh"], "answer": 0})" "\n");
  const data::Tokenizer tokenizer = data::Tokenizer::load(kModel);
  const std::string e = test::error_of([&] { eval::TaskScorer(eval::read_task("t", dir + "/long.jsonl"), tokenizer, {}, 4, {}); });
  EXPECT_NE(e.find("long.jsonl:1: choice \" abcdefgh\" is 7 tokens, more than the model's 4 positions hold"), std::string::npos) << e;
}

TEST(CliTask, EvalPrintsAccuracyWithStandardErrorsAndWritesJson) {
  const std::string dir = test::scratch_dir();
  const auto r = test::run_lofi("eval --model " + kModel + " --task mc=" + kChat + "/mc.jsonl --task short=" + kChat +
                                "/short.jsonl --max-new-tokens 12 --json " + dir + "/r.json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("mc acc"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mc acc_norm"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("short exact_match"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" ± "), std::string::npos) << r.output;
  const json j = json::parse(io::read_text_file(dir + "/r.json"));
  const json& mc = j["results"][0]["datasets"]["mc"];
  for (const char* key : {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "samples"}) EXPECT_TRUE(mc.contains(key)) << j.dump();
  EXPECT_EQ(mc["samples"], 4);
  EXPECT_TRUE(j["results"][0]["datasets"]["short"].contains("exact_match_stderr")) << j.dump();
  const auto refused = test::run_lofi("eval --model " + kModel + " --task mc=" + dir + "/missing.jsonl");
  EXPECT_NE(refused.status, 0);
  EXPECT_NE(refused.output.find("cannot open"), std::string::npos) << refused.output;
}

}  // namespace
}  // namespace lofi::family

namespace lofi::family {
namespace {

GenerateRequest chat_request() {
  GenerateRequest r;
  r.model = kModel;
  r.prompt = expected()["chat"]["prompt"];
  r.chat = true;
  r.options.max_new_tokens = 20;
  return r;
}

TEST(GenerateChat, GreedyReplyEqualsTransformersGenerate) {
  const json want = expected()["chat"];
  const data::Tokenizer tokenizer = data::Tokenizer::load(kModel);
  EXPECT_EQ(generate_text(chat_request()), tokenizer.decode(want["ids"].get<std::vector<uint32_t>>(), /*skip_special_tokens=*/true));
}

TEST(GenerateChat, SamplingFiltersKeepWhatTransformersKeeps) {
  const json cases = expected()["filters"];
  ASSERT_EQ(cases.size(), 6u);
  for (const auto& f : cases) {
    const torch::Tensor logits = torch::tensor(f["logits"].get<std::vector<float>>());  // (V)
    const torch::Tensor kept = torch::isfinite(eval::filter_logits(logits, f["top_k"].get<int64_t>(), f["top_p"].get<double>()));
    const std::vector<bool> want = f["kept"].get<std::vector<bool>>();
    ASSERT_EQ(kept.size(0), static_cast<int64_t>(want.size()));
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(kept[static_cast<int64_t>(i)].item<bool>(), want[i]) << "top_k " << f["top_k"] << " top_p " << f["top_p"] << " token " << i;
  }
}

TEST(GenerateChat, SamplingIsSeededAndNarrowsToGreedy) {
  const std::string greedy = generate_text(chat_request());
  GenerateRequest r = chat_request();
  r.options.temperature = 1.5;
  r.options.seed = 4;
  const std::string sampled = generate_text(r);
  EXPECT_EQ(generate_text(r), sampled);  // the same seed, the same text
  EXPECT_NE(sampled, greedy);
  r.options.top_k = 1;  // only the most likely token is left to sample
  EXPECT_EQ(generate_text(r), greedy);
  r.options.top_k = 0;
  r.options.top_p = 1e-6;  // the nucleus holds the most likely token alone
  EXPECT_EQ(generate_text(r), greedy);
  r.options.top_p = 0.9;
  EXPECT_NE(generate_text(r), greedy);
  r.system = "You are terse.";
  r.options.top_p = 1e-6;
  EXPECT_NE(generate_text(r), greedy);  // a system turn changes the prompt
}

TEST(GenerateChat, PiecesPrintedAsTheyComeAddUpToTheText) {
  for (const bool chat : {true, false}) {
    GenerateRequest r = chat_request();
    r.chat = chat;
    r.options.temperature = 1.5;  // sampled, so odd tokens (partial characters, specials) turn up
    r.options.seed = 7;
    const std::string whole = generate_text(r);
    std::vector<std::string> pieces;
    r.on_text = [&](const std::string& piece) { pieces.push_back(piece); };
    EXPECT_EQ(generate_text(r), whole) << "chat " << chat;
    std::string joined;
    for (const std::string& piece : pieces) joined += piece;
    EXPECT_EQ(joined, whole) << "chat " << chat;
    EXPECT_GT(pieces.size(), 5u) << "chat " << chat << ": the text came in " << pieces.size() << " pieces";
  }
}

}  // namespace
}  // namespace lofi::family
