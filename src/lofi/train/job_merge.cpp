#include "lofi/train/job_merge.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "lofi/dist/node_status.h"
#include "lofi/error.h"
#include "lofi/merge/average.h"
#include "lofi/model/hf.h"
#include "lofi/io/atomic_file.h"
#include "lofi/train/averaging_check.h"
#include "lofi/train/export.h"
#include "lofi/train/run_dir.h"

namespace lofi::train {
namespace {

std::string node_list(const std::vector<int64_t>& nodes) {
  std::string out;
  for (int64_t k : nodes) out += (out.empty() ? "" : ", ") + std::to_string(k);
  return out;
}

}  // namespace

nlohmann::json merge_finished_nodes(const Config& config, int64_t me, const std::string& attempt,
                                    const std::function<nlohmann::json(const std::string&)>& validate) {
  const int64_t nodes = config.dist.nodes;
  const std::string& run = config.run.dir;
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
      auto status = dist::read_node_status(node_dir(run, k));
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
  if (static_cast<int64_t>(finished.size()) < needed)
    fail("merge: ", finished.size(), " of ", nodes, " nodes finished (", failures, "); dist.min_nodes = ", needed,
         ", so no merge is written. The finished nodes' weights are ", run, "/node-*/final.safetensors of nodes ",
         node_list(finished), "; average them with `lofi average ", run, " --min-inputs ", finished.size(),
         " --out OUT`, or rerun with dist.min_nodes = ", finished.size());

  merge::AverageOptions options;
  for (int64_t k : finished) options.inputs.push_back(node_dir(run, k) + "/final.safetensors");
  options.out = run + "/merged.safetensors";
  options.metadata = {{"lofi.merged_nodes", node_list(finished)}, {"lofi.failed_nodes", node_list(failed)},
                      {"lofi.nodes", std::to_string(nodes)}};
  merge::average_checkpoints(options);
  if (model::is_hf_model_dir(config.model.init)) write_hf_output(options.out, run + "/merged-hf");
  if (failed.empty())
    std::printf("merged %lld nodes into %s\n", static_cast<long long>(nodes), options.out.c_str());
  else
    std::printf("merged the %zu finished nodes (%s) of %lld into %s; failed: node %s\n", finished.size(),
                node_list(finished).c_str(), static_cast<long long>(nodes), options.out.c_str(), node_list(failed).c_str());
  std::fflush(stdout);

  // This merge's verdict, or none: never an earlier attempt's (a resumed run's, say).
  std::error_code ec;
  std::filesystem::remove(run + "/averaging-check.json", ec);
  // Nodes that met at the last step hold one model: there is nothing to compare.
  if (config.dist.sync_every > 0 && config.train.steps % config.dist.sync_every == 0) return nullptr;
  if (!validate) {
    std::printf("averaging check: no data.val, so the average was not compared with the nodes; set data.val to check it\n");
    return nullptr;
  }
  std::vector<NodeFinal> finals;
  for (int64_t k : finished) finals.push_back({k, node_dir(run, k) + "/final.safetensors"});
  nlohmann::json check = check_averaging(finals, options.out, validate, config.train.eval_batches);
  io::write_file_atomic(run + "/averaging-check.json", check.dump(2) + "\n");
  std::printf("%s\n", averaging_check_text(check).c_str());
  std::fflush(stdout);
  return check;
}

}  // namespace lofi::train
