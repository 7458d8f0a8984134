// Rendering conversations with a model's chat template (its chat_template.jinja, or the Jinja
// `chat_template` of its tokenizer_config.json, or of a vision-language model's processor,
// chat_template.json) exactly as transformers' apply_chat_template
// does, and telling the assistant's text from the rest. No C++ Jinja engine is in Debian's
// registry (the templates use Python's string methods, namespace(), loop controls and
// raise_exception, which only jinja2 runs as transformers does), so rendering runs jinja2 in a
// Python process for the data step: chat_render.py, embedded in lofi. The Python is LOFI_PYTHON
// when set, else the one lofi was built with (its PyTorch wheel brings jinja2), else python3.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lofi::data {

// A run of rendered text and whether its tokens are training targets.
struct ChatSegment {
  std::string text;
  bool trained = false;
};

struct ChatRender {
  std::vector<ChatSegment> segments;  // empty when ERROR says why the template refused the sample
  std::string error;
};

// What renders beside the tokenizer directory's own template, as apply_chat_template's
// chat_template and keyword arguments.
struct ChatTemplateChoice {
  // A Jinja file rendering instead of the directory's template: e.g. a training variant that
  // renders every turn once (Qwen3's own drops earlier turns' reasoning, so a conversation's
  // turns are not continuations of each other and its assistant tokens cannot be told apart).
  std::string file;
  // Variables for the template, e.g. {"enable_thinking": false}; they override the special
  // tokens' names, as transformers passes them.
  nlohmann::json kwargs = nlohmann::json::object();
};

// --chat-template-kwargs' TEXT as a JSON object of variables; throws naming OPTION, what it
// found, and the names lofi sets itself (messages, add_generation_prompt, tools, documents).
nlohmann::json parse_chat_template_kwargs(const std::string& text, const std::string& option);

// Renders each of CONVERSATIONS (each a JSON array of messages: {"role", "content", ...}) with
// TOKENIZER_DIR's chat template, or CHOICE's. TRAIN_ON_PROMPT: every segment trained; else the
// assistant turns' text (through their end-of-turn tokens): what rendering through the turn adds
// to rendering the turns before it with the generation prompt. ADD_GENERATION_PROMPT: ends with
// the opening of an assistant turn (for generation). Throws when the template cannot be read or
// compiled (naming the file and what the engine lacks); a sample the template refuses gets its
// own ERROR.
std::vector<ChatRender> render_chats(const std::string& tokenizer_dir, const std::vector<nlohmann::json>& conversations,
                                     bool train_on_prompt, bool add_generation_prompt = false,
                                     const ChatTemplateChoice& choice = {});

// The Python that renders (see above), for messages.
std::string chat_python();

class Tokenizer;
// The tokens that end a generated turn: the tokenizer's end-of-text token, the special tokens
// the common chat templates end turns with where the tokenizer has them (<|eot_id|>, <|eom_id|>,
// <|im_end|>, <|end|>, <end_of_turn>, </s>, <|endoftext|>, <|end_of_text|>), and the eos_token_id
// (one or a list) of MODEL_DIR's generation_config.json when it has one.
std::vector<int64_t> stop_token_ids(const Tokenizer& tokenizer, const std::string& model_dir);

}  // namespace lofi::data
