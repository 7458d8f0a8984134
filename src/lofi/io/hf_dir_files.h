// The files of a Hugging Face model directory beside its weights and config.json, as
// save_pretrained writes them: what a derived directory (an export, merged-hf, an average) carries
// over from the directory it came from, so that it tokenizes, chats and generates as that one did.
#pragma once
#include <string>
#include <vector>

namespace lofi::io {

// The tokenizer's own files (tokenizers' tokenizer.json, GPT-2's vocab.json + merges.txt,
// SentencePiece's tokenizer.model, and transformers' settings for them).
const std::vector<std::string>& hf_tokenizer_files();
// Those, and what else describes how the model is used: generation_config.json (its stop tokens),
// the chat template transformers 4.43+ keeps beside the tokenizer (chat_template.jinja, or
// chat_template.json of processors), and a vision-language model's preprocessor and processor
// settings.
const std::vector<std::string>& hf_companion_files();

}  // namespace lofi::io
