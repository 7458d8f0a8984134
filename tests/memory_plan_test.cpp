// The memory plan (train/memory_plan.h, family/lm_footprint.h): its parameter counts against the
// modules lofi builds, its peak against the peak resident memory of real runs on this CPU, and a
// run that will not fit refused before it loads anything.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "lofi/family/family.h"
#include "lofi/family/lm_footprint.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/lora.h"
#include "lofi/text.h"
#include "lofi/train/config.h"
#include "test_util.h"

namespace lofi {
namespace {

std::vector<std::string> split_sets(const std::string& flags) {
  std::vector<std::string> sets;
  std::istringstream in(flags);
  for (std::string word; in >> word;)
    if (word != "--set") sets.push_back(word);
  return sets;
}

// Counted on the one-block probe, scaled; against the whole model built.
TEST(MemoryPlan, ParameterCountsEqualTheBuiltModels) {
  for (const std::string shape : {"--set model.arch=opt --set model.n_layer=3",
                                  "--set model.arch=gpt2 --set model.n_layer=3 --set model.activation=gelu",
                                  "--set model.arch=llama --set model.n_layer=3 --set model.activation=silu --set model.n_kv_head=2",
                                  "--set model.arch=llama --set model.n_layer=3 --set model.activation=silu --set model.tie_word_embeddings=false",
                                  "--set model.arch=qwen2 --set model.n_layer=2 --set model.activation=silu --set model.attention_bias=true --set model.attention_out_bias=false --set model.mlp_bias=false",
                                  "--set model.arch=qwen3 --set model.n_layer=2 --set model.activation=silu --set model.qk_norm=true --set model.head_dim=16",
                                  "--set model.arch=gemma3_text --set model.n_layer=2 --set model.activation=gelu --set model.qk_norm=true --set model.sliding_window=8 --set model.sliding_window_pattern=2",
                                  "--set model.arch=gemma2 --set model.n_layer=2 --set model.activation=gelu --set model.sliding_window=8 --set model.sliding_window_pattern=2"
                                  " --set model.attn_logit_softcapping=50 --set model.final_logit_softcapping=30",
                                  "--set model.arch=phi3 --set model.n_layer=2 --set model.activation=silu --set model.n_kv_head=2",
                                  "--set model.arch=smollm3 --set model.n_layer=2 --set model.activation=silu --set model.no_rope_interval=2",
                                  "--set model.arch=qwen3_moe --set model.n_layer=2 --set model.activation=silu --set model.qk_norm=true"
                                  " --set model.num_experts=5 --set model.experts_per_token=2 --set model.moe_d_ff=16",
                                  "--set model.arch=qwen2_moe --set model.n_layer=2 --set model.activation=silu --set model.attention_bias=true"
                                  " --set model.num_experts=4 --set model.experts_per_token=2 --set model.moe_d_ff=16 --set model.shared_expert_d_ff=24",
                                  "--set model.arch=mixtral --set model.n_layer=2 --set model.activation=silu --set model.n_kv_head=2"
                                  " --set model.num_experts=3 --set model.experts_per_token=2",
                                  "--set model.arch=olmo2 --set model.n_layer=2 --set model.activation=silu --set model.qk_norm=true --set model.n_kv_head=2",
                                  "--set model.arch=granite --set model.n_layer=2 --set model.activation=silu --set model.residual_multiplier=0.2"
                                  " --set model.attention_multiplier=0.1 --set model.tie_word_embeddings=false",
                                  "--set model.arch=olmoe --set model.n_layer=2 --set model.activation=silu --set model.qk_norm=true --set model.n_kv_head=2"
                                  " --set model.num_experts=4 --set model.experts_per_token=2 --set model.norm_topk_prob=false",
                                  "--set model.arch=gpt_oss --set model.n_layer=2 --set model.activation=silu --set model.n_kv_head=2"
                                  " --set model.attention_bias=true --set model.attention_out_bias=true --set model.attention_sinks=true"
                                  " --set model.swiglu_limit=7 --set model.num_experts=4 --set model.experts_per_token=2"
                                  " --set model.sliding_window=8 --set model.sliding_window_pattern=2"}) {
    for (const std::string lora : {"", " --set lora.rank=4 --set lora.target=all-linear", " --set lora.rank=2 --set lora.target=q_proj,v_proj"}) {
      if (lora.find("q_proj") != std::string::npos && shape.find("llama") == std::string::npos &&
          shape.find("qwen3") == std::string::npos && shape.find("gemma3") == std::string::npos)
        continue;
      SCOPED_TRACE(shape + lora);
      const train::Config config = train::load_config(
          "", split_sets(shape + lora + " --set model.n_head=4 --set model.d_model=32 --set model.d_ff=48 --set model.vocab_size=300"
                                        " --set model.max_seq_len=40 --set data.seq_len=40"));
      const train::ModelFootprint f = family::lm_footprint(config, 2);
      model::CausalLm lm = model::make_causal_lm(train::lm_config(config.model));
      if (config.lora.enabled()) model::apply_lora(*lm, config.lora.spec(), 0);
      int64_t trainable = 0, frozen = 0, largest = 0;
      for (const auto& p : lm->parameters()) {
        (p.requires_grad() ? trainable : frozen) += p.numel();
        if (p.requires_grad()) largest = std::max(largest, p.numel());
      }
      EXPECT_EQ(f.trainable, trainable);
      EXPECT_EQ(f.frozen, frozen);
      EXPECT_EQ(f.largest_param, largest);
    }
  }
}

// The plan's peak against the peak resident memory of the same run, within 15%.
TEST(CliMemoryPlan, PeakIsWithinFifteenPercentOfMeasured) {
  const std::string dir = test::scratch_dir();
  const std::string data = test::write_corpus(dir, "general", 60000);
  const std::string base = "--set data.train=" + data + " --set train.steps=2 --set train.warmup_steps=1 --set train.threads=1"
                           " --set model.max_seq_len=256 --set data.seq_len=256 --set train.batch_size=8";
  int k = 0;
  for (const std::string shape :
       {"--set model.arch=opt --set model.n_layer=4 --set model.n_head=4 --set model.d_model=256 --set model.d_ff=1024",
        "--set model.arch=opt --set model.n_layer=4 --set model.n_head=4 --set model.d_model=256 --set model.d_ff=1024"
        " --set model.dropout=0.1",
        // Two micro-batches: the second one's forward pass ends beside the first one's gradients.
        "--set model.arch=opt --set model.n_layer=4 --set model.n_head=4 --set model.d_model=512 --set model.d_ff=2048"
        " --set train.grad_accum=2",
        "--set model.arch=gpt2 --set model.activation=gelu --set model.n_layer=4 --set model.n_head=4 --set model.d_model=256"
        " --set model.d_ff=1024 --set train.batch_size=16",
        "--set model.arch=llama --set model.activation=silu --set model.n_layer=6 --set model.n_head=4 --set model.d_model=256"
        " --set model.d_ff=768 --set model.vocab_size=8192",
        "--set model.arch=llama --set model.activation=silu --set model.n_layer=6 --set model.n_head=4 --set model.d_model=256"
        " --set model.d_ff=768 --set model.vocab_size=8192 --set train.activation_checkpointing=1",
        "--set model.arch=llama --set model.activation=silu --set model.n_layer=6 --set model.n_head=4 --set model.d_model=256"
        " --set model.d_ff=768 --set model.vocab_size=8192 --set lora.rank=8 --set lora.target=all-linear",
        "--set model.arch=llama --set model.activation=silu --set model.n_layer=6 --set model.n_head=4 --set model.d_model=256"
        " --set model.d_ff=768 --set model.vocab_size=8192 --set train.precision=bf16 --set train.param_dtype=bf16",
        // Gemma 2: soft-capped scores hold (B, H, T, T) a layer.
        "--set model.arch=gemma2 --set model.activation=gelu --set model.n_layer=4 --set model.n_head=4 --set model.d_model=256"
        " --set model.d_ff=768 --set model.vocab_size=8192 --set model.sliding_window=128 --set model.sliding_window_pattern=2"
        " --set model.attn_logit_softcapping=50 --set model.final_logit_softcapping=30",
        // gpt-oss: attention sinks as one more key of the fused kernel; clamped experts with biases.
        "--set model.arch=gpt_oss --set model.activation=silu --set model.n_layer=4 --set model.n_head=16 --set model.n_kv_head=4"
        " --set model.d_model=256 --set model.d_ff=256 --set model.vocab_size=8192 --set model.sliding_window=128"
        " --set model.sliding_window_pattern=2 --set model.attention_bias=true --set model.attention_out_bias=true"
        " --set model.attention_sinks=true --set model.swiglu_limit=7 --set model.num_experts=4 --set model.experts_per_token=2"
        " --set model.tie_word_embeddings=false"}) {
    SCOPED_TRACE(shape);
    const std::string flags = base + " " + shape + " --set run.dir=" + dir + "/run" + std::to_string(k++);
    const train::Config config = train::load_config("", split_sets(flags));
    const auto plan = family::memory_plan(config, 1, 1, 0);
    ASSERT_TRUE(plan.has_value());
    std::vector<std::string> args{"train", "--quiet"};
    for (const auto& s : split_sets(flags)) args.push_back("--set"), args.push_back(s);
    const double measured = static_cast<double>(test::peak_rss_kb(args)) * 1024;
    std::cout << "plan " << format_bytes(plan->peak) << ", measured peak " << format_bytes(measured) << ": " << shape << "\n";
    EXPECT_NEAR(plan->peak / measured, 1.0, 0.15);
  }
  // A node of two workers, fully sharded and not: the larger worker's peak (the launcher waits for
  // both, so its children's peak is theirs). Weights, gradients and AdamW state dominate here.
  // With bf16 weights, their fp32 masters sharded.
  for (const std::string shard : {"none", "full", "full --set train.precision=bf16 --set train.param_dtype=bf16"}) {
    SCOPED_TRACE(shard);
    const std::string flags = base + " --set model.arch=llama --set model.activation=silu --set model.n_layer=8 --set model.n_head=8"
                                     " --set model.d_model=512 --set model.d_ff=2048 --set model.vocab_size=8192 --set train.batch_size=4"
                                     " --set model.max_seq_len=64 --set data.seq_len=64 --set dist.shard=" + shard +
                              " --set run.dir=" + dir + "/run-" + std::to_string(k++);
    const train::Config config = train::load_config("", split_sets(flags));
    const auto plan = family::memory_plan(config, 2, 2, 0);
    ASSERT_TRUE(plan.has_value());
    std::vector<std::string> args{"launch", "--workers", "2", "--", "train", "--quiet"};
    for (const auto& s : split_sets(flags)) args.push_back("--set"), args.push_back(s);
    const double measured = static_cast<double>(test::peak_rss_kb(args)) * 1024;
    std::cout << "plan " << format_bytes(plan->peak) << ", measured peak " << format_bytes(measured) << ": 2 workers, dist.shard = " << shard << "\n";
    EXPECT_NEAR(plan->peak / measured, 1.0, 0.15);
  }
}

}  // namespace
}  // namespace lofi

namespace lofi {
namespace {

const char* kLlama8b =
    " --set model.arch=llama --set model.activation=silu --set model.n_layer=32 --set model.d_model=4096 --set model.n_head=32"
    " --set model.n_kv_head=8 --set model.d_ff=14336 --set model.vocab_size=128256 --set model.max_seq_len=8192"
    " --set model.tie_word_embeddings=false --set data.seq_len=2048 --set train.batch_size=8";

// A Llama-3-8B-shaped full fine-tune does not fit this machine: refused by the plan before a byte
// of the model is made (no run directory), naming what would make it fit.
TEST(CliMemoryPlan, ARunThatCannotFitIsRefusedBeforeItStarts) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  auto r = test::run_lofi("train --set data.train=" + data + " --set run.dir=" + dir + "/run" + kLlama8b);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("memory plan: this run (llama, 32 layers, d_model 4096"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("AdamW state 64.2 GB"), std::string::npos) << r.output;  // 8.03 B x 8 bytes
  EXPECT_NE(r.output.find("train.memory_check = false"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/run")) << "nothing is made before the plan";
  // lofi plan prints the table, the knobs, and exits 1.
  auto plan = test::run_lofi(std::string("plan") + kLlama8b);
  EXPECT_EQ(plan.status, 1) << plan.output;
  EXPECT_NE(plan.output.find("8.03 B parameters in fp32"), std::string::npos) << plan.output;
  EXPECT_NE(plan.output.find("--set lora.rank=16 --set model.dtype=bf16"), std::string::npos) << plan.output;
  EXPECT_NE(plan.output.find("does NOT fit"), std::string::npos) << plan.output;
}

// Sharding within a node divides the AdamW state (and, for "gradients", the gradients) by the
// node's workers; LoRA leaves them to the adapters.
TEST(MemoryPlan, ShardingAndLoraShrinkWhatTheyShould) {
  auto line = [](const train::MemoryPlan& plan, const std::string& what) {
    for (const auto& l : plan.lines)
      if (l.what == what) return l.bytes;
    ADD_FAILURE() << "no line " << what;
    return 0.0;
  };
  auto plan_of = [&](const std::string& sets, int64_t workers, double available = 1e15, const std::string& device = "cuda:0",
                     const train::FootprintOf& footprint = family::lm_footprint) {
    const train::Config config = train::load_config("", split_sets(std::string(kLlama8b) + sets));
    train::PlanPlace place;
    place.node_workers = workers;
    place.device = device;
    place.available = available;
    return train::plan_memory(config, place, footprint);
  };
  const auto one = plan_of("", 1, 141e9), none = plan_of("", 4), zero1 = plan_of(" --set dist.shard=optimizer", 4),
             zero2 = plan_of(" --set dist.shard=gradients", 4), lora = plan_of(" --set lora.rank=16 --set model.dtype=bf16 --set train.precision=bf16", 1, 141e9);
  const double P = 8030261248.0;  // Llama-3-8B's parameters
  EXPECT_NEAR(line(one, "AdamW state"), 8 * P, 1e6);
  EXPECT_NEAR(line(zero1, "AdamW state"), 2 * P, 1e6);
  EXPECT_NEAR(line(none, "gradients"), 8 * P, 1e6);   // .grad and the all-reduce's buckets
  EXPECT_NEAR(line(plan_of(" --set dist.reduce_dtype=bf16", 4), "gradients"), 6 * P, 1e6);  // the buckets in bf16
  EXPECT_LT(line(zero2, "gradients"), 1.3 * P);       // 1/4 of 4 bytes each, two buckets and the embedding's .grad in flight
  EXPECT_NEAR(line(lora, "weights"), 2 * P, 0.03 * P);  // the frozen base in bf16, the adapters in fp32
  // Gradients held between steps (train.cuda_graphs) or micro-batches (train.grad_accum): a
  // forward pass ends beside them, which is this shape's peak.
  // Against the same micro-batch without: the .grad of every weight (4 bytes each) on top.
  for (const auto& [sets, without] : std::vector<std::pair<std::string, std::string>>{
           {" --set train.cuda_graphs=true", ""}, {" --set train.grad_accum=2", " --set train.batch_size=4"}}) {
    const auto held = plan_of(sets, 1, 141e9);
    const double forward_end = line(held, "runtime") + line(held, "weights") + line(held, "AdamW state") +
                               line(held, "gradients") + line(held, "activations") + line(held, "loss head");
    EXPECT_NEAR(held.peak, forward_end, 1e6) << sets;
    EXPECT_NEAR(held.peak - plan_of(without, 1, 141e9).peak, 4 * P, 1e6) << sets;
  }
  // A bf16 base's residual stream is bf16: each of the 65 norms (two a block and the final one)
  // keeps its input in 2 bytes, not 4 (kernels/rms_norm.h), over 8 x 2048 tokens of width 4096.
  const auto lora_fp32_base = plan_of(" --set lora.rank=16 --set train.precision=bf16", 1, 141e9);
  EXPECT_NEAR(line(lora_fp32_base, "activations") - line(lora, "activations"), 65 * 2 * 8 * 2048 * 4096.0, 1e3);
  // Fully sharded over 8 workers: the embedding and head whole, 1/8 of the 32 blocks, two blocks gathered.
  const double block = 218112000.0, outside = P - 32 * block;  // one block's parameters; the embedding, head and final norm
  const auto zero3 = plan_of(" --set dist.shard=full", 8);
  EXPECT_NEAR(line(zero3, "weights"), 4 * outside + 4 * (32 * block / 8) + 2 * 4 * block, 1e6);
  EXPECT_NEAR(line(zero3, "AdamW state"), P, 1e6);
  EXPECT_LT(zero3.peak, plan_of(" --set dist.shard=gradients", 8).peak);
  // train.param_dtype = "bf16": the weights and their .grad in bf16, fp32 masters beside them (1/G
  // where the optimizer is sharded), no autocast copies.
  const std::string bf16 = " --set train.precision=bf16 --set train.param_dtype=bf16";
  const auto one16 = plan_of(bf16, 1, 141e9), zero2_16 = plan_of(bf16 + " --set dist.shard=gradients", 4),
             zero3_16 = plan_of(bf16 + " --set dist.shard=full", 8);
  EXPECT_NEAR(line(one16, "weights"), 2 * P + 4 * P, 1e6);
  EXPECT_NEAR(line(one16, "gradients"), 2 * P, 1e6);
  EXPECT_NEAR(line(one16, "gradient copies"), 256.0 * 1024 * 1024, 1);  // the step's fp32 copies, a batch at a time
  for (const auto& l : one16.lines) EXPECT_NE(l.what, "bf16 weight copies");
  EXPECT_NEAR(line(zero2_16, "weights"), 2 * P + 4 * P / 4, 1e6);
  EXPECT_NEAR(line(zero3_16, "weights"), 2 * outside + 2 * 2 * block + 4 * P / 8, 1e6);
  EXPECT_LT(zero3_16.peak, zero3.peak);
  EXPECT_LT(zero2_16.peak, zero2.peak);
  EXPECT_TRUE(plan_of(" --set dist.shard=full --set train.activation_checkpointing=1", 8, 141e9).fits());
  // After training no worker holds the weights whole (the final is written as the node gathers it);
  // a lo-fi job's merging leader evaluates each final whole, in fp32, where the job has data.val.
  const std::string checkpointed = " --set dist.shard=full --set train.activation_checkpointing=1";
  for (const std::string& sets : {checkpointed, checkpointed + bf16, checkpointed + " --set dist.nodes=2",
                                 checkpointed + " --set data.val=val.bin"})
    for (const auto& l : plan_of(sets, 8).lines) EXPECT_NE(l.what, "after training") << sets;
  for (const std::string& sets : {checkpointed, checkpointed + bf16}) {
    const auto merging = plan_of(sets + " --set dist.nodes=2 --set data.val=val.bin", 8);
    EXPECT_NEAR(line(merging, "after training"), 4 * P, 1e6) << sets;
    EXPECT_NEAR(merging.peak, 4 * P + line(merging, "runtime"), 1e6) << sets;
  }
  // A fully sharded start sends the device only this worker's parts of the blocks, one block whole
  // at a time, and a decoder's full fine-tune is built in pieces: no worker holds the model whole on
  // the host either, so on a CPU as on GPUs the steps are the peak of a fully sharded, checkpointed
  // node of 8. A model built whole first holds 4P on the host at the start: on a CPU, the peak.
  auto built_whole = [](const train::Config& c, int64_t micro) {
    train::ModelFootprint f = family::lm_footprint(c, micro);
    f.builds_in_pieces = false;
    return f;
  };
  for (const std::string& sets : {checkpointed, checkpointed + bf16}) {
    for (const std::string device : {"cpu", "cuda:0"}) {
      const auto pieces = plan_of(sets, 8, 1e15, device);
      for (const auto& l : pieces.lines) EXPECT_NE(l.what, "model built") << sets << " " << device;
      EXPECT_LT(pieces.peak, 30e9) << sets << " " << device;  // below the whole model's 32.1 GB
    }
    const auto whole = plan_of(sets, 8, 1e15, "cpu", built_whole);
    EXPECT_NEAR(line(whole, "model built"), 4 * P, 1e6) << sets;
    EXPECT_NEAR(whole.peak, 4 * P + line(whole, "runtime"), 1e6) << sets;
  }
  for (const auto& l : zero2.lines) EXPECT_NE(l.what, "model built");
  // A checkpoint gathers two fp32 buckets at a time, the largest here the embedding's (one
  // parameter); at sequence 512 that moment is the peak.
  const double embedding = 128256.0 * 4096;
  EXPECT_NEAR(line(plan_of(checkpointed + bf16 + " --set data.seq_len=512", 8), "checkpoint gathers"), 2 * 4 * embedding, 1e3);
  // Gradients of a fully sharded node: its 1/8 part, two block buckets in flight and the largest
  // parameter's .grad; on a CPU Gloo reduce-scatters a copy of each bucket in flight.
  EXPECT_NEAR(line(zero3, "gradients"), 4 * P / 8 + 2 * 4 * block + 4 * embedding, 1e6);
  EXPECT_NEAR(line(plan_of(" --set dist.shard=full", 8, 1e15, "cpu"), "gradients"), 4 * P / 8 + 4 * 4 * block + 4 * embedding, 1e6);
  const auto tight = plan_of(" --set dist.shard=gradients", 8, 40e9);
  ASSERT_FALSE(tight.fits());
  bool full_offered = false;
  for (const auto& knob : tight.knobs) full_offered |= knob.setting.find("--set dist.shard=full") != std::string::npos;
  EXPECT_TRUE(full_offered);
  EXPECT_LT(zero2.peak, zero1.peak);
  EXPECT_LT(zero1.peak, none.peak);
  EXPECT_TRUE(lora.fits());
  EXPECT_FALSE(one.fits());
  EXPECT_FALSE(one.knobs.empty());
}

}  // namespace
}  // namespace lofi
