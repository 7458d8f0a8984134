// The run configuration: plain structs with in-class defaults, read from TOML and overridden
// with `--set section.key=value`. Every field is declared once, in config_fields(), and parsing,
// overrides, validation messages and printing all use that one list. Unknown keys are errors.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "lofi/model/lm_config.h"

namespace lofi::train {

struct RunConfig {
  std::string dir = "runs/lm";  // run directory: config.toml, node-k/, merged.safetensors
};

// The model: a language model's shape is model::LmConfig's fields (lm_config.h: "model.n_layer",
// "model.rope_theta", ...), declared there once; the keys below are the run's own.
struct ModelConfig : model::LmConfig {
  ModelConfig() {
    attention_dropout = -1;  // < 0: as model.dropout
    embedding_dropout = -1;  // < 0: as model.dropout
  }
  std::string init;                 // safetensors file, or a Hugging Face model directory (config.json
                                    // + weights: it then sets every other model.* key); empty: random
                                    // init from train.seed
  // Image classifiers (arch = "vit"); the language-model shape fields above do not apply.
  std::string preset = "vit_demo_patch4_32";  // timm architecture, e.g. "deit_base_patch16_224"
  int64_t image_size = 0;           // input side in pixels; 0: the preset's, e.g. 224
  int64_t num_classes = 0;          // classifier outputs; 0: the classes of data.train's folder
  double drop_path = 0.1;           // stochastic depth of the last block (DeiT fine-tuning: 0.1)
};

struct DataConfig {
  std::string train;                // token shard path(s), comma-separated; for "vit" an image folder
  std::string val;                  // held-out shard (or image folder) for periodic evaluation (optional)
  int64_t seq_len = 64;             // tokens per training window, <= model.max_seq_len
  std::string format = "auto";      // token files: "auto" (llm.c header required, except raw files
                                    // named *.u16), "llm.c", or "raw-u16" (headerless uint16 ids)
};

// Image input for arch = "vit": DeiT fine-tuning's augmentation and the loader (data/augment.h).
struct ImagesConfig {
  double scale_min = 0.08;          // RandomResizedCrop: smallest crop area / image area
  double hflip = 0.5;               // horizontal flip probability
  double color_jitter = 0.3;        // brightness/contrast/saturation strength; 0 disables
  double mixup = 0.8;               // mixup Beta(a, a); 0 disables
  double cutmix = 1.0;              // CutMix Beta(a, a); 0 disables
  double mix_prob = 1.0;            // probability that a batch is mixed
  double label_smoothing = 0.1;     // mass spread over all classes
  double crop_pct = 0.875;          // evaluation: resize to image_size / crop_pct, centre crop
  std::string interpolation = "bicubic";  // "bicubic" or "bilinear"
  std::string on_bad_image = "skip";      // unreadable image: "skip" (warn, substitute) or "fail"
  int64_t loader_threads = 1;       // decoding threads per worker, beside its compute threads
  int64_t prefetch = 4;             // batches decoded ahead of the trainer
};

struct TrainConfig {
  int64_t steps = 100;              // optimizer steps, e.g. 5000
  int64_t batch_size = 32;          // GLOBAL batch in sequences; each of N nodes uses batch_size/N
  int64_t grad_accum = 1;           // micro-batches per step on each worker
  double lr = 3e-4;                 // peak learning rate
  double min_lr = 3e-5;             // cosine floor
  int64_t warmup_steps = 10;        // linear warmup from 0
  double weight_decay = 0.1;        // AdamW decoupled decay; never on biases or norms
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;           // global-norm clipping; 0 disables
  int64_t seed = 0;                 // every random stream derives from (seed, node, rank, step)
  int64_t log_every = 10;           // metrics line every N steps (and at the last)
  bool tensorboard = true;          // also write the metrics as TensorBoard event files per node
  int64_t profile_steps = 0;        // profile N steps after 3 warm-up steps: node-k/profile/trace.json
                                    // (Chrome trace) and a table of where the time went; 0: off
  int64_t ckpt_every = 0;           // checkpoint every N steps for --resume; 0: only at the end
  int64_t eval_every = 0;           // evaluate on data.val every N steps; 0: never
  int64_t eval_batches = 8;         // batches per periodic evaluation
  int64_t threads = 0;              // intra-op threads; 0: LOFI_THREADS, else cores / local workers
  std::string device = "auto";      // "auto" (CUDA when a GPU is visible), "cpu", "cuda" (cuda:LOCAL_RANK)
                                    // or "cuda:K" (every worker on GPU K: lo-fi nodes sharing a GPU)
  std::string precision = "fp32";   // "fp32" or "bf16" (autocast matmuls and attention to bf16; fp32
                                    // master weights, optimizer state and checkpoints)
  int64_t skip_nonfinite = 0;       // a non-finite loss or gradient norm stops the node; up to N such
                                    // steps are skipped first (no update) when N > 0
  int64_t keep_checkpoints = 0;     // keep the newest K periodic checkpoints; 0: keep all
  std::string head_init = "random"; // a re-initialised classification head: "random" (timm's init) or
                                    // "lp" (LP-FT: a linear probe on frozen features first, the same
                                    // on every node, then full fine-tuning from it)
  int64_t lp_steps = 100;           // the linear probe's steps (train.batch_size images each)
  double lp_lr = 1e-3;              // the linear probe's AdamW learning rate (no weight decay)
};

struct DistConfig {
  int64_t nodes = 1;                // N: 1 is the data-parallel baseline, N > 1 is lo-fi
  int64_t node_id = -1;             // >= 0: this job is node k of N by itself (no cross-node link)
  std::string data_split = "shuffle";  // "shuffle": every node sees all data in its own order;
                                       // "shard": node k samples only from its disjoint 1/N slice
  int64_t sync_every = 0;           // 0: never average nodes during training (lo-fi); H: every H steps
  std::string outer_optimizer = "average";  // at each sync: "average" (local SGD: continue from the
                                    // nodes' mean) or "nesterov" (DiLoCo: SGD with Nesterov momentum
                                    // on the pseudo-gradient, last synced weights - mean)
  double outer_lr = 0.7;            // DiLoCo's outer learning rate
  double outer_momentum = 0.9;      // DiLoCo's outer Nesterov momentum
  bool overlap = true;              // all-reduce gradient buckets during backward (c10d::Reducer)
  double bucket_mb = 25;            // gradient bucket size for the overlapped all-reduce
  double timeout_s = 300;           // rendezvous and collective timeout, seconds; must also cover
                                    // a node leader's periodic evaluation and checkpoint writes;
                                    // a lo-fi node silent for this long is counted as failed
  int64_t min_nodes = 0;            // a lo-fi job's merge needs this many finished nodes; 0: all
  std::string bind = "";            // the rendezvous store's listening address (rank 0 hosting it):
                                    // empty: MASTER_ADDR's interface; "0.0.0.0": every interface.
                                    // The store has no authentication: expose it to trusted networks only
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  ImagesConfig images;
  TrainConfig train;
  DistConfig dist;
};

struct ConfigField {
  std::string key;  // "section.name"
  std::variant<int64_t*, double*, std::string*, bool*> target;
};
std::vector<ConfigField> config_fields(Config& config);

// Applies a TOML file; SOURCE names it in errors.
void apply_toml_file(Config& config, const std::string& path);
void apply_toml_text(Config& config, const std::string& text, const std::string& source);
// Applies one "section.key=value" override.
void apply_override(Config& config, const std::string& assignment);
// Checks ranges and combinations; throws naming the key.
void validate(const Config& config);
// The resolved config as TOML text, loadable by apply_toml_text; floats as shortest_double().
std::string to_toml(const Config& config);
// The shortest text that reads back to V (6e-4 -> "0.0006"), with ".0" on whole numbers.
std::string shortest_double(double v);

// The settings that differ between WAS and NOW and change what training computes (the model, the
// data, the batch, the seed, the schedule, the optimizer, the nodes), as "key = old -> new";
// where the run writes, how it logs, checkpoints and evaluates, and what it runs on are left out.
std::vector<std::string> trajectory_changes(const Config& was, const Config& now);
// The same between two resolved configs as TOML text (checkpoints' lofi.config), for merges:
// what would make two models trained apart rather than nodes of one run. SOURCE names them.
std::vector<std::string> trajectory_changes(const std::string& was_toml, const std::string& now_toml,
                                            const std::string& source);

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
// The model.init the checkpoint's run started from, as its "lofi.config" records it (a Hugging
// Face directory there lends its config.json keys and tokenizer); empty when there is none.
std::string pretrained_source(const std::string& checkpoint);

}  // namespace lofi::train
