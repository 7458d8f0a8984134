// The vision half of `lofi demo`: the paper's DeiT experiment in miniature. Generates a
// procedural image dataset (no downloads), pretrains a small ViT on a source task (cached),
// fine-tunes it on a different task both ways — the data-parallel baseline (one node of K
// workers) and lo-fi (K nodes of one worker), same global batch and steps — and scores every
// model in-distribution and on shifted test sets (renditions, sketches, corruptions, poses).
#pragma once
#include <cstdint>
#include <string>

#include "lofi/demo/runs.h"

namespace lofi::demo {

struct VisionDemoOptions {
  std::string out = "runs/demo/vision";  // images/, pretrain/, baseline/, lofi/, results
  int workers = 4;                       // K: the baseline's workers, lo-fi's nodes
  int64_t pretrain_steps = 8000;         // cached in OUT/pretrained.safetensors; 8000 is shipped
  int64_t finetune_steps = 150;
  bool fresh = false;                    // regenerate images and retrain the pretrained model
  int64_t sync_every = 50;               // local SGD and DiLoCo average every this many steps; 0: skip them
  int64_t warm_start_steps = 20;         // lo-fi's shared warm start arm; 0: skip it
};

DemoSection run_vision_demo(const VisionDemoOptions& options);

}  // namespace lofi::demo
