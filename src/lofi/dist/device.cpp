#include "lofi/dist/device.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "lofi/error.h"

namespace lofi::dist {

BuildInfo build_info() {
  BuildInfo info;
  info.libtorch = TORCH_VERSION;
  info.cuda_compiled = info.nccl_compiled = LOFI_WITH_CUDA;
  info.cuda_version = cuda_runtime_version();
  info.gpus = info.cuda_compiled && torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  if (info.gpus > 0) info.nccl_version = nccl_runtime_version();
  return info;
}

torch::Device resolve_device(const std::string& setting, int local_rank, const std::string& key) {
  const BuildInfo info = build_info();
  if (setting == "cpu") return torch::kCPU;
  if (setting == "auto") {
    if (!info.cuda_available()) return torch::kCPU;
    return {torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % info.gpus)};
  }
  int index = local_rank;
  if (setting.rfind("cuda:", 0) == 0) {
    const std::string digits = setting.substr(5);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
      fail(key, " = \"", setting, "\": expected \"auto\", \"cpu\", \"cuda\" or \"cuda:K\" with K a GPU index");
    index = std::stoi(digits);
  } else if (setting != "cuda") {
    fail(key, " = \"", setting, "\": expected \"auto\", \"cpu\", \"cuda\" or \"cuda:K\"");
  }
  if (!info.cuda_compiled)
    fail(key, " = \"", setting, "\" but this lofi was built without CUDA (LibTorch ", info.libtorch,
         "); build against a CUDA PyTorch, or use \"cpu\"");
  if (!info.cuda_available())
    fail(key, " = \"", setting, "\" but no CUDA GPU is visible here (CUDA_VISIBLE_DEVICES = \"",
         std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "", "\"); use \"cpu\" or \"auto\"");
  if (index >= info.gpus)
    fail(key, " = \"", setting, "\" asks for GPU ", index, setting == "cuda" ? " (LOCAL_RANK)" : "", " but ", info.gpus,
         " GPU(s) are visible; start at most ", info.gpus,
         " workers per machine, or share one GPU among single-worker lo-fi nodes with \"cuda:0\"");
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(index)};
}

void check_precision(const std::string& precision, const torch::Device& device, const std::string& key) {
  if (precision == "fp32") return;
  if (precision != "bf16") fail(key, " = \"", precision, "\": expected \"fp32\" or \"bf16\"");
  if (device.is_cuda() && cuda_capability_major(device.index()) < 8)
    fail(key, " = \"bf16\" but GPU ", static_cast<int>(device.index()), " (compute capability ",
         cuda_capability_major(device.index()), ".x) has no bf16 arithmetic (needs 8.0, Ampere or newer); use \"fp32\"");
}

PrecisionGuard::PrecisionGuard(const torch::Device& device, const std::string& precision) : type_(device.type()) {
  if (precision != "bf16") return;
  active_ = true;
  was_enabled_ = at::autocast::is_autocast_enabled(type_);
  was_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_dtype(type_, at::kBFloat16);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::increment_nesting();
}

PrecisionGuard::~PrecisionGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, was_enabled_);
  at::autocast::set_autocast_dtype(type_, was_dtype_);
}

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda()) return host.to(device);
  return (host.is_pinned() ? host : host.pin_memory()).to(device, /*non_blocking=*/true);
}

torch::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  return torch::kCPU;
}

}  // namespace lofi::dist
