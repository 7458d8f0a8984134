#include "lofi/dist/device.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <thread>
#include <vector>

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

namespace {

// The GPU index SETTING gives the worker of LOCAL_RANK; throws naming KEY where there is none.
int gpu_index(const std::string& setting, int local_rank, int gpus, bool cuda_compiled, const std::string& key) {
  if (setting == "auto") return local_rank % gpus;
  int index = local_rank;
  if (setting.rfind("cuda:", 0) == 0) {
    const std::string digits = setting.substr(5);
    if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos)
      fail(key, " = \"", setting, "\": expected \"auto\", \"cpu\", \"cuda\" or \"cuda:K\" with K a GPU index");
    index = std::stoi(digits);
  } else if (setting != "cuda") {
    fail(key, " = \"", setting, "\": expected \"auto\", \"cpu\", \"cuda\" or \"cuda:K\"");
  }
  if (!cuda_compiled)
    fail(key, " = \"", setting, "\" but this lofi was built without CUDA (LibTorch ", TORCH_VERSION,
         "); build against a CUDA PyTorch, or use \"cpu\"");
  if (gpus == 0)
    fail(key, " = \"", setting, "\" but no CUDA GPU is visible here (CUDA_VISIBLE_DEVICES = \"",
         std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "", "\"); use \"cpu\" or \"auto\"");
  if (index >= gpus)
    fail(key, " = \"", setting, "\" asks for GPU ", index, setting == "cuda" ? " (LOCAL_RANK)" : "", " but ", gpus,
         " GPU(s) are visible; start at most ", gpus, " workers per machine, or let workers share GPUs with \"auto\" ",
         "(spread over them) or \"cuda:0\" (all on GPU 0)");
  return index;
}

}  // namespace

DevicePlan plan_device(const std::string& setting, int local_rank, int local_world_size, int64_t node_rank,
                       int64_t node_size, int gpus, bool cuda_compiled, const std::string& key) {
  DevicePlan plan;
  if (setting == "cpu" || (setting == "auto" && (gpus == 0 || !cuda_compiled))) return plan;
  const int mine = gpu_index(setting, local_rank, gpus, cuda_compiled, key);
  plan.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(mine));
  // The node's workers on this machine: the consecutive local ranks around this one. The node
  // shares a GPU when any two of them do (one answer for every worker of the node on this host;
  // Comm agrees on it across hosts through the store).
  const int64_t node_start = local_rank - node_rank;
  const int64_t first = std::max<int64_t>(0, node_start);
  const int64_t last = std::min<int64_t>(local_world_size, node_start + node_size);
  std::vector<bool> taken(static_cast<size_t>(gpus), false);
  for (int64_t member = first; member < last; ++member) {
    const int gpu = gpu_index(setting, static_cast<int>(member), gpus, cuda_compiled, key);
    if (taken[static_cast<size_t>(gpu)]) plan.shares_gpu = true;
    taken[static_cast<size_t>(gpu)] = true;
  }
  plan.node_backend = plan.shares_gpu ? "gloo" : "nccl";
  return plan;
}

std::string DevicePlan::describe() const {
  if (!device.is_cuda()) return "cpu";
  return cat("cuda:", static_cast<int>(device.index()),
             shares_gpu ? " (workers of its node share GPUs: they all-reduce through Gloo, over host memory)" : "");
}

torch::Device resolve_device(const std::string& setting, int local_rank, const std::string& key) {
  const BuildInfo info = build_info();
  return plan_device(setting, local_rank, local_rank + 1, 0, 1, info.gpus, info.cuda_compiled, key).device;
}

std::string describe_placement(const std::string& setting, int workers, int64_t node_size) {
  const BuildInfo info = build_info();
  const DevicePlan first = plan_device(setting, 0, workers, 0, node_size, info.gpus, info.cuda_compiled, "train.device");
  if (!first.device.is_cuda()) return cat("cpu (", std::max(1u, std::thread::hardware_concurrency()), " cores)");
  std::string text = cat(info.gpus, info.gpus == 1 ? " GPU (" : " GPUs (", cuda_device_name(0), ")");
  if (node_size == 1) return text + cat(", ", workers, " single-worker nodes placed over ", info.gpus == 1 ? "it" : "them");
  return text + (first.shares_gpu ? cat(", shared by the ", node_size, " workers of each node: they all-reduce through Gloo")
                                  : cat(", one per worker of each node: they all-reduce through NCCL"));
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

torch::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  return torch::kCPU;
}

}  // namespace lofi::dist
