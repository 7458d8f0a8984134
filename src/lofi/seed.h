#pragma once
// Every random stream of a run, in one place. Each derives from train.seed through mix_seed (a
// splitmix64 of a combined key), so a run is a pure function of its config: the same on every
// machine, on resume, and on every worker that must agree. The streams:
//   init           the model's initial weights: the same on every node (they start from one point)
//   parameter      a causal LM's initial value of one parameter, from init and the parameter's name
//   dropout        dropout and drop-path of one micro-batch: per node, rank, micro-batch and step
//   window         the token windows of a step: per node (its own order of the same data)
//   data_order     the image order of an epoch: per node
//   shared_order   one image order every node shares (dist.data_split = "shard" cuts it in slices)
//   augmentation   a worker's image augmentation (the loader draws per step and image from it)
//   mixup          a worker batch's mixup/CutMix draw: per node, rank and step
//   merge_mask     a merge's random drop masks (lofi merge --method dare): per tensor
//   lora           a LoRA run's initial A factors: the same on every node
// Changing any of these changes every run's numbers: add a stream rather than edit one.
#include <cstdint>

namespace lofi {

// splitmix64 of a combined key: the project's one hash for deriving random streams.
uint64_t mix_seed(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0);

namespace seed {

inline uint64_t init(uint64_t run_seed) { return mix_seed(run_seed); }

// The start value of the parameter whose name hashes (XXH3-64) to NAME_HASH in a model seeded
// INIT_SEED (init's value): one stream per tensor, so tensors are drawn in any order, each over
// many threads (model/seeded_init.h), and a model built in pieces equals one built whole.
inline uint64_t parameter(uint64_t init_seed, uint64_t name_hash) { return mix_seed(init_seed, name_hash, /*stream=*/5); }

inline uint64_t dropout(uint64_t run_seed, int64_t node, int64_t micro_batch_index, int64_t step) {
  return mix_seed(run_seed, static_cast<uint64_t>(node), static_cast<uint64_t>(micro_batch_index), static_cast<uint64_t>(step));
}

// The I-th window start of STEP on NODE.
inline uint64_t window(uint64_t run_seed, int64_t node, int64_t step, int64_t i) {
  return mix_seed(run_seed, static_cast<uint64_t>(node) + 1, static_cast<uint64_t>(step), static_cast<uint64_t>(i));
}

inline uint64_t data_order(uint64_t run_seed, int64_t node, int64_t epoch) {
  return mix_seed(run_seed, static_cast<uint64_t>(node) + 1, static_cast<uint64_t>(epoch));
}

inline uint64_t shared_order(uint64_t run_seed) { return mix_seed(run_seed, 0x5EA7D); }

inline uint64_t augmentation(uint64_t run_seed, int64_t node, int64_t node_rank) {
  return mix_seed(run_seed, static_cast<uint64_t>(node), static_cast<uint64_t>(node_rank));
}

inline uint64_t mixup(uint64_t run_seed, int64_t node, int64_t node_rank, int64_t step) {
  return mix_seed(augmentation(run_seed, node, node_rank), static_cast<uint64_t>(step), /*stream=*/2);
}

// The drop masks of the tensor whose name hashes (XXH3-64) to NAME_HASH in a merge seeded SEED.
inline uint64_t merge_mask(uint64_t seed, uint64_t name_hash) { return mix_seed(seed, name_hash, /*stream=*/3); }

// The initial LoRA A factors of a run: one stream every node shares, apart from the base's init.
inline uint64_t lora(uint64_t run_seed) { return mix_seed(run_seed, 0x10FA, /*stream=*/4); }

}  // namespace seed
}  // namespace lofi
