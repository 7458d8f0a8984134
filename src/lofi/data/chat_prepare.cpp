#include "lofi/data/chat_prepare.h"

#include <algorithm>
#include <filesystem>
#include <future>
#include <thread>

#include "lofi/data/chat_template.h"
#include "lofi/data/prepare.h"
#include "lofi/data/tokenizer.h"
#include "lofi/error.h"
#include "lofi/io/jsonl.h"

namespace lofi::data {
namespace {

using nlohmann::json;

json turn(const char* role, const json& content) { return json{{"role", role}, {"content", content}}; }

// A prompt or completion: a string is one turn of ROLE, a list is messages as they are.
void append_turns(json& messages, const json& value, const char* role, const std::string& where, const char* key) {
  if (value.is_string()) messages.push_back(turn(role, value));
  else if (value.is_array()) for (const auto& m : value) messages.push_back(m);
  else fail(where, ": \"", key, "\" must be a string or a list of messages, found ", value.type_name());
}

}  // namespace

json chat_messages(const json& sample, const std::string& where) {
  if (!sample.is_object()) fail(where, ": expected a JSON object per line, found ", sample.type_name());
  json messages = json::array();
  if (sample.contains("messages")) {
    messages = sample["messages"];
    if (!messages.is_array()) fail(where, ": \"messages\" must be a list of {\"role\", \"content\"}, found ", messages.type_name());
  } else if (sample.contains("prompt") && sample.contains("completion")) {
    append_turns(messages, sample["prompt"], "user", where, "prompt");
    append_turns(messages, sample["completion"], "assistant", where, "completion");
  } else if (sample.contains("instruction") && sample.contains("output")) {
    for (const char* key : {"instruction", "output"})
      if (!sample[key].is_string()) fail(where, ": \"", key, "\" must be a string, found ", sample[key].type_name());
    std::string user = sample["instruction"].get<std::string>();
    if (sample.contains("input")) {
      if (!sample["input"].is_string()) fail(where, ": \"input\" must be a string, found ", sample["input"].type_name());
      if (!sample["input"].get<std::string>().empty()) user += "\n\n" + sample["input"].get<std::string>();
    }
    messages.push_back(turn("user", user));
    messages.push_back(turn("assistant", sample["output"]));
  } else {
    fail(where, ": expected {\"messages\": [...]}, {\"prompt\", \"completion\"} or {\"instruction\", \"input\", \"output\"}; found keys ",
         [&] {
           std::string keys;
           for (const auto& [k, v] : sample.items()) keys += (keys.empty() ? "" : ", ") + k;
           return keys.empty() ? std::string("none") : keys;
         }());
  }
  if (messages.empty()) fail(where, ": the conversation has no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
      fail(where, ": message ", i + 1, " must be an object with a string \"role\" and a \"content\"");
    if (!m["content"].is_string()) fail(where, ": message ", i + 1, "'s \"content\" must be a string, found ", m["content"].type_name());
  }
  return messages;
}

ChatSample tokenize_chat(const Tokenizer& tokenizer, const std::vector<ChatSegment>& segments, const std::string& where) {
  std::string text;
  std::vector<uint8_t> trained_byte;  // per byte of TEXT: inside a trained segment
  for (const auto& s : segments) {
    text += s.text;
    trained_byte.insert(trained_byte.end(), s.text.size(), s.trained);
  }
  ChatSample sample;
  sample.ids = tokenizer.encode(text, /*add_special_tokens=*/false);
  // Where each id ends in TEXT places it in a turn: trained when any of its bytes is.
  std::vector<size_t> ends;
  try {
    ends = tokenizer.token_ends(text, sample.ids);
  } catch (const Error& e) {
    fail(where, ": the rendered text's tokens cannot be matched to turns: ", e.what());
  }
  size_t at = 0;
  for (size_t end : ends) {
    bool trained = false;
    for (size_t b = at; b < end; ++b) trained |= trained_byte[b] != 0;
    sample.mask.push_back(trained);
    at = end;
  }
  return sample;
}


ChatPrepareSummary prepare_chat(const ChatPrepareOptions& o) {
  if (o.inputs.empty()) fail("prepare --chat: no JSONL file given");
  if (o.out.empty()) fail("prepare --chat: no output prefix given (--out)");
  const Tokenizer tokenizer = Tokenizer::load(o.tokenizer);
  std::vector<json> conversations;
  std::vector<std::string> where;
  for (const auto& path : o.inputs)
    io::for_each_jsonl_line(path, "one sample object", [&](const json& sample, const std::string& at) {
      conversations.push_back(chat_messages(sample, at));
      where.push_back(at);
    });
  if (conversations.empty()) fail("prepare --chat: no samples in ", o.inputs.front());
  const std::vector<ChatRender> renders =
      render_chats(o.tokenizer, conversations, o.train_on_prompt, /*add_generation_prompt=*/false, o.chat_template);
  // Tokenized on every core, in contiguous slices.
  std::vector<ChatSample> tokenized(renders.size());
  const size_t cores = o.threads > 0 ? static_cast<size_t>(o.threads) : std::thread::hardware_concurrency();
  const size_t threads = std::max<size_t>(1, std::min<size_t>(cores, renders.size() / 256 + 1));
  std::vector<std::future<void>> work;
  for (size_t t = 0; t < threads; ++t)
    work.push_back(std::async(std::launch::async, [&, t] {
      for (size_t i = renders.size() * t / threads; i < renders.size() * (t + 1) / threads; ++i)
        if (renders[i].error.empty()) tokenized[i] = tokenize_chat(tokenizer, renders[i].segments, where[i]);
    }));
  for (auto& w : work) w.get();  // rethrows a thread's error
  std::vector<ChatSample> split[2];
  ChatPrepareSummary summary;
  for (size_t i = 0; i < renders.size(); ++i) {
    if (!renders[i].error.empty()) fail(where[i], ": the chat template refused this sample: ", renders[i].error);
    ChatSample& s = tokenized[i];
    const bool val = is_validation_document(o.seed, static_cast<int64_t>(i), o.val_fraction);
    auto& part = val ? summary.val : summary.train;
    part.samples += 1;
    part.tokens += static_cast<int64_t>(s.ids.size());
    part.trained += std::count(s.mask.begin(), s.mask.end(), 1);
    part.longest = std::max<int64_t>(part.longest, static_cast<int64_t>(s.ids.size()));
    split[val].push_back(std::move(s));
  }
  if (summary.train.samples == 0)
    fail("prepare --chat: no sample fell in the train split (--val-fraction ", o.val_fraction, " of ", summary.val.samples,
         " samples); lower --val-fraction; nothing written");
  if (summary.train.trained == 0)
    fail("prepare --chat: no token of ", o.inputs.front(), " is a training target (no assistant turn); add assistant turns or use --train-on-prompt");
  // OUT is a prefix (OUT.train.chat), or a directory when it is one or ends in '/' (OUT/train.chat).
  const bool into_dir = !o.out.empty() && (o.out.back() == '/' || std::filesystem::is_directory(o.out));
  const std::string prefix = into_dir ? (std::filesystem::path(o.out) / "").string() : o.out + ".";
  if (const auto parent = std::filesystem::path(prefix).parent_path(); !parent.empty()) std::filesystem::create_directories(parent);
  // Both splits or neither: the val file's place is checked before the train file is written.
  const std::string val_file = prefix + "val" + kChatExtension;
  if (!split[1].empty() && std::filesystem::exists(val_file) && !std::filesystem::is_regular_file(val_file))
    fail(val_file, ": exists and is not a regular file; move it away or give another --out; nothing written");
  summary.train.file = prefix + "train" + kChatExtension;
  write_chat_samples(summary.train.file, split[0]);
  if (!split[1].empty()) {
    summary.val.file = val_file;
    write_chat_samples(summary.val.file, split[1]);
  } else if (std::filesystem::is_regular_file(val_file)) {  // an earlier prepare's val split, of other samples
    std::filesystem::remove(val_file);
    summary.removed.push_back(val_file);
  }
  return summary;
}

}  // namespace lofi::data
