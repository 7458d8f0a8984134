// What both halves of the demo do with a training run: launch it under local workers from a
// config, and read back how many bytes its workers sent.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/eval/results_file.h"
#include "lofi/eval/table.h"
#include "lofi/run/metrics_record.h"
#include "lofi/train/config.h"

namespace lofi::demo {

// Writes CONFIG as OUT/NAME.toml and runs it under WORKERS local workers (family::train_worker);
// returns the wall time in seconds. Throws naming the run when it fails.
double launch_training(const train::Config& config, const std::string& out, const std::string& name, int workers);

// Bytes sent by all workers of a run (run/metrics_record.h).
using Traffic = run::RunTraffic;

// The comparison at the heart of both halves: FT run as the baseline (one node of WORKERS workers,
// in OUT/baseline) and as lo-fi (WORKERS nodes of one worker, in OUT/lofi), with one global batch
// and step count; LABEL prefixes the progress lines.
struct Comparison {
  double baseline_seconds = 0, lofi_seconds = 0;
  Traffic baseline_traffic, lofi_traffic;
  std::string baseline_final;            // OUT/baseline/node-00/final.safetensors
  std::vector<std::string> node_finals;  // OUT/lofi/node-k/final.safetensors
  std::string lofi_average;              // OUT/lofi/merged.safetensors
};
Comparison run_baseline_and_lofi(const train::Config& ft, const std::string& out, int workers, const std::string& label);

// The middle of the spectrum, on the same data budget: FT as WORKERS nodes of one worker that
// average every SYNC_EVERY steps, plainly (local SGD, OUT/local-sgd) and through DiLoCo's outer
// optimizer (OUT/diloco) (none when 0); and lo-fi nodes that leave a shared warm start of
// WARM_START_STEPS data-parallel steps (OUT/lofi-warm; none when 0, at most half the steps).
struct SyncedArm {
  std::string method;  // "local SGD", "DiLoCo", "lo-fi, shared warm start"
  std::string sync;    // when its nodes met: "every 50 steps", "the first 20 steps"
  std::string how;     // the model's name's parenthesis: "averaged every 50 steps"
  double seconds = 0;
  Traffic traffic;
  std::string model;   // RUN/merged.safetensors
};
std::vector<SyncedArm> run_synced_arms(const train::Config& ft, const std::string& out, int workers,
                                       const std::string& label, int64_t sync_every, int64_t warm_start_steps);

// One row of a half's spectrum table: a way to train, what it scored, what it cost.
struct SpectrumRow {
  std::string method;         // "baseline (data-parallel)", "local SGD", "DiLoCo", "lo-fi"
  std::string sync;           // "every step", "every 50 steps", "never"
  double in_distribution = 0, shift = 0;  // the half's metric, as its main table shows it
  double bytes_per_worker = 0;            // what each worker sends between machines
  double seconds = 0;                     // measured wall time
};
// What the spectrum table shows, for results.md and the report.
inline constexpr const char* kSpectrumNote =
    "The communication spectrum, on one data budget: the baseline all-reduces gradients every step, local SGD and "
    "DiLoCo average the nodes' weights every few steps (DiLoCo through Nesterov outer steps), lo-fi with a shared warm "
    "start all-reduces only in its first steps (one data-parallel node, then apart), lo-fi never. Wall times "
    "are measured here, on one machine; the projected ones put every worker on a machine of its own: measured time + "
    "8 x bytes per worker between machines / link speed (a projection, not a measurement).";

// Columns: method, sync, ID_LABEL, SHIFT_LABEL, bytes per worker between machines, wall time, and
// the wall time projected for each link of eval::projection_links(); JSON rows beside.
eval::ResultsTable spectrum_table(const std::vector<SpectrumRow>& rows, const std::string& id_label,
                                  const std::string& shift_label, int decimals);

// One half's results: the table as text, a section for results.md, rows for results.json.
struct DemoSection {
  std::string title;
  std::string table;
  std::string markdown;
  eval::ResultsFile results;
};

}  // namespace lofi::demo
