#include "lofi/eval/task_accuracy.h"

#include <algorithm>
#include <cmath>

#include "lofi/dist/device.h"
#include "lofi/error.h"
#include "lofi/eval/progress.h"
#include "lofi/io/jsonl.h"

namespace lofi::eval {
namespace {

using nlohmann::json;

// Code points of UTF-8 TEXT: the length the harness's acc_norm divides by (len of a Python str).
double characters(const std::string& text) {
  return static_cast<double>(std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string strip(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<int64_t> encode(const data::Tokenizer& tokenizer, const std::string& text) {
  std::vector<int64_t> out;
  for (uint32_t id : tokenizer.encode(text, /*add_special_tokens=*/false)) out.push_back(id);
  return out;
}

}  // namespace

double binary_stderr(double p, int64_t n) {
  return n > 1 ? std::sqrt(p * (1 - p) / static_cast<double>(n - 1)) : 0.0;
}

TaskData read_task(const std::string& name, const std::string& path) {
  TaskData task{name, path, true, {}};
  io::for_each_jsonl_line(path, "one task item", [&](const json& j, const std::string& at) {
    if (!j.is_object() || !j.contains("context") || !j["context"].is_string() || !j.contains("answer"))
      fail(at, ": expected {\"context\": \"...\", \"choices\": [...], \"answer\": K} (multiple choice) or ",
           "{\"context\": \"...\", \"answer\": \"...\"} (short answer)");
    TaskItem item;
    item.where = at;
    item.context = j["context"].get<std::string>();
    const bool choice = j.contains("choices");
    if (task.items.empty()) task.multiple_choice = choice;
    if (choice != task.multiple_choice)
      fail(at, ": a ", choice ? "multiple-choice" : "short-answer", " line in a ", task.multiple_choice ? "multiple-choice" : "short-answer",
           " task; give each kind its own file");
    if (choice) {
      if (!j["choices"].is_array() || j["choices"].size() < 2) fail(at, ": \"choices\" must be a list of at least two strings");
      for (const auto& c : j["choices"]) {
        if (!c.is_string() || c.get<std::string>().empty()) fail(at, ": every choice must be a non-empty string");
        item.choices.push_back(c.get<std::string>());
      }
      if (!j["answer"].is_number_integer()) fail(at, ": \"answer\" must be the right choice's index (0 to ", item.choices.size() - 1, ")");
      item.answer = j["answer"].get<int64_t>();
      if (item.answer < 0 || item.answer >= static_cast<int64_t>(item.choices.size()))
        fail(at, ": answer ", item.answer, " is not among its ", item.choices.size(), " choices (0 to ", item.choices.size() - 1, ")");
    } else {
      if (!j["answer"].is_string()) fail(at, ": a short answer's \"answer\" must be a string (or give \"choices\" for multiple choice)");
      item.target = j["answer"].get<std::string>();
    }
    task.items.push_back(std::move(item));
  });
  if (task.items.empty()) fail("--task ", name, ": ", path, " holds no items");
  return task;
}

TaskScorer::TaskScorer(TaskData task, const data::Tokenizer& tokenizer, std::vector<int64_t> stop_ids, int64_t max_seq_len,
                       TaskOptions options)
    : task_(std::move(task)), tokenizer_(tokenizer), stop_ids_(std::move(stop_ids)), max_seq_len_(max_seq_len), options_(options) {
  // An empty context is one token, as the harness's prefix_token_id: BOS where the tokenizer has one.
  const int64_t eot = tokenizer.beginning_of_text().value_or(tokenizer.end_of_text());
  for (const TaskItem& item : task_.items) {
    std::vector<Request> requests;
    if (!task_.multiple_choice) {
      std::vector<int64_t> context = encode(tokenizer, item.context);
      if (context.empty()) context = {eot};
      requests.push_back({context, {}});
    }
    for (const std::string& choice : item.choices) {
      // lm-evaluation-harness's _encode_pair: trailing whitespace of the context joins the choice.
      std::string context = item.context, continuation = choice;
      const size_t kept = context.find_last_not_of(" \t\r\n") == std::string::npos ? 0 : context.find_last_not_of(" \t\r\n") + 1;
      continuation = context.substr(kept) + continuation;
      context.resize(kept);
      Request r;
      if (context.empty()) {
        r.context = {eot};
        r.continuation = encode(tokenizer, continuation);
      } else {
        const std::vector<int64_t> whole = encode(tokenizer, context + continuation);
        r.context = encode(tokenizer, context);
        r.continuation.assign(whole.begin() + static_cast<int64_t>(std::min(r.context.size(), whole.size())), whole.end());
      }
      if (r.continuation.empty()) fail(item.where, ": choice \"", choice, "\" adds no token to its context");
      if (static_cast<int64_t>(r.continuation.size()) > max_seq_len)
        fail(item.where, ": choice \"", choice, "\" is ", r.continuation.size(), " tokens, more than the model's ", max_seq_len,
             " positions hold");
      requests.push_back(std::move(r));
    }
    // A tokenizer of another model gives ids past this one's vocabulary: named here, not by the
    // embedding's "index out of range" (a device-side assert on a GPU).
    for (const Request& r : requests)
      for (const auto* ids : {&r.context, &r.continuation})
        for (int64_t id : *ids)
          if (options_.vocab_size > 0 && id >= options_.vocab_size)
            fail(item.where, ": token id ", id, " is outside the model's vocabulary of ", options_.vocab_size,
                 ": the tokenizer is not this model's; give the model's own with --tokenizer");
    requests_.push_back(std::move(requests));
  }
}

TaskScore TaskScorer::score(const LogProbs& log_probs, const torch::Device& device) const {
  torch::NoGradGuard no_grad;
  TaskScore s;
  s.name = task_.name, s.path = task_.path, s.multiple_choice = task_.multiple_choice;
  s.samples = static_cast<int64_t>(task_.items.size());
  Progress progress(cat("task ", task_.name), s.samples, "items");
  if (task_.multiple_choice) {
    // Every (item, choice) as one sequence: (context + continuation)[:-1], its last max_seq_len
    // tokens, right-padded in batches (causal attention: padding after a sequence changes nothing).
    std::vector<std::pair<size_t, size_t>> order;
    for (size_t i = 0; i < requests_.size(); ++i)
      for (size_t c = 0; c < requests_[i].size(); ++c) order.emplace_back(i, c);
    s.log_likelihoods.resize(requests_.size());
    for (size_t i = 0; i < requests_.size(); ++i) s.log_likelihoods[i].resize(requests_[i].size());
    for (size_t first = 0; first < order.size(); first += static_cast<size_t>(options_.batch)) {
      progress.update(static_cast<int64_t>(order[first].first));
      const size_t n = std::min(order.size() - first, static_cast<size_t>(options_.batch));
      std::vector<std::vector<int64_t>> inputs;
      size_t longest = 0;
      for (size_t k = 0; k < n; ++k) {
        const Request& r = requests_[order[first + k].first][order[first + k].second];
        std::vector<int64_t> whole = r.context;
        whole.insert(whole.end(), r.continuation.begin(), r.continuation.end());
        whole.pop_back();
        if (static_cast<int64_t>(whole.size()) > max_seq_len_) whole.erase(whole.begin(), whole.end() - max_seq_len_);
        longest = std::max(longest, whole.size());
        inputs.push_back(std::move(whole));
      }
      torch::Tensor x = torch::zeros({static_cast<int64_t>(n), static_cast<int64_t>(longest)}, torch::kLong);  // (B, T)
      for (size_t k = 0; k < n; ++k)
        std::copy(inputs[k].begin(), inputs[k].end(), x[static_cast<int64_t>(k)].data_ptr<int64_t>());
      // Each sequence's continuation tokens, gathered on the device: only (B, T) comes back.
      torch::Tensor targets = torch::zeros({static_cast<int64_t>(n), static_cast<int64_t>(longest)}, torch::kLong);  // (B, T)
      torch::Tensor counted = torch::zeros({static_cast<int64_t>(n), static_cast<int64_t>(longest)}, torch::kBool);  // (B, T)
      for (size_t k = 0; k < n; ++k) {
        const std::vector<int64_t>& cont = requests_[order[first + k].first][order[first + k].second].continuation;
        const int64_t length = static_cast<int64_t>(inputs[k].size()), m = static_cast<int64_t>(cont.size());
        targets[static_cast<int64_t>(k)].narrow(0, length - m, m).copy_(torch::tensor(cont, torch::kLong));
        counted[static_cast<int64_t>(k)].narrow(0, length - m, m).fill_(true);
      }
      const torch::Tensor picked = log_probs.of_targets(dist::to_device(x, device), dist::to_device(targets, device));  // (B, T)
      const torch::Tensor sums = picked.where(dist::to_device(counted, device), 0.0).sum(1).to(torch::kCPU, torch::kDouble);  // (B)
      for (size_t k = 0; k < n; ++k) s.log_likelihoods[order[first + k].first][order[first + k].second] = sums[static_cast<int64_t>(k)].item<double>();
    }
    double right = 0, right_norm = 0, right_bytes = 0;
    for (size_t i = 0; i < task_.items.size(); ++i) {
      const auto& ll = s.log_likelihoods[i];
      const auto& choices = task_.items[i].choices;
      size_t best = 0, best_norm = 0, best_bytes = 0;
      auto per = [&](size_t c, double length) { return ll[c] / length; };
      for (size_t c = 1; c < ll.size(); ++c) {
        if (ll[c] > ll[best]) best = c;
        if (per(c, characters(choices[c])) > per(best_norm, characters(choices[best_norm]))) best_norm = c;
        if (per(c, static_cast<double>(choices[c].size())) > per(best_bytes, static_cast<double>(choices[best_bytes].size()))) best_bytes = c;
      }
      right += static_cast<int64_t>(best) == task_.items[i].answer;
      right_norm += static_cast<int64_t>(best_norm) == task_.items[i].answer;
      right_bytes += static_cast<int64_t>(best_bytes) == task_.items[i].answer;
    }
    s.acc = right / static_cast<double>(s.samples), s.acc_stderr = binary_stderr(s.acc, s.samples);
    s.acc_norm = right_norm / static_cast<double>(s.samples), s.acc_norm_stderr = binary_stderr(s.acc_norm, s.samples);
    s.acc_bytes = right_bytes / static_cast<double>(s.samples), s.acc_bytes_stderr = binary_stderr(s.acc_bytes, s.samples);
  } else {
    double right = 0;
    for (size_t i = 0; i < requests_.size(); ++i) {
      progress.update(static_cast<int64_t>(i));
      std::vector<int64_t> tokens = requests_[i][0].context;
      std::vector<uint32_t> generated;
      std::string text;
      for (int64_t n = 0; n < options_.max_new_tokens; ++n) {
        const int64_t window = std::min<int64_t>(static_cast<int64_t>(tokens.size()), max_seq_len_);
        torch::Tensor x = torch::tensor(std::vector<int64_t>(tokens.end() - window, tokens.end()), torch::kLong).unsqueeze(0);  // (1, T)
        const int64_t next = log_probs.of_next(dist::to_device(x, device))[0].argmax().item<int64_t>();
        if (std::find(stop_ids_.begin(), stop_ids_.end(), next) != stop_ids_.end()) break;
        tokens.push_back(next);
        generated.push_back(static_cast<uint32_t>(next));
        text = tokenizer_.decode(generated, /*skip_special_tokens=*/true);
        // A line break after some text ends the answer (line breaks before it do not).
        if (const size_t b = text.find_first_not_of(" \t\r\n"); b != std::string::npos)
          if (const size_t nl = text.find('\n', b); nl != std::string::npos) {
            text.resize(nl);
            break;
          }
      }
      s.generations.push_back(text);
      right += strip(text) == strip(task_.items[i].target);
    }
    s.exact_match = right / static_cast<double>(s.samples), s.exact_match_stderr = binary_stderr(s.exact_match, s.samples);
  }
  return s;
}

json TaskScore::to_json() const {
  json j{{"path", path}, {"samples", samples}};
  if (multiple_choice) {
    j["acc"] = acc, j["acc_stderr"] = acc_stderr, j["acc_norm"] = acc_norm, j["acc_norm_stderr"] = acc_norm_stderr;
    j["acc_bytes"] = acc_bytes, j["acc_bytes_stderr"] = acc_bytes_stderr;
  } else {
    j["exact_match"] = exact_match, j["exact_match_stderr"] = exact_match_stderr;
  }
  return j;
}

}  // namespace lofi::eval
