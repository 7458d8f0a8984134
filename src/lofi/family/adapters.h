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

// What a LoRA run's adapter files record: the spec, and the checksum of the base it adapts (empty
// where not computed: then the metadata leaves it out).
struct LoraRun {
  bool active = false;  // lora.rank > 0
  io::LoraSpec spec;
  std::string base_checksum;
  bool enabled() const { return active; }
  // kLoraSpecKey and kLoraBaseChecksumKey, for the node finals and checkpoints; empty when off.
  io::Metadata metadata() const;
};

// Applies CONFIG's [lora] section to MODEL (nothing when lora.rank = 0): attaches the adapters (A
// from the run's LoRA seed stream), freezes the rest and casts it to model.dtype. RECORD_CHECKSUM:
// the base's checksum goes into the run's files (the worker that writes them: hashing an 8B base
// takes seconds). LINE, when given, receives a line saying what trains.
LoraRun attach_lora(torch::nn::Module& model, const train::Config& config, bool record_checksum, std::string* line = nullptr);

// The base model of an adapter: a lofi adapter file's run started from it (lofi.config's
// model.init), a PEFT directory names it (base_model_name_or_path, which must be a local path).
std::string adapter_base(const io::LoraAdapter& adapter);
// ADAPTER onto BASE, the model it was trained on: refused, naming the adapter, when it records a
// base checksum and BASE's differs; BASE cast to DTYPE ("bf16" or "fp32") first, the adapter fp32.
void attach_adapter(torch::nn::Module& base, const io::LoraAdapter& adapter, const std::string& dtype);

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

// A merge method other than the average (task arithmetic, TIES, Model Stock, ...) over the LoRA
// adapters OPTIONS.inputs: each folded into its base beside the output (OPTIONS.out + ".folded-K",
// temporaries removed whether the merge succeeds or not, and on a signal), then merged by the
// engine against OPTIONS.base, or the adapters' base when none is given.
merge::MergeResult merge_folded_adapters(merge::MergeOptions options);

// Writes the lofi adapter file ADAPTER as a PEFT directory OUT_DIR (replacing an older one).
void write_peft_output(const std::string& adapter, const std::string& out_dir);

}  // namespace lofi::family
