// train.profile_steps = N: PyTorch's profiler (Kineto, CUPTI on a GPU) over N training steps after a
// warm-up, so a user sees where a step's time goes without leaving lofi. It writes a Chrome trace
// (open it in Perfetto, chrome://tracing or TensorBoard's profiler) and prints a table: on a GPU,
// device time per launching operator and kernel, and how busy the device was over the steps; on a
// CPU, each operator's self time.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lofi::train {

// One row of the table: the operator that launched the work (aten::mm, ...) and, on a GPU, the
// kernel, with its calls and time per profiled step.
struct ProfileRow {
  std::string op, kernel;
  double calls_per_step = 0, ms_per_step = 0, share = 0;  // share: of the total device (or CPU self) time
};

struct ProfileSummary {
  std::string device;          // "cuda" or "cpu"
  int64_t steps = 0;           // steps profiled
  double wall_ms_per_step = 0;  // host clock from the first profiled step's start to the last's end
  double busy_ms_per_step = 0;  // summed kernel (GPU) or operator self (CPU) time per step
  std::vector<ProfileRow> rows;  // largest first
};

class StepProfiler {
 public:
  // Profiles steps [FIRST, FIRST + STEPS) (0-based), writing TRACE_PATH (a .json Chrome trace).
  StepProfiler(const torch::Device& device, int64_t first, int64_t steps, std::string trace_path);
  ~StepProfiler();
  // Around each training step.
  void before_step(int64_t step);
  void after_step(int64_t step);
  // After the last profiled step: the summary (empty rows before).
  const ProfileSummary& summary() const { return summary_; }
  bool done() const { return done_; }

 private:
  torch::Device device_;
  int64_t first_, steps_;
  std::string trace_path_;
  bool active_ = false, done_ = false;
  double t0_ = 0;
  ProfileSummary summary_;
};

// The table as printed: the top ROWS rows, widths fitted (node-k/profile/table.txt has them all).
std::string format_profile(const ProfileSummary& s, size_t rows = 15);

// A kernel's name made readable: template arguments and argument lists dropped, at most 60 chars.
std::string short_kernel_name(const std::string& name);

}  // namespace lofi::train
