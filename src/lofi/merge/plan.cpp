#include "lofi/merge/plan.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "lofi/error.h"
#include "lofi/io/safetensors.h"

namespace lofi::merge {
namespace fs = std::filesystem;
namespace {

// The weights, the method's parameters and --base, before any input is opened.
void check_request(const MergeOptions& opt, const MergePlan& plan, size_t inputs, const std::vector<double>& weights) {
  const std::string& what = plan.what;
  if (weights.size() != inputs)
    fail(what, ": ", weights.size(), " weights for ", inputs, " inputs (run directories count one per node)");
  check_numbers(opt.params, weights, what);
  for (double w : weights)
    if (plan.method->normalises_weights() && w < 0) fail(what, ": weights must be non-negative, found ", w);
  if (plan.method->needs_base() && opt.base.empty())
    fail(what, ": needs --base, the model the inputs were fine-tuned from (their differences from it are merged)");
  if (!plan.method->needs_base() && !opt.base.empty())
    fail(what, ": takes no --base (it merges the inputs themselves); leave --base out");
}

// Hugging Face model directories merge when they share a tokenizer and a config (or with --force).
void check_model_dirs(const MergeOptions& opt, const std::string& what, const std::vector<std::string>& model_dirs) {
  if (!opt.force)
    if (std::string why = tokenizer_mismatch(model_dirs); !why.empty()) fail(what, ": ", why, "; pass --force to merge them anyway");
  // Read even with --force: a config.json that is not JSON fails here.
  if (std::string why = config_mismatch(model_dirs); !why.empty() && !opt.force)
    fail(what, ": ", why, "; pass --force to merge them anyway");
}

// Opens and checks every input into PLAN. Without --min-inputs any problem is fatal; with it, the
// input is named and left out.
void open_inputs(const MergeOptions& opt, const std::vector<std::string>& inputs, const std::vector<double>& weights,
                 MergePlan& plan) {
  const std::string& what = plan.what;
  auto reject = [&](const std::string& path, const std::string& why) {
    if (opt.min_inputs <= 0) fail(what, ": ", why);
    plan.skipped.push_back(why.rfind(path + ":", 0) == 0 ? why : path + ": " + why);  // named once
  };
  std::vector<std::unique_ptr<io::SafetensorsSet>> opened(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    try {
      auto set = std::make_unique<io::SafetensorsSet>(inputs[i]);
      set->verify_data_checksums();  // a node's final, say, damaged since it was written
      opened[i] = std::move(set);
    } catch (const lofi::Error& e) {
      reject(inputs[i], e.what());
      continue;
    }
    if (std::string why = unmergeable_tensors(*opened[i], inputs[i]); !why.empty()) {
      reject(inputs[i], why);
      opened[i].reset();
    }
  }
  // The layout every input must have: the first's, or with --min-inputs the one most inputs share,
  // so that an odd file listed first does not make the good ones the ones left out.
  size_t reference = inputs.size(), shared_by = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!opened[i]) continue;
    if (opt.min_inputs <= 0) {
      reference = i;
      break;
    }
    size_t alike = 0;
    for (size_t j = 0; j < inputs.size(); ++j) alike += opened[j] && layout_mismatch(*opened[i], *opened[j]).empty();
    if (alike > shared_by) reference = i, shared_by = alike;
  }
  const io::SafetensorsSet* ref = reference < inputs.size() ? opened[reference].get() : nullptr;  // outlives the moves below
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!opened[i]) continue;
    std::unique_ptr<io::SafetensorsSet>& file = opened[i];
    if (i != reference) {
      if (std::string why = layout_mismatch(*ref, *file); !why.empty()) {
        reject(inputs[i], why);
        continue;
      }
      if (std::string why = provenance_mismatch(*ref, *file); !why.empty() && !opt.force)
        fail(what, ": ", why, "; these were not trained alike. Pass --force to merge them anyway");
      if (std::string why = settings_mismatch(*ref, *file, opt.config_changes); !why.empty() && !opt.force)
        fail(what, ": ", why, "; these were not trained alike. Pass --force to merge them anyway");
    }
    plan.files.push_back(std::move(file));
    plan.weights.push_back(weights[i]);
    plan.used.push_back(inputs[i]);
  }
  if (opt.min_inputs > 0 && static_cast<int64_t>(plan.files.size()) < opt.min_inputs) {
    std::string why;
    for (const auto& s : plan.skipped) why += "; " + s;
    fail(what, ": only ", plan.files.size(), " of ", inputs.size(), " inputs are usable, --min-inputs is ", opt.min_inputs, why);
  }
}

// FIRST's tensors as the output stores them: float tensors in DTYPE, when one is given.
std::vector<io::TensorEntry> output_layout(const io::SafetensorsSet& first, const std::string& dtype) {
  std::vector<io::TensorEntry> layout;
  for (const auto& t : first.tensors()) layout.push_back(*t.entry);
  if (dtype.empty()) return layout;
  torch::Dtype out_dtype = io::dtype_from_safetensors(dtype, "--dtype");
  if (!torch::isFloatingType(out_dtype) || c10::isFloat8Type(out_dtype))
    fail("--dtype must be F64, F32, F16 or BF16, found ", dtype);
  for (auto& e : layout) {
    torch::Dtype in = io::dtype_from_safetensors(e.dtype, first.source());
    if (torch::isFloatingType(in)) {
      e.end = e.begin + (e.end - e.begin) / c10::elementSize(in) * c10::elementSize(out_dtype);
      e.dtype = dtype;
    }
  }
  return layout;
}

}  // namespace

MergePlan plan_merge(const MergeOptions& opt) {
  MergePlan plan;
  plan.method = &find_method(opt.method);
  plan.what = opt.method == "average" ? "average" : "merge --method " + opt.method;
  const std::vector<std::string> inputs = expand_inputs(opt.inputs);
  if (inputs.empty()) fail(plan.what, ": no inputs");
  const std::vector<double> weights = opt.weights.empty() ? std::vector<double>(inputs.size(), 1.0) : opt.weights;
  check_request(opt, plan, inputs.size(), weights);
  // Merges of Hugging Face model directories are one too, unless OUT names a .safetensors file.
  const bool model_dirs = std::all_of(inputs.begin(), inputs.end(), is_model_dir);
  plan.dir_out = model_dirs && fs::path(opt.out).extension() != ".safetensors";
  if (model_dirs) check_model_dirs(opt, plan.what, inputs);

  open_inputs(opt, inputs, weights, plan);
  plan.total = std::accumulate(plan.weights.begin(), plan.weights.end(), 0.0);
  if (plan.method->normalises_weights() && !(plan.total > 0)) fail(plan.what, ": weights sum to 0");
  plan.method->check(plan.files.size(), opt.params);
  if (!opt.base.empty()) {
    plan.base = std::make_unique<io::SafetensorsSet>(opt.base);
    if (std::string why = unmergeable_tensors(*plan.base, opt.base); !why.empty()) fail(plan.what, ": --base ", why);
    if (std::string why = layout_mismatch(plan.first(), *plan.base, /*same_dtypes=*/false); !why.empty())
      fail(plan.what, ": --base ", opt.base, " is not the inputs' model: ", why);
  }
  plan.layout = output_layout(plan.first(), opt.dtype);
  return plan;
}

}  // namespace lofi::merge
