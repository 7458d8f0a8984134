// `lofi demo`: the paper's two experiments in miniature; this file holds the language half, the
// vision half is vision_demo.h. Generates its data, pretrains
// a small model on a general corpus (cached), fine-tunes it on an arithmetic task both ways —
// the data-parallel baseline (one node of K workers) and lo-fi (K nodes of one worker), same
// global batch and steps — and evaluates every model in-distribution and under shift.
#pragma once
#include <cstdint>
#include <string>

namespace lofi::demo {

struct DemoOptions {
  std::string out = "runs/demo";   // everything goes here; results.md and results.json at its root
  int workers = 4;                 // K: the baseline's workers, lo-fi's nodes
  int64_t pretrain_steps = 400;    // cached in OUT/pretrained.safetensors
  int64_t finetune_steps = 150;
  int64_t eval_windows = 256;      // windows of 64 tokens per evaluation set
  bool fresh = false;              // ignore cached data and pretrained weights
  std::string only;                // "language" or "vision" runs that half alone; empty: both
  int64_t vision_pretrain_steps = 8000; // the vision half's pretraining (cached; 8000 is shipped)
  int64_t vision_steps = 150;           // the vision half's fine-tuning steps
  int64_t sync_every = 50;              // local SGD and DiLoCo average every this many steps; 0: skip them
  int64_t warm_start_steps = 20;        // lo-fi's shared warm start arm (data-parallel first steps); 0: skip it
};

// Runs the demo; prints the table and writes OUT/results.{md,json}. Returns the exit status.
int run_demo(const DemoOptions& options);

}  // namespace lofi::demo
