#include "lofi/model/causal_lm.h"

#include <gtest/gtest.h>

#include "lofi/dist/device.h"
#include "lofi/eval/perplexity.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors.h"
#include "lofi/kernels/cpu_avx2.h"
#include "lofi/kernels/fp32_products.h"
#include "lofi/model/blocks.h"
#include "lofi/model/gpt2.h"
#include "lofi/model/llama.h"
#include "lofi/model/lora.h"
#include "lofi/model/opt.h"
#include "lofi/model/seeded_init.h"
#include "lofi/model/weights.h"
#include "autograd_nodes.h"
#include "cpu_bytes.h"
#include "product_dtypes.h"
#include "test_util.h"

namespace lofi::model {
namespace {

LmConfig tiny(const std::string& arch = "opt") {
  LmConfig c;
  c.arch = arch;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_model = 16;
  c.d_ff = 32;
  c.vocab_size = 50;
  c.max_seq_len = 12;
  return c;
}

TEST(CausalLm, ParameterNamesAreHuggingFaceOpt) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  auto params = gpt->named_parameters();
  for (const char* name : {"model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
                           "model.decoder.final_layer_norm.weight", "model.decoder.layers.1.self_attn.q_proj.weight",
                           "model.decoder.layers.0.self_attn.out_proj.bias", "model.decoder.layers.0.fc1.weight",
                           "model.decoder.layers.1.self_attn_layer_norm.bias", "model.decoder.layers.1.final_layer_norm.weight"})
    EXPECT_NE(params.find(name), nullptr) << name;
  EXPECT_EQ(params["model.decoder.embed_positions.weight"].size(0), 12 + kOptPositionOffset);
  EXPECT_EQ(params["model.decoder.layers.0.fc1.weight"].sizes(), torch::IntArrayRef({32, 16}));
  EXPECT_EQ(params.find("lm_head.weight"), nullptr);  // tied to embed_tokens
}

TEST(CausalLm, LogitShapes) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  init_causal_lm_weights(*gpt, 0);
  torch::Tensor tokens = torch::randint(0, 50, {3, 7});
  EXPECT_EQ(gpt->forward(tokens).sizes(), torch::IntArrayRef({3, 7, 50}));
  EXPECT_THROW(gpt->forward(torch::randint(0, 50, {1, 13})), std::exception);  // longer than max_seq_len
}

TEST(CausalLm, TokensNeverSeeTheFuture) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  init_causal_lm_weights(*gpt, 0);
  gpt->eval();
  torch::Tensor a = torch::randint(0, 50, {1, 10});
  torch::Tensor b = a.clone();
  b.index_put_({0, torch::indexing::Slice(6)}, torch::randint(0, 50, {4}));  // change positions 6..9
  torch::Tensor la = gpt->forward(a), lb = gpt->forward(b);
  EXPECT_TRUE(torch::allclose(la.narrow(1, 0, 6), lb.narrow(1, 0, 6), 0, 0));  // bit-identical past
  EXPECT_FALSE(torch::allclose(la.narrow(1, 6, 4), lb.narrow(1, 6, 4)));      // the changed future differs
}

// The other layouts: GPT-2, OPT's post-LayerNorm variant with a narrower embedding, and the
// Llama class: grouped-query attention with an untied head, Qwen2's q/k/v biases with
// Llama 3.1 rope scaling, Mistral's sliding window shorter than the sequence, Qwen3's norms of
// each query and key head with a head_dim of its own, Gemma 3's sandwiched blocks with a sliding
// layer and a full one, Phi-3's fused projections, SmolLM3's layers without rotation, Gemma 2's
// soft-capped scores and logits, gpt-oss's sinks and clamped experts.
std::vector<LmConfig> variants() {
  LmConfig gpt2 = tiny("gpt2"), post = tiny(), llama = tiny("llama"), qwen2 = tiny("qwen2"), mistral = tiny("mistral");
  LmConfig qwen3 = tiny("qwen3"), gemma3 = tiny("gemma3_text"), phi3 = tiny("phi3"),
           smollm3 = tiny("smollm3");
  gpt2.activation = "gelu";
  post.do_layer_norm_before = false;
  post.word_embed_proj_dim = 8;
  for (LmConfig* c : {&llama, &qwen2, &mistral, &qwen3, &phi3, &smollm3}) c->activation = "silu";
  gemma3.activation = "gelu";
  gemma3.qk_norm = true;
  gemma3.n_head = 4;
  gemma3.n_kv_head = 2;
  gemma3.head_dim = 6;
  gemma3.query_pre_attn_scalar = 8;
  gemma3.sliding_window = 4;
  gemma3.sliding_window_pattern = 2;  // layer 1 attends over the whole sequence
  gemma3.rope_theta = 1e6;
  gemma3.rope_local_theta = 1e4;
  llama.n_kv_head = 1;
  llama.tie_word_embeddings = false;
  qwen2.attention_bias = true;
  qwen2.rope_scaling = "llama3";
  qwen2.rope_factor = 4;
  qwen2.rope_original_max_positions = 8;
  mistral.sliding_window = 4;
  mistral.tie_word_embeddings = false;
  qwen3.qk_norm = true;
  qwen3.n_head = 4;
  qwen3.n_kv_head = 2;
  qwen3.head_dim = 6;  // 4 x 6 = 24 != d_model
  phi3.n_kv_head = 1;  // fused q/k/v of unequal widths
  phi3.sliding_window = 4;
  smollm3.no_rope_interval = 2;  // layer 1 attends without rotation
  LmConfig gemma2 = gemma3;
  gemma2.arch = "gemma2";
  gemma2.qk_norm = false;
  gemma2.rope_local_theta = 0;
  gemma2.attn_logit_softcapping = 1.0;
  gemma2.final_logit_softcapping = 5.0;
  LmConfig gpt_oss = tiny("gpt_oss");  // sinks, a sliding layer and a full one, clamped 3-D experts
  gpt_oss.activation = "silu";
  gpt_oss.attention_bias = gpt_oss.attention_out_bias = gpt_oss.attention_sinks = true;
  gpt_oss.sliding_window = 4;
  gpt_oss.sliding_window_pattern = 2;
  gpt_oss.num_experts = 3;
  gpt_oss.experts_per_token = 2;
  gpt_oss.swiglu_limit = 7;
  gpt_oss.tie_word_embeddings = false;
  return {tiny(), gpt2, post, llama, qwen2, mistral, qwen3, gemma3, phi3, smollm3, gemma2, gpt_oss};
}

TEST(CausalLm, EveryLayoutIsCausalAndTrains) {
  for (const LmConfig& c : variants()) {
    SCOPED_TRACE(c.arch + (c.do_layer_norm_before ? "" : " post-LN"));
    torch::manual_seed(0);
    CausalLm lm = make_causal_lm(c);
    init_causal_lm_weights(*lm, 0);
    lm->eval();
    torch::Tensor a = torch::randint(0, 50, {2, 12}), b = a.clone();
    b.index_put_({torch::indexing::Slice(), torch::indexing::Slice(8)}, torch::randint(0, 50, {2, 4}));
    torch::Tensor la = lm->forward(a), lb = lm->forward(b);
    EXPECT_TRUE(torch::equal(la.narrow(1, 0, 8), lb.narrow(1, 0, 8)));
    EXPECT_FALSE(torch::allclose(la.narrow(1, 8, 4), lb.narrow(1, 8, 4)));
    lm->train();
    torch::optim::AdamW opt(lm->parameters(), torch::optim::AdamWOptions(3e-3));
    double first = 0, last = 0;
    for (int i = 0; i < 100; ++i) {
      opt.zero_grad();
      torch::Tensor loss = lm->loss(a.narrow(1, 0, 11), a.narrow(1, 1, 11));
      loss.backward();
      opt.step();
      (i == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_LT(last, 0.5 * first);
  }
}

// A training step of every layout under bf16 autocast, full and with LoRA adapters over a frozen
// base: on a CPU without fast bf16 products (no AVX-512) none of its products runs in bf16 (each
// would take ATen's reference loop, up to 110x slower than fp32's); with them, autocast's bf16
// products run as torch.autocast runs them.
TEST(CausalLm, Bf16AutocastTakesFp32ProductsOnlyWhereBf16IsSlow) {
  std::vector<LmConfig> configs = variants();
  configs.push_back(configs[3]);  // Llama again, with adapters
  for (size_t i = 0; i < configs.size(); ++i) {
    const bool with_lora = i + 1 == configs.size();
    SCOPED_TRACE(configs[i].arch + (with_lora ? " LoRA" : ""));
    torch::manual_seed(0);
    CausalLm lm = make_causal_lm(configs[i]);
    init_causal_lm_weights(*lm, 0);
    if (with_lora) {
      io::LoraSpec spec;
      spec.r = 4;
      spec.target_modules = {"all-linear"};
      apply_lora(*lm, spec, 0);
    }
    const torch::Tensor tokens = torch::randint(0, 50, {2, 12});
    test::Bf16Products seen;
    torch::Tensor loss;
    {
      dist::PrecisionGuard bf16(torch::kCPU, "bf16");
      loss = lm->loss(tokens.narrow(1, 0, 11), tokens.narrow(1, 1, 11));
      ASSERT_EQ(lm->forward(tokens).scalar_type(), torch::kBFloat16);  // the head under autocast
    }
    loss.backward();
    EXPECT_TRUE(std::isfinite(loss.item<double>()));
    if (kernels::cpu_has_fast_low_precision_products())
      EXPECT_FALSE(seen.names().empty());
    else
      EXPECT_TRUE(seen.names().empty()) << "bf16 products: " << c10::Join(", ", seen.names());
  }
}

// Under bf16 autocast the projections of one fp32 input keep one bf16 copy of it between them
// (kernels/autocast_operand.h), not one each: Llama's q, k and v, its gate and up, OPT's q, k and v,
// and with LoRA adapters each adapter's A as well (GPT-2's c_attn and c_fc, one product each
// without adapters, then share with their A).
TEST(CausalLm, AutocastProjectionsKeepOneCopyOfTheirInput) {
  const LmConfig llama = variants()[3], opt = tiny(), gpt2 = variants()[1];
  const int64_t T = 12;
  const torch::Tensor cos = torch::ones({T, llama.head_width()}), sin = torch::zeros({T, llama.head_width()});
  for (bool lora : {false, true}) {
    SCOPED_TRACE(lora ? "LoRA" : "no adapters");
    torch::manual_seed(0);
    LlamaAttention attn(llama);
    LlamaMlp mlp(llama);
    OptAttention opt_attn(opt);
    Gpt2Attention gpt2_attn(gpt2);
    Gpt2Mlp gpt2_mlp(gpt2);
    if (lora)
      for (AdaptableLinearImpl* layer :
           std::initializer_list<AdaptableLinearImpl*>{attn->q_proj.get(), attn->k_proj.get(), attn->v_proj.get(), mlp->gate_proj.get(),
                                                              mlp->up_proj.get(), opt_attn->q_proj.get(), opt_attn->k_proj.get(),
                                                              opt_attn->v_proj.get(), gpt2_attn->c_attn.get(), gpt2_mlp->c_fc.get()})
        layer->attach_lora(2, 1.0, 0.0);
    const torch::Tensor x = torch::randn({2, T, llama.d_model});
    const int64_t copy = x.numel() * 2;
    EXPECT_EQ(test::kept_for_an_fp32_input([&](const torch::Tensor& h) { return attn->forward(h, cos, sin, {}); }, x), copy) << "attention";
    EXPECT_EQ(test::kept_for_an_fp32_input([&](const torch::Tensor& h) { return mlp->forward(h); }, x), copy) << "gated MLP";
    const torch::Tensor xo = torch::randn({2, T, opt.d_model});
    EXPECT_EQ(test::kept_for_an_fp32_input([&](const torch::Tensor& h) { return opt_attn->forward(h, {}); }, xo), xo.numel() * 2) << "OPT attention";
    const torch::Tensor xg = torch::randn({2, T, gpt2.d_model});
    EXPECT_EQ(test::kept_for_an_fp32_input([&](const torch::Tensor& h) { return gpt2_attn->forward(h, {}); }, xg), xg.numel() * 2) << "GPT-2 attention";
    EXPECT_EQ(test::kept_for_an_fp32_input([&](const torch::Tensor& h) { return gpt2_mlp->forward(h); }, xg), xg.numel() * 2) << "GPT-2 MLP";
  }
}

// Each block's attention residual add and the norm after it run as one fused op on a CPU with AVX2
// (kernels/rms_norm.h, kernels/layer_norm.h): one a block, two in a post-LN OPT block (both of its
// adds), none left to the composite, whose results are the same.
TEST(CausalLm, BlocksTakeTheFusedAddAndNorm) {
  if (!kernels::avx2::avx2_available()) GTEST_SKIP() << "the fused CPU loops need AVX2; this CPU runs the composite";
  for (const LmConfig& c : variants()) {
    SCOPED_TRACE(c.arch + (c.do_layer_norm_before ? "" : " post-LN"));
    torch::manual_seed(0);
    CausalLm lm = make_causal_lm(c);
    const torch::Tensor logits = lm->forward(torch::randint(0, 50, {2, 12}));
    const bool layer_norm = c.arch == "opt" || c.arch == "gpt2";
    const int64_t per_block = c.arch == "opt" && !c.do_layer_norm_before ? 2 : 1;
    EXPECT_EQ(test::graph_nodes_named(logits, layer_norm ? "AddLayerNormFunction" : "AddRmsNormFunction"), per_block * c.n_layer);
  }
}

TEST(CausalLm, Gpt2AndOptVariantNamesAreHuggingFaces) {
  auto gpt2 = make_causal_lm(variants()[1])->named_parameters();
  for (const char* name : {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.ln_1.weight",
                           "transformer.h.0.attn.c_attn.bias", "transformer.h.0.attn.c_proj.weight",
                           "transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.bias", "transformer.ln_f.bias"})
    EXPECT_NE(gpt2.find(name), nullptr) << name;
  EXPECT_EQ(gpt2["transformer.h.0.attn.c_attn.weight"].sizes(), torch::IntArrayRef({16, 48}));  // Conv1D: (in, out)
  EXPECT_EQ(gpt2["transformer.h.0.mlp.c_fc.weight"].sizes(), torch::IntArrayRef({16, 32}));
  EXPECT_EQ(gpt2["transformer.wpe.weight"].size(0), 12);  // no position offset
  EXPECT_EQ(gpt2.size(), 4u + 2 * 12u);
  auto post = make_causal_lm(variants()[2])->named_parameters();
  EXPECT_EQ(post["model.decoder.embed_tokens.weight"].sizes(), torch::IntArrayRef({50, 8}));
  EXPECT_EQ(post["model.decoder.project_in.weight"].sizes(), torch::IntArrayRef({16, 8}));
  EXPECT_EQ(post["model.decoder.project_out.weight"].sizes(), torch::IntArrayRef({8, 16}));
  EXPECT_EQ(post.find("model.decoder.project_in.bias"), nullptr);
  EXPECT_EQ(post.find("model.decoder.final_layer_norm.weight"), nullptr);  // post-LN has none
}

TEST(CausalLm, BadConfigIsNamed) {
  LmConfig c = tiny();
  c.arch = "bert";
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("\"bert\" is not an architecture lofi builds (it builds \"gemma2\", \"gemma3_text\", \"gpt2\""),
            std::string::npos);
  c = tiny("gpt2");
  c.do_layer_norm_before = false;
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("do_layer_norm_before = false does not apply to arch \"gpt2\""),
            std::string::npos);
  c = tiny();
  c.activation = "tanh";
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("\"tanh\""), std::string::npos);
  c = tiny("llama");
  c.n_kv_head = 3;
  c.n_head = 4;
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("n_head (4) must be a multiple of n_kv_head (3)"), std::string::npos);
  c = tiny("qwen2");
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("arch \"qwen2\" has biases on q/k/v_proj only"), std::string::npos);
  // Query/key norms belong to Qwen3, and Qwen3 has them.
  c = tiny("qwen3");
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("arch \"qwen3\" has RMSNorm on each query and key head: set qk_norm = true"),
            std::string::npos);
  c = tiny("llama");
  c.qk_norm = true;
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("arch \"llama\" has no RMSNorm on each query and key head: set qk_norm = false"),
            std::string::npos);
  c = tiny();
  c.qk_norm = true;
  EXPECT_NE(test::error_of([&] { make_causal_lm(c); }).find("qk_norm = true does not apply to arch \"opt\""), std::string::npos);
}

// The Llama class names its parameters as transformers does, with the head its own when untied.
TEST(CausalLm, LlamaNamesAndShapesAreHuggingFaces) {
  auto llama = make_causal_lm(variants()[3])->named_parameters();
  for (const char* name : {"model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                           "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
                           "model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
                           "model.norm.weight", "lm_head.weight"})
    EXPECT_NE(llama.find(name), nullptr) << name;
  EXPECT_EQ(llama["model.layers.0.self_attn.k_proj.weight"].sizes(), torch::IntArrayRef({8, 16}));  // 1 kv head of 8
  EXPECT_EQ(llama["model.layers.0.self_attn.q_proj.weight"].sizes(), torch::IntArrayRef({16, 16}));
  EXPECT_EQ(llama.find("model.layers.0.self_attn.q_proj.bias"), nullptr);
  EXPECT_EQ(llama.size(), 3u + 2 * 9u);
  auto qwen2 = make_causal_lm(variants()[4])->named_parameters();
  EXPECT_NE(qwen2.find("model.layers.0.self_attn.v_proj.bias"), nullptr);
  EXPECT_EQ(qwen2.find("model.layers.0.self_attn.o_proj.bias"), nullptr);
  EXPECT_EQ(qwen2.find("lm_head.weight"), nullptr);  // tied
  auto qwen3 = make_causal_lm(variants()[6])->named_parameters();
  EXPECT_EQ(qwen3["model.layers.1.self_attn.q_norm.weight"].sizes(), torch::IntArrayRef({6}));  // one head's width
  EXPECT_EQ(qwen3["model.layers.1.self_attn.k_norm.weight"].sizes(), torch::IntArrayRef({6}));
  EXPECT_EQ(qwen3["model.layers.0.self_attn.q_proj.weight"].sizes(), torch::IntArrayRef({24, 16}));  // 4 heads of 6
  EXPECT_EQ(qwen3.size(), 2u + 2 * 11u);  // tied head
  auto gemma3 = make_causal_lm(variants()[7])->named_parameters();
  for (const char* name : {"model.layers.0.pre_feedforward_layernorm.weight", "model.layers.1.post_feedforward_layernorm.weight",
                           "model.layers.1.post_attention_layernorm.weight", "model.layers.0.self_attn.k_norm.weight"})
    EXPECT_NE(gemma3.find(name), nullptr) << name;
  EXPECT_EQ(gemma3.size(), 2u + 2 * 13u);  // tied head; four norms a block
}

// Gemma's norms scale by 1 + weight from a weight of 0; its embeddings are scaled by sqrt(d_model).
TEST(CausalLm, GemmaNormsStartAtZeroAndScaleByOnePlusWeight) {
  const LmConfig c = variants()[7];
  CausalLm lm = make_causal_lm(c);
  init_causal_lm_weights(*lm, 0);
  auto params = lm->named_parameters();
  EXPECT_TRUE(torch::equal(params["model.norm.weight"], torch::zeros({c.d_model})));
  EXPECT_TRUE(torch::equal(params["model.layers.0.self_attn.q_norm.weight"], torch::zeros({6})));
  RmsNorm gemma(8, 1e-6, /*unit_offset=*/true), llama(8, 1e-6);
  torch::NoGradGuard no_grad;
  gemma->weight.uniform_(-1, 1);
  llama->weight.copy_(gemma->weight + 1);
  const torch::Tensor x = torch::randn({3, 8});
  EXPECT_TRUE(torch::allclose(gemma(x), llama(x), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(gemma(x.to(torch::kBFloat16)).to(torch::kFloat),
                              unit_offset_rms_norm_reference(x.to(torch::kBFloat16), gemma->weight, 1e-6).to(torch::kFloat), 0, 0));
}

TEST(CausalLm, LossFallsWhenOverfittingOneBatch) {
  torch::manual_seed(0);
  CausalLm gpt = make_causal_lm(tiny());
  init_causal_lm_weights(*gpt, 0);
  torch::Tensor window = torch::randint(0, 50, {4, 11});
  torch::Tensor x = window.narrow(1, 0, 10), y = window.narrow(1, 1, 10);
  torch::optim::AdamW opt(gpt->parameters(), torch::optim::AdamWOptions(3e-3));
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    opt.zero_grad();
    torch::Tensor loss = gpt->loss(x, y);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_NEAR(first, std::log(50.0), 0.3);  // near-uniform at init
  EXPECT_LT(last, 0.3 * first);
}

// Evaluation's log-probabilities, made over chunks of tokens, equal the whole (B, T, V)
// log-softmax's: of one model and of an ensemble (the log of the mean probability), for each
// target and for the token after the last.
TEST(CausalLm, ChunkedLogProbsEqualTheWholeLogSoftmax) {
  torch::manual_seed(5);
  std::vector<CausalLm> members;
  for (const char* arch : {"llama", "llama"}) {
    members.push_back(make_causal_lm(tiny(arch)));
    init_causal_lm_weights(*members.back(), members.size());  // two members, two seeds
    members.back()->eval();
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randint(50, {3, 7}), y = torch::randint(50, {3, 7});  // (B, T)
  auto whole = [](CausalLm& m, const torch::Tensor& x) { return torch::log_softmax(m->forward(x).to(torch::kFloat32), -1); };
  const torch::Tensor one = whole(members[0], x);                                                                 // (B, T, V)
  const torch::Tensor mix = torch::logsumexp(torch::stack({one, whole(members[1], x)}), 0) - std::log(2.0);     // (B, T, V)
  for (int64_t chunk : {int64_t{1}, int64_t{4}, int64_t{0}}) {  // 21 tokens: uneven chunks, and the default
    const eval::LogProbs a = eval::model_log_probs(*members[0], chunk), e = eval::ensemble_log_probs(members, chunk);
    EXPECT_LE((a.of_targets(x, y) - one.gather(2, y.unsqueeze(2)).squeeze(2)).abs().max().item<double>(), 1e-6) << chunk;
    EXPECT_LE((e.of_targets(x, y) - mix.gather(2, y.unsqueeze(2)).squeeze(2)).abs().max().item<double>(), 1e-6) << chunk;
    EXPECT_LE((a.of_next(x) - one.select(1, 6)).abs().max().item<double>(), 1e-6);
    EXPECT_LE((e.of_next(x) - mix.select(1, 6)).abs().max().item<double>(), 1e-6);
  }
  // An ignored target (-100) reads as token 0.
  const torch::Tensor ignored = torch::full({3, 7}, -100, torch::kLong);
  EXPECT_LE((eval::model_log_probs(*members[0], 4).of_targets(x, ignored) - one.select(2, 0)).abs().max().item<double>(), 1e-6);
}

// The seeded normal draw is the same on one thread or several, over blocks of its own generators
// (a tensor of 3.5 blocks), and is normal(mean, std) in fact.
TEST(SeededInit, TheDrawIsTheSameWhateverTheThreadCount) {
  const int threads = at::get_num_threads();
  const int64_t n = 3 * kSeededInitBlock + kSeededInitBlock / 2;
  torch::Tensor one = torch::empty({n}), two = torch::empty({n / 2, 2}), other = torch::empty({n});
  at::set_num_threads(1);
  seeded_normal_(one, 0.5, 0.02, 42);
  at::set_num_threads(2);
  seeded_normal_(two, 0.5, 0.02, 42);
  seeded_normal_(other, 0.5, 0.02, 43);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two.view({-1})));
  EXPECT_FALSE(torch::equal(one, other));
  // Blocks differ from one another (each its own generator, not one seed repeated).
  EXPECT_FALSE(torch::equal(one.narrow(0, 0, kSeededInitBlock), one.narrow(0, kSeededInitBlock, kSeededInitBlock)));
  EXPECT_NEAR(one.mean().item<double>(), 0.5, 1e-4);
  EXPECT_NEAR(one.std().item<double>(), 0.02, 1e-4);
  torch::Tensor half = torch::empty({1000}, torch::kBFloat16);
  seeded_normal_(half, 0.0, 1.0, 1);  // the parameter's own dtype
  EXPECT_NEAR(half.to(torch::kFloat).std().item<double>(), 1.0, 0.1);
}

// Each parameter draws from its own stream, keyed by its name: a model with one more layer starts
// its first layers, embedding and norms where the smaller model starts them; another seed differs.
TEST(SeededInit, EachParameterHasItsOwnStream) {
  LmConfig two = tiny("llama"), three = two;
  three.n_layer = two.n_layer + 1;
  CausalLm a = make_causal_lm(two), b = make_causal_lm(three), c = make_causal_lm(two);
  init_causal_lm_weights(*a, 9);
  init_causal_lm_weights(*b, 9);
  init_causal_lm_weights(*c, 10);
  const auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
  // Two weights of one shape draw apart.
  EXPECT_FALSE(torch::equal(pa["model.layers.0.self_attn.q_proj.weight"], pa["model.layers.1.self_attn.q_proj.weight"]));
  for (const auto& item : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
    if (item.value().dim() >= 2) EXPECT_FALSE(torch::equal(item.value(), pc[item.key()])) << item.key();
  }
}

TEST(Weights, RoundTripThroughSafetensors) {
  std::string path = test::scratch_dir() + "/w.safetensors";
  torch::manual_seed(1);
  CausalLm a = make_causal_lm(tiny()), b = make_causal_lm(tiny());
  init_causal_lm_weights(*a, 1);
  io::save_safetensors(path, module_weights(*a));
  io::SafetensorsFile file(path);
  load_module_weights(*b, file);
  auto pb = b->named_parameters();
  for (const auto& item : a->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
}

TEST(Weights, WrongShapeOrMissingTensorIsNamed) {
  std::string dir = test::scratch_dir();
  LmConfig small = tiny(), wide = tiny();
  wide.d_model = 32;
  CausalLm a = make_causal_lm(small), b = make_causal_lm(wide);
  io::save_safetensors(dir + "/a.safetensors", module_weights(*a));
  try {
    load_module_weights(*b, io::SafetensorsFile(dir + "/a.safetensors"));
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("model.decoder.embed_tokens.weight"), std::string::npos) << e.what();
  }
  auto weights = module_weights(*a);
  weights.pop_back();
  io::save_safetensors(dir + "/b.safetensors", weights);
  EXPECT_THROW(load_module_weights(*a, io::SafetensorsFile(dir + "/b.safetensors")), std::exception);
}

}  // namespace
}  // namespace lofi::model

namespace lofi::model {
namespace {

// The norms use the config's epsilon (GPT-2 checkpoints and OPT variants set their own): at a
// large epsilon the difference from LibTorch's default is far above rounding.
TEST(Blocks, LayerNormTakesTheConfiguredEpsilon) {
  LmConfig c;
  c.d_model = 8;
  c.layer_norm_eps = 0.5;
  torch::nn::LayerNorm norm = lm_layer_norm(c);
  torch::Tensor x = torch::randn({3, 8}) * 0.3;
  torch::Tensor want = torch::layer_norm(x, {8}, norm->weight, norm->bias, 0.5);
  EXPECT_LE((norm(x) - want).abs().max().item<double>(), 1e-6);
  EXPECT_GT((norm(x) - torch::layer_norm(x, {8}, norm->weight, norm->bias, 1e-5)).abs().max().item<double>(), 0.1);
}

}  // namespace
}  // namespace lofi::model
