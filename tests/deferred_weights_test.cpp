// A fully sharded start builds the weights of lofi's own layers without memory (on the meta device)
// and fills them later, one decoder block at a time (model/deferred_weights.h). Filled in any
// order, each holds what an ordinary build gives it: the seeded init's values, or model.init's (a
// Hugging Face directory, a lofi weights file, a checkpoint over them).
#include <gtest/gtest.h>

#include <filesystem>

#include "lofi/family/image_task.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/safetensors.h"
#include "lofi/model/deferred_weights.h"
#include "lofi/model/weights.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

const std::filesystem::path kHf = std::filesystem::path(LOFI_FIXTURES) / "hf";

train::ModelConfig model_of(const std::vector<std::string>& sets) {
  std::vector<std::string> all{"model.n_layer=2", "model.n_head=2", "model.d_model=32", "model.d_ff=64", "model.max_seq_len=16",
                               "data.seq_len=16"};
  all.insert(all.end(), sets.begin(), sets.end());
  return train::load_config("", all).model;
}

// The parameters DEFERRED holds, counted, then filled last to first.
int64_t fill_in_reverse(torch::nn::Module& lm, model::DeferredWeights& deferred) {
  const auto params = lm.named_parameters();
  int64_t without_memory = 0;
  for (const auto& item : params) {
    if (!item.value().is_meta()) continue;
    ++without_memory;
    EXPECT_TRUE(deferred.deferred(item.key())) << item.key();
  }
  EXPECT_EQ(static_cast<size_t>(without_memory), deferred.size());
  for (auto it = params.end(); it != params.begin();) {
    --it;
    if (deferred.deferred(it->key())) deferred.fill(it->key(), it->value());
  }
  deferred.done();
  return without_memory;
}

void expect_same_weights(torch::nn::Module& a, torch::nn::Module& b) {
  const io::NamedTensors wa = model::module_weights(a), wb = model::module_weights(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) {
    SCOPED_TRACE(wa[i].first);
    EXPECT_EQ(wa[i].first, wb[i].first);
    EXPECT_FALSE(wb[i].second.is_meta());
    EXPECT_EQ(wa[i].second.scalar_type(), wb[i].second.scalar_type());
    EXPECT_TRUE(torch::equal(wa[i].second, wb[i].second));
  }
}

TEST(DeferredWeights, ASeededModelBuiltInPiecesEqualsTheOrdinaryBuild) {
  for (const std::vector<std::string>& sets :
       {std::vector<std::string>{"model.arch=llama", "model.activation=silu"}, {"model.arch=opt"},
        {"model.arch=gpt2", "model.activation=gelu"}, {"model.arch=llama", "model.activation=silu", "bf16"},
        // gpt-oss: its experts' 3-D weights and biases and the attention's sinks, made without memory too
        {"model.arch=gpt_oss", "model.activation=silu", "model.attention_sinks=true", "model.swiglu_limit=7",
         "model.norm_topk_prob=true", "model.num_experts=4", "model.experts_per_token=2", "model.attention_bias=true",
         "model.attention_out_bias=true", "model.sliding_window=4", "model.sliding_window_pattern=2"}}) {
    const bool bf16 = sets.back() == "bf16";
    train::ModelConfig c = model_of(bf16 ? std::vector<std::string>(sets.begin(), sets.end() - 1) : sets);
    if (bf16) c.dtype = "bf16";  // a base made in bf16 (a LoRA run's; built the same way)
    SCOPED_TRACE(c.arch + " " + c.dtype);
    // Neither build draws from torch's default stream (each parameter has a stream of its own).
    torch::manual_seed(11);
    const torch::Tensor untouched = torch::rand({4});
    torch::manual_seed(11);
    model::CausalLm whole = family::make_lm(c, 7);
    EXPECT_TRUE(torch::equal(torch::rand({4}), untouched));
    model::DeferredWeights deferred;
    torch::manual_seed(11);
    model::CausalLm pieces = family::make_lm(c, 7, &deferred);
    EXPECT_TRUE(torch::equal(torch::rand({4}), untouched));
    // Every weight of the blocks is made without memory (LayerNorm's are torch's own, made whole).
    for (const auto& block : pieces->decoder_blocks()->children())
      for (const auto& item : block->named_parameters())
        if (item.key().find("layer_norm") == std::string::npos && item.key().find("ln_") == std::string::npos) {
          EXPECT_TRUE(item.value().is_meta()) << item.key();
        }
    EXPECT_GT(fill_in_reverse(*pieces, deferred), 0);
    expect_same_weights(*whole, *pieces);
  }
}

TEST(DeferredWeights, ModelInitBuiltInPiecesEqualsTheOrdinaryLoad) {
  const std::string dir = test::scratch_dir();
  // A Hugging Face directory (transformers wrote it; untied head, grouped-query attention).
  train::ModelConfig hf;
  hf.init = (kHf / "transformers" / "llama-gqa").string();
  torch::manual_seed(11);
  const torch::Tensor untouched = torch::rand({4});
  torch::manual_seed(11);
  model::CausalLm whole = family::make_lm(hf, 0);
  EXPECT_TRUE(torch::equal(torch::rand({4}), untouched));  // a load draws nothing it then overwrites
  model::DeferredWeights deferred;
  model::CausalLm pieces = family::make_lm(hf, 0, &deferred);
  EXPECT_GT(fill_in_reverse(*pieces, deferred), 0);
  expect_same_weights(*whole, *pieces);

  // A lofi weights file, and a later file over it (a resumed run's checkpoint): the later wins.
  train::ModelConfig c = model_of({"model.arch=llama", "model.activation=silu"});
  const std::string first = dir + "/first.safetensors", second = dir + "/second.safetensors";
  io::save_safetensors(first, model::module_weights(*family::make_lm(c, 1)));
  io::save_safetensors(second, model::module_weights(*family::make_lm(c, 2)));
  c.init = first;
  model::DeferredWeights from_file;
  model::CausalLm loaded = family::make_lm(c, 0, &from_file);
  model::load_module_weights(*loaded, std::make_shared<const io::SafetensorsFile>(second), {}, &from_file);
  fill_in_reverse(*loaded, from_file);
  c.init = second;
  expect_same_weights(*family::make_lm(c, 0), *loaded);

  // One left unfilled is named; one without memory and nowhere to defer it is refused.
  c.init = first;
  model::DeferredWeights unfilled;
  model::CausalLm partial = family::make_lm(c, 0, &unfilled);
  try {
    unfilled.done();
    ADD_FAILURE() << "done() with parameters left";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj.weight"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model::load_module_weights(*partial, io::SafetensorsFile(second)), std::exception);
}

// A ViT (the demo preset) built in pieces: seeded, and from a checkpoint whose head has other
// classes, so the new head is drawn after the load, where the random stream must stand as an
// ordinary build leaves it.
TEST(DeferredWeights, AVitBuiltInPiecesEqualsTheOrdinaryBuild) {
  train::ModelConfig c;  // the demo ViT
  model::Vit whole = family::make_vit(c, 10, 7);
  const torch::Tensor after_whole = torch::rand({4});
  model::DeferredWeights deferred;
  model::Vit pieces = family::make_vit(c, 10, 7, nullptr, nullptr, &deferred);
  EXPECT_TRUE(torch::equal(torch::rand({4}), after_whole));
  // The blocks' linear layers are made without memory (their LayerNorms, torch's own, whole).
  int64_t linear = 0;
  for (const auto& item : pieces->blocks->named_parameters())
    if (item.key().find(".attn.") != std::string::npos || item.key().find(".mlp.") != std::string::npos) {
      EXPECT_TRUE(item.value().is_meta()) << item.key();
      ++linear;
    }
  EXPECT_GT(linear, 0);
  EXPECT_EQ(fill_in_reverse(*pieces, deferred), linear);
  expect_same_weights(*whole, *pieces);

  const std::string path = test::scratch_dir() + "/pretrained.safetensors";
  io::save_safetensors(path, model::module_weights(*family::make_vit(c, 5, 3)));
  c.init = path;
  bool new_head = false;
  model::Vit loaded_whole = family::make_vit(c, 10, 7, nullptr, &new_head);
  EXPECT_TRUE(new_head);
  model::DeferredWeights from_file;
  model::Vit loaded = family::make_vit(c, 10, 7, nullptr, nullptr, &from_file);
  EXPECT_EQ(fill_in_reverse(*loaded, from_file), linear);
  expect_same_weights(*loaded_whole, *loaded);
  // The blocks hold the checkpoint's values, not the seeded init's.
  for (const auto& [name, t] : io::SafetensorsFile(path).load_all())
    if (name == "blocks.0.attn.qkv.weight") {
      EXPECT_TRUE(torch::equal(loaded->named_parameters()[name], t));
      EXPECT_FALSE(torch::equal(pieces->named_parameters()[name], t));
    }
}

// Built in pieces, the host still makes the parameters outside the blocks whole: a shape whose
// embedding alone exceeds the host's memory is refused by its sizes, naming that part.
TEST(DeferredWeights, AnEmbeddingBiggerThanTheHostIsRefusedBeforeItIsMade) {
  train::ModelConfig c = model_of({"model.arch=llama", "model.activation=silu"});
  c.vocab_size = 2000000000;
  model::DeferredWeights deferred;
  try {
    family::make_lm(c, 0, &deferred);
    ADD_FAILURE() << "a 2e9-word embedding was made";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("parameters outside its decoder blocks"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("vocab_size 2000000000"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lofi
