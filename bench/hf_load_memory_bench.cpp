// Peak memory of loading a Hugging Face checkpoint into lofi's fp32 model, as `lofi train --set
// model.init=DIR` and `lofi eval --model DIR` load it: bench/hf_load_memory.sh runs `make` once (1.2B
// parameters, Llama 3.2 1B's shape, bf16, two shards), then `load` of it and of a gpt-oss directory
// with MXFP4 experts (bench/make_mxfp4_gpt_oss.py) under /usr/bin/time beside transformers'
// from_pretrained of the same directories (hf_load_transformers.py), and prints the peaks against
// the checkpoint's size and the model's. Part of `make bench`, never CI.
// usage: lofi_bench_hf_load make DIR | load DIR
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "lofi/family/lm_model.h"
#include "lofi/model/causal_lm.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"

namespace {

using namespace lofi;

model::LmConfig llama_3_2_1b() {
  model::LmConfig c;
  c.arch = "llama";
  c.n_layer = 16, c.n_head = 32, c.n_kv_head = 8, c.d_model = 2048, c.d_ff = 8192, c.vocab_size = 128256;
  c.max_seq_len = 131072, c.activation = "silu", c.layer_norm_eps = 1e-5, c.rope_theta = 500000.0;
  c.rope_scaling = "llama3", c.rope_factor = 32, c.rope_low_freq_factor = 1, c.rope_high_freq_factor = 4;
  c.rope_original_max_positions = 8192, c.tie_word_embeddings = true;
  return c;
}

double peak_gb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024 / 1e9;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 3) {
    std::fprintf(stderr, "usage: lofi_bench_hf_load make DIR | load DIR\n");
    return 2;
  }
  const std::string mode = argv[1], dir = argv[2];
  if (mode == "make") {
    if (model::is_hf_model_dir(dir)) return 0;  // made before (the shape is fixed)
    const auto start = std::chrono::steady_clock::now();
    model::NoInitDraws no_draws;  // as family::make_lm builds: the seeded init sets every weight
    model::CausalLm lm = model::make_causal_lm(llama_3_2_1b());
    model::init_causal_lm_weights(*lm, 0);
    std::printf("random init: %.2f s on %d threads\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                at::get_num_threads());
    model::HfExportOptions options;
    options.dtype = "BF16";
    options.shard_bytes = int64_t{2} << 30;
    model::export_hf(*lm, dir, options);
    return 0;
  }
  const auto start = std::chrono::steady_clock::now();
  train::ModelConfig config;
  config.init = dir;
  model::CausalLm lm = family::make_lm(config, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t params = 0;
  for (const auto& p : lm->parameters()) params += p.numel();
  std::printf("%.3f %lld %.3f\n", seconds, static_cast<long long>(params), peak_gb());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "lofi_bench_hf_load: %s\n", e.what());
  return 1;
}
