// The embedded demo's data, generated deterministically (no downloads): byte-level text whose
// ids are its bytes (vocabulary 256). A "general" corpus to pretrain on; an arithmetic task to
// fine-tune on ("23+45=68"); and shifted versions of that task that change its surface form
// (spacing, longer operands, a question-answer framing), in the spirit of the paper's
// distribution shifts: same skill, different inputs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::demo {

// Known corpus names: "general", "sums", "sums-spaced", "sums-long", "sums-qa".
std::vector<std::string> synthetic_corpus_names();
// About TOKENS bytes of corpus NAME, as token ids, from SEED.
std::vector<uint32_t> synthetic_corpus(const std::string& name, int64_t tokens, uint64_t seed);

}  // namespace lofi::demo
