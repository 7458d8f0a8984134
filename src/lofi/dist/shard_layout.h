// How a node's trainable parameters are laid out for its collectives: packed, in reverse
// registration order (the order backward produces their gradients), into buckets of about
// dist.bucket_mb; and, when the node shards (dist.shard, ZeRO), how each bucket splits into one
// equal, contiguous part per worker, as DeepSpeed's ZeRO and PyTorch's FSDP split flat buffers.
// A worker updates (and keeps optimizer state for) the pieces of parameters that fall into its
// part of every bucket; a parameter may be cut between two workers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::dist {

// dist.shard: what a node's workers hold one part of instead of a copy each.
enum class ShardMode {
  none,       // every worker holds everything (data parallel, gradients all-reduced)
  optimizer,  // ZeRO-1: optimizer state; gradients all-reduced, updated weights all-gathered
  gradients,  // ZeRO-2: optimizer state and gradients, reduce-scattered
  full,       // ZeRO-3: and each decoder block's parameters, whole only while the block runs
};
ShardMode shard_mode(const std::string& name);  // "none" | "optimizer" | "gradients" | "full"
const char* shard_mode_name(ShardMode mode);

struct BucketLayout {
  std::vector<size_t> params;    // indices into the parameter list, in packing order
  std::vector<int64_t> offsets;  // each one's first element in the bucket
  int64_t numel = 0;             // elements packed
  int64_t padded = 0;            // numel rounded up to a multiple of the workers: every part alike
  int64_t unit = -1;             // the decoder block its parameters belong to; -1: outside the blocks
};

// The part of one parameter a worker owns: elements [begin, end) of the flattened parameter,
// held at [shard_offset, shard_offset + end - begin) of its part of bucket BUCKET.
struct Piece {
  size_t param = 0;
  int64_t begin = 0, end = 0;
  size_t bucket = 0;
  int64_t shard_offset = 0;
  int64_t numel() const { return end - begin; }
};

struct ShardLayout {
  std::vector<BucketLayout> buckets;
  std::vector<std::pair<size_t, int64_t>> slot;  // parameter -> (bucket, offset in elements)
  int64_t workers = 1, rank = 0;

  // Elements of each worker's part of bucket B.
  int64_t part_numel(size_t b) const { return buckets[b].padded / workers; }
  // Elements of this worker's parts of all buckets, padding included.
  int64_t owned_numel() const;
  // This worker's pieces, bucket by bucket.
  std::vector<Piece> pieces() const;
};

// NUMELS: each parameter's element count, in registration order; CAP: a bucket's elements (a
// parameter larger than it gets a bucket of its own); WORKERS: the node's, RANK: this worker's.
// UNITS (dist.shard = "full"; empty otherwise): each parameter's decoder block, -1 outside the
// blocks. A block's parameters then fill one bucket of their own, whatever CAP, so one collective
// gathers the block; the parameters outside the blocks are bucketed by CAP.
ShardLayout plan_shards(const std::vector<int64_t>& numels, int64_t cap, int64_t workers, int64_t rank,
                        const std::vector<int64_t>& units = {});

}  // namespace lofi::dist
