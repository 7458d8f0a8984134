// Precompiled header: LibTorch and c10d's store, whose headers dominate compile time. The process
// groups' headers stay out (dist/gloo_group.cpp, dist/cuda.cpp): they need Gloo's and NCCL's.
#pragma once
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
