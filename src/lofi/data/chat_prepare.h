// `lofi prepare --chat`: instruction and chat data (JSONL) to chat sample files (chat_samples.h).
// Each line is one sample in one of three shapes:
//   {"messages": [{"role": "system" | "user" | "assistant" | ..., "content": "..."}, ...]}
//   {"prompt": ..., "completion": ...}   strings (a user turn, then an assistant turn) or lists of messages
//   {"instruction": "...", "input": "...", "output": "..."}   Alpaca: the user turn is the instruction,
//                                                            then a blank line and the input when there is one
// rendered with the tokenizer directory's chat template or another (chat_template.h), tokenized as
// transformers' apply_chat_template(tokenize=True) does (the rendered text, special tokens matched,
// nothing added), and flagged for the loss: the assistant turns' tokens, or all with TRAIN_ON_PROMPT.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/data/chat_samples.h"
#include "lofi/data/chat_template.h"

namespace lofi::data {

class Tokenizer;

struct ChatPrepareOptions {
  std::string tokenizer;             // Hugging Face directory with the tokenizer and its chat template
  std::string out;                   // output prefix (OUT.train.chat, OUT.val.chat), or a directory (OUT/train.chat)
  std::vector<std::string> inputs;   // JSONL files
  bool train_on_prompt = false;      // every token a target, not only the assistant's
  ChatTemplateChoice chat_template;  // another template, variables for it
  double val_fraction = 0;
  uint64_t seed = 0;
  int threads = 0;                   // tokenizing threads; 0: all cores
};

struct ChatPrepareSummary {
  struct Split {
    int64_t samples = 0, tokens = 0, trained = 0, longest = 0;
    std::string file;
  } train, val;
  std::vector<std::string> removed;  // an earlier prepare's val file this one did not write
};

ChatPrepareSummary prepare_chat(const ChatPrepareOptions& options);

// The messages of one JSONL sample in any of the three shapes; throws naming WHERE (file:line)
// and what was expected.
nlohmann::json chat_messages(const nlohmann::json& sample, const std::string& where);

// Tokenizes rendered SEGMENTS as one text and flags the tokens that overlap a trained segment.
ChatSample tokenize_chat(const Tokenizer& tokenizer, const std::vector<ChatSegment>& segments, const std::string& where);

}  // namespace lofi::data
