// The end of a whole lo-fi job (dist.nodes > 1, nodes never meeting): each node leader, its final
// written, waits until every other node has finished or failed (dist/node_status.h: from the run
// directory, not the rendezvous store, which may have died with rank 0), and the lowest-numbered
// finished node averages the finished nodes into RUN/merged.safetensors, naming the failed ones
// in its metadata. Fewer than dist.min_nodes finished (default: all) is an error that leaves every
// survivor's final on disk.
// The merging node then checks that averaging was safe (train/averaging_check.h) when VALIDATE
// (the task's evaluation of a weights file on data.val) is given, and records the verdict in
// RUN/averaging-check.json.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "lofi/train/config.h"

namespace lofi::train {

// Called by node ME's leader after its final is written; ATTEMPT is this job start's id. Returns
// the averaging check's verdict when this node merged and checked, else null.
nlohmann::json merge_finished_nodes(const Config& config, int64_t me, const std::string& attempt,
                                    const std::function<nlohmann::json(const std::string&)>& validate = {});

}  // namespace lofi::train
