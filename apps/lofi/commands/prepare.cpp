// lofi prepare: text or JSONL tokenised into llm.c token shards.
#include <algorithm>
#include <cstdio>

#include "../command.h"
#include "../options.h"
#include "lofi/data/chat_prepare.h"
#include "lofi/data/prepare.h"
#include "lofi/error.h"

namespace lofi::cli {
namespace {

class Prepare : public Command {
 public:
  std::string name() const override { return "prepare"; }
  std::string summary() const override {
    return "Tokenize text or JSONL files into llm.c token shards, or chat data (--chat) into chat sample files, for train / eval";
  }
  void add_options(CLI::App& cmd) override {
    cmd.add_option("files", options_.inputs, "plain text (one document per file) or JSONL (one {\"text\": ...} per line; .jsonl or detected)")
        ->required();
    cmd.add_option("--tokenizer,-t", options_.tokenizer, "Hugging Face tokenizer directory: tokenizer.json, or vocab.json + merges.txt")
        ->required();
    cmd.add_option("--out,-o", options_.out, "output prefix: OUT.train.bin, and OUT.val.bin with --val-fraction")->required();
    cmd.add_option("--val-fraction", options_.val_fraction, "share of documents for validation, picked by a hash of (seed, document index)")
        ->check(CLI::Range(0.0, 0.999999));
    cmd.add_option("--seed", options_.seed, "seed of the validation split")->check(kNonNegative);
    cmd.add_option("--shard-tokens", options_.shard_tokens,
                   "at most this many tokens per file: OUT.train-00000.bin, OUT.train-00001.bin, ... (0: one file per split)")
        ->check(kNonNegative);
    cmd.add_option("--threads", options_.threads, "tokenizing threads (default: all cores)")->check(kPositive);
    cmd.add_flag("--quiet", quiet_, "no progress line");
    cmd.add_flag("--chat", chat_,
                 "the files are chat or instruction JSONL ({\"messages\": [...]}, {\"prompt\", \"completion\"} or Alpaca's "
                 "{\"instruction\", \"input\", \"output\"}), rendered with the tokenizer directory's chat template: "
                 "writes OUT.train.chat (and OUT.val.chat; OUT/train.chat where OUT is a directory or ends in /) with a loss "
                 "flag per token");
    cmd.add_flag("--train-on-prompt", train_on_prompt_, "with --chat: every token is a training target, not only the assistant's");
    chat_template_.add_to(cmd);
  }
  int run() override {
    if (train_on_prompt_ && !chat_) fail("prepare: --train-on-prompt goes with --chat");
    if (chat_template_.given() && !chat_) fail("prepare: --chat-template and --chat-template-kwargs go with --chat");
    if (chat_ && options_.shard_tokens > 0) fail("prepare: --shard-tokens cuts token shards; --chat writes one sample file per split");
    if (chat_) return run_chat();
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
    for (const auto& f : s.removed) std::printf("removed %s (an earlier prepare's, not written by this one)\n", f.c_str());
    return 0;
  }

 private:
  int run_chat() {
    data::ChatPrepareOptions o;
    o.tokenizer = options_.tokenizer;
    o.out = options_.out;
    o.inputs = options_.inputs;
    o.train_on_prompt = train_on_prompt_;
    o.chat_template = chat_template_.choice();
    o.val_fraction = options_.val_fraction;
    o.seed = options_.seed;
    o.threads = options_.threads;
    const data::ChatPrepareSummary s = data::prepare_chat(o);
    for (const auto* split : {&s.train, &s.val}) {
      if (split->file.empty()) continue;
      std::printf("%s: %lld samples, %lld tokens, %lld of them trained (%.1f%%), longest %lld -> %s\n",
                  split == &s.train ? "train" : "val", static_cast<long long>(split->samples), static_cast<long long>(split->tokens),
                  static_cast<long long>(split->trained), 100.0 * static_cast<double>(split->trained) / static_cast<double>(std::max<int64_t>(1, split->tokens)),
                  static_cast<long long>(split->longest), split->file.c_str());
    }
    if (o.val_fraction > 0 && s.val.file.empty()) std::fprintf(stderr, "lofi: warning: no sample fell in the validation split\n");
    for (const auto& f : s.removed) std::printf("removed %s (an earlier prepare's, not written by this one)\n", f.c_str());
    return 0;
  }

  data::PrepareOptions options_;
  bool quiet_ = false, chat_ = false, train_on_prompt_ = false;
  ChatTemplateFlags chat_template_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(prepare, lofi::cli::Prepare)
