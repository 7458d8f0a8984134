// Training on chat data: a packed row gives each sample what it gets alone (positions restart,
// attention stays inside the sample) on every architecture; the chat task's gradient is the mean
// over the trained tokens of the node batch whatever the layout (packed or padded), the
// micro-batches and the workers, equal to an unpacked per-sample reference.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "lofi/data/chat_samples.h"
#include "lofi/data/packed_chat.h"
#include "lofi/family/chat_task.h"
#include "lofi/io/atomic_file.h"
#include "lofi/family/lm_model.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/hf.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi::family {
namespace {

model::LmConfig small_lm(const std::string& arch) {
  model::LmConfig c;
  c.arch = arch;
  c.n_layer = 2, c.n_head = 4, c.d_model = 32, c.d_ff = 48, c.vocab_size = 61, c.max_seq_len = 32;
  c.dropout = c.attention_dropout = c.embedding_dropout = 0;
  if (arch != "opt" && arch != "gpt2") c.activation = "silu", c.n_kv_head = 2, c.tie_word_embeddings = false;
  if (arch == "mistral") c.sliding_window = 3;
  if (arch == "gemma2")  // soft-capped scores (the unfused path) with a window and a full layer
    c.activation = "gelu", c.sliding_window = 3, c.sliding_window_pattern = 2, c.attn_logit_softcapping = 1.0,
    c.final_logit_softcapping = 5.0;
  if (arch == "gpt_oss")  // sinks (the unfused path) with a window and a full layer, experts
    c.sliding_window = 3, c.sliding_window_pattern = 2, c.attention_sinks = true, c.attention_bias = c.attention_out_bias = true,
    c.num_experts = 3, c.experts_per_token = 2, c.swiglu_limit = 7;
  return c;
}

TEST(ChatTrain, PackedRowGivesEachSampleWhatItGetsAlone) {
  for (const std::string arch : {"opt", "gpt2", "llama", "mistral", "gemma2", "gpt_oss"}) {
    torch::manual_seed(3);
    model::CausalLm lm = model::make_causal_lm(small_lm(arch));
    model::init_causal_lm_weights(*lm, 3);
    lm->eval();
    torch::NoGradGuard no_grad;
    // Row 0: samples of 5, 9 and 4 tokens, then 2 of padding; row 1: 11 and 9 tokens.
    const std::vector<std::vector<int64_t>> layout = {{5, 9, 4}, {11, 9}};
    const int64_t T = 20;
    torch::Tensor tokens = torch::randint(61, {2, T}, torch::kLong);
    torch::Tensor segments = torch::full({2, T}, -1, torch::kLong);
    for (int64_t r = 0; r < 2; ++r) {
      int64_t at = 0;
      for (size_t k = 0; k < layout[r].size(); ++k) segments[r].narrow(0, at, layout[r][k]).fill_(static_cast<int64_t>(k)), at += layout[r][k];
    }
    const torch::Tensor packed = lm->head(lm->hidden(tokens, model::pack_rows(segments)));  // (2, T, V)
    for (int64_t r = 0; r < 2; ++r) {
      int64_t at = 0;
      for (int64_t length : layout[r]) {
        const torch::Tensor alone = lm->forward(tokens[r].narrow(0, at, length).unsqueeze(0))[0];  // (length, V)
        EXPECT_LT((packed[r].narrow(0, at, length) - alone).abs().max().item<double>(), 1e-5) << arch << " row " << r << " at " << at;
        at += length;
      }
    }
  }
}

// Seven samples of 3 to 20 tokens, each with some trained tokens after the first.
std::vector<data::ChatSample> random_samples() {
  std::mt19937 rng(7);
  std::vector<data::ChatSample> samples;
  for (int s = 0; s < 7; ++s) {
    data::ChatSample x;
    const int length = 3 + static_cast<int>(rng() % 18);
    for (int t = 0; t < length; ++t) x.ids.push_back(rng() % 61), x.mask.push_back(t > 0 && (t == length - 1 || rng() % 3 == 0));
    samples.push_back(x);
  }
  return samples;
}

std::vector<torch::Tensor> gradients(torch::nn::Module& m) {
  std::vector<torch::Tensor> g;
  for (auto& p : m.parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p)), p.mutable_grad() = torch::Tensor();
  return g;
}

TEST(ChatTrain, GradientIsTheNodeBatchTokenMeanWhateverTheLayout) {
  const std::string dir = test::scratch_dir();
  const std::vector<data::ChatSample> samples = random_samples();
  data::write_chat_samples(dir + "/s.chat", samples);
  train::Config config;
  static_cast<model::LmConfig&>(config.model) = small_lm("llama");
  config.data.train = dir + "/s.chat";
  config.data.seq_len = 24;
  dist::Topology topo;

  // The reference: each sample alone, unpadded; the sum of its tokens' losses over all of them.
  ChatTask reference_task(config, topo, 11);
  auto& lm = dynamic_cast<model::CausalLmImpl&>(reference_task.model());
  torch::Tensor sum = torch::zeros({});
  int64_t kept = 0;
  for (const auto& s : samples) {
    const int64_t L = static_cast<int64_t>(s.ids.size());
    torch::Tensor tokens = torch::tensor(std::vector<int64_t>(s.ids.begin(), s.ids.end())).unsqueeze(0);  // (1, L)
    torch::Tensor targets = torch::full({1, L}, -100, torch::kLong);
    int64_t n = 0;
    for (int64_t t = 0; t + 1 < L; ++t)
      if (s.mask[static_cast<size_t>(t + 1)]) targets[0][t] = static_cast<int64_t>(s.ids[static_cast<size_t>(t + 1)]), ++n;
    sum = sum + lm.loss(tokens, targets) * static_cast<double>(n);
    kept += n;
  }
  (sum / static_cast<double>(kept)).backward();
  const std::vector<torch::Tensor> want = gradients(lm);

  for (bool packing : {true, false}) {
    config.data.packing = packing;
    ChatTask task(config, topo, 11);  // the same initial weights
    data::ChatSamples file({config.data.train}, 61);
    const int64_t rows = data::PackedChat(file, 24, packing, "truncate", "test").rows();
    if (packing) {
      EXPECT_LT(rows, 7);
    }
    // Two epochs of rows in one node batch: every sample twice, the same mean. Layouts of it:
    // (workers, micro-batches per worker, rows per micro-batch).
    const int64_t node_batch = 2 * rows;
    for (auto [workers, accum, micro] : std::vector<std::array<int64_t, 3>>{{1, 1, node_batch}, {1, node_batch, 1}, {2, rows, 1}, {2, 1, rows}}) {
      task.begin_step(5, node_batch);
      for (int64_t w = 0; w < workers; ++w)
        for (int64_t a = 0; a < accum; ++a)  // as the trainer: / accum per micro-batch, the workers' mean
          (task.loss(w * accum * micro + a * micro, micro) / static_cast<double>(accum * workers)).backward();
      const std::vector<torch::Tensor> got = gradients(task.model());
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, (got[i] - want[i]).abs().max().item<double>());
      EXPECT_LT(worst, 1e-5) << (packing ? "packed" : "padded") << ", " << workers << " workers x " << accum << " x " << micro;
    }
  }
}

TEST(ChatTrain, OverlongSamplesAreTruncatedOrDroppedAndCounted) {
  const std::string dir = test::scratch_dir();
  data::write_chat_samples(dir + "/s.chat", {data::ChatSample{{1, 2, 3, 4, 5, 6}, {0, 0, 1, 1, 1, 1}},
                                             data::ChatSample{{1, 2, 3}, {0, 1, 1}},
                                             data::ChatSample{{1, 2, 3, 4, 5}, {0, 0, 0, 0, 1}},
                                             data::ChatSample{{7}, {1}}});  // one token: nothing to predict
  data::ChatSamples file({dir + "/s.chat"}, 10);
  const data::PackedChat truncated(file, 4, true, "truncate", "s.chat");
  // The first keeps 4 tokens (targets 3 and 4); the third loses its only trained token.
  EXPECT_EQ(truncated.summary(), "2 samples packed into 2 rows of 4 tokens (88% filled); 2 longer than 4 tokens truncated "
                                 "(data.overlong); 2 without a trained token within 4 tokens left out");
  const data::PackedChat dropped(file, 4, true, "drop", "s.chat");
  EXPECT_EQ(dropped.summary(), "1 samples packed into 1 rows of 4 tokens (75% filled); 2 longer than 4 tokens dropped (data.overlong); "
                               "1 without a trained token within 4 tokens left out");
  const data::ChatBatch b = truncated.batch({0});
  EXPECT_EQ(b.targets_kept, 2);
  EXPECT_NE(test::error_of([&] { data::PackedChat(file, 2, true, "drop", "s.chat"); }).find("s.chat: no sample is left to train on"),
            std::string::npos);
}

}  // namespace
}  // namespace lofi::family

namespace lofi::family {
namespace {

// The whole instruction-tuning path as a user runs it: prepare --chat with the model's template,
// a two-node LoRA lo-fi job judged on a task, then eval of the nodes, their ensemble and their
// exact average on the chat data's trained tokens and on the task.
TEST(CliChat, LofiLoraJobOnChatDataJudgedOnATask) {
  const std::string dir = test::scratch_dir();
  const std::string chat = LOFI_FIXTURES "/chat", model = chat + "/tiny-llama";
  auto r = test::run_lofi("prepare --chat " + chat + "/conversations.jsonl " + chat + "/system.jsonl -t " + model + " -o " + dir + "/c");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("train: 7 samples, 358 tokens, 126 of them trained"), std::string::npos) << r.output;
  r = test::run_lofi("prepare --train-on-prompt " + chat + "/conversations.jsonl -t " + model + " -o " + dir + "/x");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--train-on-prompt goes with --chat"), std::string::npos) << r.output;

  r = test::run_lofi("launch --workers 2 -- train --quiet --set dist.nodes=2 --set data.train=" + dir + "/c.train.chat" +
                     " --set data.val_task=" + chat + "/mc.jsonl --set run.dir=" + dir + "/run --set model.init=" + model +
                     " --set lora.rank=4 --set data.seq_len=128 --set train.batch_size=4 --set train.steps=4" +
                     " --set train.warmup_steps=1 --set train.log_every=2 --set train.eval_every=2 --set train.threads=1" +
                     " --set dist.timeout_s=60");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("data: 7 samples packed into 3 rows of 128 tokens (93% filled)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("val_acc"), std::string::npos) << r.output;
  const nlohmann::json check = nlohmann::json::parse(io::read_text_file(dir + "/run/averaging-check.json"));
  EXPECT_EQ(check["metric"], "accuracy");
  EXPECT_TRUE(check["average_scores"].contains("val_acc")) << check.dump();
  EXPECT_TRUE(test::last_metrics(dir + "/run/node-00").contains("val_acc"));

  const std::string n0 = dir + "/run/node-00/final.safetensors", n1 = dir + "/run/node-01/final.safetensors";
  r = test::run_lofi("eval --model " + dir + "/run/merged-hf --ensemble " + n0 + " " + n1 + " --data chat=" + dir +
                     "/c.train.chat --seq-len 128 --task mc=" + chat + "/mc.jsonl --json " + dir + "/e.json");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json rows = nlohmann::json::parse(io::read_text_file(dir + "/e.json"))["results"];
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[4]["model"], "weight average of 2 (adapters: exact, concat)");
  // The job's PEFT output is the exact average of its nodes.
  EXPECT_NEAR(rows[4]["datasets"]["chat"]["loss"].get<double>(), rows[0]["datasets"]["chat"]["loss"].get<double>(), 1e-5);
  EXPECT_EQ(rows[0]["datasets"]["chat"]["tokens"], 126);  // every trained token (no sample starts with one)
  EXPECT_TRUE(rows[3]["datasets"]["mc"].contains("acc_norm"));
}

// A Hugging Face directory lofi writes from a pretrained one (an export, merged-hf of a full
// fine-tune) chats and stops as its source did: the chat template transformers keeps beside the
// tokenizer (chat_template.jinja) and generation_config.json's stop tokens are carried over.
TEST(CliChat, ExportedModelKeepsItsChatTemplate) {
  const std::string dir = test::scratch_dir();
  const std::string chat = LOFI_FIXTURES "/chat", model = chat + "/tiny-llama";
  train::ModelConfig m;
  m.init = model;
  model::HfExportOptions options;
  options.source_dir = model;
  model::export_hf(*make_lm(m, 0), dir + "/hf", options);
  for (const char* kept : {"chat_template.jinja", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}) {
    ASSERT_TRUE(std::filesystem::exists(dir + "/hf/" + kept)) << kept;
    EXPECT_EQ(io::read_text_file(dir + "/hf/" + kept), io::read_text_file(model + "/" + kept)) << kept;
  }
  for (const auto& [from, out] : {std::pair{model, dir + "/a"}, std::pair{dir + "/hf", dir + "/b"}}) {
    auto r = test::run_lofi("prepare --chat " + chat + "/conversations.jsonl -t " + from + " -o " + out);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  EXPECT_EQ(io::read_text_file(dir + "/b.train.chat"), io::read_text_file(dir + "/a.train.chat"));
}

}  // namespace
}  // namespace lofi::family
