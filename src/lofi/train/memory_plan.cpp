#include "lofi/train/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "lofi/error.h"
#include "lofi/text.h"

namespace lofi::train {
namespace {

struct Moments {
  double runtime = 0, weights = 0, optimizer = 0, grads_between = 0, grads_peak = 0, activations = 0, block = 0, loss_head = 0,
         copies = 0;
  double gathered = 0;  // a checkpoint's gathered buckets in flight (full or bf16 weights of a sharded node)
  double end = 0;       // the same: what the merging leader evaluates after the last step (fp32 weights, whole)
  double built = 0;     // the model as it is built and moved to the device, before sharding and bf16 weights
  double converted = 0; // bf16 weights: the step's fp32 copies of bf16 gradients (at most 256 MiB at once)
  double forward_end() const { return runtime + weights + optimizer + grads_between + activations + loss_head + copies; }
  double backward_end() const { return runtime + weights + optimizer + grads_peak + block + copies + converted; }
  double checkpoint() const { return runtime + weights + optimizer + grads_between + gathered; }
  double training_end() const { return runtime + end; }
  double start() const { return runtime + built; }
  double peak() const { return std::max({start(), forward_end(), backward_end(), checkpoint(), training_end()}); }
};

// Whether PLACE's memory is a GPU's (else the host's, its collectives Gloo's).
bool on_gpu(const PlanPlace& place) { return place.device.rfind("cuda", 0) == 0; }

Moments moments(const Config& c, const ModelFootprint& f, const PlanPlace& place) {
  const int64_t workers = place.node_workers;
  const std::string mode = workers > 1 ? c.dist.shard : "none";
  const double P = static_cast<double>(f.trainable), G = static_cast<double>(workers);
  Moments m;
  m.runtime = place.runtime_bytes;
  // train.param_dtype = "bf16": the weights in bf16 (and their gradients), fp32 masters beside
  // them (1/G where the node shards its optimizer); autocast casts nothing.
  const bool low = c.train.param_dtype == "bf16";
  const double w = low ? 2 : 4;  // bytes of a trainable weight and its .grad
  const double frozen = static_cast<double>(f.frozen) * static_cast<double>(f.frozen_bytes);
  const double masters = !low ? 0 : mode == "none" ? 4 * P : 4 * std::ceil(P / G);
  m.weights = w * P + masters + frozen;
  m.optimizer = mode == "none" ? 8 * P : 8 * std::ceil(P / G);
  const double reduced = c.dist.reduce_dtype == "bf16" ? 2 : 4;  // bytes of a bucket's element
  const double buckets = workers > 1 ? reduced * P : 0;  // none, optimizer: the all-reduce's buckets, kept
  const double block = static_cast<double>(f.block_trainable), in_blocks = block * static_cast<double>(f.blocks);
  const double bucket_fp32 = std::min(4 * P, c.dist.bucket_mb * 1024 * 1024);  // bucket_mb counts fp32 elements
  const double bucket_bytes = reduced / 4 * bucket_fp32;
  const bool on_host = !on_gpu(place);
  // Every worker builds the whole model, its trainable weights in fp32, before it shards them or
  // rounds them to bf16. A fully sharded start (but LP-FT's) sends the device the parameters outside
  // the blocks and its parts of the blocks': each block packed whole in fp32 (and in bf16, for bf16
  // weights), one at a time. A model built in pieces has each block's parameters made on the host
  // only as it is packed, so the host never holds the model whole either.
  m.built = 4 * P + frozen;
  const bool sharded_start = mode == "full" && c.train.head_init != "lp";
  if (sharded_start && (!on_host || f.builds_in_pieces))
    m.built = 4 * (P - in_blocks) + frozen + 4 * std::ceil(in_blocks / G) + ((on_host ? 4 : 0) + 4 + (low ? 2 : 0)) * block;
  m.copies = low ? 0 : f.weight_copies;
  // A sharded node's checkpoint: each worker writes its own AdamW state, and where the node shards
  // the parameters (full) or their masters (bf16 weights) the workers all-gather them in fp32 bucket
  // by bucket, two in flight, as the leader writes them (train::NodeWeights); the final the same way.
  const bool gathers = mode != "none" && (mode == "full" || low);
  const double largest_bucket = std::max({bucket_fp32, 4.0 * static_cast<double>(f.largest_param), mode == "full" ? 4 * block : 0.0});
  if (gathers) m.gathered = 2 * largest_bucket;
  // After the last step no worker holds the weights whole, but a lo-fi job's merging leader loads
  // each node's final and the average, fp32, to evaluate them (the averaging check).
  if (gathers && c.dist.nodes > 1 && !c.data.val.empty()) m.end = 4 * P + frozen;
  if (mode == "full") {
    // The parameters outside the blocks whole, 1/G of the blocks' (fp32: their masters), two
    // blocks gathered in the compute dtype.
    m.weights = w * (P - in_blocks) + 2 * w * block + frozen + (low ? masters : 4 * std::ceil(in_blocks / G));
    // bf16 casts are not cached (the trainer turns autocast's cache off): those autograd saves for
    // the backward of blocks that are not checkpointed stay, and the running ones'.
    const double every = static_cast<double>(c.train.activation_checkpointing), L = static_cast<double>(f.blocks);
    const double saved = every > 0 ? L - std::ceil(L / every) : L;
    if (m.copies > 0) m.copies = 2 * (P - in_blocks) + 2 * block * (saved + 2);
  }
  if (mode == "gradients" || mode == "full") {
    // Its parts of the gradients; in backward, two buckets in flight (full: a block's each) and
    // one parameter's .grad.
    m.grads_between = 4 * std::ceil(P / G);
    const double in_flight = 2 * std::max(bucket_bytes, mode == "full" ? reduced * block : 0.0);
    // Gloo (a CPU's collectives) reduce-scatters through an all-reduce of a copy of the bucket
    // (ProcessGroupGloo::reduce_scatter_tensor_coalesced clones its input): one more per bucket.
    m.grads_peak = m.grads_between + (on_host ? 2 : 1) * in_flight + w * static_cast<double>(f.largest_param);
  } else {
    // Every .grad stays from one micro-batch to the next (train.grad_accum > 1), and from one step
    // to the next under train.cuda_graphs (zeroed in place): a forward pass then ends beside them.
    const bool held = c.train.cuda_graphs || c.train.grad_accum > 1;
    m.grads_between = buckets + (held ? w * P : 0);
    m.grads_peak = buckets + w * P;  // and every .grad
  }
  // bf16 weights: AdamW takes fp32 copies of the bf16 gradients it updates from (the parts that
  // ZeRO-2 and -3 reduce are fp32 already), 256 MiB at a time.
  if (low && (mode == "none" || mode == "optimizer")) m.converted = std::min(m.optimizer / 2, 256.0 * 1024 * 1024);
  m.activations = f.activations, m.block = f.block_activations, m.loss_head = f.loss_head;
  return m;
}

std::string layout_of(const Config& c, int64_t workers) {
  return cat(c.dist.nodes, c.dist.nodes == 1 ? " node" : " nodes", " x ", workers, workers == 1 ? " worker" : " workers",
             ", dist.shard = \"", c.dist.shard, "\", micro-batch ", micro_batch(c, workers), " x ", c.data.seq_len,
             c.train.activation_checkpointing > 0 ? cat(", activation checkpointing every ", c.train.activation_checkpointing) : "",
             ", train.precision = ", c.train.precision, c.train.param_dtype == "fp32" ? "" : ", train.param_dtype = " + c.train.param_dtype);
}

std::string count_text(double n) {  // 8.03 B, 41.9 M, 5120
  return n >= 1e9 ? format_general(n / 1e9, 3) + " B" : n >= 1e6 ? format_general(n / 1e6, 3) + " M" : format_general(n, 6);
}

std::string row(const std::string& what, double bytes, const std::string& note) {
  char text[64];
  std::snprintf(text, sizeof(text), "    %-20s%10s  ", what.c_str(), format_bytes(bytes).c_str());
  return text + note + "\n";
}

}  // namespace

int64_t micro_batch(const Config& c, int64_t node_workers) {
  const int64_t per = c.train.batch_size / std::max<int64_t>(1, c.dist.nodes) / std::max<int64_t>(1, node_workers * c.train.grad_accum);
  return std::max<int64_t>(1, per);
}

MemoryPlan plan_memory(const Config& config, const PlanPlace& place, const FootprintOf& footprint_of) {
  const ModelFootprint f = footprint_of(config, micro_batch(config, place.node_workers));
  const Moments m = moments(config, f, place);
  MemoryPlan plan;
  plan.shape = f.shape;
  plan.layout = layout_of(config, place.node_workers);
  plan.available = place.available;
  plan.device = place.device;
  const std::string sharded = place.node_workers > 1 && config.dist.shard != "none" ? cat(", 1/", place.node_workers, " of it") : "";
  const bool full = place.node_workers > 1 && config.dist.shard == "full";
  plan.lines = {
      {"weights", m.weights,
       f.frozen > 0 ? cat(count_text(static_cast<double>(f.trainable)), " trainable in fp32, ", count_text(static_cast<double>(f.frozen)),
                          " frozen at ", f.frozen_bytes, " bytes")
                    : cat(count_text(static_cast<double>(f.trainable)), " parameters in ", config.train.param_dtype,
                          config.train.param_dtype == "fp32" ? "" : cat(", fp32 masters", sharded),
                          full ? cat("; the blocks' 1/", place.node_workers, ", two blocks gathered") : "")},
      {"gradients", m.grads_peak,
       config.dist.shard != "none" && config.dist.shard != "optimizer" && place.node_workers > 1
           ? cat("its 1/", place.node_workers, " part, two buckets in flight", on_gpu(place) ? "" : " (and Gloo's copies)")
       : place.node_workers > 1 ? cat(config.train.param_dtype, ", and the all-reduce's buckets")
                                : config.train.param_dtype},
      {"AdamW state", m.optimizer, "two fp32 moments" + sharded},
      {"activations", m.activations, cat("micro-batch ", micro_batch(config, place.node_workers), " x ", config.data.seq_len,
                                         config.train.activation_checkpointing > 0 ? ", checkpointed" : "")},
      {"loss head", m.loss_head, "the chunked cross-entropy's buffers"},
  };
  if (m.copies > 0)
    plan.lines.push_back({"bf16 weight copies", m.copies, full ? "autocast's casts that backward keeps" : "autocast's casts, kept for the pass"});
  if (m.converted > 0) plan.lines.push_back({"gradient copies", m.converted, "AdamW's fp32 copies of bf16 gradients, 256 MiB at a time"});
  if (m.gathered > 0 && m.checkpoint() >= std::max(m.forward_end(), m.backward_end()))
    plan.lines.push_back({"checkpoint gathers", m.gathered, "two fp32 buckets of the weights in flight as the leader writes them"});
  if (m.start() >= std::max(m.forward_end(), m.backward_end()))
    plan.lines.push_back({"model built", m.built,
                          m.built < 4.0 * static_cast<double>(f.trainable)
                              ? "the start: the parameters outside the blocks, its parts of the blocks', one block whole"
                              : "the whole model, trainable weights in fp32, before it is sharded or rounded"});
  if (m.end > 0 && m.training_end() >= std::max(m.forward_end(), m.backward_end()))
    plan.lines.push_back({"after training", m.end, "the merging leader evaluates each node's final whole (the averaging check)"});
  plan.lines.push_back({"runtime", m.runtime, on_gpu(place) ? "CUDA context, cuBLAS workspaces" : "LibTorch, threads, allocator"});
  plan.peak = m.peak();
  if (plan.fits()) return plan;

  // The knobs: each setting alone, then all of them together.
  std::vector<std::vector<std::string>> candidates;  // --set assignments
  if (place.node_workers > 1 && config.dist.shard != "gradients") candidates.push_back({"dist.shard=gradients"});
  // Checkpointing recomputes blocks, which dropout would make draw other masks: refused with any.
  const auto resolved = [&](double p) { return p < 0 ? config.model.dropout : p; };
  const bool can_checkpoint = config.model.dropout <= 0 && resolved(config.model.attention_dropout) <= 0 &&
                              resolved(config.model.embedding_dropout) <= 0 &&
                              !(config.lora.enabled() && config.lora.dropout > 0);
  if (config.train.activation_checkpointing == 0 && can_checkpoint) candidates.push_back({"train.activation_checkpointing=1"});
  if (micro_batch(config, place.node_workers) >= 2) candidates.push_back({cat("train.grad_accum=", 2 * config.train.grad_accum)});
  if (!config.lora.enabled()) candidates.push_back({"lora.rank=16", "model.dtype=bf16"});
  if (!config.lora.enabled() && config.train.param_dtype == "fp32" && config.dist.sync_every == 0)
    candidates.push_back({"train.param_dtype=bf16", "train.precision=bf16"});
  if (candidates.size() > 1) {
    std::vector<std::string> all;
    // LoRA (a knob whenever bf16 compute weights are) keeps fp32 adapters over a model.dtype base:
    // bf16 compute weights are the full fine-tune's knob, left out of the combination.
    for (const auto& sets : candidates)
      if (sets.front() != "train.param_dtype=bf16") all.insert(all.end(), sets.begin(), sets.end());
    candidates.push_back(all);
  }
  // Full sharding (a full fine-tune of a decoder), alone and with every block checkpointed.
  if (place.node_workers > 1 && config.dist.shard != "full" && f.blocks > 0 && !config.lora.enabled()) {
    candidates.push_back({"dist.shard=full"});
    if (config.train.activation_checkpointing != 1 && can_checkpoint)
      candidates.push_back({"dist.shard=full", "train.activation_checkpointing=1"});
  }
  for (const auto& sets : candidates) {
    Config changed = config;
    std::string text;
    for (const auto& s : sets) {
      apply_override(changed, s);
      text += (text.empty() ? "--set " : " --set ") + s;
    }
    try {  // a knob the config's own checks refuse (e.g. bf16 weights with LoRA) is no advice
      validate(changed);
    } catch (const Error&) {
      continue;
    }
    plan.knobs.push_back({text, moments(changed, footprint_of(changed, micro_batch(changed, place.node_workers)), place).peak()});
  }
  std::sort(plan.knobs.begin(), plan.knobs.end(), [](const auto& a, const auto& b) { return a.peak < b.peak; });
  return plan;
}

std::string format_memory_plan(const MemoryPlan& plan) {
  std::string out = cat("memory plan: ", plan.shape, "\n  ", plan.layout, "\n  per worker:\n");
  for (const auto& line : plan.lines) out += row(line.what, line.bytes, line.note);
  out += row("peak", plan.peak, "the largest of the moments: a forward pass's end (activations), a backward pass's (gradients), a checkpoint's, "
                                "the start, the end of training");
  out += cat("  device: ", plan.device, plan.available > 0 ? cat(", ", format_bytes(plan.available), " per worker") : ", memory unknown",
             ": ", plan.fits() ? "fits" : "does NOT fit", "\n");
  for (const auto& knob : plan.knobs)
    out += cat("    ", knob.setting, ": ", format_bytes(knob.peak), knob.peak <= plan.available ? " (fits)" : "", "\n");
  return out;
}

std::string memory_plan_line(const MemoryPlan& plan) {
  return cat("memory plan: ", format_bytes(plan.peak), " per worker at the peak",
             plan.available > 0 ? cat(", of ", format_bytes(plan.available), " on ", plan.device) : cat(" (", plan.device, ")"),
             " (lofi plan prints the table)");
}

void refuse_unless_fits(const MemoryPlan& plan) {
  if (plan.fits()) return;
  std::string parts;
  for (const auto& line : plan.lines) parts += cat(parts.empty() ? "" : ", ", line.what, " ", format_bytes(line.bytes));
  std::string knobs;
  for (const auto& knob : plan.knobs)
    if (knob.peak <= plan.available) knobs += cat(knobs.empty() ? "" : "; or ", knob.setting, " (", format_bytes(knob.peak), ")");
  fail("memory plan: this run (", plan.shape, ") needs about ", format_bytes(plan.peak), " per worker at its peak (", parts, ") and ", plan.device,
       " gives each worker ", format_bytes(plan.available), "; ",
       knobs.empty() ? cat("no single setting lofi knows makes it fit (the lowest: ",
                           plan.knobs.empty() ? std::string("none") : cat(plan.knobs.front().setting, ", ", format_bytes(plan.knobs.front().peak)),
                           "): use more workers per node with dist.shard, or a bigger device")
                     : cat("it fits with ", knobs),
       ". lofi plan shows the table; train.memory_check = false starts it anyway");
}

}  // namespace lofi::train
