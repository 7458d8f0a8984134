// Checkpoint adaptation for fine-tuning a ViT (vit_checkpoint.h): names are made to match, the
// position grid and the classifier adapted, then the checked copy of weights.h does the rest.
#include "lofi/model/vit_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "lofi/error.h"
#include "lofi/model/weights.h"
#include "lofi/strings.h"

namespace lofi::model {

namespace {

// DataParallel ("module.") and some training scripts ("model.") prefix every name.
io::NamedTensors strip_common_prefix(io::NamedTensors tensors) {
  for (const std::string prefix : {"module.", "model."}) {
    bool all = !tensors.empty();
    for (const auto& item : tensors) all = all && starts_with(item.first, prefix);
    if (all)
      for (auto& item : tensors) item.first.erase(0, prefix.size());
  }
  return tensors;
}

torch::Tensor* find(io::NamedTensors& tensors, const std::string& name) {
  for (auto& item : tensors)
    if (item.first == name) return &item.second;
  return nullptr;
}

// The checkpoint's pos_embed on the model's grid, or an error saying why it cannot be.
torch::Tensor fit_pos_embed(const Vit& model, const torch::Tensor& posemb, const std::string& source,
                            std::vector<std::string>& notices) {
  const VitConfig& c = model->config;
  const auto& want = model->pos_embed.sizes();
  if (posemb.sizes() == want) return posemb;
  const int64_t prefix = c.no_embed_class ? 0 : c.num_prefix_tokens();
  const int64_t patches = posemb.dim() == 3 ? posemb.size(1) - prefix : 0;
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(std::max<int64_t>(patches, 0)))));
  if (posemb.dim() != 3 || posemb.size(0) != 1 || posemb.size(2) != c.embed_dim || patches <= 0 || side * side != patches)
    fail(source, ": tensor 'pos_embed' has shape ", posemb.sizes(), ", the model expects ", want, " (", prefix,
         " prefix rows and a square grid of ", c.embed_dim, "-wide rows to resample)");
  if (side == c.grid_size())
    fail(source, ": tensor 'pos_embed' has shape ", posemb.sizes(), ", the model expects ", want,
         " (same grid, other prefix rows: check class_token, distilled and no_embed_class)");
  notices.push_back(cat(source, ": pos_embed resampled from a ", side, "x", side, " to a ", c.grid_size(), "x",
                        c.grid_size(), " patch grid"));
  return resample_abs_pos_embed(posemb, {c.grid_size(), c.grid_size()}, {side, side}, prefix);
}

}  // namespace

torch::Tensor resample_abs_pos_embed(const torch::Tensor& posemb, std::array<int64_t, 2> new_size,
                                     std::array<int64_t, 2> old_size, int64_t num_prefix_tokens) {
  using torch::indexing::Slice;
  if (new_size == old_size) return posemb;
  if (posemb.dim() != 3 || posemb.size(1) != num_prefix_tokens + old_size[0] * old_size[1])
    fail("resample_abs_pos_embed: expected (1, ", num_prefix_tokens, " + ", old_size[0], "*", old_size[1],
         ", C), found ", posemb.sizes());
  torch::NoGradGuard no_grad;
  const int64_t C = posemb.size(2);
  torch::Tensor prefix = posemb.index({Slice(), Slice(0, num_prefix_tokens)});                  // (1, P, C)
  torch::Tensor grid = posemb.index({Slice(), Slice(num_prefix_tokens)}).to(torch::kFloat32);  // (1, oh*ow, C)
  grid = grid.reshape({1, old_size[0], old_size[1], C}).permute({0, 3, 1, 2});                  // (1, C, oh, ow)
  grid = torch::nn::functional::interpolate(grid, torch::nn::functional::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{new_size[0], new_size[1]})
                                                      .mode(torch::kBicubic)
                                                      .align_corners(false)
                                                      .antialias(true));                          // (1, C, h, w)
  grid = grid.permute({0, 2, 3, 1}).reshape({1, new_size[0] * new_size[1], C}).to(posemb.scalar_type());  // (1, h*w, C)
  return torch::cat({prefix, grid}, 1);  // (1, P + h*w, C)
}

std::vector<std::string> load_vit_checkpoint(Vit& model, const io::NamedTensors& tensors, const std::string& source,
                                             bool* head_reinitialised, DeferredWeights* deferred) {
  std::vector<std::string> notices;
  io::NamedTensors fitted = strip_common_prefix(tensors);
  const VitConfig& c = model->config;
  // Prefix tokens decide pos_embed's layout: name the option that differs before any shape does.
  for (auto [name, in_model, option] :
       {std::tuple{"cls_token", c.class_token, "class_token"}, std::tuple{"dist_token", c.distilled, "distilled"}}) {
    const bool in_checkpoint = find(fitted, name) != nullptr;
    if (in_checkpoint != in_model)
      fail(source, ": checkpoint ", in_checkpoint ? "has" : "lacks", " '", name, "' but the model has ", option,
           " = ", in_model ? "true" : "false");
  }
  if (torch::Tensor* posemb = find(fitted, "pos_embed")) *posemb = fit_pos_embed(model, *posemb, source, notices);

  const torch::Tensor* head_weight = find(fitted, "head.weight");
  const bool new_head = head_weight && head_weight->dim() == 2 && head_weight->size(1) == c.embed_dim &&
                        head_weight->size(0) != c.num_classes;
  if (head_reinitialised) *head_reinitialised = new_head;
  if (new_head) {
    notices.push_back(cat(source, ": checkpoint head has ", head_weight->size(0), " classes, the model ",
                          c.num_classes, ": ", c.distilled ? "head and head_dist" : "head", " re-initialised"));
    model->reset_classifier();
    // The fresh head stands in for the checkpoint's, so the checked copy below keeps it; a
    // head_dist the model lacks stays, to be reported as not a parameter.
    auto params = model->named_parameters();
    for (auto& [name, t] : fitted)
      if ((starts_with(name, "head.") || starts_with(name, "head_dist.")) && params.contains(name))
        t = params[name].detach();
  }
  load_named_tensors(*model, fitted, source, {}, {}, deferred);
  return notices;
}

std::vector<std::string> load_vit_checkpoint(Vit& model, const io::SafetensorsFile& file, bool* head_reinitialised,
                                             DeferredWeights* deferred) {
  io::NamedTensors views;
  for (const auto& e : file.entries()) views.emplace_back(e.name, file.view(e));
  return load_vit_checkpoint(model, views, file.path(), head_reinitialised, deferred);
}

}  // namespace lofi::model
