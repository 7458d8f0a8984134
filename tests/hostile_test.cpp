// Hostile input through the CLI, one table: each case runs a lofi command on bad input (made by
// fixtures/hostile/make_inputs.py from a model trained here) and asserts the exit status, the
// words of its one-line message, and that nothing was left where the output would have been.
// Cases that must be accepted (tensors stored in another order) assert exit 0. Add a row per new
// hostile case.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lofi {
namespace {

namespace fs = std::filesystem;

struct HostileCase {
  std::string name;
  std::string command;                // lofi arguments; {good}, {nan}, ... are replaced (see inputs())
  bool fails;                         // exit status non-zero (else 0)
  std::vector<std::string> words;     // in the output (the error line when it fails); placeholders too
  std::vector<std::string> absent;    // paths that must not exist afterwards ({out}, {json}, {run})
  std::string setup = {};             // a shell command run first (must succeed), e.g. {lofi} train a run to resume
  std::vector<std::string> not_words = {};  // must not be in the output; placeholders too
};

void PrintTo(const HostileCase& c, std::ostream* os) { *os << c.name; }

const std::vector<HostileCase>& cases() {
  static const std::vector<HostileCase> all = {
      // Numbers: non-finite flags never reach the arithmetic.
      {"merge-lambda-inf", "merge --method task-arithmetic --base {good} {shifted} --lambda inf --out {out}", true,
       {"--lambda", "finite"}, {"{out}"}},
      {"merge-lambda-nan", "merge --method task-arithmetic --base {good} {shifted} --lambda nan --out {out}", true,
       {"--lambda", "finite"}, {"{out}"}},
      {"merge-lambda-1e39", "merge --method task-arithmetic --base {good} {shifted} --lambda 1e39 --out {out}", true,
       {"--lambda", "fp32's range"}, {"{out}"}},
      {"average-weight-inf", "average {good} {shifted} --weights inf,1 --out {out}", true, {"--weights", "finite"}, {"{out}"}},
      {"generate-temperature-inf", "generate --model {good} --prompt hi --tokenizer bytes --temperature inf", true,
       {"--temperature", "finite"}, {}},
      {"train-lr-inf", "train {tiny} --set train.lr=inf", true, {"train.lr must be a finite number"}, {"{run}"}},
      {"train-run-dir-empty", "train {tiny} --set run.dir=", true, {"run.dir must name a directory"}, {}},
      {"launch-port-too-high", "launch --master-port 70000 --workers 1 -- train {tiny}", true, {"--master-port", "70000", "65535"},
       {"{run}"}},
      {"launch-port-negative", "launch --master-port -5 --workers 1 -- train {tiny}", true, {"--master-port", "-5"}, {"{run}"}},
      {"launch-no-workers", "launch --workers 0 -- train {tiny}", true, {"--workers", "expected a number >= 1, found 0"}, {"{run}"}},
      // Finite inputs that merge to Inf: checked as the output streams, nothing written.
      {"merge-overflows", "merge --method task-arithmetic --base {good} {shifted} {shifted} --weights 3e38,3e38 --out {out}", true,
       {"holds Inf", "overflows", "Nothing was written"}, {"{out}"}},
      // Weights holding NaN or Inf: refused by name wherever they would be used.
      {"eval-nan", "eval --model {nan} --data d={data} --max-windows 2 --json {json}", true,
       {"nan.safetensors", "holds NaN", "--allow-nonfinite"}, {"{json}"}},
      {"eval-nan-allowed", "eval --model {nan} --data d={data} --max-windows 2 --allow-nonfinite", false, {"d ppl"}, {}},
      {"eval-ensemble-inf", "eval --ensemble {good} {inf} --data d={data} --max-windows 2 --json {json}", true,
       {"inf.safetensors", "holds Inf"}, {"{json}"}},
      {"generate-nan", "generate --model {nan} --prompt hi --tokenizer bytes", true, {"nan.safetensors", "holds NaN"}, {}},
      {"train-init-nan", "train {tiny} --set model.init={nan}", true, {"model.init", "holds NaN", "give another model.init"},
       {"{run}/node-00/final.safetensors"}},
      {"average-input-nan", "average {good} {nan} --out {out}", true, {"nan.safetensors", "holds NaN"}, {"{out}"}},
      // Clear paths, not circles.
      {"eval-data-name-twice", "eval --model {good} --data d={data} --data d={shifted} --json {json}", true,
       {"--data d is given twice"}, {"{json}"}},
      {"generate-prompt-too-long", "generate --model {good} --prompt 0123456789abcdefghijklmnopqrstuvwxyz --tokenizer bytes "
       "--max-new-tokens 2", false, {"the prompt's 36 tokens are more than the model's 16 positions"}, {}},
      {"resume-nothing-left", "train {tiny} --resume", false, {"no steps left (its checkpoint is at step 6 of 6)"}, {},
       "{lofi} train {tiny}", {"final loss 0.0000"}},
      {"resume-node-count-changed", "launch --workers 4 -- train {tiny} --set dist.nodes=4 --resume", true,
       {"was trained with dist.nodes = 2, this start has dist.nodes = 4"}, {"{run}/node-02", "{run}/node-03"},
       "{lofi} launch --workers 2 -- train {tiny} --set dist.nodes=2", {"no checkpoint"}},
      {"train-garbage-tokenizer", "train {tiny} --set model.init={here}/hf", true,
       {"model.init", "its tokenizer", "does not load", "tokenizer.json"}, {"{run}/node-00/final-hf", "{run}/node-00/final.safetensors"},
       "{lofi} export --format hf {good} {here}/hf > /dev/null && echo 'not json' > {here}/hf/tokenizer.json"},
      {"average-hf-config-not-json", "average {here}/a {here}/b --out {here}/m", true, {"b/config.json", "not a JSON object"},
       {"{here}/m"},
       "{lofi} export --format hf {good} {here}/a > /dev/null && {lofi} export --format hf {good} {here}/b > /dev/null && "
       "echo '{broken' > {here}/b/config.json"},
      {"average-hf-config-differs", "average {here}/a {here}/b --out {here}/m", true,
       {"config.json differs", "\"vocab_size\" (256 and 257)", "--force"}, {"{here}/m"},
       "{lofi} export --format hf {good} {here}/a > /dev/null && {lofi} export --format hf {good} {here}/b > /dev/null && "
       "sed -E -i 's/\"vocab_size\": [0-9]+/\"vocab_size\": 257/' {here}/b/config.json"},
      // Sizes: range-checked by file and key, and against memory, before anything is allocated.
      {"hf-layers-2e40", "eval --model {here}/hf --data d={data}", true,
       {"hf/config.json", "num_hidden_layers = 1099511627776 is not a size"}, {},
       "{lofi} export --format hf {good} {here}/hf > /dev/null && "
       "sed -E -i 's/\"num_hidden_layers\": [0-9]+/\"num_hidden_layers\": 1099511627776/' {here}/hf/config.json"},
      {"hf-hidden-negative", "eval --model {here}/hf --data d={data}", true, {"hf/config.json", "hidden_size = -32 is not a size"},
       {}, "{lofi} export --format hf {good} {here}/hf > /dev/null && "
       "sed -E -i 's/\"hidden_size\": [0-9]+/\"hidden_size\": -32/' {here}/hf/config.json"},
      {"hf-larger-than-memory", "eval --model {here}/hf --data d={data}", true,
       {"model: this shape has up to", "GB this host has available", "vocab_size 2000000000"}, {},
       "{lofi} export --format hf {good} {here}/hf > /dev/null && "
       "sed -E -i 's/\"vocab_size\": [0-9]+/\"vocab_size\": 2000000000/' {here}/hf/config.json"},
      {"train-larger-than-memory", "train {tiny} --set model.n_layer=100000 --set model.d_model=4096 --set model.d_ff=16384",
       true, {"memory plan: this run (opt, 100000 layers, d_model 4096", "AdamW state 161.1 TB", "no single setting"},
       {"{run}/node-00/final.safetensors"}},
      // Leftovers: a temporary of a writer killed with -9 is removed by the next write, saying so.
      {"average-after-killed-writer", "average {good} {shifted} --out {out}", false,
       {"removed " + std::string("{out}") + ".tmp-", "left by a writer that died"}, {},
       "sh -c 'exit 0' & p=$!; wait $p; head -c 1000 /dev/zero > {out}.tmp-$p"},
      // Data that changes under a run: resume refuses it by file (unless --resume-changed).
      {"resume-data-changed", "train {tiny_local} --resume", true,
       {"data.train changed: ", "d.bin (same size, other content)", "--resume-changed"}, {},
       "cp {data} {here}/d.bin && {lofi} train {tiny_local} > /dev/null && "
       "printf '\\005\\000' | dd of={here}/d.bin bs=1 seek=3000 conv=notrunc 2> /dev/null"},
      {"resume-data-changed-allowed", "train {tiny_local} --resume --resume-changed", false, {"done: node 0"}, {},
       "cp {data} {here}/d.bin && {lofi} train {tiny_local} > /dev/null && "
       "printf '\\005\\000' | dd of={here}/d.bin bs=1 seek=3000 conv=notrunc 2> /dev/null"},
      {"resume-data-copied", "train {tiny_local} --resume", false, {"no steps left"}, {},
       "cp {data} {here}/d.bin && {lofi} train {tiny_local} > /dev/null && cp {here}/d.bin {here}/e.bin && "
       "sleep 0.01 && mv {here}/e.bin {here}/d.bin"},
      // Training input (moved here from cli_test.cpp).
      {"train-unknown-key", "train {tiny} --set train.bogus=1", true, {"unknown config key 'train.bogus'"},
       {"{run}/node-00/final.safetensors"}},
      {"train-toml-unknown-key", "train --config {here}/bad.toml", true, {"model.width"}, {},
       "printf '[model]\\nwidth = 3\\n' > {here}/bad.toml"},
      {"train-data-missing", "train {tiny} --set data.train={here}/nope.bin", true, {"nope.bin"}, {"{run}/node-00/final.safetensors"}},
      {"train-data-empty", "train {tiny} --set data.train={here}/empty.bin", true, {"empty.bin", "empty"},
       {"{run}/node-00/final.safetensors"}, "touch {here}/empty.bin"},
      {"train-data-truncated", "train {tiny} --set data.train={here}/cut.bin", true, {"cut.bin", "truncated"},
       {"{run}/node-00/final.safetensors"}, "head -c $(( $(stat -c %s {data}) - 100 )) {data} > {here}/cut.bin"},
      {"train-id-past-vocabulary", "train {tiny} --set model.vocab_size=100", true, {"not below model.vocab_size = 100"},
       {"{run}/node-00/final.safetensors"}},
      {"train-nodes-indivisible", "train {tiny} --set dist.nodes=3", true, {"divisible by dist.nodes"},
       {"{run}/node-00/final.safetensors"}},
      {"train-init-not-safetensors", "train {tiny} --set model.init={here}/init.safetensors", true, {"init.safetensors"},
       {"{run}/node-00/final.safetensors"}, "echo 'not a checkpoint at all' > {here}/init.safetensors"},
      // Damaged and mismatched checkpoints (moved here from cli_test.cpp).
      // What inspect reads besides one file: a sharded model (its index or its directory), a PEFT adapter.
      {"inspect-sharded-index", "inspect {here}/hf/model.safetensors.index.json", false,
       {"shards ({here}/hf/model.safetensors.index.json)", "model-00001-of-", "model.decoder.layers.1.fc2.weight"}, {},
       "{lofi} export --format hf --shard-size 20000 {good} {here}/hf > /dev/null"},
      {"inspect-model-dir", "inspect {here}/hf", false, {"shards (", "model.decoder.layers.1.fc2.weight", "bytes of data"}, {},
       "{lofi} export --format hf --shard-size 20000 {good} {here}/hf > /dev/null"},
      {"inspect-peft-dir", "inspect {fixtures}/lora/gpt2", false, {"a PEFT adapter", "lora_A.weight"}, {}},
      {"train-shard-file-twice", "launch --workers 2 -- train {tiny} --set dist.nodes=2 --set dist.data_split=shard --set data.train={data},{data}",
       true, {"data.train lists", "twice (items 1 and 2)", "dist.data_split = \"shard\""}, {"{run}"}},
      // plan opens model.init as train would: one that is no model is no plan that fits.
      {"plan-init-missing", "plan {tiny} --set model.init={here}/none.safetensors", true, {"{here}/none.safetensors", "cannot open"}, {}},
      {"plan-init-not-weights", "plan {tiny} --set model.init={data}", true, {"{data}", "not a safetensors file"}, {}},
      {"inspect-truncated", "inspect {here}/w.safetensors", true, {"w.safetensors"}, {},
       "head -c $(( $(stat -c %s {good}) - 8 )) {good} > {here}/w.safetensors"},
      {"average-truncated", "average {here}/w.safetensors {here}/w.safetensors --out {out}", true, {"past the data section"},
       {"{out}"}, "head -c $(( $(stat -c %s {good}) - 8 )) {good} > {here}/w.safetensors"},
      {"average-other-shape", "average {good} {wider} --out {out}", true, {"wider.safetensors", "final.safetensors"}, {"{out}"}},
      // A file rewritten by another tool that copied lofi's metadata, data checksum included.
      {"average-stale-checksum", "average {good} {edited} --out {out}", true,
       {"{edited}", "lofi.data_xxh3", "damaged, or rewritten by a tool that kept lofi's metadata"}, {"{out}"}},
      {"average-other-dtype", "average {good} {f64} --out {out}", true, {"f64.safetensors", "final.safetensors"}, {"{out}"}},
      {"average-tensor-missing", "average {good} {fewer} --out {out}", true, {"fewer.safetensors", "final.safetensors"},
       {"{out}"}},
      // Outputs: only a regular file is replaced by renaming, and only an earlier output directory
      // is removed before one is written.
      {"average-out-fifo", "average {good} {shifted} --out {here}/fifo", true, {"fifo", "is a FIFO", "regular file"}, {},
       "mkfifo {here}/fifo"},
      {"average-adapters-out-not-an-output", "average {run} --out {here}/keep", true,
       {"keep", "holds no adapter_config.json", "not an earlier output"}, {},
       "{lofi} launch --workers 2 -- train {tiny} --set model.init={good} --set lora.rank=2 --set dist.nodes=2 > /dev/null && "
       "mkdir {here}/keep && echo mine > {here}/keep/notes.txt"},
      // Options an adapter average does not take: refused by name, never ignored.
      {"average-adapters-weights", "average {run} --weights 1,3 --out {out}", true, {"--weights", "equal weights"}, {"{out}"},
       "{lofi} launch --workers 2 -- train {tiny} --set model.init={good} --set lora.rank=2 --set dist.nodes=2 > /dev/null"},
      // A PEFT adapter whose config and weights disagree (as PEFT's own loader refuses it).
      {"eval-peft-rank-disagrees", "eval --model {here}/peft --data d={data} --max-windows 2", true,
       {"lora_A.weight' is of rank 2", "its config says r = 4"}, {},
       "{lofi} train {tiny} --set model.init={good} --set lora.rank=2 > /dev/null && cp -r {run}/node-00/final-hf {here}/peft && "
       "sed -E -i 's/\"r\": 2/\"r\": 4/' {here}/peft/adapter_config.json"},
      {"eval-peft-targets-disagree", "eval --model {here}/peft --data d={data} --max-windows 2", true,
       {"which its config's target_modules (q_proj) does not name"}, {},
       "{lofi} train {tiny} --set model.init={good} --set lora.rank=2 > /dev/null && cp -r {run}/node-00/final-hf {here}/peft && "
       "sed -E -i 's/\"target_modules\": \"all-linear\"/\"target_modules\": [\"q_proj\"]/' {here}/peft/adapter_config.json"},
      // Finite weights whose activations overflow: no NaN result reported as a score.
      {"eval-huge", "eval --model {huge} --data d={data} --max-windows 2 --json {json}", true,
       {"huge.safetensors", "loss on d is", "although its weights are finite", "--allow-nonfinite"}, {"{json}"}},
      {"generate-huge", "generate --model {huge} --prompt hi --tokenizer bytes", true, {"logits", "NaN or Inf", "weights are finite"}, {}},
      {"export-f16-overflow", "export --format hf {huge} {here}/hf --dtype F16", true, {"overflows --dtype F16", "Nothing was written"},
       {"{here}/hf"}},
      {"interpolate-nan", "interpolate {good} {nan} --data d={data} --max-windows 2 --points 2", true, {"nan.safetensors", "holds NaN"}, {}},
      {"interpolate-huge", "interpolate {good} {huge} --data d={data} --max-windows 2 --points 3", true,
       {"interpolate: loss/d at alpha", "no barrier can be measured"}, {}},
      {"generate-temperature-tiny", "generate --model {good} --prompt hi --tokenizer bytes --temperature 1e-310", true,
       {"--temperature", "too small"}, {}},
      // Training settings that would silently compute something else.
      {"resume-past-steps", "train {tiny} --set train.steps=3 --resume --resume-changed", true,
       {"is at step 6, past train.steps = 3", "resumes forward only"}, {"{run}/node-00/retired"}, "{lofi} train {tiny} > /dev/null"},
      {"resume-checkpoint-of-another-step", "train {tiny} --set train.ckpt_every=2 --resume", false,
       {"step-000004.optim.safetensors: holds the state of step 2 but is named for step 4", "falling back", "step 2"}, {},
       "{lofi} train {tiny} --set train.ckpt_every=2 > /dev/null && cp {run}/node-00/ckpt/step-000002.optim.safetensors "
       "{run}/node-00/ckpt/step-000004.optim.safetensors && rm {run}/node-00/ckpt/step-000006*"},
      {"diloco-outer-step-unusable", "launch --workers 2 -- train {tiny} --set dist.nodes=2 --set train.steps=2 --set dist.sync_every=2 "
       "--set dist.outer_optimizer=nesterov --set dist.outer_lr=1e30", true,
       {"DiLoCo's outer step at step 2 made the weights unusable", "dist.outer_lr"}, {"{run}/merged.safetensors"}},
      {"train-lora-dropout-checkpointing", "train {tiny} --set model.init={good} --set lora.rank=2 --set lora.dropout=0.1 "
       "--set train.activation_checkpointing=1", true, {"lora.dropout is 0.1"}, {"{run}/node-00/final.safetensors"}},
      {"train-beta1-one", "train {tiny} --set train.beta1=1", true, {"train.beta1"}, {"{run}/node-00/final.safetensors"}},
      // A flag the method does not read: refused, not ignored (and not recorded in the provenance).
      {"merge-slerp-lambda", "merge --method slerp {good} {shifted} --lambda 2 --out {out}", true,
       {"--lambda", "--method slerp does not use it", "it uses --t"}, {"{out}"}},
      {"merge-slerp-weights", "merge --method slerp {good} {shifted} --weights 5,-5 --out {out}", true,
       {"--weights", "does not use weights"}, {"{out}"}},
      // FP8 weights: no arithmetic for them here, said by file and tensor.
      {"average-f8", "average {f8} {f8} --out {out}", true, {"f8.safetensors", "is F8_E4M3", "convert"}, {"{out}"}},
      {"export-f8", "export --format hf {f8} {here}/hf", false, {}, {}},
      {"average-dtype-f8", "average {good} {shifted} --dtype F8_E5M2 --out {out}", true, {"--dtype must be F64, F32, F16 or BF16"},
       {"{out}"}},
      // --min-inputs leaves out the odd input, wherever it is listed.
      {"average-min-inputs-odd-first", "average {wider} {good} {shifted} --min-inputs 2 --out {out}", false,
       {"left out", "wider.safetensors", "averaged 2 checkpoints"}, {}, "", {"left out " + std::string("{good}")}},
      // Tensors stored in another order pair by name: accepted.
      {"average-reordered", "average {good} {reordered} --out {out}", false, {"averaged 2 checkpoints"}, {}},
      {"interpolate-reordered", "interpolate {good} {reordered} --points 3 --data d={data} --max-windows 2", false, {"alpha"}, {}},
      {"soup-reordered", "soup {good} {reordered} --data d={data} --max-windows 2", false, {"soup"}, {}},
      {"ensemble-reordered", "eval --ensemble {good} {reordered} --data d={data} --max-windows 2", false, {"ensemble"}, {}},
      // Negative counts and seeds are refused by flag, not wrapped around.
      {"merge-dare-seed-negative", "merge --method dare --base {good} {shifted} {shifted} --density 0.5 --seed -1 --out {out}", true,
       {"--seed", ">= 0", "-1"}, {"{out}"}},
      {"generate-seed-negative", "generate --model {good} --tokenizer bytes --prompt hi --seed -1", true, {"--seed", ">= 0"}, {}},
      // Inputs of another model, or broken, are named by file.
      {"interpolate-fewer", "interpolate {good} {fewer} --points 2 --data d={data} --max-windows 1", true,
       {"interpolate", "{fewer}", "lacks tensor", "{good}"}, {}},
      {"soup-wider", "soup {good} {wider} --data d={data} --max-windows 1 --out {out}", true, {"soup", "{wider}", "{good}"}, {"{out}"}},
      // An integer tensor loads into a float weight as PyTorch's copy_ converts it; members averaged
      // in memory must agree in kind, as average's inputs must, named by file.
      {"ensemble-int8-weight", "eval --ensemble {good} {i8} --data d={data} --max-windows 1", true, {"{i8}", "Char", "{good}", "Float"}, {}},
      {"soup-int8-weight", "soup {good} {i8} --data d={data} --max-windows 1", true, {"soup", "{i8}", "Char"}, {}},
      {"eval-task-other-tokenizer", "eval --model {good} --task t={here}/t.jsonl --tokenizer {fixtures}/tokenizer/gpt2", true,
       {"t.jsonl:1: token id", "outside the model's vocabulary of 256", "not this model's"}, {},
       "echo '{\"context\": \"hello world\", \"choices\": [\" in the\", \" at\"], \"answer\": 0}' > {here}/t.jsonl"},
      {"eval-task-and-data-one-name", "eval --model {good} --data t={data} --task t={here}/t.jsonl --tokenizer {fixtures}/tokenizer/gpt2",
       true, {"--task t and --data t share a name"}, {}, "echo '{\"context\": \"a\", \"answer\": \"b\"}' > {here}/t.jsonl"},
      // Flags and data of the other kind of model: named, never ignored.
      {"eval-lm-image-folder", "eval --model {good} --data d={here}/im", true,
       {"--data d={here}/im: a directory; a language model is scored on token files"}, {}, "mkdir -p {here}/im/square"},
      {"eval-lm-max-images", "eval --model {good} --data d={data} --max-images 5 --json {json}", true,
       {"--max-images applies to image classifiers; {good} is a language model"}, {"{json}"}},
      {"eval-classifier-seq-len", "eval --model {fixtures}/../../assets/demo/vit_demo_shapes.safetensors --data t={here}/im --seq-len 8",
       true, {"--seq-len applies to language models", "is an image classifier"}, {}, "mkdir -p {here}/im/square"},
      {"eval-images-none-readable", "eval --model {fixtures}/../../assets/demo/vit_demo_shapes.safetensors --data t={here}/im", true,
       {"{here}/im", "no readable image"}, {}, "mkdir -p {here}/im/square && cp {fixtures}/images/not_an_image.jpg {here}/im/square/"},
      {"average-config-not-toml", "average {good} {badconfig} --out {out}", true, {"{badconfig}", "lofi.config", "invalid TOML"},
       {"{out}"}},
      {"eval-hf-dir-without-config", "eval --model {here}/hf --data d={data}", true, {"{here}/hf", "without config.json"}, {},
       "mkdir {here}/hf && cp {good} {here}/hf/model.safetensors"},
      {"eval-peft-dir-without-config", "eval --model {here}/peft --data d={data}", true, {"{here}/peft", "without adapter_config.json"},
       {}, "mkdir {here}/peft && cp {good} {here}/peft/adapter_model.safetensors"},
      {"eval-task-tokenizer-bytes", "eval --model {good} --task t={here}/t.jsonl --tokenizer bytes", true,
       {"--tokenizer bytes is for generate"}, {}, "echo '{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"answer\": 0}' > {here}/t.jsonl"},
      {"average-index-key-twice", "average {here}/sh/model.safetensors.index.json {good} --out {out}", true,
       {"appears twice", "\"w\""}, {"{out}"},
       R"(mkdir {here}/sh && echo '{"weight_map": {"w": "m.safetensors", "w": "m.safetensors"}}' > {here}/sh/model.safetensors.index.json)"},
      // A report drawn from a run's leftovers says what it left out.
      {"report-averaging-check-not-json", "report {run} --out {here}/r.html", false, {"left out", "averaging-check.json", "not JSON"}, {},
       "{lofi} train {tiny} && echo '{broken' > {run}/averaging-check.json"},
      {"export-shard-size-negative", "export --format hf {good} {here}/hf --shard-size -5", true, {"--shard-size", ">= 0"},
       {"{here}/hf"}},
  };
  return all;
}

class CliHostile : public ::testing::TestWithParam<HostileCase> {
 protected:
  // One trained model and its hostile variants for every case.
  static void SetUpTestSuite() {
    // (scratch_dir() names a directory after the running test; there is none yet.)
    dir_ = new std::string((fs::temp_directory_path() / ("lofi-test-CliHostile-" + std::to_string(::getpid()))).string());
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    data_ = new std::string(test::write_corpus(*dir_, "general", 20000));
    auto t = test::run_lofi("train " + test::tiny_train_flags(*data_, *dir_ + "/trained"));
    ASSERT_EQ(t.status, 0) << t.output;
    auto made = test::run_python("hostile/make_inputs.py", *dir_ + "/trained/node-00/final.safetensors " + *dir_);
    ASSERT_EQ(made.status, 0) << made.output;
  }
  static void TearDownTestSuite() {
    if (!::testing::UnitTest::GetInstance()->failed_test_count()) fs::remove_all(*dir_);
    delete dir_;
    delete data_;
  }
  static std::string* dir_;
  static std::string* data_;
};
std::string* CliHostile::dir_ = nullptr;
std::string* CliHostile::data_ = nullptr;

std::string expand(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [key, value] : values)
    for (size_t at; (at = text.find(key)) != std::string::npos;) text.replace(at, key.size(), value);
  return text;
}

TEST_P(CliHostile, EndsAsItShould) {
  const HostileCase& c = GetParam();
  ASSERT_NE(dir_, nullptr);
  const std::string here = *dir_ + "/" + c.name;
  fs::create_directories(here);
  const std::map<std::string, std::string> values = {
      {"{good}", *dir_ + "/trained/node-00/final.safetensors"}, {"{nan}", *dir_ + "/nan.safetensors"},
      {"{inf}", *dir_ + "/inf.safetensors"},                   {"{reordered}", *dir_ + "/reordered.safetensors"},
      {"{shifted}", *dir_ + "/shifted.safetensors"},           {"{data}", *data_},
      {"{wider}", *dir_ + "/wider.safetensors"},               {"{f64}", *dir_ + "/f64.safetensors"},
      {"{fewer}", *dir_ + "/fewer.safetensors"},              {"{huge}", *dir_ + "/huge.safetensors"},
      {"{f8}", *dir_ + "/f8.safetensors"},                    {"{badconfig}", *dir_ + "/badconfig.safetensors"},
      {"{i8}", *dir_ + "/i8.safetensors"},                    {"{fixtures}", LOFI_FIXTURES},
      {"{edited}", *dir_ + "/edited.safetensors"},
      {"{out}", here + "/out.safetensors"},                    {"{json}", here + "/out.json"},
      {"{tiny}", test::tiny_train_flags(*data_, here + "/run")}, {"{run}", here + "/run"},
      {"{lofi}", LOFI_BIN},                                     {"{here}", here},
      {"{tiny_local}", test::tiny_train_flags(here + "/d.bin", here + "/run")}};
  if (!c.setup.empty()) {
    const auto s = test::run_shell(expand(c.setup, values) + " 2>&1");
    ASSERT_EQ(s.status, 0) << s.output;
  }
  const auto r = test::run_lofi(expand(c.command, values));
  for (const auto& w : c.not_words) {
    const std::string word = expand(w, values);
    EXPECT_EQ(r.output.find(word), std::string::npos) << "\"" << word << "\" in: " << r.output;
  }
  // Where the words must be: a failure's one error line (lofi's, or the command line parser's,
  // which starts with the flag); a success's whole output.
  std::string said = r.output;
  if (c.fails) {
    EXPECT_NE(r.status, 0) << r.output;
    size_t at = r.output.find("lofi: error: ");
    if (at == std::string::npos && r.output.rfind("--", 0) == 0) at = 0;
    ASSERT_NE(at, std::string::npos) << "no error line in: " << r.output;
    said = r.output.substr(at, r.output.find('\n', at) - at);
  } else {
    EXPECT_EQ(r.status, 0) << r.output;
  }
  for (const auto& w : c.words) {
    const std::string word = expand(w, values);
    EXPECT_NE(said.find(word), std::string::npos) << "missing \"" << word << "\" in: " << said;
  }
  for (const auto& path : c.absent) EXPECT_FALSE(fs::exists(expand(path, values))) << expand(path, values) << " was left";
  // No temporary files next to the outputs either.
  for (const auto& entry : fs::directory_iterator(here))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path() << " was left";
}

INSTANTIATE_TEST_SUITE_P(Cases, CliHostile, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& param) {
                           std::string name = param.param.name;
                           for (char& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

// SIGTERM (and SIGINT, SIGHUP) to a merge mid-write: it ends by the signal and leaves no
// temporary and no output.
TEST(CliHostileSignals, TerminatedMergeLeavesNothing) {
  const std::string dir = test::scratch_dir();
  // Two 64 MB inputs: a merge long enough to be caught writing.
  auto made = test::run_shell(std::string(LOFI_TEST_PYTHON) + " -c \"import torch, safetensors.torch as s; "
                              "[s.save_file({'w': torch.randn(16 << 20)}, '" + dir + "/' + n) for n in ('a.safetensors', 'b.safetensors')]\" 2>&1");
  ASSERT_EQ(made.status, 0) << made.output;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    const std::string out = dir + "/m" + std::to_string(sig) + ".safetensors";
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl(LOFI_BIN, LOFI_BIN, "average", (dir + "/a.safetensors").c_str(), (dir + "/b.safetensors").c_str(), "--out",
              out.c_str(), "--threads", "1", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const std::string tmp = out + ".tmp-" + std::to_string(pid);
    bool seen = false;
    for (int i = 0; i < 20000 && !seen; ++i) {
      seen = fs::exists(tmp);
      if (!seen) ::usleep(500);
    }
    ::kill(pid, sig);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(seen) << "the merge ended before its temporary " << tmp << " was seen";
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "status " << status;
    EXPECT_FALSE(fs::exists(tmp)) << tmp << " was left";
    EXPECT_FALSE(fs::exists(out));
  }
}

// Tensors stored in another order are the same model: the ensemble's weight average of a model
// and its reordered copy scores exactly as the model does.
TEST(CliHostileOrder, ReorderedCopyAveragesToTheSameModel) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  ASSERT_EQ(test::run_lofi("train " + test::tiny_train_flags(data, dir + "/run")).status, 0);
  const std::string good = dir + "/run/node-00/final.safetensors";
  ASSERT_EQ(test::run_python("hostile/make_inputs.py", good + " " + dir).status, 0);
  auto r = test::run_lofi("eval --ensemble " + good + " " + dir + "/reordered.safetensors --data d=" + data +
                          " --max-windows 4 --json " + dir + "/e.json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto results = nlohmann::json::parse(std::ifstream(dir + "/e.json"))["results"];
  std::map<std::string, double> loss;
  for (const auto& row : results) loss[row["model"].get<std::string>()] = row["datasets"]["d"]["loss"].get<double>();
  ASSERT_EQ(loss.size(), 4u) << results.dump();
  const double model_loss = loss.at(good);
  for (const auto& [name, value] : loss) EXPECT_NEAR(value, model_loss, 1e-6) << name;
}

}  // namespace
}  // namespace lofi
