// The README's shell blocks, run as written: in order, one bash script per block, in a folder that
// holds tiny versions of everything they name — the examples' configs with their sizes shrunk (the
// keys below, each of which must exist), byte-level data where the demo writes its own (generated
// here, not the fortunes) and a pretrained checkpoint, a
// Hugging Face OPT made by transformers with an OPT-style tokenizer, a tiny instruction-tuned Llama
// (the chat fixtures'), a Qwen3 tokenizer with its template and TRL's training variant, generated
// text and images, and a ViT checkpoint. Lines that need a Slurm cluster, a second machine or a GPU are left out, each
// named with its reason; every other line must exit 0.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "lofi/demo/synthetic_images.h"
#include "lofi/demo/synthetic_text.h"
#include "lofi/data/token_shards.h"
#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The ```sh blocks of a Markdown file, with backslash continuations joined.
std::vector<std::vector<std::string>> shell_blocks(const std::string& markdown) {
  std::vector<std::vector<std::string>> blocks;
  std::istringstream in(markdown);
  bool inside = false;
  std::string line, pending;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      if (!inside && line == "```sh") blocks.emplace_back();
      inside = !inside && line == "```sh";
      continue;
    }
    if (!inside) continue;
    if (!line.empty() && line.back() == '\\') {
      pending += line.substr(0, line.size() - 1);
      continue;
    }
    blocks.back().push_back(pending + line);
    pending.clear();
  }
  return blocks;
}

// Why a README line cannot run on this machine, or "".
std::string why_not_here(const std::string& line) {
  if (line.rfind("make ", 0) == 0) return "the quick start itself (this test runs under make test)";
  if (line.rfind("sbatch ", 0) == 0) return "needs a Slurm cluster (tests drive the Slurm environment instead)";
  if (line.find("--nnodes 2") != std::string::npos) return "needs a second machine (two_hosts_test runs it across namespaces)";
  if (line.find("cuda") != std::string::npos) return "needs a GPU";
  return "";
}

// SOURCE with each KEY's line set to "KEY = VALUE" (the key must be there), written to OUT.
void shrink(const std::string& source, const std::string& out, const std::vector<std::pair<std::string, std::string>>& keys) {
  std::string text = read_text(source);
  for (const auto& [key, value] : keys) {
    const std::regex line("(^|\n)" + key + " = [^\n]*");
    ASSERT_TRUE(std::regex_search(text, line)) << source << " has no key " << key;
    text = std::regex_replace(text, line, "$1" + key + " = " + value);
  }
  std::ofstream(out) << text;
}

void run_in(const std::string& dir, const std::string& command) {
  auto r = test::run_shell("cd " + dir + " && " + command + " 2>&1");
  ASSERT_EQ(r.status, 0) << command << "\n" << r.output;
}

TEST(CliReadme, ShellBlocksRunAsWritten) {
  const std::string sandbox = test::scratch_dir(), repo = std::string(LOFI_FIXTURES) + "/../..";
  const auto blocks = shell_blocks(read_text(repo + "/README.md"));
  ASSERT_GE(blocks.size(), 6u);

  // The binary where the README has it, and the project environment's torchrun on PATH.
  fs::create_directories(sandbox + "/build");
  fs::create_symlink(LOFI_BIN, sandbox + "/build/lofi");
  const std::string path = "PATH=" + fs::path(LOFI_TEST_PYTHON).parent_path().string() + ":$PATH";

  // The examples, shrunk to seconds; everything else in them as shipped.
  fs::create_directories(sandbox + "/examples");
  fs::copy(repo + "/examples/slurm", sandbox + "/examples/slurm", fs::copy_options::recursive);
  const std::vector<std::pair<std::string, std::string>> short_run = {
      {"steps", "4"}, {"batch_size", "8"}, {"warmup_steps", "1"}, {"log_every", "1"}, {"eval_every", "2"}, {"ckpt_every", "2"}};
  auto with = [&](std::vector<std::pair<std::string, std::string>> keys) {
    keys.insert(keys.end(), short_run.begin(), short_run.end());
    return keys;
  };
  shrink(repo + "/examples/lm-tiny.toml", sandbox + "/examples/lm-tiny.toml",
         with({{"n_layer", "1"}, {"n_head", "2"}, {"d_model", "16"}, {"d_ff", "32"}, {"max_seq_len", "16"}, {"seq_len", "16"}}));
  shrink(repo + "/examples/opt-125m.toml", sandbox + "/examples/opt-125m.toml", with({{"seq_len", "32"}, {"eval_batches", "1"}}));
  shrink(repo + "/examples/vit-deit.toml", sandbox + "/examples/vit-deit.toml",
         with({{"preset", "\"vit_test_patch8_32\""}, {"eval_batches", "1"}, {"loader_threads", "1"}}));

  // "A local copy of meta-llama/Llama-3.2-1B-Instruct": the chat fixtures' tiny Llama with a Llama 3
  // chat template; the instruction-tuning example with its config shrunk.
  fs::create_directories(sandbox + "/models");
  fs::copy(std::string(LOFI_FIXTURES) + "/chat/tiny-llama", sandbox + "/models/Llama-3.2-1B-Instruct", fs::copy_options::recursive);
  // "A local copy of Qwen/Qwen3-8B": the chat fixtures' Qwen3 tokenizer and template; TRL's
  // training variant of that template.
  fs::copy(std::string(LOFI_FIXTURES) + "/chat/qwen3", sandbox + "/models/Qwen3-8B", fs::copy_options::recursive);
  fs::copy_file(std::string(LOFI_FIXTURES) + "/chat/qwen3_training.jinja", sandbox + "/qwen3_training.jinja");
  fs::create_directories(sandbox + "/examples/wordnet-instruct");
  fs::copy_file(repo + "/examples/wordnet-instruct/make_wordnet_tasks.py", sandbox + "/examples/wordnet-instruct/make_wordnet_tasks.py");
  shrink(repo + "/examples/wordnet-instruct/lora.toml", sandbox + "/examples/wordnet-instruct/lora.toml",
         {{"seq_len", "128"}, {"steps", "4"}, {"batch_size", "8"}, {"warmup_steps", "1"}, {"log_every", "1"}, {"eval_every", "2"},
          {"eval_batches", "1"}});

  // The demo's data and a pretrained model of lm-tiny's (shrunk) shape.
  fs::create_directories(sandbox + "/runs/demo/data/fortunes");
  for (const char* split : {"train", "val"})
    data::write_token_shard(sandbox + "/runs/demo/data/fortunes/computers." + split + ".bin",
                            demo::synthetic_corpus("general", 20000, 7));
  run_in(sandbox, "build/lofi train --config examples/lm-tiny.toml --set model.init= --set run.dir=pre --quiet && "
                  "cp pre/node-00/final.safetensors runs/demo/pretrained.safetensors");

  // "A local copy of facebook/opt-125m": a tiny OPT with an OPT-style tokenizer; text to tokenize.
  auto made = test::run_python("readme/make_tiny_opt.py", sandbox + "/models/opt-125m " + LOFI_FIXTURES + "/tokenizer/opt");
  ASSERT_EQ(made.status, 0) << made.output;
  {
    const char* words[] = {"the", "model", "averages", "weights", "once", "at", "the", "end", "and", "nodes",
                           "never", "talk", "Once", "upon", "a", "time", "42", "café"};
    std::ofstream jsonl(sandbox + "/corpus.jsonl");
    fs::create_directories(sandbox + "/corpus");
    std::ofstream more(sandbox + "/corpus/more.jsonl"), notes(sandbox + "/notes.txt");
    for (int d = 0; d < 1500; ++d) {
      std::string text;
      for (int w = 0; w < 24; ++w) text += std::string(w ? " " : "") + words[(d * 7 + w * 13 + w * w) % std::size(words)];
      jsonl << nlohmann::json{{"text", text}}.dump() << "\n";
      if (d < 300) more << nlohmann::json{{"text", text}}.dump() << "\n", notes << text << "\n";
    }
  }

  // An ImageFolder with a rendition set and its class map, and a ViT pretrained on another task.
  demo::SyntheticImageConfig images;
  images.pretrain_train_per_class = 2, images.pretrain_val_per_class = 1, images.finetune_train_per_class = 4;
  images.eval_per_class = 2, images.threads = 2;
  demo::write_synthetic_images(images, sandbox + "/images");
  fs::create_directories(sandbox + "/imagenet");
  fs::create_directory_symlink(sandbox + "/images/finetune-train", sandbox + "/imagenet/train");
  fs::create_directory_symlink(sandbox + "/images/finetune-val", sandbox + "/imagenet/val");
  fs::create_directory_symlink(sandbox + "/images/shift-rendition", sandbox + "/imagenet-r");
  {
    std::ofstream map(sandbox + "/imagenet-r.map");
    for (const auto& name : demo::synthetic_image_classes("shift-rendition")) map << name << " " << name << "\n";
  }
  run_in(sandbox, "build/lofi train --config examples/vit-deit.toml --set model.init= --set data.train=images/pretrain-train "
                  "--set data.val=images/pretrain-val --set run.dir=vit-pre --quiet && mkdir -p checkpoints && "
                  "cp vit-pre/node-00/final.safetensors checkpoints/deit_base_patch16_224.safetensors");

  int ran = 0;
  std::vector<std::string> left_out;
  for (size_t b = 0; b < blocks.size(); ++b) {
    std::string script = "set -euo pipefail\n";
    for (const auto& line : blocks[b]) {
      const std::string trimmed = line.substr(std::min(line.find_first_not_of(' '), line.size()));
      if (trimmed.empty() || trimmed[0] == '#') continue;
      if (std::string why = why_not_here(trimmed); !why.empty()) {
        left_out.push_back(trimmed.substr(0, 60) + "...: " + why);
        continue;
      }
      script += "echo '+ " + std::regex_replace(trimmed, std::regex("'"), "'\\''") + "'\n" + trimmed + "\n";
      ++ran;
    }
    const std::string file = sandbox + "/block-" + std::to_string(b + 1) + ".sh";
    std::ofstream(file) << script;
    auto r = test::run_shell("cd " + sandbox + " && " + path + " bash " + file + " 2>&1");
    EXPECT_EQ(r.status, 0) << "README shell block " << b + 1 << " failed:\n" << r.output;
    if (r.status != 0) break;  // later blocks build on earlier ones
  }
  for (const auto& l : left_out) std::printf("left out: %s\n", l.c_str());
  EXPECT_GE(ran, 30) << "fewer README commands ran than the README has (34 when this test was written)";
  EXPECT_LE(left_out.size(), 8u);
}

}  // namespace
}  // namespace lofi
