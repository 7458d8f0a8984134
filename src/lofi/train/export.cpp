#include "lofi/train/export.h"

#include <filesystem>

#include "lofi/error.h"
#include "lofi/io/safetensors.h"
#include "lofi/merge/nonfinite.h"
#include "lofi/model/hf.h"
#include "lofi/model/weights.h"
#include "lofi/train/config.h"
#include "lofi/train/trainer.h"

namespace lofi::train {
namespace fs = std::filesystem;

std::vector<std::string> export_checkpoint(const std::string& in, const std::string& out_dir, const ExportOptions& options) {
  if (options.format != "hf") fail("export: --format must be \"hf\", found \"", options.format, "\"");
  std::string path = in;
  if (fs::is_directory(in)) {
    path = (fs::path(in) / "merged.safetensors").string();
    if (!fs::exists(path)) fail(in, ": a directory without merged.safetensors; give the checkpoint file (e.g. node-00/final.safetensors)");
  }
  Config config = config_from_checkpoint(path);  // model.init now points at PATH
  // Where the run itself started: a Hugging Face directory lends its config.json and tokenizer.
  const std::string source = pretrained_source(path);
  model::HfExportOptions hf;
  hf.dtype = options.dtype;
  hf.shard_bytes = options.shard_bytes;
  if (model::is_hf_model_dir(source)) hf.source_dir = source;
  model::CausalLm lm = make_model(config.model, 0);
  if (!options.allow_nonfinite) merge::refuse_nonfinite(model::module_weights(*lm), path, "--allow-nonfinite");
  return model::export_hf(*lm, out_dir, hf);
}

void write_hf_output(const std::string& in, const std::string& out_dir) {
  fs::remove_all(out_dir);
  export_checkpoint(in, out_dir, {});
}

}  // namespace lofi::train
