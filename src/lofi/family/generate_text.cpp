#include "lofi/family/generate_text.h"

#include <cstdio>
#include <optional>

#include "lofi/data/chat_template.h"
#include "lofi/data/tokenizer.h"
#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/family/family.h"
#include "lofi/family/lm_evaluator.h"
#include "lofi/family/lm_model.h"
#include "lofi/model/hf.h"
#include "lofi/train/config.h"

namespace lofi::family {

std::string generate_text(const GenerateRequest& r) {
  const train::Config config = train::config_for_model(r.model, "", r.sets);
  if (family_of(config.model.arch).kind() != Kind::language_model)
    fail("generate: ", r.model, " is an image classifier; generate needs a language model");
  const std::string tokenizer_dir = find_tokenizer_dir_or_fail(r.model, r.tokenizer, "generate", /*bytes_too=*/true);
  const bool bytes = tokenizer_dir == "bytes";
  std::optional<data::Tokenizer> tokenizer;
  if (!bytes) tokenizer.emplace(data::Tokenizer::load(tokenizer_dir));
  if (r.chat && bytes) fail("generate --chat needs a tokenizer directory with a chat template, not --tokenizer bytes");
  std::vector<int64_t> ids;
  if (bytes) {
    for (unsigned char c : r.prompt) ids.push_back(c);
  } else if (r.chat) {
    nlohmann::json messages = nlohmann::json::array();
    if (!r.system.empty()) messages.push_back({{"role", "system"}, {"content", r.system}});
    messages.push_back({{"role", "user"}, {"content", r.prompt}});
    const data::ChatRender render =
        data::render_chats(tokenizer_dir, {messages}, /*train_on_prompt=*/true, /*add_generation_prompt=*/true, r.chat_template).at(0);
    if (!render.error.empty()) fail("generate --chat: the chat template of ", tokenizer_dir, " refused the prompt: ", render.error);
    std::string text;
    for (const auto& s : render.segments) text += s.text;
    for (uint32_t id : tokenizer->encode(text, /*add_special_tokens=*/false)) ids.push_back(id);  // as apply_chat_template
  } else {
    for (uint32_t id : tokenizer->encode(r.prompt)) ids.push_back(id);
  }
  eval::GenerateOptions o = r.options;
  if (!bytes) {  // generation_config.json from the model's own directory (or its base's) where it has one
    const std::string model_dir = find_tokenizer_dir(r.model, "");
    o.stop_ids = data::stop_token_ids(*tokenizer, model_dir.empty() ? tokenizer_dir : model_dir);
  }
  model::CausalLm lm = make_lm(config.model, 0);
  EvalSettings finite;
  finite.allow_nonfinite = r.allow_nonfinite;
  refuse_nonfinite_model(*lm, r.model, finite);  // else NaN logits decode as token 0, NUL bytes
  lm->to(dist::resolve_device(config.train.device, 0, "train.device"));
  // The reply alone with CHAT, else the prompt and its continuation, decoded.
  const auto decode = [&](const std::vector<int64_t>& tokens) {
    const auto first = tokens.begin() + (r.chat ? static_cast<int64_t>(ids.size()) : 0);
    if (!bytes) return tokenizer->decode(std::vector<uint32_t>(first, tokens.end()), /*skip_special_tokens=*/true);
    return std::string(first, tokens.end());  // each id is one byte
  };
  std::string said;  // what on_text has been given
  const auto say = [&](const std::string& text, bool last) {
    // Decoding all tokens again each time keeps a BPE merge across tokens right; a text that ends
    // in U+FFFD, or that rewrote what was said, waits (it ends inside a character).
    const bool partial = text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
    if (text.compare(0, said.size(), said) != 0 || (partial && !last)) return;
    r.on_text(text.substr(said.size()));
    said = text;
  };
  if (r.on_text) {
    say(decode(ids), false);
    o.on_token = [&](const std::vector<int64_t>& tokens) { say(decode(tokens), false); };
  }
  const std::string text = decode(eval::generate(*lm, ids, o));
  if (r.on_text) {
    if (text.compare(0, said.size(), said) == 0) {
      say(text, true);
    } else {  // the tokenizer's clean-up rewrote a printed piece: give the whole text again
      std::fprintf(stderr, "\ngenerate: the whole text, decoded at once, differs from the pieces above; it is:\n");
      r.on_text(text);
    }
  }
  return text;
}

}  // namespace lofi::family
