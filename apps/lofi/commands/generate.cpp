// lofi generate: text from a language model.
#include <iostream>

#include "../command.h"
#include "../options.h"
#include "lofi/error.h"
#include "lofi/family/generate_text.h"

namespace lofi::cli {
namespace {

class Generate : public Command {
 public:
  std::string name() const override { return "generate"; }
  std::string summary() const override { return "Text from a language model: lofi generate --model M --prompt TEXT"; }
  void add_options(CLI::App& cmd) override {
    auto& o = request_.options;
    cmd.add_option("--model,-m", request_.model, "lofi checkpoint or Hugging Face model directory")->required()->check(CLI::ExistingPath);
    cmd.add_option("--prompt,-p", request_.prompt, "text to continue; with --chat, the user's message")->required();
    cmd.add_flag("--chat", request_.chat,
                 "render the prompt as a user turn with the tokenizer's chat template and print the assistant's reply, "
                 "generated until an end-of-turn token");
    cmd.add_option("--system", request_.system, "with --chat: a system message before the user's");
    chat_template_.add_to(cmd);
    cmd.add_option("--tokenizer", request_.tokenizer,
                   "Hugging Face tokenizer directory (default: the model's, or its run's pretrained directory); bytes: ids are bytes");
    cmd.add_option("--max-new-tokens", o.max_new_tokens, "tokens to add")->check(kNonNegative);
    cmd.add_option("--temperature", o.temperature, "0: greedy; > 0: sample softmax(logits / temperature)")->check(kNonNegative);
    cmd.add_option("--top-k", o.top_k, "sample among the K most likely tokens (0: all)")->check(kNonNegative);
    cmd.add_option("--top-p", o.top_p, "sample among the most likely tokens whose probabilities add up to P (1: all)")
        ->check(CLI::Range(0.0, 1.0));
    cmd.add_option("--seed", o.seed, "sampling seed")->check(kNonNegative);
    cmd.add_option("--set", request_.sets, "override a config key (e.g. train.device=cuda)");
    cmd.add_flag("--allow-nonfinite", request_.allow_nonfinite, "generate from weights holding NaN or Inf (refused by default)");
  }
  int run() override {
    if (!request_.system.empty() && !request_.chat) fail("generate: --system goes with --chat");
    if (chat_template_.given() && !request_.chat) fail("generate: --chat-template and --chat-template-kwargs go with --chat");
    request_.chat_template = chat_template_.choice();
    // Printed as it is generated, so a long generation shows its progress.
    request_.on_text = [](const std::string& piece) { std::cout << piece << std::flush; };
    family::generate_text(request_);
    std::cout << "\n";
    return 0;
  }

 private:
  family::GenerateRequest request_;
  ChatTemplateFlags chat_template_;
};

}  // namespace
}  // namespace lofi::cli

LOFI_COMMAND(generate, lofi::cli::Generate)
