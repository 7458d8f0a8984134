// The overlapped gradient all-reduce inside one node, with two workers as two threads of this
// process on a real Gloo group over loopback: buckets start while backward is still running, and
// every worker ends with the mean of the workers' gradients.
#include "lofi/dist/grad_sync.h"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "lofi/dist/store.h"

namespace lofi::dist {
namespace {

TEST(DistGradSync, BucketsLaunchDuringBackwardAndHoldTheMean) {
  auto store = host_store("127.0.0.1", 0, 30, "test");
  const int port = store_port(store);
  std::vector<torch::Tensor> grads[2];
  size_t launched_before_last_gradient[2] = {0, 0}, buckets[2] = {0, 0};
  std::mutex rng_mutex;
  auto worker = [&](int rank) {
    WorkerEnv env;
    env.rank = rank, env.world_size = 2, env.master_port = port, env.agent_store = true;
    CommOptions options;
    options.timeout_s = 30;
    Comm comm(env, make_topology(env, 1, -1), options);
    // The global generator is shared by the two threads: seeding and drawing are done one
    // thread at a time, so each draws what it would alone.
    std::unique_lock<std::mutex> draw(rng_mutex);
    torch::manual_seed(0);  // the same replica on both workers
    torch::nn::Sequential net(torch::nn::Linear(8, 8), torch::nn::Linear(8, 8), torch::nn::Linear(8, 1));
    draw.unlock();
    std::vector<torch::Tensor> params;
    std::vector<std::string> names;
    for (const auto& p : net->named_parameters()) params.push_back(p.value()), names.push_back(p.key());
    // The first layer's weight gets its gradient last; this hook runs before the sync's own hook
    // on it, so it sees how many buckets started while backward was still going.
    GradientSync* sync_ptr = nullptr;
    params[0].register_hook([&](const torch::Tensor& g) {
      launched_before_last_gradient[rank] = sync_ptr->buckets_launched();
      return g;
    });
    GradientSync::Options sync_options;
    sync_options.bucket_mb = 1e-6;  // a bucket per tensor
    GradientSync sync(comm, params, names, sync_options);
    sync_ptr = &sync;
    draw.lock();
    torch::manual_seed(100 + rank);  // each worker its own batch
    torch::Tensor batch = torch::randn({4, 8});
    draw.unlock();
    torch::Tensor loss = net->forward(batch).pow(2).mean();
    sync.before_backward(true);
    loss.backward();
    sync.after_backward(true);
    buckets[rank] = params.size();
    for (const auto& p : params) grads[rank].push_back(p.grad().clone());
  };
  // The reference: each worker's own gradients, averaged by hand.
  std::vector<torch::Tensor> expected;
  {
    torch::manual_seed(0);
    torch::nn::Sequential net(torch::nn::Linear(8, 8), torch::nn::Linear(8, 8), torch::nn::Linear(8, 1));
    for (int rank = 0; rank < 2; ++rank) {
      net->zero_grad();
      torch::manual_seed(100 + rank);
      net->forward(torch::randn({4, 8})).pow(2).mean().backward();
      size_t k = 0;
      for (const auto& p : net->parameters()) {
        if (rank == 0) expected.push_back(p.grad().clone() / 2);
        else expected[k++] += p.grad() / 2;
      }
    }
  }
  std::thread a(worker, 0), b(worker, 1);
  a.join(), b.join();
  for (int rank = 0; rank < 2; ++rank) {
    // All buckets but the first layer weight's own had started before its gradient existed.
    EXPECT_EQ(launched_before_last_gradient[rank], buckets[rank] - 1) << "rank " << rank;
    ASSERT_EQ(grads[rank].size(), expected.size());
    for (size_t k = 0; k < expected.size(); ++k)
      EXPECT_LE((grads[rank][k] - expected[k]).abs().max().item<double>(), 1e-6) << "rank " << rank << " tensor " << k;
  }
}

// A collective's error as users read it: Gloo's source location dropped, and what it means said.
TEST(CollectiveErrors, SayWhatHappenedWithoutTheLibrarysSourceLocation) {
  const std::string closed =
      explain_collective_error("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:41237\n"
                               "Exception raised from ...", 60);
  EXPECT_EQ(closed, "Connection closed by peer [127.0.0.1]:41237; another worker of it ended (its own output, or the launcher's, "
                    "says why)");
  const std::string slow = explain_collective_error("[/pytorch/torch/csrc/distributed/c10d/ProcessGroupGloo.cpp:3140] Timed out "
                                                    "waiting 60000ms for recv operation to complete", 60);
  EXPECT_EQ(slow.rfind("Timed out waiting 60000ms", 0), 0u) << slow;
  EXPECT_NE(slow.find("within dist.timeout_s = 60 s"), std::string::npos) << slow;
  EXPECT_EQ(explain_collective_error("something else [a.cc:1] kept", 60), "something else [a.cc:1] kept");
}

}  // namespace
}  // namespace lofi::dist
