// Two hosts for real: two network namespaces joined by a veth pair (root / CAP_NET_ADMIN; skipped
// with a message where they cannot be made). One baseline job spans both with torchrun --nnodes 2
// and equals the same job on one host; then, with the link deleted, a lo-fi job runs one node per
// host with no connection between them at all, and its merge equals the one-host lo-fi job's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "test_util.h"

namespace lofi {
namespace {

TEST(DistTwoHosts, TorchrunAcrossTheLinkAndLofiWithoutOne) {
  const std::string tag = std::to_string(::getpid() % 10000000);
  const std::string a = "lofi-a" + tag, b = "lofi-b" + tag, va = "lfa" + tag, vb = "lfb" + tag;
  auto sh = [](const std::string& command) { return test::run_shell(command + " 2>&1"); };
  struct Cleanup {
    std::string a, b;
    ~Cleanup() { test::run_shell("ip netns del " + a + " 2>/dev/null; ip netns del " + b + " 2>/dev/null"); }
  } cleanup{a, b};
  auto made = sh("ip netns add " + a + " && ip netns add " + b + " && ip link add " + va + " netns " + a +
                 " type veth peer name " + vb + " netns " + b);
  if (made.status != 0) GTEST_SKIP() << "cannot make network namespaces here (" << made.output << "): two-host run not exercised";
  ASSERT_EQ(sh("ip -n " + a + " addr add 10.78.0.1/24 dev " + va + " && ip -n " + b + " addr add 10.78.0.2/24 dev " + vb +
               " && ip -n " + a + " link set " + va + " up && ip -n " + b + " link set " + vb + " up && ip -n " + a +
               " link set lo up && ip -n " + b + " link set lo up").status, 0);

  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  const std::string python = LOFI_TEST_PYTHON, torchrun = python.substr(0, python.rfind('/') + 1) + "torchrun";
  auto flags = [&](const std::string& run) { return test::tiny_train_flags(data, dir + "/" + run); };
  ASSERT_EQ(test::run_lofi("launch --workers 2 -- train " + flags("one-host")).status, 0);
  ASSERT_EQ(test::run_lofi("launch --workers 2 -- train " + flags("one-host-lofi") + " --set dist.nodes=2").status, 0);

  // One job across the two hosts: torchrun's agent on host A hosts the store; Gloo uses the veth.
  auto host = [&](const std::string& ns, const std::string& dev, const std::string& command, const std::string& log) {
    return "ip netns exec " + ns + " env GLOO_SOCKET_IFNAME=" + dev + " LOFI_THREADS=1 " + command + " > " + dir + "/" + log + " 2>&1";
  };
  const std::string across = " --nnodes 2 --nproc_per_node 1 --master_addr 10.78.0.1 --master_port 29517 --no-python " +
                             std::string(LOFI_BIN) + " train " + flags("two-hosts");
  FILE* first = ::popen(host(a, va, torchrun + " --node_rank 0" + across, "a.log").c_str(), "r");
  auto second = sh(host(b, vb, torchrun + " --node_rank 1" + across, "b.log"));
  const int first_status = ::pclose(first);
  ASSERT_EQ(second.status, 0) << sh("cat " + dir + "/b.log").output;
  ASSERT_EQ(first_status, 0) << sh("cat " + dir + "/a.log").output;
  EXPECT_EQ(test::max_abs_diff(dir + "/one-host/node-00/final.safetensors", dir + "/two-hosts/node-00/final.safetensors"), 0.0);

  // No link at all: each host trains its lo-fi node as a job of its own; the merge comes after.
  ASSERT_EQ(sh("ip -n " + a + " link del " + va).status, 0);
  for (const std::string& ns : {a, b}) {  // each host has its loopback only: nothing can cross
    const std::string links = sh("ip -n " + ns + " -o link show").output;
    EXPECT_EQ(links.find(": lf"), std::string::npos) << links;
  }
  auto node = [&](int k) { return std::string(LOFI_BIN) + " train " + flags("apart") + " --set dist.nodes=2 --set dist.node_id=" + std::to_string(k); };
  FILE* node0 = ::popen(host(a, "lo", node(0), "apart0.log").c_str(), "r");
  auto node1 = sh(host(b, "lo", node(1), "apart1.log"));
  const int node0_status = ::pclose(node0);
  ASSERT_EQ(node1.status, 0) << sh("cat " + dir + "/apart1.log").output;
  ASSERT_EQ(node0_status, 0) << sh("cat " + dir + "/apart0.log").output;
  auto merged = test::run_lofi("average " + dir + "/apart --out " + dir + "/apart/merged.safetensors");
  ASSERT_EQ(merged.status, 0) << merged.output;
  EXPECT_EQ(test::max_abs_diff(dir + "/one-host-lofi/merged.safetensors", dir + "/apart/merged.safetensors"), 0.0);
}

}  // namespace
}  // namespace lofi
