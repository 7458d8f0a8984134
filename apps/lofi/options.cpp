#include "options.h"

#include <cstdio>

#include "lofi/error.h"
#include "lofi/family/adapters.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/merge/inputs.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "lofi/eval/table.h"
#include "lofi/io/atomic_file.h"

namespace lofi::cli {

CLI::Validator number_check(std::optional<double> min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0') return "expected a number, found \"" + text + "\"";
        if (!std::isfinite(v) || std::abs(v) > std::numeric_limits<float>::max())
          return "expected a finite number within fp32's range (|x| <= 3.4e38), found " + text;
        if (min && v < *min) return "expected a number >= " + eval::format_fixed(*min, *min == std::floor(*min) ? 0 : 3) + ", found " + text;
        return "";
      },
      min ? "NUMBER>=" + std::to_string(static_cast<int64_t>(*min)) : "NUMBER");
}
const CLI::Validator kFinite = number_check(), kNonNegative = number_check(0.0), kPositive = number_check(1.0);

void add_merge_flags(CLI::App& cmd, merge::MergeOptions& opt, const std::string& verb) {
  cmd.add_option("inputs", opt.inputs, "safetensors checkpoints, sharded sets (index.json or a Hugging Face directory), or run directories (their node-*/final.safetensors)")
      ->required();
  cmd.add_option("--out,-o", opt.out, "output .safetensors (a new directory with --shard-size, or when the inputs are Hugging Face model directories)")->required();
  cmd.add_option("--dtype", opt.dtype, "output dtype: F32, F16, BF16 or F64 (default: as the inputs)");
  cmd.add_option("--shard-size", opt.shard_bytes, "write Hugging Face shards of at most this many bytes")->check(kNonNegative);
  cmd.add_option("--min-inputs", opt.min_inputs, "merge whichever inputs exist and verify, naming the others; fail under this many")->check(kNonNegative);
  cmd.add_option("--threads", opt.threads, "threads (default: all cores)")->check(kNonNegative);
  cmd.add_flag("--no-checksums{false}", opt.checksums, "skip the inputs' XXH3 checksums in the provenance (saves a read)");
  cmd.add_flag("--allow-nonfinite", opt.allow_nonfinite, verb + " inputs holding NaN or Inf (refused by default)");
  cmd.add_flag("--force", opt.force, verb + " inputs trained apart (another pretrained start, step count, node count or settings)");
}

void AdapterMergeFlags::add_to(CLI::App& cmd) {
  cmd.add_option("--adapter-merge", mode,
                 "LoRA adapters: \"concat\" (default: the exact average, rank N r), \"dense\" (folded into the base: a\n"
                 "Hugging Face directory), \"svd R\" (the exact average at rank R, reporting the error), \"factors\"\n"
                 "(A and B averaged apart, as federated LoRA: not the average; reports its error)")
      ->expected(1, 2)->capture_default_str();
}

void ChatTemplateFlags::add_to(CLI::App& cmd) {
  cmd.add_option("--chat-template", file,
                 "with --chat: a Jinja chat template file rendering instead of the tokenizer's own (e.g. a training\n"
                 "template that renders every turn once, where the model's rewrites earlier turns)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--chat-template-kwargs", kwargs,
                 "with --chat: a JSON object of variables for the template, as apply_chat_template's keyword\n"
                 "arguments, e.g. '{\"enable_thinking\": false}'");
}

data::ChatTemplateChoice ChatTemplateFlags::choice() const {
  data::ChatTemplateChoice c;
  c.file = file;
  if (!kwargs.empty()) c.kwargs = data::parse_chat_template_kwargs(kwargs, "--chat-template-kwargs");
  return c;
}

bool AdapterMergeFlags::merge_if_adapters(const merge::MergeOptions& options) const {
  // "svd 4" given as one quoted word counts as two.
  std::vector<std::string> words_given;
  for (const std::string& given : this->mode) {
    std::istringstream words(given);
    for (std::string word; words >> word;) words_given.push_back(word);
  }
  if (words_given.empty()) fail("--adapter-merge: empty; expected concat, dense, svd R or factors");
  const std::string& first = options.inputs.empty() ? std::string() : options.inputs.front();
  const std::vector<std::string> inputs = !first.empty() && io::is_lora_adapter(first) ? options.inputs : merge::expand_inputs(options.inputs);
  if (inputs.empty() || !io::is_lora_adapter(inputs.front())) {
    if (words_given != std::vector<std::string>{"concat"})
      fail("--adapter-merge applies to LoRA adapters; ", inputs.empty() ? "no input" : inputs.front(), " is not one");
    return false;
  }
  if (options.method != "average") {
    if (words_given != std::vector<std::string>{"concat"})
      fail("--adapter-merge is how adapters are averaged; --method ", options.method, " merges their dense changes instead");
    merge::MergeOptions dense = options;
    dense.inputs = inputs;
    const merge::MergeResult r = family::merge_folded_adapters(dense);
    std::printf("merged %zu adapters' dense changes (%s) into %s\n", r.used.size(), options.method.c_str(), options.out.c_str());
    return true;
  }
  // Options the adapter average does not take are refused by name, never ignored.
  auto refuse = [&](const char* flag, const char* why) {
    fail(flag, ": ", why, "; leave it out, or merge the adapters' dense changes with another --method");
  };
  if (!options.weights.empty()) refuse("--weights", "LoRA adapters are averaged with equal weights (the lo-fi average)");
  if (!options.dtype.empty()) refuse("--dtype", "a merged LoRA adapter is written in fp32, as its nodes trained it");
  if (options.shard_bytes > 0) refuse("--shard-size", "a merged LoRA adapter is written unsharded");
  if (options.min_inputs > 0) refuse("--min-inputs", "every adapter given is merged, or none");
  family::AdapterMerge how;
  how.mode = words_given.front();
  how.force = options.force;
  if (how.mode == "svd") {
    if (words_given.size() != 2) fail("--adapter-merge svd needs the rank: --adapter-merge svd R");
    try {
      how.rank = std::stoll(words_given[1]);
    } catch (const std::exception&) {
      fail("--adapter-merge svd R: R must be an integer, found \"", words_given[1], "\"");
    }
    if (how.rank <= 0) fail("--adapter-merge svd R: R must be >= 1, found ", how.rank);
  } else if (words_given.size() != 1) {
    fail("--adapter-merge ", how.mode, " takes no rank (only svd does)");
  }
  if (how.mode != "concat" && how.mode != "dense" && how.mode != "svd" && how.mode != "factors")
    fail("--adapter-merge \"", how.mode, "\": expected concat, dense, svd R or factors");
  family::merge_adapter_files(inputs, options.out, how);
  std::printf("merged %zu adapters (%s) into %s\n", inputs.size(), how.mode.c_str(), options.out.c_str());
  return true;
}

void EvalFlags::add_to(CLI::App& cmd) {
  cmd.add_option("--data,-d", data, "NAME=PATH of token shards, or of an image folder for a classifier (repeatable)");
  cmd.add_option("--task", tasks,
                 "NAME=FILE: accuracy of a language model on a JSONL task, as lm-evaluation-harness scores it: multiple choice\n"
                 "{\"context\", \"choices\": [...], \"answer\": K} (acc, acc_norm) or short answer {\"context\", \"answer\": \"...\"}\n"
                 "(exact_match after greedy generation); repeatable");
  cmd.add_option("--tokenizer", settings.tokenizer, "--task: the tokenizer directory (default: the model's, or its run's pretrained directory)");
  cmd.add_option("--max-new-tokens", settings.max_new_tokens, "--task: a short answer's longest generation")->check(kPositive);
  cmd.add_option("--class-map", class_maps, "NAME=FILE: score image set NAME through a class map (subset or many-to-one; repeatable)");
  cmd.add_option("--max-images", max_images, "classifiers: score this many images per set, an even share of every class (0: all)")
      ->check(kNonNegative);
  cmd.add_option("--config,-c", config, "config giving the model's shape (default: the checkpoint's own)");
  cmd.add_option("--set", sets, "override a config key: section.key=value");
  cmd.add_option("--seq-len", settings.seq_len, "window length (default: data.seq_len)")->check(kNonNegative);
  cmd.add_option("--batch", settings.batch, "windows per forward pass")->check(kPositive);
  cmd.add_option("--max-windows", settings.max_windows, "score at most this many windows per dataset (0: all)")->check(kNonNegative);
  cmd.add_option("--json", json, "also write the results as JSON here");
}

family::EvalRequest EvalFlags::request() const {
  family::EvalRequest r;
  r.model = model;
  r.ensemble = ensemble;
  r.config = config;
  r.sets = sets;
  r.inputs.data = family::parse_named_paths(data, "--data");
  r.inputs.class_maps = family::parse_named_paths(class_maps, "--class-map");
  r.inputs.tasks = family::parse_named_paths(tasks, "--task");
  // Results are keyed by name, --data's and --task's alike: one would hide the other.
  for (const auto& t : r.inputs.tasks)
    for (const auto& d : r.inputs.data)
      if (t.name == d.name) fail("--task ", t.name, " and --data ", d.name, " share a name; give each a name of its own");
  r.inputs.lm = settings;
  r.inputs.images.batch = settings.batch;
  r.inputs.images.max_images = max_images;
  r.inputs.images.allow_nonfinite = settings.allow_nonfinite;
  return r;
}

void EvalFlags::write_json(const std::string& text) const {
  if (!json.empty()) io::write_file_atomic(json, text);
}

}  // namespace lofi::cli
