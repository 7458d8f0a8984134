// c10d's process groups behind two factory functions: Gloo for CPU tensors, NCCL for CUDA
// tensors (one GPU per rank). Each is made in a file of its own, the only ones that include the
// backend's headers (Gloo's from Debian, NCCL's from the wheel): the rest of lofi sees c10d::Backend.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <string>

namespace lofi::dist {

// A group of SIZE ranks behind PrefixStore(PREFIX, STORE), so groups with other prefixes share
// no key and no connection; collectives fail after TIMEOUT_S.
c10::intrusive_ptr<c10d::Backend> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                  const std::string& prefix, int rank, int size, double timeout_s);
// As above on CUDA device DEVICE_INDEX (this rank's GPU). Throws where LibTorch has no NCCL.
c10::intrusive_ptr<c10d::Backend> make_nccl_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                  const std::string& prefix, int rank, int size, double timeout_s,
                                                  int device_index);

// Whether WORK is an NCCL group's. Its wait with a timeout would hold the host until the GPU has
// run the collective (ProcessGroupNCCL's WorkNCCL::wait busy-waits whenever given one); without
// one it only makes the current stream wait, and the group's watchdog enforces TIMEOUT_S.
bool is_nccl_work(const c10d::Work& work);

}  // namespace lofi::dist
