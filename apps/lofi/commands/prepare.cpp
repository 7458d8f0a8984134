// lofi prepare: text or JSONL tokenised into llm.c token shards.
#include <cstdio>

#include "../command.h"
#include "../options.h"
#include "lofi/data/prepare.h"

namespace lofi::cli {
namespace {

class Prepare : public Command {
 public:
  std::string name() const override { return "prepare"; }
  std::string summary() const override { return "Tokenize text or JSONL files into llm.c token shards for train / eval"; }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("files", options_.inputs, "plain text (one document per file) or JSONL (one {\"text\": ...} per line; .jsonl or detected)")
        ->required();
    cmd.add_option("--tokenizer,-t", options_.tokenizer, "Hugging Face tokenizer directory: tokenizer.json, or vocab.json + merges.txt")
        ->required();
    cmd.add_option("--out,-o", options_.out, "output prefix: OUT.train.bin, and OUT.val.bin with --val-fraction")->required();
    cmd.add_option("--val-fraction", options_.val_fraction, "share of documents for validation, picked by a hash of (seed, document index)")
        ->check(CLI::Range(0.0, 0.999999));
    cmd.add_option("--seed", options_.seed, "seed of the validation split");
    cmd.add_option("--shard-tokens", options_.shard_tokens,
                   "at most this many tokens per file: OUT.train-00000.bin, OUT.train-00001.bin, ... (0: one file per split)")
        ->check(kNonNegative);
    cmd.add_option("--threads", options_.threads, "tokenizing threads (default: all cores)")->check(kPositive);
    cmd.add_flag("--quiet", quiet_, "no progress line");
  }
  int run() override {
    options_.progress = !quiet_;
    const data::PrepareSummary s = data::prepare_tokens(options_);
    for (const auto* split : {&s.train, &s.val}) {
      if (split->files.empty()) continue;
      const std::string more = split->files.size() > 1 ? " ... (" + std::to_string(split->files.size()) + " files)" : "";
      std::printf("%s: %lld documents, %lld tokens (uint%d) -> %s%s\n", split == &s.train ? "train" : "val",
                  static_cast<long long>(split->documents), static_cast<long long>(split->tokens), s.token_bytes * 8,
                  split->files.front().c_str(), more.c_str());
    }
    if (options_.val_fraction > 0 && s.val.files.empty()) std::fprintf(stderr, "lofi: warning: no document fell in the validation split\n");
    return 0;
  }

 private:
  data::PrepareOptions options_;
  bool quiet_ = false;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(prepare, lofi::cli::Prepare)
