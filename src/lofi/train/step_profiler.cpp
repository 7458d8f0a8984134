#include "lofi/train/step_profiler.h"

#include <kineto/ActivityType.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "lofi/error.h"

namespace lofi::train {

namespace prof = torch::profiler::impl;
namespace kineto_prof = torch::autograd::profiler;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void wait_for_device(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

bool is_device_work(libkineto::ActivityType t) {
  return t == libkineto::ActivityType::CONCURRENT_KERNEL || t == libkineto::ActivityType::GPU_MEMCPY ||
         t == libkineto::ActivityType::GPU_MEMSET;
}

libkineto::ActivityType activity(const kineto_prof::KinetoEvent& e) {
  return static_cast<libkineto::ActivityType>(e.activityType());
}

// Device time per (launching operator, kernel): a kernel's linked correlation id is that of the
// innermost operator running when it was launched, as PyTorch's own tables attribute it.
std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>> device_time(
    const std::vector<kineto_prof::KinetoEvent>& events) {
  std::unordered_map<uint64_t, std::string> op_of;
  for (const auto& e : events)
    if (activity(e) == libkineto::ActivityType::CPU_OP) op_of[e.correlationId()] = e.name();
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>> time;  // -> (calls, ms)
  for (const auto& e : events) {
    if (!is_device_work(activity(e))) continue;
    auto op = op_of.find(e.linkedCorrelationId());
    auto& [calls, ms] = time[{op == op_of.end() ? "(no operator)" : op->second, short_kernel_name(e.name())}];
    calls += 1;
    ms += static_cast<double>(e.durationNs()) / 1e6;
  }
  return time;
}

// CPU self time per operator: an operator's span less its direct children's, per thread.
std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>> cpu_self_time(
    const std::vector<kineto_prof::KinetoEvent>& events) {
  std::map<uint64_t, std::vector<const kineto_prof::KinetoEvent*>> by_thread;
  for (const auto& e : events)
    if (activity(e) == libkineto::ActivityType::CPU_OP) by_thread[e.startThreadId()].push_back(&e);
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>> time;
  for (auto& [thread, ops] : by_thread) {
    // Parents before their children: by start, the longer first.
    std::sort(ops.begin(), ops.end(), [](const auto* a, const auto* b) {
      return a->startNs() != b->startNs() ? a->startNs() < b->startNs() : a->endNs() > b->endNs();
    });
    std::vector<const kineto_prof::KinetoEvent*> open;
    std::unordered_map<const kineto_prof::KinetoEvent*, double> children_ms;
    for (const auto* e : ops) {
      while (!open.empty() && open.back()->endNs() <= e->startNs()) open.pop_back();
      if (!open.empty()) children_ms[open.back()] += static_cast<double>(e->durationNs()) / 1e6;
      open.push_back(e);
    }
    for (const auto* e : ops) {
      auto& [calls, ms] = time[{e->name(), ""}];
      calls += 1;
      ms += std::max(0.0, static_cast<double>(e->durationNs()) / 1e6 - children_ms[e]);
    }
  }
  return time;
}

}  // namespace

std::string short_kernel_name(const std::string& name) {
  // "void at::native::vectorized_elementwise_kernel<4, ...>(int, ...)" -> "at::native::vectorized_elementwise_kernel"
  std::string s = name;
  if (s.rfind("void ", 0) == 0) s = s.substr(5);
  for (size_t at; (at = s.find("(anonymous namespace)::")) != std::string::npos;) s.erase(at, 23);
  const size_t cut = s.find_first_of("<(");
  if (cut != std::string::npos && cut > 0) s = s.substr(0, cut);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

StepProfiler::StepProfiler(const torch::Device& device, int64_t first, int64_t steps, std::string trace_path)
    : device_(device), first_(first), steps_(steps), trace_path_(std::move(trace_path)) {
  summary_.device = device.is_cuda() ? "cuda" : "cpu";
  summary_.steps = steps;
}

StepProfiler::~StepProfiler() {
  if (active_) kineto_prof::disableProfiler();  // a step failed mid-profile: stop, keep nothing
}

void StepProfiler::before_step(int64_t step) {
  if (step != first_ || steps_ <= 0) return;
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (device_.is_cuda()) activities.insert(prof::ActivityType::CUDA);
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  // Profiling the CPU alone, Kineto would still ask CUDA for its devices when it writes the trace
  // and log an error line where there is none; a user's own KINETO_LOG_LEVEL is kept.
  if (!device_.is_cuda()) ::setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
  wait_for_device(device_);  // the warm-up's queued work is not this window's
  kineto_prof::prepareProfiler(config, activities);
  kineto_prof::enableProfiler(config, activities);
  active_ = true;
  t0_ = now_ms();
}

void StepProfiler::after_step(int64_t step) {
  if (!active_ || step != first_ + steps_ - 1) return;
  wait_for_device(device_);
  summary_.wall_ms_per_step = (now_ms() - t0_) / static_cast<double>(steps_);
  std::unique_ptr<kineto_prof::ProfilerResult> result = kineto_prof::disableProfiler();
  active_ = false;
  done_ = true;

  const auto time = device_.is_cuda() ? device_time(result->events()) : cpu_self_time(result->events());
  double total = 0;
  for (const auto& [key, v] : time) total += v.second;
  const double n = static_cast<double>(steps_);
  summary_.busy_ms_per_step = total / n;
  for (const auto& [key, v] : time)
    summary_.rows.push_back({key.first, key.second, static_cast<double>(v.first) / n, v.second / n,
                             total > 0 ? v.second / total : 0});
  std::sort(summary_.rows.begin(), summary_.rows.end(),
            [](const ProfileRow& a, const ProfileRow& b) { return a.ms_per_step > b.ms_per_step; });

  // The trace under a temporary name, then renamed: never half a file at the final name.
  std::filesystem::create_directories(std::filesystem::path(trace_path_).parent_path());
  const std::string tmp = cat(trace_path_, ".tmp-", ::getpid());
  result->save(tmp);
  std::error_code ec;
  std::filesystem::rename(tmp, trace_path_, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    fail("train.profile_steps: cannot write the trace ", trace_path_, ": ", ec.message());
  }
}

std::string format_profile(const ProfileSummary& s, size_t rows) {
  const bool gpu = s.device == "cuda";
  std::string out = cat("profile of ", s.steps, " step", s.steps == 1 ? "" : "s", " (", s.device, "): ");
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%.1f ms a step; %s %.1f ms (%.0f%% of it)\n", s.wall_ms_per_step,
                gpu ? "device busy" : "operators' own time", s.busy_ms_per_step,
                s.wall_ms_per_step > 0 ? 100 * s.busy_ms_per_step / s.wall_ms_per_step : 0.0);
  out += buf;
  size_t op_w = 8, kernel_w = 6;
  const size_t shown = std::min(rows, s.rows.size());
  for (size_t i = 0; i < shown; ++i) op_w = std::max(op_w, s.rows[i].op.size()), kernel_w = std::max(kernel_w, s.rows[i].kernel.size());
  if (gpu)
    std::snprintf(buf, sizeof(buf), "  %-*s  %-*s  %9s  %8s  %6s\n", static_cast<int>(op_w), "operator", static_cast<int>(kernel_w),
                  "kernel", "calls/step", "ms/step", "share");
  else
    std::snprintf(buf, sizeof(buf), "  %-*s  %9s  %8s  %6s\n", static_cast<int>(op_w), "operator", "calls/step", "ms/step", "share");
  out += buf;
  for (size_t i = 0; i < shown; ++i) {
    const ProfileRow& r = s.rows[i];
    if (gpu)
      std::snprintf(buf, sizeof(buf), "  %-*s  %-*s  %9.1f  %8.2f  %5.1f%%\n", static_cast<int>(op_w), r.op.c_str(),
                    static_cast<int>(kernel_w), r.kernel.c_str(), r.calls_per_step, r.ms_per_step, 100 * r.share);
    else
      std::snprintf(buf, sizeof(buf), "  %-*s  %9.1f  %8.2f  %5.1f%%\n", static_cast<int>(op_w), r.op.c_str(), r.calls_per_step,
                    r.ms_per_step, 100 * r.share);
    out += buf;
  }
  if (s.rows.size() > shown) {
    double rest = 0;
    for (size_t i = shown; i < s.rows.size(); ++i) rest += s.rows[i].share;
    std::snprintf(buf, sizeof(buf), "  (%zu more rows, %.1f%% of the time)\n", s.rows.size() - shown, 100 * rest);
    out += buf;
  }
  return out;
}

}  // namespace lofi::train
