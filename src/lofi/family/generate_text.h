// `lofi generate`: text from a language model (a lofi checkpoint or a Hugging Face directory),
// tokenised by --tokenizer, the model's own directory, or the directory its run started from.
#pragma once
#include <string>
#include <vector>

#include "lofi/eval/generate.h"

namespace lofi::family {

struct GenerateRequest {
  std::string model;                // checkpoint or Hugging Face model directory
  std::string prompt;
  std::string tokenizer;            // a tokenizer directory; "bytes": ids are bytes; empty: found as above
  eval::GenerateOptions options;
  std::vector<std::string> sets;    // config overrides, e.g. train.device=cuda
  bool allow_nonfinite = false;     // generate from weights holding NaN or Inf (refused by default)
  bool chat = false;                // PROMPT is a user turn: rendered with the chat template, the reply generated
  std::string system;               // chat: a system turn before it (when not empty)
};

// The prompt and its continuation, decoded; with CHAT, the assistant's reply alone, generated
// until an end-of-turn token (data::stop_token_ids).
std::string generate_text(const GenerateRequest& request);

}  // namespace lofi::family
