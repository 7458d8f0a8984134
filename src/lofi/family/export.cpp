#include "lofi/family/export.h"

#include <filesystem>

#include <c10/util/accumulate.h>

#include "lofi/error.h"
#include "lofi/family/adapters.h"
#include "lofi/family/family.h"
#include "lofi/family/lm_footprint.h"
#include "lofi/family/lm_model.h"
#include "lofi/io/earlier_output.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/io/safetensors.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/config.h"

namespace lofi::family {
namespace fs = std::filesystem;

std::vector<std::string> export_checkpoint(const std::string& in, const std::string& out_dir, const ExportOptions& options) {
  if (options.format != "hf") fail("export: --format must be \"hf\", found \"", options.format, "\"");
  std::string path = in;
  if (fs::is_directory(in) && io::is_lora_adapter(in)) {  // PEFT's directory: folded into its base, as merge_and_unload
    const train::Config config = train::config_for_model(in, "", {});
    if (family_of(config.model.arch).kind() != Kind::language_model)
      fail("export: ", in, " adapts an image classifier; fold it with lofi average ", in, " --adapter-merge dense --out FILE.safetensors");
    model::HfExportOptions hf;
    hf.dtype = options.dtype;
    hf.shard_bytes = options.shard_bytes;
    const std::string base = adapter_base(io::read_lora_adapter(in));
    if (model::is_hf_model_dir(base)) hf.source_dir = base;
    model::CausalLm lm = make_lm(config.model, 0);
    if (!options.allow_nonfinite) merge::refuse_nonfinite(model::module_weights(*lm), in, "--allow-nonfinite");
    return model::export_hf(*lm, out_dir, hf);
  }
  if (model::is_hf_model_dir(in)) {  // a Hugging Face directory rewritten: another dtype, gpt-oss's MXFP4 experts dequantized
    train::ModelConfig m;
    m.init = in;
    if (options.dtype == "BF16") m.dtype = "bf16";  // built in bf16: no fp32 copy of the model on the way
    model::HfExportOptions hf;
    hf.dtype = options.dtype;
    hf.shard_bytes = options.shard_bytes;
    hf.source_dir = in;
    model::CausalLm lm = make_lm(m, 0);
    if (!options.allow_nonfinite) merge::refuse_nonfinite(model::module_weights(*lm), in, "--allow-nonfinite");
    return model::export_hf(*lm, out_dir, hf);
  }
  if (fs::is_directory(in)) {
    const run::RunDir run(in);
    path = run.merged();
    if (!fs::exists(path))
      fail(in, ": a directory without ", fs::path(path).filename().string(), "; give the checkpoint file (e.g. ",
           run.node(0).final_weights(), ")");
  }
  train::Config config = train::config_from_checkpoint(path);  // model.init now points at PATH
  // Where the run itself started: a Hugging Face directory lends its config.json and tokenizer.
  const std::string source = train::pretrained_source(path);
  model::HfExportOptions hf;
  hf.dtype = options.dtype;
  hf.shard_bytes = options.shard_bytes;
  if (model::is_hf_model_dir(source)) hf.source_dir = source;
  if (config.lora.enabled()) {  // the adapters are folded into the base's layers: the model is built
    model::CausalLm lm = make_lm(config.model, 0);
    if (!options.allow_nonfinite) merge::refuse_nonfinite(model::module_weights(*lm), path, "--allow-nonfinite");
    return model::export_hf(*lm, out_dir, hf);
  }
  // A full fine-tune's checkpoint holds every weight under its Hugging Face name: streamed tensor by
  // tensor, no model built. Its weights must count what its config's model has (exact, as the
  // memory plan counts them): a file of another model is refused before anything is written.
  const io::SafetensorsFile weights(path);
  int64_t held = 0;
  for (const auto& e : weights.entries()) held += c10::multiply_integers(e.shape);
  const train::ModelFootprint model = lm_footprint(config, 1);
  if (held != model.trainable)
    fail("export: ", path, " holds ", held, " weights, the model of its lofi.config (", model.shape, ") has ",
         model.trainable, "; give a checkpoint written with that config");
  return model::export_hf(train::lm_config(config.model), weights, out_dir, hf, [&](const std::string& name, const torch::Tensor& t) {
    if (!options.allow_nonfinite) merge::refuse_nonfinite(t, path, name, 0, "--allow-nonfinite");
  });
}

void write_hf_output(const std::string& in, const std::string& out_dir, int64_t shard_bytes) {
  io::remove_earlier_output(out_dir, "config.json", "Hugging Face model directory");
  ExportOptions options;
  if (static_cast<int64_t>(io::SafetensorsFile(in).data_bytes()) > shard_bytes) options.shard_bytes = shard_bytes;
  export_checkpoint(in, out_dir, options);
}

}  // namespace lofi::family
