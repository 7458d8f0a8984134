#include "lofi/io/hf_dir_files.h"

namespace lofi::io {

const std::vector<std::string>& hf_tokenizer_files() {
  static const std::vector<std::string> files{"tokenizer.json",          "tokenizer_config.json", "special_tokens_map.json",
                                              "added_tokens.json",       "vocab.json",            "merges.txt",
                                              "tokenizer.model"};
  return files;
}

const std::vector<std::string>& hf_companion_files() {
  static const std::vector<std::string> files = [] {
    std::vector<std::string> all = hf_tokenizer_files();
    for (const char* name : {"generation_config.json", "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
                             "processor_config.json"})
      all.emplace_back(name);
    return all;
  }();
  return files;
}

}  // namespace lofi::io
