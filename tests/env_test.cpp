// Where a worker learns its place: torchrun's variables, else Slurm's, else Open MPI's, each
// driven here with the variables those launchers set.
#include "lofi/dist/env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "test_util.h"

namespace lofi::dist {
namespace {

// Sets VARS for the test's life (each test runs in a process of its own) after clearing every
// variable the detection reads.
void set_only(const std::vector<std::pair<const char*, const char*>>& vars) {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                           "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE",
                           "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                           "OMPI_COMM_WORLD_LOCAL_SIZE", "TORCHELASTIC_USE_AGENT_STORE", "SLURM_JOB_NODELIST", "SLURM_JOB_ID",
                           "SLURM_TASKS_PER_NODE"})
    ::unsetenv(name);
  for (const auto& [name, value] : vars) ::setenv(name, value, 1);
}

// Clears the variables when a test ends, so tests run after it in the same process (workers it
// starts, say) see no rank that was set here.
struct ClearedAfter {
  ~ClearedAfter() { set_only({}); }
};

TEST(WorkerEnv, TorchrunsVariablesAndItsAgentStore) {
  const ClearedAfter cleared;
  set_only({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"}, {"MASTER_ADDR", "10.1.2.3"},
            {"MASTER_PORT", "29400"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  WorkerEnv env = worker_env_from_environment();
  EXPECT_EQ(env.source, "torchrun");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.master_addr, "10.1.2.3");
  EXPECT_EQ(env.master_port, 29400);
  EXPECT_TRUE(env.agent_store);
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "False", 1);
  EXPECT_FALSE(worker_env_from_environment().agent_store);
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "maybe", 1);
  EXPECT_NE(test::error_of([] { worker_env_from_environment(); }).find("TORCHELASTIC_USE_AGENT_STORE"), std::string::npos);
}

// Several workers without RANK would all be rank 0: refused by name, set but empty too.
TEST(WorkerEnv, ARankIsNeededWhenTheWorldHasSeveral) {
  const ClearedAfter cleared;
  set_only({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}});
  EXPECT_NE(test::error_of([] { worker_env_from_environment(); }).find("RANK is not set but WORLD_SIZE=2"), std::string::npos);
  ::setenv("RANK", "", 1);
  EXPECT_NE(test::error_of([] { worker_env_from_environment(); }).find("RANK is empty but WORLD_SIZE=2"), std::string::npos);
  set_only({{"WORLD_SIZE", "1"}});  // one worker: rank 0 goes without saying
  EXPECT_EQ(worker_env_from_environment().rank, 0);
}

TEST(WorkerEnv, SlurmsVariables) {
  const ClearedAfter cleared;
  set_only({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "1"}, {"SLURM_NTASKS_PER_NODE", "2"}});
  WorkerEnv env = worker_env_from_environment();
  EXPECT_EQ(env.source, "slurm");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_FALSE(env.agent_store);
  EXPECT_EQ(env.master_addr, "127.0.0.1");  // no node list: a lone host
}

// sbatch + srun as Slurm sets them: the store at the job's first host, on a port of the job's own.
TEST(WorkerEnv, SlurmsNodeListGivesTheStoresAddress) {
  const ClearedAfter cleared;
  set_only({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_TASKS_PER_NODE", "4(x2)"},
            {"SLURM_JOB_NODELIST", "gpu[007-008]"}, {"SLURM_JOB_ID", "123456"}});
  WorkerEnv env = worker_env_from_environment();
  EXPECT_EQ(env.master_addr, "gpu007");
  EXPECT_EQ(env.master_port, 20000 + 123456 % 20000);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  // MASTER_ADDR / MASTER_PORT, when given, win.
  ::setenv("MASTER_ADDR", "10.0.0.9", 1);
  ::setenv("MASTER_PORT", "29600", 1);
  env = worker_env_from_environment();
  EXPECT_EQ(env.master_addr, "10.0.0.9");
  EXPECT_EQ(env.master_port, 29600);
  EXPECT_EQ(first_slurm_host("node01"), "node01");
  EXPECT_EQ(first_slurm_host("a1,a2"), "a1");
  EXPECT_EQ(first_slurm_host("rack[3,5-6]-n[1-2],b7"), "rack3-n1");
  EXPECT_EQ(first_slurm_host("cn[0010-0012,0020],gpu1"), "cn0010");
  EXPECT_NE(test::error_of([] { first_slurm_host("cn[01-02"); }).find("SLURM_JOB_NODELIST"), std::string::npos);
}

TEST(WorkerEnv, OpenMpisVariables) {
  const ClearedAfter cleared;
  set_only({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "3"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
            {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}});
  WorkerEnv env = worker_env_from_environment();
  EXPECT_EQ(env.source, "openmpi");
  EXPECT_EQ(env.rank, 2);
  EXPECT_EQ(env.world_size, 3);
  EXPECT_EQ(env.local_world_size, 1);
}

TEST(WorkerEnv, NoneIsALoneWorkerAndBadValuesAreNamed) {
  const ClearedAfter cleared;
  set_only({});
  WorkerEnv env = worker_env_from_environment();
  EXPECT_EQ(env.source, "none");
  EXPECT_EQ(env.world_size, 1);
  set_only({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
  EXPECT_NE(test::error_of([] { worker_env_from_environment(); }).find("not below the world size"), std::string::npos);
  set_only({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}});
  EXPECT_NE(test::error_of([] { worker_env_from_environment(); }).find("MASTER_PORT"), std::string::npos);
  set_only({{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}});
  EXPECT_NE(test::error_of([] { worker_env_from_environment(); }).find("SLURM_PROCID"), std::string::npos);
}

}  // namespace
}  // namespace lofi::dist
