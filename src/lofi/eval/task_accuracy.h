// Accuracy on tasks, scored as lm-evaluation-harness scores them. A task file is JSONL, one kind
// per file:
//   multiple choice  {"context": "...", "choices": ["...", ...], "answer": K}   (K indexes choices)
//   short answer     {"context": "...", "answer": "..."}
// Multiple choice: each choice's log-likelihood given the context, its tokens being those of
// tokenize(context + choice) after tokenize(context)'s (whitespace that ends the context moves to
// the choice first; no special tokens added; an empty context is the BOS token, else the
// end-of-text token, as the harness's prefix_token_id); acc: the most likely choice is the
// answer; acc_norm: the most likely per character of the choice (the harness's len of a str);
// acc_bytes: per UTF-8 byte (the harness's acc_bytes).
// Short answer: greedy generation after the context until an end-of-text or end-of-turn token, a
// line break after some text, or max_new_tokens; exact_match: the generation equals the answer, both stripped of
// surrounding whitespace. Standard errors as the harness's: sqrt(p (1 - p) / (n - 1)).
// Everything reads a LogProbs (perplexity.h), so a model and an ensemble score alike.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lofi/data/tokenizer.h"
#include "lofi/eval/perplexity.h"

namespace lofi::eval {

struct TaskItem {
  std::string context;
  std::vector<std::string> choices;  // multiple choice
  int64_t answer = -1;               // multiple choice: the right choice's index
  std::string target;                // short answer
  std::string where;                 // FILE:LINE, for messages
};

struct TaskData {
  std::string name, path;
  bool multiple_choice = true;
  std::vector<TaskItem> items;
};

// Reads and checks a task file; throws naming PATH:LINE and what was expected.
TaskData read_task(const std::string& name, const std::string& path);

struct TaskScore {
  std::string name, path;
  bool multiple_choice = true;
  int64_t samples = 0;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0;  // multiple choice
  double acc_bytes = 0, acc_bytes_stderr = 0;
  double exact_match = 0, exact_match_stderr = 0;                     // short answer
  std::vector<std::vector<double>> log_likelihoods;                   // per item, per choice
  std::vector<std::string> generations;                               // per item (short answer)
  // {"path", "samples", "acc", "acc_norm", "acc_bytes" (each with "..._stderr")} or {..., "exact_match", ...}
  nlohmann::json to_json() const;
  // The headline number: acc, or exact_match.
  double headline() const { return multiple_choice ? acc : exact_match; }
};

struct TaskOptions {
  int64_t batch = 16;           // sequences per forward pass
  int64_t max_new_tokens = 32;  // short answers
  int64_t vocab_size = 0;       // > 0: every token id must be below it (the model's vocabulary)
};

// A task tokenized once, scored for any number of models.
class TaskScorer {
 public:
  // STOP_IDS end a short answer's generation (end-of-text and end-of-turn tokens).
  TaskScorer(TaskData task, const data::Tokenizer& tokenizer, std::vector<int64_t> stop_ids, int64_t max_seq_len,
             TaskOptions options);
  TaskScore score(const LogProbs& log_probs, const torch::Device& device) const;
  const TaskData& task() const { return task_; }

 private:
  struct Request {
    std::vector<int64_t> context, continuation;
  };
  TaskData task_;
  const data::Tokenizer& tokenizer_;
  std::vector<int64_t> stop_ids_;
  int64_t max_seq_len_;
  TaskOptions options_;
  std::vector<std::vector<Request>> requests_;  // per item: per choice (multiple choice), or the context alone
};

// The standard error of a mean of 0/1 outcomes with mean P over N samples, as the harness's.
double binary_stderr(double p, int64_t n);

}  // namespace lofi::eval
