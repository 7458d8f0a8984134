// Activation checkpointing: the same losses and gradients as without it, on every architecture,
// with packed rows, every block or every other, with a frozen embedding (LoRA's case: no input
// of a block requires a gradient); and a run's peak memory measured lower.
#include <gtest/gtest.h>

#include "lofi/model/causal_lm.h"
#include "lofi/model/checkpointing.h"
#include "test_util.h"


namespace lofi::model {
namespace {

LmConfig block_lm(const std::string& arch) {
  LmConfig c;
  c.arch = arch;
  c.n_layer = 3, c.n_head = 4, c.d_model = 32, c.d_ff = 64, c.vocab_size = 97, c.max_seq_len = 24;
  c.dropout = c.attention_dropout = c.embedding_dropout = 0;
  if (arch != "opt" && arch != "gpt2") c.activation = "silu", c.n_kv_head = 2;
  if (arch == "mistral") c.sliding_window = 5;
  return c;
}

// Loss and gradients (by name) of one forward and backward.
std::pair<double, std::map<std::string, torch::Tensor>> loss_and_grads(CausalLmImpl& lm, const torch::Tensor& tokens,
                                                                      const Packing& packing) {
  for (auto& p : lm.parameters()) p.mutable_grad() = torch::Tensor();
  torch::Tensor loss = lm.loss(tokens.narrow(1, 0, 20), tokens.narrow(1, 1, 20), packing);
  loss.backward();
  std::map<std::string, torch::Tensor> grads;
  for (const auto& p : lm.named_parameters())
    if (p.value().grad().defined()) grads[p.key()] = p.value().grad().clone();
  return {loss.item<double>(), grads};
}

TEST(ActivationCheckpointing, LossesAndGradientsEqualThePlainBackward) {
  torch::Tensor segments = torch::tensor({0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2}).repeat({2, 1});  // (2, 20)
  for (const std::string arch : {"opt", "gpt2", "llama", "mistral"})
    for (bool packed : {false, true})
      for (bool frozen_embedding : {false, true}) {
        torch::manual_seed(5);
        CausalLm lm = make_causal_lm(block_lm(arch));
        init_causal_lm_weights(*lm, 5);
        if (frozen_embedding) lm->token_embedding().requires_grad_(false);
        const torch::Tensor tokens = torch::randint(97, {2, 21}, torch::kLong);
        const Packing packing = packed ? pack_rows(segments) : Packing{};
        lm->checkpoint_every = 0;
        const auto [want_loss, want] = loss_and_grads(*lm, tokens, packing);
        for (int64_t every : {1, 2}) {
          SCOPED_TRACE(arch + (packed ? " packed" : "") + (frozen_embedding ? " frozen embedding" : "") + " every " + std::to_string(every));
          lm->checkpoint_every = every;
          const auto [loss, got] = loss_and_grads(*lm, tokens, packing);
          EXPECT_NEAR(loss, want_loss, 1e-6);
          ASSERT_EQ(got.size(), want.size());
          for (const auto& [name, g] : want) EXPECT_LE((got.at(name) - g).abs().max().item<double>(), 1e-6) << name;
        }
      }
}

TEST(ActivationCheckpointing, WhichBlocks) {
  EXPECT_FALSE(checkpoints_block(0, 0));
  EXPECT_TRUE(checkpoints_block(1, 3));
  EXPECT_TRUE(checkpoints_block(2, 2));
  EXPECT_FALSE(checkpoints_block(2, 3));
}

TEST(CliActivationCheckpointing, PeakMemoryIsLower) {
  const std::string dir = test::scratch_dir();
  const std::string data = test::write_corpus(dir, "general", 60000);
  auto run = [&](int64_t every) {
    return test::peak_rss_kb({"train", "--quiet", "--set", "data.train=" + data, "--set", "run.dir=" + dir + "/run-" + std::to_string(every),
                    "--set", "model.arch=llama", "--set", "model.activation=silu", "--set", "model.n_layer=8", "--set",
                    "model.n_head=4", "--set", "model.d_model=128", "--set", "model.d_ff=512", "--set", "model.max_seq_len=512",
                    "--set", "data.seq_len=512", "--set", "train.batch_size=8", "--set", "train.steps=2", "--set",
                    "train.warmup_steps=1", "--set", "train.threads=1", "--set",
                    "train.activation_checkpointing=" + std::to_string(every)});
  };
  const long plain = run(0), checkpointed = run(1);
  std::cout << "peak resident memory: " << plain / 1024 << " MB plain, " << checkpointed / 1024 << " MB checkpointed\n";
  EXPECT_LT(checkpointed, plain * 3 / 4);
}

}  // namespace
}  // namespace lofi::model
