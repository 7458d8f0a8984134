// Workers the library launches itself (the demo's runs) run the config they are given through the
// library, not through the command line's syntax.
#include "lofi/family/train_worker.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "lofi/dist/launcher.h"
#include "lofi/io/atomic_file.h"
#include "lofi/run/run_dir.h"
#include "test_util.h"

namespace lofi::family {
namespace {

TEST(DistWorkerJob, LaunchedWorkersRunTheirConfigAndOverwriteTheirRun) {
  const std::string dir = test::scratch_dir(), data = test::write_corpus(dir, "general", 20000);
  train::Config c;
  c.data.train = data;
  c.run.dir = dir + "/run";
  c.model.n_layer = 2, c.model.n_head = 2, c.model.d_model = 32, c.model.d_ff = 64, c.model.max_seq_len = 16;
  c.data.seq_len = 16;
  c.train.batch_size = 8, c.train.steps = 4, c.train.warmup_steps = 1, c.train.log_every = 2, c.train.threads = 1;
  c.dist.nodes = 2, c.dist.timeout_s = 60;
  io::write_file_atomic(dir + "/job.toml", train::to_toml(c));
  dist::LaunchOptions launch;
  launch.program = LOFI_BIN;  // a lofi executable, with no arguments: the job is in its environment
  launch.workers = 2;
  launch.env = worker_job(dir + "/job.toml");
  for (int start = 0; start < 2; ++start) {  // the second start overwrites the first's run
    ASSERT_EQ(dist::launch_workers(launch), 0) << "start " << start;
    const run::RunDir run(c.run.dir);
    EXPECT_TRUE(std::filesystem::exists(run.node(0).final_weights()));
    EXPECT_TRUE(std::filesystem::exists(run.node(1).final_weights()));
    EXPECT_TRUE(std::filesystem::exists(run.merged()));  // the lo-fi job's end ran too
  }
  // Not a launched worker here: nothing runs.
  EXPECT_FALSE(run_launched_worker().has_value());
}

}  // namespace
}  // namespace lofi::family
