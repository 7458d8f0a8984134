#include "lofi/family/generate_text.h"

#include <optional>

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
  const std::string tokenizer_dir = find_tokenizer_dir_or_fail(r.model, r.tokenizer, "generate");
  const bool bytes = tokenizer_dir == "bytes";
  std::optional<data::Tokenizer> tokenizer;
  if (!bytes) tokenizer.emplace(data::Tokenizer::load(tokenizer_dir));
  std::vector<int64_t> ids;
  if (bytes) {
    for (unsigned char c : r.prompt) ids.push_back(c);
  } else {
    for (uint32_t id : tokenizer->encode(r.prompt)) ids.push_back(id);
  }
  eval::GenerateOptions o = r.options;
  if (!bytes) o.stop_id = tokenizer->end_of_text();
  model::CausalLm lm = make_lm(config.model, 0);
  EvalSettings finite;
  finite.allow_nonfinite = r.allow_nonfinite;
  refuse_nonfinite_model(*lm, r.model, finite);  // else NaN logits decode as token 0, NUL bytes
  lm->to(dist::resolve_device(config.train.device, 0, "train.device"));
  const std::vector<int64_t> out = eval::generate(*lm, ids, o);
  if (!bytes) return tokenizer->decode(std::vector<uint32_t>(out.begin(), out.end()), /*skip_special_tokens=*/true);
  std::string text;
  for (int64_t id : out) text += static_cast<char>(id);
  return text;
}

}  // namespace lofi::family
