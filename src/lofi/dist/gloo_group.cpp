// The Gloo process group. PyTorch's wheel links Gloo into libtorch_cpu but ships no Gloo headers,
// and ProcessGroupGloo.hpp includes five of them: this file alone compiles against Debian's
// libgloo-dev for those. It only passes Gloo objects through (devices made by c10d's own factory
// functions; the group's layout holds Gloo types only behind pointers), so the header version
// never reaches a Gloo class's layout.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <chrono>
#include <cstdlib>

#include "lofi/dist/process_groups.h"

namespace lofi::dist {

c10::intrusive_ptr<c10d::Backend> make_gloo_group(const c10::intrusive_ptr<c10d::Store>& store,
                                                  const std::string& prefix, int rank, int size, double timeout_s) {
  auto options = c10d::ProcessGroupGloo::Options::create();
  options->timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  // As torch.distributed: GLOO_SOCKET_IFNAME picks the interface, else the hostname's address.
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  options->devices.push_back(ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                               : c10d::ProcessGroupGloo::createDefaultDevice());
  auto scoped = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
  return c10::make_intrusive<c10d::ProcessGroupGloo>(scoped, rank, size, options);
}

}  // namespace lofi::dist
