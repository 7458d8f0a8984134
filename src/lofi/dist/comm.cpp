#include "lofi/dist/comm.h"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>
#include <cstdio>
#include <cstdlib>

#include <c10/util/Logging.h>

#include "lofi/dist/check_in.h"
#include "lofi/dist/process_groups.h"
#include "lofi/dist/store.h"
#include "lofi/error.h"
#include "lofi/io/process.h"
#include "lofi/io/temporaries.h"
#include "lofi/settings.h"
#include "lofi/text.h"

namespace lofi::dist {
namespace {

// c10d logs each failed connection and wait of a rendezvous with a stack trace (about 40 lines
// before lofi's own message); within this scope only fatal ones are logged, unless the user asked
// for its logs with TORCH_CPP_LOG_LEVEL. The level is restored after.
class QuietC10dLogs {
 public:
  QuietC10dLogs() : was_(FLAGS_caffe2_log_level) {
    if (!std::getenv("TORCH_CPP_LOG_LEVEL")) FLAGS_caffe2_log_level = 3;  // c10's FATAL
  }
  ~QuietC10dLogs() { FLAGS_caffe2_log_level = was_; }
  QuietC10dLogs(const QuietC10dLogs&) = delete;
  QuietC10dLogs& operator=(const QuietC10dLogs&) = delete;

 private:
  int was_;
};

// A ring all-reduce sends 2 (n - 1) / n of the buffer from every rank (PASSES 2); a reduce-scatter
// or an all-gather half that (PASSES 1).
int64_t ring_bytes(int64_t bytes, int64_t n, int64_t passes = 2) { return passes * (n - 1) * bytes / n; }

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string from_bytes(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// "train.lr = 0.01 here, 0.0003 on rank 0; ..." for the keys whose values differ.
std::string settings_difference(const std::string& mine, const std::string& theirs, int their_rank) {
  const auto a = toml_values(mine, "this worker's settings"), b = toml_values(theirs, cat("rank ", their_rank, "'s settings"));
  std::vector<std::string> parts;
  for (const auto& [key, value] : a)
    if (auto it = b.find(key); it == b.end() || it->second != value)
      parts.push_back(cat(key, " = ", value, " here, ", it == b.end() ? std::string("unset") : it->second, " on rank ", their_rank));
  for (const auto& [key, value] : b)
    if (!a.count(key)) parts.push_back(cat(key, " unset here, ", value, " on rank ", their_rank));
  return parts.empty() ? "their texts differ" : join(parts, "; ");
}

// A backstop for the rendezvous: c10d's own timeouts apply per step (joining the store, waiting
// for check-ins, each group), and a store that accepts connections but never answers (another
// service on MASTER_PORT) would hold a worker forever; a stop signal would wait for them too.
// This ends the process with one line when the rendezvous outlasts 2 x dist.timeout_s + 10 s, or
// at once on SIGINT / SIGTERM / SIGHUP (nothing has been written yet).
class RendezvousWatchdog {
 public:
  RendezvousWatchdog(double timeout_s, int rank, std::string where)
      : thread_([this, timeout_s, rank, where = std::move(where)] {
          const auto deadline = std::chrono::steady_clock::now() + to_ms(2 * timeout_s + 10);
          std::unique_lock<std::mutex> lock(mutex_);
          while (!done_) {
            if (const int signal = io::stop_requested()) {
              std::fprintf(stderr, "lofi: stopped by signal %d during the rendezvous at %s (rank %d); nothing was written\n",
                           signal, where.c_str(), rank);
              std::fflush(stderr);
              std::_Exit(128 + signal);
            }
            if (std::chrono::steady_clock::now() > deadline) {
              std::fprintf(stderr,
                           "lofi: error: the rendezvous at %s did not finish within 2 x dist.timeout_s + 10 s = %.0f s (rank %d): "
                           "whatever listens at MASTER_ADDR:MASTER_PORT does not answer as a rendezvous store; check them\n",
                           where.c_str(), 2 * timeout_s + 10, rank);
              std::fflush(stderr);
              std::_Exit(1);
            }
            wake_.wait_for(lock, std::chrono::milliseconds(100));
          }
        }) {}
  ~RendezvousWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread thread_;  // last: started once the members it uses exist
};

}  // namespace

Topology make_topology(const WorkerEnv& env, int64_t nodes, int64_t node_id) {
  Topology t;
  t.nodes = nodes;
  if (node_id >= 0) {
    t.whole_job = false;
    t.node = node_id;
    t.node_size = env.world_size;
    t.node_rank = env.rank;
    return t;
  }
  if (env.world_size % nodes != 0)
    fail("dist.nodes = ", nodes, " does not divide the ", env.world_size, " workers into equal nodes");
  t.node_size = env.world_size / nodes;
  t.node = env.rank / t.node_size;
  t.node_rank = env.rank % t.node_size;
  return t;
}

Comm::Comm(const WorkerEnv& env, const Topology& topo, const CommOptions& options)
    : env_(env), topo_(topo), timeout_s_(options.timeout_s), device_(options.device) {
  attempt_ = cat(io::host_name(), "-", ::getpid(), "-", std::chrono::system_clock::now().time_since_epoch().count());
  if (env.world_size == 1) return;
  const double timeout_s = options.timeout_s;
  const std::string where = cat(env.master_addr, ":", env.master_port);
  const auto t0 = std::chrono::steady_clock::now();
  RendezvousWatchdog watchdog(timeout_s, env.rank, where);
  QuietC10dLogs quiet;  // its failures become lofi's one line below
  // Rank 0 hosts the store unless the launcher does (lofi launch, torchrun's agent).
  if (env.rank == 0 && !env.agent_store) {
    store_ = host_store(options.bind.empty() ? env.master_addr : options.bind, env.master_port, timeout_s,
                        options.bind.empty() ? "rank 0 (MASTER_ADDR)" : "dist.bind");
  } else {
    try {
      store_ = join_store(env.master_addr, env.master_port, timeout_s);
    } catch (const Error&) {
      throw;  // said already (a MASTER_ADDR that does not resolve)
    } catch (const std::exception&) {
      fail("rendezvous: rank ", env.rank, " found no store at ", where, " after ", format_seconds(since(t0), 1),
           " (dist.timeout_s = ", timeout_s, "): ", env.agent_store ? "the launcher" : "rank 0",
           " that hosts it never came up; start it, or check MASTER_ADDR and MASTER_PORT");
    }
  }
  check_in(options);
  try {
    // Every node's group lives behind its own prefix: no key, and no connection, is shared.
    const std::string node_prefix = cat("node-", topo.node);
    const int node_rank = static_cast<int>(topo.node_rank), node_size = static_cast<int>(topo.node_size);
    if (topo.node_size > 1)
      node_group_ = node_backend(options.node_backend) == "nccl" ? make_nccl_group(store_, node_prefix, node_rank, node_size, timeout_s, device_.index())
                                      : make_gloo_group(store_, node_prefix, node_rank, node_size, timeout_s);
    if (options.world_group && topo.whole_job)
      world_group_ = make_gloo_group(store_, "world", env.rank, env.world_size, timeout_s);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    fail("rendezvous of ", env.world_size, " workers at ", where, " failed within dist.timeout_s = ", timeout_s,
         " s (rank ", env.rank, "): ", what);
  }
}

void Comm::check_in(const CommOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  CheckIn me;
  me.rank = env_.rank;
  me.node = topo_.node;
  me.nodes = topo_.nodes;
  me.node_size = topo_.node_size;
  me.apart_from_step = topo_.whole_job && topo_.nodes > 1 ? options.apart_from_step : -1;
  me.node_dir = options.node_dir;
  me.timeout_s = options.timeout_s;
  me.pid = ::getpid();
  me.host = io::host_name();
  me.settings = options.settings;
  std::vector<std::string> keys;
  for (int r = 0; r < env_.world_size; ++r) keys.push_back(check_in_key(r));
  const std::string where = cat(env_.master_addr, ":", env_.master_port);
  try {
    if (env_.rank == 0) store_->set("lofi/attempt", to_bytes(attempt_));
    write_check_in(*store_, me);
    store_->wait(keys, to_ms(timeout_s_));
    attempt_ = from_bytes(store_->get("lofi/attempt"));
  } catch (const std::exception& e) {
    std::vector<std::string> missing;
    try {
      for (int r = 0; r < env_.world_size; ++r)
        if (!store_->check({check_in_key(r)})) missing.push_back(std::to_string(r));
    } catch (const std::exception&) {
      fail("rendezvous: the store at ", where, " went away while rank ", env_.rank, " waited for the others");
    }
    if (missing.empty()) {
      std::string what = e.what();
      fail("rendezvous at ", where, " failed (rank ", env_.rank, "): ", what.substr(0, what.find('\n')));
    }
    fail("rendezvous: rank", missing.size() > 1 ? "s " : " ", join(missing, ", "), " of ", env_.world_size,
         " never joined the store at ", where, "; rank ", env_.rank, " waited ", format_seconds(since(t0), 1),
         " (dist.timeout_s = ", timeout_s_, "); start every worker, or check WORLD_SIZE");
  }
  // Two workers given one RANK: the later check-in replaced the earlier, which sees it.
  if (const std::optional<CheckIn> mine = read_check_in(*store_, env_.rank); mine && (mine->pid != me.pid || mine->host != me.host))
    fail("rendezvous: two workers have RANK ", env_.rank, " (this one, pid ", me.pid, " on ", me.host, ", and pid ", mine->pid,
         " on ", mine->host, "); give each worker its own RANK below WORLD_SIZE");
  // Every worker runs the same settings: each compares itself with rank 0 (naming the keys), and
  // rank 0 with every worker (naming the ranks), so all of them stop here, before any collective.
  if (options.settings.empty()) return;
  const std::string remedy = "; start every worker of a job with the same config and --set flags";
  // Rank 0 stops on a difference too; where it hosts the store, it first waits for the differing
  // ranks' marks that they have read its settings, so the store is not gone before they say theirs.
  auto read_mark = [&](const std::string& rank) { return cat("lofi/", attempt_, "/settings-read/", rank); };
  if (env_.rank != 0) {
    const std::optional<CheckIn> first = read_check_in(*store_, 0);
    try {
      store_->set(read_mark(std::to_string(env_.rank)), to_bytes("1"));
    } catch (const std::exception&) {
      // the store is gone: rank 0 stopped, and says why
    }
    if (first && !first->settings.empty() && first->settings != options.settings)
      fail("rendezvous: rank ", env_.rank, "'s settings differ from rank 0's: ",
           settings_difference(options.settings, first->settings, 0), remedy);
    return;
  }
  std::vector<std::string> differing;
  std::string first_difference;  // the first such rank's keys
  for (int r = 1; r < env_.world_size; ++r)
    if (const std::optional<CheckIn> other = read_check_in(*store_, r); other && other->settings != options.settings) {
      if (differing.empty()) first_difference = settings_difference(options.settings, other->settings, r);
      differing.push_back(std::to_string(r));
    }
  if (!differing.empty()) {
    std::vector<std::string> marks;
    for (const std::string& r : differing) marks.push_back(read_mark(r));
    try {
      store_->wait(marks, to_ms(std::min(timeout_s_, 10.0)));
    } catch (const std::exception&) {
      // a rank that stopped before its mark: nothing more to wait for
    }
    fail("rendezvous: rank", differing.size() > 1 ? "s " : " ", join(differing, ", "),
         " run other settings than rank 0 (each names the keys): ", first_difference, remedy);
  }
}

std::string Comm::node_backend(const std::string& mine) {
  // Each host judged its own workers; a node spanning hosts uses Gloo if any of them must.
  const std::string prefix = cat("lofi/", attempt_, "/node-", topo_.node, "/backend/");
  store_->set(prefix + std::to_string(topo_.node_rank), to_bytes(mine));
  for (int64_t r = 0; r < topo_.node_size; ++r)
    if (from_bytes(store_->get(prefix + std::to_string(r))) == "gloo") return "gloo";
  return mine;
}

Comm::~Comm() = default;

void Comm::mean(c10d::Backend& group, int64_t group_size, const std::vector<torch::Tensor>& tensors,
                int64_t& byte_counter) {
  if (group_size == 1 || tensors.empty()) return;
  // The world group is Gloo: it reduces host copies; a node group reduces on the node's device.
  const torch::Device where = &group == node_group_.get() ? device_ : torch::Device(torch::kCPU);
  std::vector<torch::Tensor> flat_parts;
  for (const auto& t : tensors) flat_parts.push_back(t.detach().to(where, torch::kFloat32).reshape({-1}));
  std::vector<torch::Tensor> buffer{torch::cat(flat_parts)};
  wait(group.allreduce(buffer), cat("all-reduce among ", group_size, " workers"));
  buffer[0].div_(static_cast<double>(group_size));
  byte_counter += ring_bytes(buffer[0].numel() * 4, group_size);
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    int64_t n = t.numel();
    t.copy_(buffer[0].narrow(0, offset, n).view_as(t));
    offset += n;
  }
}

void Comm::wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  try {
    // NCCL's work: the current stream waits for it, the host does not (a step never waits for the
    // GPU); its group's watchdog ends the worker after dist.timeout_s, naming the collective.
    if (is_nccl_work(*work)) work->wait();
    else work->wait(to_ms(timeout_s_));
  } catch (const std::exception& e) {
    fail(what, " failed (rank ", env_.rank, "): ", explain_collective_error(e.what(), timeout_s_));
  }
}

std::string explain_collective_error(const std::string& error, double timeout_s) {
  std::string message = error.substr(0, error.find('\n'));
  // Gloo's and c10d's source locations ("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] ")
  // say nothing to a user.
  static const std::regex location(R"(^\s*\[[^\]\s]+\.(cc|cpp|hpp|h):[0-9]+\]\s*)");
  message = std::regex_replace(message, location, "");
  std::string lower = message;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto has = [&](const char* text) { return lower.find(text) != std::string::npos; };
  if (has("timed out") || has("timeout"))
    return cat(message, "; another worker did not take part within dist.timeout_s = ", timeout_s,
               " s (it stopped, hung, or runs slower than that: raise dist.timeout_s if it is slow)");
  if (has("closed by peer") || has("reset by peer") || has("broken pipe") || has("connection refused"))
    return cat(message, "; another worker of it ended (its own output, or the launcher's, says why)");
  return message;
}

void Comm::count_within_node(int64_t bytes, int64_t ring_passes) {
  if (node_group_) bytes_within_node_ += ring_bytes(bytes, topo_.node_size, ring_passes);
}

void Comm::count_between_nodes(int64_t bytes, int64_t ring_passes) {
  if (world_group_) bytes_between_nodes_ += ring_bytes(bytes, env_.world_size, ring_passes);
}

void Comm::node_mean(const std::vector<torch::Tensor>& tensors) {
  if (node_group_) mean(*node_group_, topo_.node_size, tensors, bytes_within_node_);
}

void Comm::world_mean(const std::vector<torch::Tensor>& tensors) {
  if (!world_group_) {
    if (env_.world_size == 1) return;
    fail("internal: world-wide averaging needs the world group");
  }
  mean(*world_group_, env_.world_size, tensors, bytes_between_nodes_);
}

int64_t Comm::agree_min(const std::string& key, int64_t value) {
  if (!store_) return value;
  std::string mine = std::to_string(value);
  store_->set(cat(key, "/rank-", env_.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  int64_t result = value;
  try {
    for (int r = 0; r < env_.world_size; ++r) {
      std::vector<uint8_t> theirs = store_->get(cat(key, "/rank-", r));  // waits up to the store timeout
      result = std::min<int64_t>(result, std::stoll(std::string(theirs.begin(), theirs.end())));
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    fail("workers did not agree on ", key, " within dist.timeout_s: ", what.substr(0, what.find('\n')));
  }
  return result;
}

}  // namespace lofi::dist
