// Helpers shared by the tests: scratch directories, small token files, and running the lofi
// binary as a user would (real processes, real exit codes).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lofi::test {

// The message of the lofi::Error that F throws; empty when it throws none.
std::string error_of(const std::function<void()>& f);

// A fresh, empty directory under the system temp dir, named after the running test.
std::string scratch_dir();

struct CommandResult {
  int status = -1;     // exit status
  std::string output;  // stdout and stderr together
};
// Runs `lofi ARGS` (a shell-quoted string) with ENV prefixed, capturing output.
CommandResult run_lofi(const std::string& args, const std::string& env = "");

// Runs the shell COMMAND, capturing its stdout (redirect stderr in COMMAND to capture it too).
CommandResult run_shell(const std::string& command);
// Runs the project environment's Python (transformers, timm, tokenizers, safetensors) on
// fixtures/SCRIPT with ARGS (shell-quoted), capturing output: the golden checks against libraries
// nobody here wrote.
CommandResult run_python(const std::string& script, const std::string& args);
// Writes an llm.c shard of synthetic corpus NAME with about TOKENS tokens.
std::string write_corpus(const std::string& dir, const std::string& name, int64_t tokens, uint64_t seed = 1);
// Writes DIR/tokens.bin: 4000 token ids below 64, the vocabulary of the Hugging Face fixtures
// (fixtures/hf); returns its path.
std::string write_fixture_tokens(const std::string& dir);

// A PNG decoded to 8-bit RGB by libpng; empty (width 0) when PATH is missing or unreadable.
struct PngImage {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // (height, width, 3)
};
PngImage read_png(const std::string& path);

// Max |a - b| over every tensor of two checkpoints with the same names.
double max_abs_diff(const std::string& a, const std::string& b);

// The last line of NODE_DIR/metrics.jsonl.
nlohmann::json last_metrics(const std::string& node_dir);

// The peak resident memory of `lofi ARGS` (which must exit 0), in KB. glibc's malloc keeps freed
// memory of a size it learnt to reuse (its threshold for mmap grows with what is freed), which
// hides what was live; lofi runs with a fixed threshold, so large tensors go back when freed and
// the peak follows them.
long peak_rss_kb(const std::vector<std::string>& args);

// A tiny model config for fast multi-process tests, as --set flags.
std::string tiny_train_flags(const std::string& data, const std::string& run_dir);

}  // namespace lofi::test
