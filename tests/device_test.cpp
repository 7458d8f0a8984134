// The engine's newer parts against the code they replaced or LibTorch's own: fused attention
// against the hand-written masked softmax it replaced, fused AdamW against torch::optim::AdamW,
// bf16 autocast, and the device settings.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lofi/dist/device.h"
#include "lofi/model/blocks.h"
#include "lofi/train/optimizer.h"
#include "test_util.h"

namespace lofi {
namespace {

// The attention lofi ran before scaled_dot_product_attention: explicit scores, a -inf mask above
// the diagonal, softmax, dropout on the probabilities. Q comes scaled, as the callers pass it.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t n_head) {
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2), D = C / n_head;
  auto heads = [&](const torch::Tensor& t) { return t.view({B, T, n_head, D}).transpose(1, 2); };  // (B, H, T, D)
  torch::Tensor scores = torch::matmul(heads(q), heads(k).transpose(-2, -1));                    // (B, H, T, T)
  torch::Tensor future = torch::ones({T, T}, torch::kBool).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  return torch::matmul(torch::softmax(scores, -1), heads(v)).transpose(1, 2).contiguous().view({B, T, C});
}

TEST(Attention, FusedKernelMatchesTheMaskedSoftmaxItReplaced) {
  torch::manual_seed(0);
  for (auto [T, C, H] : {std::tuple{1, 8, 2}, std::tuple{7, 32, 4}, std::tuple{33, 48, 3}}) {
    torch::Tensor q = torch::randn({2, T, C}) / std::sqrt(C / H), k = torch::randn({2, T, C}), v = torch::randn({2, T, C});
    for (bool training : {false, true}) {  // dropout 0: training changes nothing
      torch::Tensor got = model::causal_attention(q, k, v, H, /*dropout=*/0.0, training);
      EXPECT_LE((got - reference_attention(q, k, v, H)).abs().max().item<double>(), 1e-5) << "T=" << T;
    }
    // Causal: a change to the last position's key and value leaves every earlier output alone.
    torch::Tensor k2 = k.clone(), v2 = v.clone();
    k2.select(1, T - 1).add_(1.0), v2.select(1, T - 1).add_(1.0);
    torch::Tensor a = model::causal_attention(q, k, v, H, 0.0, false), b = model::causal_attention(q, k2, v2, H, 0.0, false);
    if (T > 1) {
      EXPECT_TRUE(torch::allclose(a.narrow(1, 0, T - 1), b.narrow(1, 0, T - 1)));
    }
    EXPECT_FALSE(torch::allclose(a.narrow(1, T - 1, 1), b.narrow(1, T - 1, 1)));
  }
}

// Grouped-query attention with packed rows' mask and with a sliding window, on DEVICE, against
// explicit scores over key/value heads repeated as transformers' repeat_kv lays them out (query
// head h reads key/value head h / (H / H_kv)); gradients too. On a GPU the heads are expanded
// before the fused kernel (model/blocks.h), on a CPU they are not: both must give these numbers.
// With Gemma 2's soft cap the scores become cap * tanh(score / cap) before the mask, on the
// unfused path: the same reference with the cap, which bends these scores (they reach past 2).
void expect_grouped_attention_matches(const torch::Device& device) {
  torch::manual_seed(11);
  const int64_t B = 2, H = 6, Hkv = 2, T = 9, D = 8;
  const auto f = torch::TensorOptions().device(device);
  torch::Tensor q = torch::randn({B, H, T, D}, f).requires_grad_(true), k = torch::randn({B, Hkv, T, D}, f).requires_grad_(true);
  torch::Tensor v = torch::randn({B, Hkv, T, D}, f).requires_grad_(true);
  // Row 0 packs two sequences (positions 0-3, 4-8), row 1 one: causal within each.
  torch::Tensor doc = torch::tensor({0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, f.dtype(torch::kLong)).view({B, T});
  torch::Tensor causal = torch::ones({T, T}, f.dtype(torch::kBool)).tril();                                    // (T, T)
  torch::Tensor packed = (doc.unsqueeze(2) == doc.unsqueeze(1)).logical_and(causal).unsqueeze(1);           // (B, 1, T, T)
  for (auto [window, softcap] : {std::pair<int64_t, double>{0, 0.0}, {3, 0.0}, {0, 2.0}, {3, 2.0}}) {
    SCOPED_TRACE("window " + std::to_string(window) + ", softcap " + std::to_string(softcap));
    const double scale = 0.3;
    torch::Tensor got = model::causal_attention_heads(q, k, v, scale, window, 0.0, false, packed, softcap);
    // The reference: every query head against its key/value head, by index.
    torch::Tensor head_of = torch::arange(H, f.dtype(torch::kLong)).div(H / Hkv, "floor");                           // (H)
    torch::Tensor kr = k.index_select(1, head_of), vr = v.index_select(1, head_of);                          // (B, H, T, D)
    torch::Tensor allowed = packed;
    if (window > 0) {
      torch::Tensor i = torch::arange(T, f.dtype(torch::kLong)).unsqueeze(1), j = torch::arange(T, f.dtype(torch::kLong)).unsqueeze(0);
      allowed = allowed.logical_and(j > i - window);
    }
    torch::Tensor scores = torch::matmul(q, kr.transpose(-2, -1)) * scale;                                  // (B, H, T, T)
    if (softcap > 0) {
      EXPECT_GT(scores.abs().max().item<double>(), softcap);
      scores = torch::tanh(scores / softcap) * softcap;
    }
    scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
    torch::Tensor want = torch::matmul(torch::softmax(scores, -1), vr);                                     // (B, H, T, D)
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-5) << "window " << window;
    torch::Tensor up = torch::randn_like(want);
    auto grads = [&](const torch::Tensor& out) {
      return torch::autograd::grad({(out * up).sum()}, {q, k, v});
    };
    const auto g = grads(got), w = grads(want);
    for (size_t n = 0; n < 3; ++n) EXPECT_LE((g[n] - w[n]).abs().max().item<double>(), 1e-5) << "window " << window << " input " << n;
  }
  // expand_kv_heads repeats each head for its group, in order.
  torch::Tensor e = model::expand_kv_heads(k.detach(), H);
  for (int64_t h = 0; h < H; ++h) EXPECT_TRUE(torch::equal(e.select(1, h), k.detach().select(1, h / (H / Hkv)))) << h;
}

TEST(Attention, GroupedHeadsWithAMaskMatchExplicitScores) { expect_grouped_attention_matches(torch::kCPU); }

TEST(CudaDevice, GroupedHeadsWithAMaskMatchExplicitScores) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  expect_grouped_attention_matches(torch::Device(torch::kCUDA, 0));
}

// Dropout acts on the attention probabilities, scaled by 1 / (1 - p) while training (so the mean
// over draws is the undropped output) and not at all in eval mode.
TEST(Attention, DropoutOnProbabilitiesIsUnbiasedAndOffInEval) {
  torch::manual_seed(1);
  torch::Tensor q = torch::randn({1, 6, 8}) / 2, k = torch::randn({1, 6, 8}), v = torch::randn({1, 6, 8});
  torch::Tensor clean = reference_attention(q, k, v, 2);
  EXPECT_LE((model::causal_attention(q, k, v, 2, 0.5, /*training=*/false) - clean).abs().max().item<double>(), 1e-5);
  torch::Tensor one = model::causal_attention(q, k, v, 2, 0.5, true);
  EXPECT_GT((one - clean).abs().max().item<double>(), 0.1);  // it does drop
  torch::Tensor mean = torch::zeros_like(clean);
  const int draws = 4000;
  for (int i = 0; i < draws; ++i) mean += model::causal_attention(q, k, v, 2, 0.5, true);
  mean /= draws;
  EXPECT_LE((mean - clean).abs().max().item<double>(), 0.08);
  // The first position attends to itself alone: kept (scaled by 2) or dropped, nothing between.
  torch::Tensor first = one.select(1, 0), v0 = v.select(1, 0);  // (1, C)
  for (int64_t c = 0; c < 8; ++c) {
    const double x = first[0][c].item<double>(), want = v0[0][c].item<double>();
    EXPECT_TRUE(std::abs(x) < 1e-6 || std::abs(x - 2 * want) < 1e-5) << x << " vs " << want;
  }
}

// Two 5 -> 3 linear layers with the same weights (from SEED): one for lofi's optimizer, one for
// what it is compared with.
std::pair<torch::nn::Linear, torch::nn::Linear> twin_linears(uint64_t seed) {
  torch::manual_seed(seed);
  torch::nn::Linear a(torch::nn::LinearOptions(5, 3)), b(torch::nn::LinearOptions(5, 3));
  torch::NoGradGuard no_grad;
  b->weight.copy_(a->weight), b->bias.copy_(a->bias);
  return {a, b};
}

// lofi's AdamW (the fused kernel, decay on matrices only) against LibTorch's torch::optim::AdamW
// with the same two parameter groups, over steps with changing learning rates.
TEST(Optimizer, FusedAdamWMatchesLibTorchAdamW) {
  auto [mine, theirs] = twin_linears(2);
  train::TrainConfig c;
  c.lr = 1e-2, c.weight_decay = 0.1, c.beta1 = 0.9, c.beta2 = 0.95, c.eps = 1e-8;
  train::Optimizer fused(*mine, c);
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{theirs->weight}, options(c.weight_decay));
  groups.emplace_back(std::vector<torch::Tensor>{theirs->bias}, options(0.0));
  torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(c.lr));
  for (int step = 0; step < 6; ++step) {
    const double lr = 1e-2 * (1.0 + step) / 6;
    torch::Tensor x = torch::randn({4, 5});
    fused.set_lr(lr);
    for (auto& g : reference.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    fused.zero_grad(), reference.zero_grad();
    mine(x).pow(2).sum().backward();
    theirs(x).pow(2).sum().backward();
    fused.step(), reference.step();
  }
  EXPECT_LE((mine->weight - theirs->weight).abs().max().item<double>(), 1e-6);
  EXPECT_LE((mine->bias - theirs->bias).abs().max().item<double>(), 1e-6);
  // Decay reached the matrix and not the bias: without decay the matrix would differ.
  io::Metadata meta;
  io::NamedTensors state = fused.state(meta);
  EXPECT_EQ(state.size(), 4u);
  EXPECT_EQ(meta.at("weight.step"), "6");
}

// train.cuda_graphs: an optimizer held for replayed steps zeroes its gradients in place (the same
// tensors every step) and reads the learning rate from a tensor that set_lr fills, stepping as
// the plain one does over changing rates. The tensor is fp32 (what the CUDA kernel reads), so
// the rate is rounded to float: the weights agree to that rounding (~1e-8 of an update), not bit
// for bit.
TEST(Optimizer, HeldForGraphsStepsAsThePlainOneInTheSameTensors) {
  auto [plain, held] = twin_linears(3);
  train::TrainConfig c;
  c.lr = 1e-2, c.weight_decay = 0.1;
  train::Optimizer a(*plain, c), b(*held, c);
  b.hold_for_graphs();
  const void* grad = nullptr;
  for (int step = 0; step < 6; ++step) {
    const double lr = 1e-2 * (1.0 + step) / 6;
    const torch::Tensor x = torch::randn({4, 5});
    a.set_lr(lr), b.set_lr(lr);
    a.zero_grad(), b.zero_grad();
    if (step > 0) {
      EXPECT_FALSE(plain->weight.grad().defined());
      ASSERT_TRUE(held->weight.grad().defined());
      EXPECT_EQ(held->weight.grad().data_ptr(), grad) << "step " << step;
      EXPECT_EQ(held->weight.grad().abs().max().item<float>(), 0.0f);
    }
    plain(x).pow(2).sum().backward();
    held(x).pow(2).sum().backward();
    if (step == 0) grad = held->weight.grad().data_ptr();
    a.step(), b.step();
  }
  EXPECT_LE((plain->weight - held->weight).abs().max().item<double>(), 1e-7);
  EXPECT_LE((plain->bias - held->bias).abs().max().item<double>(), 1e-7);
}

// found_inf = 1 skips the update on the device: weights, moments and step counts stay; 0 steps as
// usual, and the next step is the second the counts know of.
TEST(Optimizer, FoundInfSkipsTheUpdate) {
  torch::manual_seed(4);
  torch::nn::Linear layer(torch::nn::LinearOptions(5, 3));
  train::TrainConfig c;
  c.lr = 1e-2, c.weight_decay = 0.1;
  train::Optimizer adamw(*layer, c);
  auto step = [&](float found_inf) {
    adamw.zero_grad();
    layer(torch::randn({4, 5})).pow(2).sum().backward();
    adamw.step(torch::full({}, found_inf));
  };
  step(0);
  const torch::Tensor weight = layer->weight.detach().clone();
  io::Metadata before, after;
  const io::NamedTensors state = adamw.state(before);
  const torch::Tensor moment = state[0].second.clone();
  step(1);
  EXPECT_TRUE(torch::equal(layer->weight, weight));
  EXPECT_TRUE(torch::equal(adamw.state(after)[0].second, moment));
  EXPECT_EQ(after.at("weight.step"), "1");
  step(0);
  EXPECT_FALSE(torch::equal(layer->weight, weight));
  io::Metadata last;
  adamw.state(last);
  EXPECT_EQ(last.at("weight.step"), "2");
}

// train.param_dtype = "bf16": the weights are bf16 and the optimizer updates fp32 masters from
// the gradients, so over 20 steps of lr 1e-4 (each below half a bf16 step at these magnitudes) the
// masters follow an fp32 AdamW exactly and the weights follow them, where bf16 weights updated in
// place never move. At the end the weights become the masters.
TEST(Optimizer, Bf16WeightsFollowFp32MastersThatKeepSmallUpdates) {
  torch::manual_seed(5);
  torch::nn::Linear reference(torch::nn::LinearOptions(5, 3)), mine(torch::nn::LinearOptions(5, 3)),
      plain(torch::nn::LinearOptions(5, 3));
  {
    torch::NoGradGuard no_grad;
    // Values bf16 holds exactly, so the three start alike.
    for (auto* p : {&reference->weight, &reference->bias}) p->copy_(p->to(torch::kBFloat16).to(torch::kFloat));
    for (auto* layer : {&mine, &plain}) (*layer)->weight.copy_(reference->weight), (*layer)->bias.copy_(reference->bias);
  }
  plain->to(torch::kBFloat16);
  train::TrainConfig c;
  c.lr = 1e-4, c.weight_decay = 0.0;
  train::Optimizer fp32(*reference, c), masters(*mine, c), bf16(*plain, c);
  masters.compute_in(torch::kBFloat16);
  EXPECT_EQ(mine->weight.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(masters.keeps_masters());
  EXPECT_FALSE(fp32.keeps_masters());
  EXPECT_EQ(masters.master_bytes(), 4 * (15 + 3));
  const torch::Tensor start = mine->weight.detach().clone();
  for (int step = 0; step < 20; ++step) {
    for (auto* o : {&fp32, &masters, &bf16}) o->zero_grad();
    const torch::Tensor gw = torch::randn({3, 5}).to(torch::kBFloat16), gb = torch::randn({3}).to(torch::kBFloat16);
    reference->weight.mutable_grad() = gw.to(torch::kFloat), reference->bias.mutable_grad() = gb.to(torch::kFloat);
    mine->weight.mutable_grad() = gw.clone(), mine->bias.mutable_grad() = gb.clone();
    plain->weight.mutable_grad() = gw.clone(), plain->bias.mutable_grad() = gb.clone();
    for (auto* o : {&fp32, &masters, &bf16}) o->step();
  }
  const io::NamedTensors m = masters.masters();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].first, "weight");
  EXPECT_EQ(m[0].second.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(m[0].second, reference->weight));
  EXPECT_TRUE(torch::equal(m[1].second, reference->bias));
  EXPECT_TRUE(torch::equal(mine->weight, reference->weight.to(torch::kBFloat16)));
  EXPECT_GT(mine->weight.ne(start).sum().item<int64_t>(), 0) << "the masters' small updates reached the weights";
  EXPECT_TRUE(torch::equal(plain->weight, start)) << "bf16 weights updated in place round every step away";
  // The gradients' norm of bf16 gradients is taken in fp32.
  const torch::Tensor norm = train::grad_norm({mine->weight, mine->bias});
  EXPECT_EQ(norm.scalar_type(), torch::kFloat);
  EXPECT_NEAR(norm.item<double>(), train::grad_norm({reference->weight, reference->bias}).item<double>(), 1e-6);
  masters.release_into_params();
  EXPECT_EQ(mine->weight.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(mine->weight, reference->weight));
  EXPECT_EQ(masters.master_bytes(), 0);
}

// Clipping to a global norm, against LibTorch's own clip_grad_norm_: scaled when above, untouched below.
TEST(Optimizer, ForeachClippingMatchesLibTorchClipGradNorm) {
  torch::manual_seed(3);
  for (double max_norm : {0.5, 1e3}) {
    std::vector<torch::Tensor> mine, theirs;
    for (auto shape : {std::vector<int64_t>{3, 4}, std::vector<int64_t>{7}, std::vector<int64_t>{2, 2, 2}}) {
      torch::Tensor g = torch::randn(shape);
      mine.push_back(torch::zeros(shape, torch::requires_grad()));
      theirs.push_back(torch::zeros(shape, torch::requires_grad()));
      mine.back().mutable_grad() = g.clone();
      theirs.back().mutable_grad() = g.clone();
    }
    train::clip_grad_norm(mine, max_norm);
    torch::nn::utils::clip_grad_norm_(theirs, max_norm);
    for (size_t i = 0; i < mine.size(); ++i)
      EXPECT_LE((mine[i].grad() - theirs[i].grad()).abs().max().item<double>(), 1e-6) << max_norm;
  }
}

// bf16 autocast reaches matmuls inside the guard only, and a weight updated between steps is used
// as updated. (LibTorch's C++ path was seen not to cache cast weights at all; the guard still drops
// autocast's cache when it leaves, as torch.autocast does.)
TEST(Precision, Bf16GuardAutocastsInsideAndUsesUpdatedWeights) {
  torch::manual_seed(4);
  torch::nn::Linear linear(4, 4);
  torch::Tensor x = torch::ones({2, 4});  // a weight change of +1 moves each output by 4
  torch::Tensor before;
  {
    dist::PrecisionGuard guard(torch::kCPU, "bf16");
    before = linear(x);
    EXPECT_EQ(before.scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(linear(x).scalar_type(), torch::kFloat32);
  {
    torch::NoGradGuard no_grad;
    linear->weight.add_(1.0);
  }
  {
    dist::PrecisionGuard guard(torch::kCPU, "bf16");
    EXPECT_GT((linear(x).to(torch::kFloat32) - before.to(torch::kFloat32)).abs().max().item<double>(), 0.5);
  }
  { dist::PrecisionGuard fp32(torch::kCPU, "fp32"); EXPECT_EQ(linear(x).scalar_type(), torch::kFloat32); }
}

TEST(Device, SettingsResolveOrNameWhatIsMissing) {
  EXPECT_EQ(dist::resolve_device("cpu", 3, "train.device"), torch::Device(torch::kCPU));
  const dist::BuildInfo info = dist::build_info();
  EXPECT_EQ(info.libtorch.substr(0, 2), "2.");
  if (info.gpus == 0) {
    EXPECT_EQ(dist::resolve_device("auto", 0, "train.device"), torch::Device(torch::kCPU));
    EXPECT_NE(test::error_of([] { dist::resolve_device("cuda", 0, "train.device"); }).find("no CUDA GPU is visible"),
              std::string::npos);
  } else {
    EXPECT_EQ(dist::resolve_device("auto", 0, "train.device"), torch::Device(torch::kCUDA, 0));
    EXPECT_EQ(dist::resolve_device("cuda", 0, "train.device"), torch::Device(torch::kCUDA, 0));
    const std::string past = test::error_of([&] { dist::resolve_device("cuda", info.gpus, "train.device"); });
    EXPECT_NE(past.find("GPU(s) are visible"), std::string::npos) << past;
    EXPECT_NE(past.find("\"cuda:0\""), std::string::npos) << past;
  }
  EXPECT_NE(test::error_of([] { dist::resolve_device("cuda:", 0, "eval.device"); }).find("eval.device"), std::string::npos);
  EXPECT_NE(test::error_of([] { dist::check_precision("fp16", torch::kCPU, "train.precision"); }).find("train.precision"),
            std::string::npos);
  EXPECT_TRUE(test::error_of([] { dist::check_precision("bf16", torch::kCPU, "train.precision"); }).empty());
}

}  // namespace
}  // namespace lofi

namespace lofi {
namespace {

// Weight decay reaches matrices only: with zero gradients, AdamW leaves biases and norm weights
// exactly as they are and shrinks each matrix by (1 - lr * weight_decay).
TEST(Optimizer, DecayOnMatricesOnlyNeverOnBiasesOrNorms) {
  torch::nn::Sequential net(torch::nn::Linear(4, 3), torch::nn::LayerNorm(torch::nn::LayerNormOptions({3})));
  train::TrainConfig c;
  c.lr = 0.1, c.weight_decay = 0.5;
  train::Optimizer opt(*net, c);
  std::vector<torch::Tensor> before;
  for (const auto& p : net->parameters()) {
    before.push_back(p.detach().clone());
    p.mutable_grad() = torch::zeros_like(p);
  }
  opt.step();
  size_t k = 0;
  for (const auto& item : net->named_parameters()) {
    const torch::Tensor& was = before[k++];
    if (item.value().dim() >= 2)
      EXPECT_TRUE(item.value().allclose(was * (1 - 0.1 * 0.5), 1e-6, 1e-7)) << item.key();
    else
      EXPECT_TRUE(item.value().equal(was)) << item.key();
  }
}

// Loading optimizer state names the file and the parameter that is missing or does not fit.
TEST(Optimizer, StateThatDoesNotFitIsNamed) {
  const std::string dir = test::scratch_dir();
  torch::nn::Linear net(4, 3);
  train::TrainConfig c;
  train::Optimizer opt(*net, c);
  for (const auto& p : net->parameters()) p.mutable_grad() = torch::ones_like(p);
  opt.step();
  io::Metadata meta;
  io::NamedTensors state = opt.state(meta);
  io::save_safetensors(dir + "/good.safetensors", state, meta);
  train::Optimizer other(*net, c);
  other.load_state(io::SafetensorsFile(dir + "/good.safetensors"));  // fits
  io::Metadata no_step = meta;
  no_step.erase("bias.step");
  io::save_safetensors(dir + "/missing.safetensors", state, no_step);
  std::string e = test::error_of([&] { other.load_state(io::SafetensorsFile(dir + "/missing.safetensors")); });
  EXPECT_NE(e.find("missing.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("'bias'"), std::string::npos) << e;
  io::NamedTensors wrong = state;
  for (auto& [name, t] : wrong)
    if (name == "weight.exp_avg") t = torch::zeros({3, 5});
  io::save_safetensors(dir + "/shape.safetensors", wrong, meta);
  e = test::error_of([&] { other.load_state(io::SafetensorsFile(dir + "/shape.safetensors")); });
  EXPECT_NE(e.find("'weight.exp_avg' has shape [3, 5], expected [3, 4]"), std::string::npos) << e;
  for (auto& [name, t] : wrong)
    if (name == "weight.exp_avg") t = torch::zeros({3, 4}, torch::kFloat64);
  io::save_safetensors(dir + "/dtype.safetensors", wrong, meta);
  e = test::error_of([&] { other.load_state(io::SafetensorsFile(dir + "/dtype.safetensors")); });
  EXPECT_NE(e.find("expected Float"), std::string::npos) << e;
}

}  // namespace
}  // namespace lofi

namespace lofi {
namespace {

// The device plan on simulated machines: which GPU each worker gets and whether its node's
// workers can all-reduce through NCCL (a GPU each) or must use Gloo (two of them on one GPU).
struct Placement {
  std::vector<int> gpu;  // per local rank; -1 for CPU
  std::vector<std::string> backend;
};
Placement place(const std::string& setting, int workers, int64_t node_size, int gpus) {
  Placement p;
  for (int r = 0; r < workers; ++r) {
    const dist::DevicePlan plan = dist::plan_device(setting, r, workers, r % node_size, node_size, gpus, true, "train.device");
    p.gpu.push_back(plan.device.is_cuda() ? plan.device.index() : -1);
    p.backend.push_back(plan.node_backend);
    EXPECT_EQ(plan.shares_gpu, plan.node_backend == "gloo" && plan.device.is_cuda());
  }
  return p;
}

TEST(DevicePlan, EveryMachineShapeGetsAPlanThatWorks) {
  using V = std::vector<int>;
  using S = std::vector<std::string>;
  // No GPU: CPU and Gloo, whatever the setting "auto" meets.
  EXPECT_EQ(place("auto", 4, 4, 0).gpu, V(4, -1));
  EXPECT_EQ(place("auto", 4, 4, 0).backend, S(4, "gloo"));
  EXPECT_EQ(place("cpu", 2, 2, 8).gpu, V(2, -1));
  // One GPU: the baseline's 4-worker node shares it through Gloo; lo-fi's 4 one-worker nodes
  // share it with no node group at all.
  EXPECT_EQ(place("auto", 4, 4, 1).gpu, V(4, 0));
  EXPECT_EQ(place("auto", 4, 4, 1).backend, S(4, "gloo"));
  EXPECT_EQ(place("auto", 4, 1, 1).backend, S(4, "nccl"));
  // A GPU per worker: NCCL.
  EXPECT_EQ(place("auto", 8, 8, 8).gpu, (V{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(place("auto", 8, 8, 8).backend, S(8, "nccl"));
  EXPECT_EQ(place("cuda", 8, 4, 8).backend, S(8, "nccl"));
  // Two nodes of 4 on 4 GPUs: each node has a GPU per worker; one node of 8 on 4 GPUs does not.
  EXPECT_EQ(place("auto", 8, 4, 4).gpu, (V{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(place("auto", 8, 4, 4).backend, S(8, "nccl"));
  EXPECT_EQ(place("auto", 8, 8, 4).backend, S(8, "gloo"));
  // Everyone pinned to one GPU: nodes of several workers share it.
  EXPECT_EQ(place("cuda:0", 4, 2, 2).gpu, V(4, 0));
  EXPECT_EQ(place("cuda:0", 4, 2, 2).backend, S(4, "gloo"));
  EXPECT_EQ(place("cuda:1", 2, 1, 2).gpu, V(2, 1));
  // Workers that do not divide evenly over the GPUs: every worker of the node gets one answer.
  EXPECT_EQ(place("auto", 3, 3, 2).backend, S(3, "gloo"));
  EXPECT_EQ(place("auto", 6, 6, 4).backend, S(6, "gloo"));
  // A node spanning two hosts of 8 GPUs: worker 3 of the second host is rank 11 of the node.
  EXPECT_EQ(dist::plan_device("auto", 3, 8, 11, 16, 8, true, "train.device").node_backend, "nccl");
  // Nodes of 3 over two hosts of 4 workers and 2 GPUs. The first host holds node 0 (ranks 0-2 on
  // GPUs 0, 1, 0: Gloo) and rank 3 of node 1. On the second host node 1 has ranks 4 and 5 (local
  // 0, 1 on GPUs 0, 1) and node 2 ranks 6 and 7 (local 2, 3 on GPUs 0, 1): NCCL for both.
  auto backend = [](int local_rank, int64_t node_rank) {
    return dist::plan_device("auto", local_rank, 4, node_rank, 3, 2, true, "train.device").node_backend;
  };
  EXPECT_EQ(backend(0, 0), "gloo");  // rank 0
  EXPECT_EQ(backend(1, 1), "gloo");  // rank 1
  EXPECT_EQ(backend(3, 0), "nccl");  // rank 3
  EXPECT_EQ(backend(0, 1), "nccl");  // rank 4
  EXPECT_EQ(backend(1, 2), "nccl");  // rank 5
  EXPECT_EQ(backend(2, 0), "nccl");  // rank 6
  // A build without CUDA runs "auto" on the CPU and names the missing CUDA for "cuda".
  EXPECT_FALSE(dist::plan_device("auto", 0, 1, 0, 1, 2, false, "train.device").device.is_cuda());
  EXPECT_NE(test::error_of([] { dist::plan_device("cuda", 0, 1, 0, 1, 2, false, "train.device"); }).find("without CUDA"),
            std::string::npos);
  // "cuda" past the GPUs, a GPU index past them, and garbage: one line naming the key.
  const std::string past = test::error_of([] { dist::plan_device("cuda", 2, 4, 2, 4, 2, true, "train.device"); });
  EXPECT_NE(past.find("train.device = \"cuda\" asks for GPU 2 (LOCAL_RANK) but 2 GPU(s) are visible"), std::string::npos) << past;
  EXPECT_NE(test::error_of([] { dist::plan_device("cuda:5", 0, 1, 0, 1, 2, true, "eval.device"); }).find("eval.device"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { dist::plan_device("cuda:99999999999", 0, 1, 0, 1, 2, true, "train.device"); }).find("GPU index"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { dist::plan_device("gpu", 0, 1, 0, 1, 2, true, "train.device"); }).find("expected"),
            std::string::npos);
}

// to_device copies on a side stream while the compute stream is still busy with earlier work. Each
// batch is used on the compute stream after a long queued product and then dropped by the host at
// once; were its device memory not marked as used by the compute stream, the next batch's copy
// (on the side stream) could overwrite it before that use ran, and the sum would come out wrong.
TEST(CudaDevice, BatchesCopiedAheadArriveWholeAndAreNotOverwrittenBeforeUse) {
  if (!dist::build_info().cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device gpu(torch::kCUDA, 0);
  const torch::Tensor big = torch::randn({4096, 4096}, gpu);
  torch::Tensor total = torch::zeros({}, torch::TensorOptions(gpu).dtype(torch::kDouble));
  const int64_t n = int64_t{1} << 20;
  double want = 0;
  for (int i = 0; i < 24; ++i) {
    torch::Tensor busy = big.mm(big);  // queued work the copy need not wait behind
    const torch::Tensor batch = dist::to_device(torch::full({n}, static_cast<double>(i), torch::kDouble), gpu);
    total += batch.sum() + busy.sum() * 0;
    want += static_cast<double>(i) * static_cast<double>(n);
  }
  EXPECT_EQ(total.item<double>(), want);
  // A host tensor that is not pinned, and one of another dtype, arrive as they were.
  const torch::Tensor ids = torch::arange(1000, torch::kLong);
  EXPECT_TRUE(torch::equal(dist::to_device(ids, gpu).cpu(), ids));
}

}  // namespace
}  // namespace lofi
