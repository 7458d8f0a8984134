#include "lofi/demo/runs.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <tuple>
#include <nlohmann/json.hpp>

#include "lofi/dist/launcher.h"
#include "lofi/error.h"
#include "lofi/family/train_worker.h"
#include "lofi/eval/projection.h"
#include "lofi/io/atomic_file.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/config.h"

namespace lofi::demo {

double launch_training(const train::Config& config, const std::string& out, const std::string& name, int workers) {
  std::string path = out + "/" + name + ".toml";
  io::write_file_atomic(path, train::to_toml(config));
  dist::LaunchOptions launch;
  launch.workers = workers;
  launch.env = family::worker_job(path);  // each worker runs family::train_worker on it (the demo owns its runs)
  auto t0 = std::chrono::steady_clock::now();
  int status = dist::launch_workers(launch);
  if (status != 0) fail("demo: the ", name, " run failed (exit status ", status, ")");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Comparison run_baseline_and_lofi(const train::Config& ft, const std::string& out, int workers, const std::string& label) {
  Comparison c;
  train::Config baseline = ft;
  baseline.run.dir = out + "/baseline";
  baseline.dist.nodes = 1;
  std::printf("%sbaseline: 1 node of %d workers, global batch %lld, %lld steps\n", label.c_str(), workers,
              static_cast<long long>(ft.train.batch_size), static_cast<long long>(ft.train.steps));
  c.baseline_seconds = launch_training(baseline, out, "baseline", workers);
  train::Config lofi = ft;
  lofi.run.dir = out + "/lofi";
  lofi.dist.nodes = workers;
  std::printf("%slo-fi: %d nodes of 1 worker, batch %lld each, %lld steps, no communication\n", label.c_str(), workers,
              static_cast<long long>(ft.train.batch_size / workers), static_cast<long long>(ft.train.steps));
  c.lofi_seconds = launch_training(lofi, out, "lofi", workers);
  c.baseline_traffic = run::run_traffic(run::RunDir(baseline.run.dir));
  c.lofi_traffic = run::run_traffic(run::RunDir(lofi.run.dir));
  c.baseline_final = run::RunDir(baseline.run.dir).node(0).final_weights();
  for (int k = 0; k < workers; ++k) c.node_finals.push_back(run::RunDir(lofi.run.dir).node(k).final_weights());
  c.lofi_average = run::RunDir(lofi.run.dir).merged();
  return c;
}

std::vector<SyncedArm> run_synced_arms(const train::Config& ft, const std::string& out, int workers,
                                       const std::string& label, int64_t sync_every, int64_t warm_start_steps) {
  std::vector<SyncedArm> arms;
  auto finish = [&](SyncedArm arm, const train::Config& c, const std::string& dir) {
    arm.seconds = launch_training(c, out, dir, workers);
    arm.traffic = run::run_traffic(run::RunDir(c.run.dir));
    arm.model = run::RunDir(c.run.dir).merged();
    arms.push_back(arm);
  };
  for (const auto& [method, dir, outer] : {std::tuple<std::string, std::string, std::string>{"local SGD", "local-sgd", "average"},
                                           {"DiLoCo", "diloco", "nesterov"}}) {
    if (sync_every <= 0) break;
    train::Config c = ft;
    c.run.dir = out + "/" + dir;
    c.dist.nodes = workers;
    c.dist.sync_every = sync_every;
    c.dist.outer_optimizer = outer;
    std::printf("%s%s: %d nodes of 1 worker averaged every %lld steps%s\n", label.c_str(), method.c_str(), workers,
                static_cast<long long>(sync_every), outer == "nesterov" ? " through Nesterov outer steps" : "");
    finish({method, cat("every ", sync_every, " steps"), cat("averaged every ", sync_every, " steps"), 0, {}, {}}, c, dir);
  }
  // A shared warm start: data-parallel for its first steps, then lo-fi (at most half the run).
  if (const int64_t k = std::min(warm_start_steps, ft.train.steps / 2); k > 0) {
    train::Config c = ft;
    c.run.dir = out + "/lofi-warm";
    c.dist.nodes = workers;
    c.dist.warm_start_steps = k;
    std::printf("%slo-fi with a shared warm start: %d nodes of 1 worker, one data-parallel node for the first %lld steps\n",
                label.c_str(), workers, static_cast<long long>(k));
    finish({"lo-fi, shared warm start", cat("the first ", k, " steps"), cat("data-parallel for the first ", k, " steps"), 0, {}, {}}, c,
           "lofi-warm");
  }
  return arms;
}

eval::ResultsTable spectrum_table(const std::vector<SpectrumRow>& rows, const std::string& id_label,
                                  const std::string& shift_label, int decimals) {
  std::vector<std::string> columns{"method", "sync", id_label, shift_label, "bytes per worker between machines", "wall time"};
  for (const auto& link : eval::projection_links()) columns.push_back("projected at " + link.name);
  eval::ResultsTable table(columns);
  for (const auto& r : rows) {
    std::vector<std::string> cells{r.method, r.sync, eval::format_fixed(r.in_distribution, decimals),
                                   eval::format_fixed(r.shift, decimals), eval::format_bytes(r.bytes_per_worker),
                                   eval::format_fixed(r.seconds, 1) + " s"};
    nlohmann::json projected = nlohmann::json::object();
    for (const auto& link : eval::projection_links()) {
      const double t = eval::projected_seconds(r.seconds, r.bytes_per_worker, link);
      cells.push_back(eval::format_fixed(t, 1) + " s");
      projected[link.name] = t;
    }
    table.add_row(cells, {{"method", r.method}, {"sync", r.sync}, {"in_distribution", r.in_distribution},
                          {"shift_average", r.shift}, {"bytes_per_worker_between_machines", r.bytes_per_worker},
                          {"wall_seconds", r.seconds}, {"projected_seconds", projected}});
  }
  return table;
}

}  // namespace lofi::demo
