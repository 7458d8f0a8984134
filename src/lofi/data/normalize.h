// Unicode normalisation for tokenizers whose tokenizer.json names a normalizer (Qwen2's NFC), by
// ICU, the library the Unicode Consortium's own implementation lives in.
#pragma once
#include <string>
#include <string_view>

namespace lofi::data {

// TEXT (UTF-8) in Normalization Form C. Ill-formed UTF-8 is left for the pre-tokenizer to refuse.
std::string nfc(std::string_view text);

}  // namespace lofi::data
