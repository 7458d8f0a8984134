// The run configuration: one struct per section, each declaring its keys once in its declare()
// (settings.h): the language model's shape in model/lm_config.h, the image classifier's in
// model/vit_settings.h, the [images] section in data/images_config.h, the rest here. Parsing,
// overrides, validation, --help, printing and the resume comparison all read those declarations.
// Unknown keys are errors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lofi/data/images_config.h"
#include "lofi/model/lm_config.h"
#include "lofi/model/lora.h"
#include "lofi/model/vit_settings.h"
#include "lofi/settings.h"

namespace lofi::train {

struct RunConfig {
  std::string dir = "runs/lm";

  void declare(Settings& s) { s(dir, "dir", "run directory: config.toml, node-k/, merged.safetensors").free(); }
};

// The model: a language model's shape (model::LmConfig), an image classifier's choice
// (model::VitSettings), and where the weights start.
struct ModelConfig : model::LmConfig, model::VitSettings {
  ModelConfig() {
    attention_dropout = -1;  // < 0: as model.dropout
    embedding_dropout = -1;  // < 0: as model.dropout
  }
  std::string init;
  std::string dtype = "fp32";

  void declare(Settings& s) {
    LmConfig::declare(s);
    s(init, "init", "safetensors file, or a Hugging Face model directory (config.json + weights: it then sets\n"
                    "every other model.* key); empty: random init from train.seed").free();
    s(dtype, "dtype", "the frozen weights' dtype (a LoRA run's base): \"fp32\" or \"bf16\"; what trains stays fp32")
        .one_of({"fp32", "bf16"});
    VitSettings::declare(s);
  }
};

struct DataConfig {
  std::string train;
  std::string val;
  int64_t seq_len = 64;
  std::string format = "auto";
  std::string val_task;
  bool packing = true;
  std::string overlong = "truncate";

  void declare(Settings& s) {
    s(train, "train", "token shard path(s), comma-separated, or chat sample files (lofi prepare --chat); for \"vit\" an\n"
                      "image folder");
    s(val, "val", "held-out shard (or image folder) for periodic evaluation (optional)").free();
    s(seq_len, "seq_len", "tokens per training window, <= model.max_seq_len");
    s(format, "format", "token files: \"auto\" (llm.c header required, except raw files named *.u16), \"llm.c\",\n"
                        "or \"raw-u16\" (headerless uint16 ids)").one_of({"auto", "llm.c", "raw-u16"}).free();
    s(val_task, "val_task", "a task file (lofi eval --task's JSONL) scored as val_acc by the periodic evaluation and the\n"
                            "averaging check, which then judges on it; needs model.init's tokenizer").free();
    s(packing, "packing", "chat data (lofi prepare --chat): pack samples first-fit into data.seq_len rows, attention kept\n"
                          "inside each sample; false: one sample per row, padded");
    s(overlong, "overlong", "chat data: a sample longer than data.seq_len is \"truncate\"d to it or \"drop\"ped (counted at start)")
        .one_of({"truncate", "drop"});
  }
};

using ImagesConfig = data::ImagesConfig;

struct TrainConfig {
  int64_t steps = 100;
  int64_t batch_size = 32;
  int64_t grad_accum = 1;
  double lr = 3e-4;
  double min_lr = 3e-5;
  int64_t warmup_steps = 10;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;
  int64_t seed = 0;
  int64_t log_every = 10;
  bool tensorboard = true;
  int64_t profile_steps = 0;
  int64_t ckpt_every = 0;
  int64_t eval_every = 0;
  int64_t eval_batches = 8;
  int64_t activation_checkpointing = 0;
  bool memory_check = true;
  int64_t threads = 0;
  std::string device = "auto";
  std::string precision = "fp32";
  std::string param_dtype = "fp32";
  int64_t skip_nonfinite = 0;
  bool cuda_graphs = false;
  int64_t keep_checkpoints = 0;
  std::string head_init = "random";
  int64_t lp_steps = 100;
  double lp_lr = 1e-3;

  void declare(Settings& s) {
    s(steps, "steps", "optimizer steps, e.g. 5000").at_least(1);
    s(batch_size, "batch_size", "GLOBAL batch in sequences; each of N nodes uses batch_size/N").at_least(1);
    s(grad_accum, "grad_accum", "micro-batches per step on each worker").at_least(1);
    s(lr, "lr", "peak learning rate").above(0);
    s(min_lr, "min_lr", "cosine floor").at_least(0);
    s(warmup_steps, "warmup_steps", "linear warmup from 0").at_least(0);
    s(weight_decay, "weight_decay", "AdamW decoupled decay; never on biases or norms").at_least(0);
    s(beta1, "beta1", "AdamW's first-moment decay").in(0, 1);
    s(beta2, "beta2", "AdamW's second-moment decay").in(0, 1);
    s(eps, "eps", "AdamW's denominator epsilon").above(0);
    s(grad_clip, "grad_clip", "global-norm clipping; 0 disables").at_least(0);
    s(seed, "seed", "every random stream derives from (seed, node, rank, step)");
    s(log_every, "log_every", "metrics line every N steps (and at the last)").at_least(1).free();
    s(tensorboard, "tensorboard", "also write the metrics as TensorBoard event files per node").free();
    s(profile_steps, "profile_steps", "profile N steps after 3 warm-up steps: node-k/profile/trace.json (Chrome\n"
                                      "trace) and a table of where the time went; 0: off").at_least(0).free();
    s(ckpt_every, "ckpt_every", "checkpoint every N steps for --resume; 0: only at the end").at_least(0).free();
    s(eval_every, "eval_every", "evaluate on data.val every N steps; 0: never").at_least(0).free();
    s(eval_batches, "eval_batches", "batches per periodic evaluation").at_least(1).free();
    s(activation_checkpointing, "activation_checkpointing",
      "language models: keep only every K-th decoder block's input for backward and recompute its activations\n"
      "(1: every block, 2: every other, ...; 0: off): less memory for one more forward per block; needs dropout 0")
        .at_least(0).free();
    s(memory_check, "memory_check", "refuse, before loading anything, a run whose memory plan (lofi plan) exceeds what\n"
                                    "its device gives each worker; false: print the plan's line and start anyway").free();
    s(threads, "threads", "intra-op threads; 0: LOFI_THREADS, else cores / local workers").at_least(0).free();
    s(device, "device", "\"auto\" (CUDA when a GPU is visible), \"cpu\", \"cuda\" (cuda:LOCAL_RANK) or \"cuda:K\"\n"
                        "(every worker on GPU K: lo-fi nodes sharing a GPU)").free();
    s(precision, "precision", "\"fp32\" or \"bf16\" (autocast matmuls and attention to bf16; fp32 master weights,\n"
                              "optimizer state and checkpoints)").one_of({"fp32", "bf16"}).free();
    s(param_dtype, "param_dtype", "what the trainable weights are held and gathered in between updates: \"fp32\", or\n"
                                  "\"bf16\" (needs train.precision = \"bf16\"; fp32 master copies in the optimizer, sharded\n"
                                  "with it under dist.shard; checkpoints and finals hold the fp32 masters)")
        .one_of({"fp32", "bf16"}).free();
    s(skip_nonfinite, "skip_nonfinite", "a non-finite loss or gradient norm stops the node; up to N such steps are\n"
                                        "skipped first (no update) when N > 0").at_least(0).free();
    s(cuda_graphs, "cuda_graphs", "GPU: record a step's kernels once as CUDA graphs (a micro-batch's forward and backward,\n"
                                  "then clip and update) and replay them, one launch each instead of thousands; recorded at a\n"
                                  "start's second step, the same arithmetic as without (the learning rate read as fp32); nodes of one worker, batches of one\n"
                                  "shape (not chat data)").free();
    s(keep_checkpoints, "keep_checkpoints", "keep the newest K periodic checkpoints; 0: keep all").at_least(0).free();
    s(head_init, "head_init", "a re-initialised classification head: \"random\" (timm's init) or \"lp\" (LP-FT: a\n"
                              "linear probe on frozen features first, the same on every node, then full fine-tuning)")
        .one_of({"random", "lp"});
    const bool probe = head_init == "lp";
    s(lp_steps, "lp_steps", "the linear probe's steps (train.batch_size images each)").at_least(1).applies(probe);
    s(lp_lr, "lp_lr", "the linear probe's AdamW learning rate (no weight decay)").above(0).applies(probe);
  }
};

struct DistConfig {
  int64_t nodes = 1;
  int64_t node_id = -1;
  std::string data_split = "shuffle";
  int64_t sync_every = 0;
  std::string outer_optimizer = "average";
  double outer_lr = 0.7;
  double outer_momentum = 0.9;
  bool overlap = true;
  double bucket_mb = 25;
  std::string shard = "none";
  std::string reduce_dtype = "fp32";
  int64_t warm_start_steps = 0;
  double timeout_s = 300;
  int64_t min_nodes = 0;
  std::string bind = "";

  void declare(Settings& s) {
    s(nodes, "nodes", "N: 1 is the data-parallel baseline, N > 1 is lo-fi").at_least(1);
    s(node_id, "node_id", ">= 0: this job is node k of N by itself (no cross-node link)").free();
    s(data_split, "data_split", "\"shuffle\": every node sees all data in its own order; \"shard\": node k samples\n"
                                "only from its disjoint 1/N slice").one_of({"shuffle", "shard"});
    s(sync_every, "sync_every", "0: never average nodes during training (lo-fi); H: every H steps").at_least(0);
    s(warm_start_steps, "warm_start_steps", "K > 0: the nodes first train as one data-parallel node for K steps (gradients\n"
                                            "averaged over every worker of the job, each node on its own data), then\n"
                                            "split into lo-fi nodes from that shared state (checkpointed at step K)").at_least(0);
    s(outer_optimizer, "outer_optimizer", "at each sync: \"average\" (local SGD: continue from the nodes' mean) or\n"
                                          "\"nesterov\" (DiLoCo: SGD with Nesterov momentum on the pseudo-gradient,\n"
                                          "last synced weights - mean)").one_of({"average", "nesterov"});
    const bool diloco = outer_optimizer == "nesterov";
    s(outer_lr, "outer_lr", "DiLoCo's outer learning rate").above(0).applies(diloco);
    s(outer_momentum, "outer_momentum", "DiLoCo's outer Nesterov momentum").in(0, 1).applies(diloco);
    s(overlap, "overlap", "all-reduce gradient buckets during backward (c10d::Reducer)").free();
    s(bucket_mb, "bucket_mb", "gradient bucket size for the overlapped all-reduce").above(0).free();
    s(shard, "shard", "inside a node, what each worker keeps 1/G of (ZeRO): \"none\" (every worker holds\n"
                      "everything), \"optimizer\" (AdamW state: ZeRO-1), \"gradients\" (AdamW state and\n"
                      "gradients, reduce-scattered: ZeRO-2), \"full\" (and each block's parameters,\n"
                      "gathered only while the block runs: ZeRO-3 / FSDP); nothing crosses nodes")
        .one_of({"none", "optimizer", "gradients", "full"}).free();
    s(reduce_dtype, "reduce_dtype", "the dtype a node's gradients are averaged in: \"fp32\", or \"bf16\" (half the\n"
                                    "bytes; each micro-batch's gradients and their sums rounded to bf16)")
        .one_of({"fp32", "bf16"});
    s(timeout_s, "timeout_s", "rendezvous and collective timeout, seconds; must also cover a node leader's\n"
                              "periodic evaluation and checkpoint writes; a lo-fi node silent for this long is\n"
                              "counted as failed").above(0).free();
    s(min_nodes, "min_nodes", "a lo-fi job's merge needs this many finished nodes; 0: all").free();
    s(bind, "bind", "the rendezvous store's listening address (rank 0 hosting it): empty: MASTER_ADDR's\n"
                    "interface; \"0.0.0.0\": every interface. The store has no authentication: expose it to\n"
                    "trusted networks only").free();
  }
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  ImagesConfig images;
  TrainConfig train;
  DistConfig dist;
  model::LoraConfig lora;
};

// Every key of CONFIG, section by section, pointing into it.
Settings settings_of(Config& config);
using lofi::shortest_double;

// Applies a TOML file; SOURCE names it in errors.
void apply_toml_file(Config& config, const std::string& path);
void apply_toml_text(Config& config, const std::string& text, const std::string& source);
// Applies one "section.key=value" override.
void apply_override(Config& config, const std::string& assignment);
// Checks ranges and combinations; throws naming the key.
void validate(const Config& config);
// What only a run that trains needs of CONFIG's data (not a finished model's recorded config): no
// file listed twice in data.train under dist.data_split = "shard", where two nodes' slices would
// hold the same tokens.
void check_training_data(const Config& config);
// The resolved config as TOML text, loadable by apply_toml_text; floats as shortest_double().
// With HELP, each key is preceded by its help as a comment.
std::string to_toml(const Config& config, bool help = false);
// `lofi train --help`'s list of every key with its default and help.
std::string config_reference();

// The settings that differ between WAS and NOW and change what training computes (the model, the
// data, the batch, the seed, the schedule, the optimizer, the nodes), as "key = old -> new";
// where the run writes, how it logs, checkpoints and evaluates, and what it runs on are left out.
std::vector<std::string> trajectory_changes(const Config& was, const Config& now);
// The same between two resolved configs as TOML text (checkpoints' lofi.config), for merges:
// what would make two models trained apart rather than nodes of one run. The sources name the
// files they came from, for a config that is not TOML.
std::vector<std::string> trajectory_changes(const std::string& was_toml, const std::string& was_source, const std::string& now_toml,
                                            const std::string& now_source);

// The model's shape as the model library takes it (negative dropouts resolved).
model::LmConfig lm_config(const ModelConfig& config);
// When MODEL.init is a Hugging Face model directory, sets every other model.* key from its
// config.json (so the resolved config records what was built); else does nothing.
void apply_hf_init(ModelConfig& model);

// Config file (may be empty) + overrides, then apply_hf_init, validated.
Config load_config(const std::string& path, const std::vector<std::string>& overrides);

// The config a lofi checkpoint was trained with (its "lofi.config" metadata), with model.init
// pointing at PATH, so the model family rebuilds the model from it.
Config config_from_checkpoint(const std::string& path);
// The config of the model at PATH, for evaluating or generating from it: a Hugging Face model
// directory's config.json gives the shape (with data.seq_len fitted to it); a lofi checkpoint's
// own lofi.config gives it, or CONFIG_PATH when given; then SETS apply, model.init = PATH, validated.
Config config_for_model(const std::string& path, const std::string& config_path, const std::vector<std::string>& sets);
// The model.init the checkpoint's run started from, as its "lofi.config" records it (a Hugging
// Face directory there lends its config.json keys and tokenizer); empty when there is none.
std::string pretrained_source(const std::string& checkpoint);

}  // namespace lofi::train
