// `lofi prepare`: text corpora (plain text or JSONL) to llm.c token shards for training and
// evaluation. Streams: documents are read in batches, tokenized by a pool of threads and written in
// input order, so the output does not depend on the thread count. Tokenizing is tokenizer.h's job.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::data {

struct PrepareOptions {
  std::string tokenizer;            // Hugging Face tokenizer directory, e.g. models/opt-125m
  std::string out;                  // output prefix: OUT.train.bin, OUT.val.bin
  // .txt (one document per file; past 4 MB cut at "\n" between non-space characters, so a file with
  // CRLF line ends is read whole) or JSONL (one {"text": ...} per line; .jsonl or detected)
  std::vector<std::string> inputs;
  double val_fraction = 0;          // share of documents for validation, e.g. 0.01
  uint64_t seed = 0;                // picks which documents are validation
  int64_t shard_tokens = 0;         // > 0: OUT.train-00000.bin, ... of at most this many tokens each
  int threads = 0;                  // tokenizing threads; 0: all cores
  bool progress = true;             // a progress line on stderr (redrawn on a terminal)
};

struct PrepareSplit {
  int64_t documents = 0, tokens = 0;
  std::vector<std::string> files;  // written shards, in order
};

struct PrepareSummary {
  PrepareSplit train, val;
  int token_bytes = 2;  // 2: uint16 shards (llm.c version 1), 4: uint32 (version 2)
  int64_t input_bytes = 0;
  double seconds = 0;
  std::vector<std::string> removed;  // an earlier prepare's files of this prefix that this one did not write
};

// Each document becomes the tokenizer's end-of-text token followed by its text's ids (llm.c's
// layout; for OPT this is Hugging Face's "</s>" prefix). Special tokens written in the text are
// read as text. Throws naming file and line on bad input; on failure no output file is left.
PrepareSummary prepare_tokens(const PrepareOptions& options);

// Whether document INDEX goes to validation: a hash of (SEED, INDEX) below FRACTION.
bool is_validation_document(uint64_t seed, int64_t index, double fraction);

}  // namespace lofi::data
