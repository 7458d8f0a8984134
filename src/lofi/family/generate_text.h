// `lofi generate`: text from a language model (a lofi checkpoint or a Hugging Face directory),
// tokenised by --tokenizer, the model's own directory, or the directory its run started from.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "lofi/data/chat_template.h"
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
  data::ChatTemplateChoice chat_template;  // chat: another template, variables for it
  std::function<void(const std::string&)> on_text;  // when set: each piece of the text as it is generated
};

// The prompt and its continuation, decoded; with CHAT, the assistant's reply alone, generated
// until an end-of-turn token (data::stop_token_ids). ON_TEXT, when set, receives the same text in
// pieces as it grows (a token that ends inside a UTF-8 character waits for the next).
std::string generate_text(const GenerateRequest& request);

}  // namespace lofi::family
