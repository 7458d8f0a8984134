// LoRA in a run and around it: adapters attached to a task's model as the [lora] section says
// (the base frozen, in model.dtype), what a LoRA run's files record, the base an adapter file
// belongs to, and the adapter merges of a lo-fi job's nodes (merge/adapters.h), the dense one
// included.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "lofi/io/lora_adapter.h"
#include "lofi/merge/adapters.h"
#include "lofi/merge/engine.h"
#include "lofi/train/config.h"

namespace lofi::family {

// What a LoRA run's adapter files record: the spec, and the checksum of the base it adapts.
struct LoraRun {
  bool active = false;  // lora.rank > 0
  io::LoraSpec spec;
  std::string base_checksum;
  bool enabled() const { return active; }
  // kLoraSpecKey and kLoraBaseChecksumKey, for the node finals and checkpoints; empty when off.
  io::Metadata metadata() const;
};

// Applies CONFIG's [lora] section to MODEL (nothing when lora.rank = 0): records the base's
// checksum, attaches the adapters (A from the run's LoRA seed stream), freezes the rest and casts
// it to model.dtype. LINE, when given, receives a line saying what trains.
LoraRun attach_lora(torch::nn::Module& model, const train::Config& config, std::string* line = nullptr);

// The base model of an adapter: a lofi adapter file's run started from it (lofi.config's
// model.init), a PEFT directory names it (base_model_name_or_path, which must be a local path).
std::string adapter_base(const io::LoraAdapter& adapter);
// Fails naming the adapter when it records a base checksum and BASE_WEIGHTS' differs.
void check_adapter_base(const io::LoraAdapter& adapter, const io::NamedTensors& base_weights);

// --adapter-merge: concat, dense, svd (with a rank) or factors.
struct AdapterMerge {
  std::string mode = "concat";
  int64_t rank = 0;  // svd's R
  bool force = false;
};

// Merges the adapter files or PEFT directories INPUTS (or runs' node finals) into OUT: a lofi
// adapter file (OUT ends in .safetensors) or a PEFT directory; with "dense", a Hugging Face model
// directory of the base with the exact average folded in. Prints what the approximate modes lost.
// Returns the merge's error report (null for the exact modes).
nlohmann::json merge_adapter_files(const std::vector<std::string>& inputs, const std::string& out, const AdapterMerge& how,
                                   const io::Metadata& extra = {});

// Each adapter of INPUTS folded into its base, written under DIR (made anew) in its base's form (a
// Hugging Face directory for a directory base, a safetensors file for a file base): what merge
// methods other than the average work on. Returns the written paths, in order, and sets BASE to
// the adapters' base (all must share it).
std::vector<std::string> fold_adapters(const std::vector<std::string>& inputs, const std::string& dir, std::string& base);

// A merge method other than the average (task arithmetic, TIES, Model Stock, ...) over the LoRA
// adapters OPTIONS.inputs: each folded into its base beside the output (fold_adapters, in
// OPTIONS.out + ".folded-inputs", removed whether the merge succeeds or not), then merged by the
// engine against OPTIONS.base, or the adapters' base when none is given.
merge::MergeResult merge_folded_adapters(merge::MergeOptions options);

// Writes the lofi adapter file ADAPTER as a PEFT directory OUT_DIR (replacing an older one).
void write_peft_output(const std::string& adapter, const std::string& out_dir);

}  // namespace lofi::family
