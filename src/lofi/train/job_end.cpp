#include "lofi/train/job_end.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "lofi/dist/node_status.h"
#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/safetensors.h"
#include "lofi/io/lora_adapter.h"
#include "lofi/merge/adapters.h"
#include "lofi/merge/agreement.h"
#include "lofi/merge/average.h"
#include "lofi/model/lora.h"
#include "lofi/model/weights.h"
#include "lofi/run/run_dir.h"
#include "lofi/train/averaging_check.h"

namespace lofi::train {
namespace {

std::string node_list(const std::vector<int64_t>& nodes) {
  std::string out;
  for (int64_t k : nodes) out += (out.empty() ? "" : ", ") + std::to_string(k);
  return out;
}

// The merge of a whole lo-fi job's finished nodes, by node ME's leader.
nlohmann::json merge_finished_nodes(const Config& config, TrainedWorker& worker) {
  const int64_t me = worker.topo.node;
  const std::string& attempt = worker.attempt;
  Task& task = *worker.task;
  const int64_t nodes = config.dist.nodes;
  const run::RunDir run(config.run.dir);
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto last_note = t0;
  std::vector<dist::NodeVerdict> verdicts(static_cast<size_t>(nodes));
  for (;;) {
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    std::vector<std::string> waiting;
    for (int64_t k = 0; k < nodes; ++k) {
      auto& v = verdicts[static_cast<size_t>(k)];
      if (k == me) {
        v.state = dist::NodeVerdict::done;
        continue;
      }
      auto status = dist::read_node_status(run.node(k).path());
      v = dist::judge_node(status, attempt, dist::wall_seconds(), config.dist.timeout_s, waited);
      if (v.state == dist::NodeVerdict::training)
        waiting.push_back(status && status->attempt == attempt ? cat(k, " (step ", status->step, "/", status->steps, ")")
                                                               : cat(k, " (not started)"));
    }
    if (waiting.empty()) break;
    if (Clock::now() - last_note > std::chrono::seconds(30)) {
      std::string list;
      for (const auto& w : waiting) list += (list.empty() ? "" : ", ") + w;
      std::printf("node %lld: finished; waiting for node(s) %s\n", static_cast<long long>(me), list.c_str());
      std::fflush(stdout);
      last_note = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  std::vector<int64_t> finished, failed;
  std::string failures;
  for (int64_t k = 0; k < nodes; ++k) {
    const auto& v = verdicts[static_cast<size_t>(k)];
    if (v.state == dist::NodeVerdict::done) {
      finished.push_back(k);
    } else {
      failed.push_back(k);
      failures += cat(failures.empty() ? "" : "; ", "node ", k, ": ", v.why);
    }
  }
  if (finished.front() != me) {
    std::printf("node %lld: finished; node %lld merges\n", static_cast<long long>(me), static_cast<long long>(finished.front()));
    return nullptr;
  }
  for (int64_t k : failed)
    std::fprintf(stderr, "node %lld: %s\n", static_cast<long long>(k), verdicts[static_cast<size_t>(k)].why.c_str());
  const int64_t needed = config.dist.min_nodes > 0 ? config.dist.min_nodes : nodes;
  std::string final_files;
  for (int64_t k : finished) final_files += (final_files.empty() ? "" : ", ") + run.node(k).final_weights();
  if (static_cast<int64_t>(finished.size()) < needed)
    fail("merge: ", finished.size(), " of ", nodes, " nodes finished (", failures, "); dist.min_nodes = ", needed,
         ", so no merge is written. The finished nodes' weights are ", final_files, "; average them with `lofi average ", run.path(),
         " --min-inputs ", finished.size(),
         " --out OUT`, or rerun with dist.min_nodes = ", finished.size());

  merge::AverageOptions options;
  for (int64_t k : finished) options.inputs.push_back(run.node(k).final_weights());
  options.out = run.merged();
  options.metadata = {{"lofi.merged_nodes", node_list(finished)}, {"lofi.failed_nodes", node_list(failed)},
                      {"lofi.nodes", std::to_string(nodes)}};
  const bool adapters = io::is_lora_adapter(options.inputs.front());
  nlohmann::json agreement;  // how far the nodes' changes agreed (merge/agreement.h)
  if (adapters) {
    // LoRA nodes: the exact average, one adapter of rank N r (merge/adapters.h), not the average
    // of the factors that averaging the files tensor by tensor would give.
    std::vector<io::LoraAdapter> finals;
    for (const auto& path : options.inputs) finals.push_back(io::read_lora_adapter(path));
    merge::AdapterMergeResult merged = merge::merge_adapters(finals, {});
    for (const auto& [k, v] : options.metadata) merged.adapter.metadata[k] = v;
    io::write_lora_file(options.out, merged.adapter);
    agreement = merge::adapter_agreement(finals);
  } else {
    merge::average_checkpoints(options);
    if (!config.model.init.empty()) agreement = merge::delta_agreement(options.inputs, config.model.init);
  }
  task.write_hf_output(options.out, run.merged_hf());
  if (failed.empty())
    std::printf("merged %lld nodes into %s\n", static_cast<long long>(nodes), options.out.c_str());
  else
    std::printf("merged the %zu finished nodes (%s) of %lld into %s; failed: node %s\n", finished.size(),
                node_list(finished).c_str(), static_cast<long long>(nodes), options.out.c_str(), node_list(failed).c_str());
  std::fflush(stdout);

  if (!agreement.is_null()) std::printf("%s\n", merge::agreement_text(agreement).c_str());
  // This merge's verdict, or none: never an earlier attempt's (a resumed run's, say).
  std::error_code ec;
  std::filesystem::remove(run.averaging_check(), ec);
  // Nodes that met at the last step hold one model: there is nothing to compare.
  if (config.dist.sync_every > 0 && config.train.steps % config.dist.sync_every == 0) return nullptr;
  if (!task.has_validation()) {
    std::printf("averaging check: no data.val, so the average was not compared with the nodes; set data.val to check it\n");
    return nullptr;
  }
  std::vector<NodeFinal> finals;
  for (int64_t k : finished) finals.push_back({k, run.node(k).final_weights()});
  auto validate = [&](const std::string& weights) {  // the task's model is free now: its final is on disk
    // A sharded node's trained weights are shapes alone after training: fp32 storage for the finals.
    if (worker.weights_on_disk) model::materialize_parameters(task.model(), worker.device, torch::kFloat);
    if (adapters) model::load_lora_adapter(task.model(), io::read_lora_adapter(weights));  // its rank, r or N r
    else model::load_module_weights(task.model(), io::SafetensorsFile(weights));
    return task.validate(worker.eval_batch);
  };
  nlohmann::json check = check_averaging(finals, options.out, validate, config.train.eval_batches);
  if (!agreement.is_null()) check["agreement"] = agreement;
  io::write_file_atomic(run.averaging_check(), check.dump(2) + "\n");
  std::printf("%s\n", averaging_check_text(check).c_str());
  std::fflush(stdout);
  return check;
}

}  // namespace

nlohmann::json finish_job(const Config& config, TrainedWorker& worker) {
  const dist::Topology& topo = worker.topo;
  if (topo.node_rank != 0) return nullptr;
  if (!(topo.whole_job && topo.nodes > 1)) {
    const run::NodeDir node = run::RunDir(config.run.dir).node(topo.node);
    worker.task->write_hf_output(node.final_weights(), node.final_hf());
    return nullptr;
  }
  // Nodes that never meet end apart: the merge reads the finals from disk.
  return merge_finished_nodes(config, worker);
}

}  // namespace lofi::train
