#include "lofi/family/export.h"

#include <filesystem>

#include "lofi/error.h"
#include "lofi/family/lm_model.h"
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
  model::CausalLm lm = make_lm(config.model, 0);
  if (!options.allow_nonfinite) merge::refuse_nonfinite(model::module_weights(*lm), path, "--allow-nonfinite");
  return model::export_hf(*lm, out_dir, hf);
}

void write_hf_output(const std::string& in, const std::string& out_dir) {
  fs::remove_all(out_dir);
  export_checkpoint(in, out_dir, {});
}

}  // namespace lofi::family
