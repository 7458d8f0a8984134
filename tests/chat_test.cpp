// Chat and instruction data: lofi prepare --chat renders with the model's chat template and flags
// the assistant's tokens exactly as transformers' apply_chat_template (ids) and its assistant mask
// (return_assistant_tokens_mask) do, on the Llama 3, Qwen2 (ChatML) and Mistral templates
// (fixtures/chat/make_chat_fixtures.py); the sample file refuses damage; bad input is named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/data/chat_prepare.h"
#include "lofi/data/chat_samples.h"
#include "lofi/io/atomic_file.h"
#include "test_util.h"

namespace lofi::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kChat = LOFI_FIXTURES "/chat";

json expected() { return json::parse(io::read_text_file(kChat + "/expected.json")); }

ChatSamples prepared(const std::string& family, const std::string& file, const std::string& out, bool train_on_prompt = false) {
  ChatPrepareOptions o;
  o.tokenizer = kChat + "/" + family;
  o.out = out;
  o.inputs = {kChat + "/" + file};
  o.train_on_prompt = train_on_prompt;
  prepare_chat(o);
  return ChatSamples({out + ".train.chat"}, 1 << 20);
}

TEST(ChatPrepare, IdsAndAssistantMasksEqualTransformers) {
  const std::string dir = test::scratch_dir();
  const json want = expected();
  int compared = 0;
  for (const auto& [family, files] : want.items())
    for (const auto& [file, rows] : files.items()) {
      if (rows[0].contains("error")) continue;  // refused: IdsOfRefusedSamplesAreNamed
      const ChatSamples got = prepared(family, file, dir + "/" + family + "-" + file);
      ASSERT_EQ(got.size(), static_cast<int64_t>(rows.size())) << family << " " << file;
      for (int64_t s = 0; s < got.size(); ++s) {
        std::vector<int64_t> ids(static_cast<size_t>(got.length(s)));
        std::vector<uint8_t> mask(ids.size());
        got.copy(s, ids.data(), mask.data());
        const auto want_ids = rows[static_cast<size_t>(s)]["ids"].get<std::vector<int64_t>>();
        const auto want_mask = rows[static_cast<size_t>(s)]["mask"].get<std::vector<int>>();
        EXPECT_EQ(ids, want_ids) << family << " " << file << " sample " << s;
        EXPECT_EQ(std::vector<int>(mask.begin(), mask.end()), want_mask) << family << " " << file << " sample " << s;
        ++compared;
      }
    }
  EXPECT_EQ(compared, 6 * 3 + 2);  // six samples under each template, the system prompt under two
}

TEST(ChatPrepare, OutIsAPrefixOrADirectory) {
  const std::string dir = test::scratch_dir();
  ChatPrepareOptions o;
  o.tokenizer = kChat + "/llama3";
  o.inputs = {kChat + "/conversations.jsonl"};
  o.val_fraction = 0.5;
  o.out = dir + "/data/";
  const ChatPrepareSummary into = prepare_chat(o);
  EXPECT_EQ(into.train.file, dir + "/data/train.chat");
  EXPECT_EQ(into.val.file, dir + "/data/val.chat");
  o.out = dir + "/data/chat";
  EXPECT_EQ(prepare_chat(o).train.file, dir + "/data/chat.train.chat");
  EXPECT_TRUE(is_chat_sample_file(dir + "/data/train.chat"));
}

TEST(ChatPrepare, TrainOnPromptFlagsEveryToken) {
  const std::string dir = test::scratch_dir();
  const ChatSamples all = prepared("qwen2", "conversations.jsonl", dir + "/all", /*train_on_prompt=*/true);
  EXPECT_EQ(all.trained_tokens(), all.tokens());
  const ChatSamples assistant = prepared("qwen2", "conversations.jsonl", dir + "/assistant");
  EXPECT_EQ(assistant.tokens(), all.tokens());
  EXPECT_LT(assistant.trained_tokens(), all.tokens() / 2);
}

TEST(ChatPrepare, RefusalsAreNamedAndWriteNothing) {
  const std::string dir = test::scratch_dir();
  auto refusal = [&](const std::string& family, const std::string& lines) {
    const std::string path = dir + "/in.jsonl";
    io::write_file_atomic(path, lines);
    ChatPrepareOptions o;
    o.tokenizer = family.find('/') == std::string::npos ? kChat + "/" + family : family;
    o.out = dir + "/out";
    o.inputs = {path};
    const std::string error = test::error_of([&] { prepare_chat(o); });
    EXPECT_FALSE(fs::exists(dir + "/out.train.chat")) << error;
    return error;
  };
  const std::string good = R"({"prompt": "a", "completion": "b"})" "\n";
  // The template's own error, with the sample's line.
  std::string e = refusal("mistral", good + io::read_text_file(kChat + "/system.jsonl"));
  EXPECT_NE(e.find("in.jsonl:2: the chat template refused this sample: Conversation roles must alternate"), std::string::npos) << e;
  e = refusal("llama3", good + "{not json\n");
  EXPECT_NE(e.find("in.jsonl:2: not JSON"), std::string::npos) << e;
  e = refusal("llama3", R"({"question": "a", "answer": "b"})" "\n");
  EXPECT_NE(e.find("in.jsonl:1: expected {\"messages\": [...]}"), std::string::npos) << e;
  EXPECT_NE(e.find("found keys answer, question"), std::string::npos) << e;
  e = refusal("llama3", R"({"messages": [{"role": "user", "content": 3}]})" "\n");
  EXPECT_NE(e.find("in.jsonl:1: message 1's \"content\" must be a string, found number"), std::string::npos) << e;
  e = refusal("llama3", R"({"instruction": "a", "input": "b"})" "\n");
  EXPECT_NE(e.find("in.jsonl:1: expected"), std::string::npos) << e;
  e = refusal("llama3", R"({"messages": [{"role": "user", "content": "only a question"}]})" "\n");
  EXPECT_NE(e.find("no token of"), std::string::npos) << e;
  // A tokenizer without a chat template.
  e = refusal(LOFI_FIXTURES "/tokenizer/gpt2", good);
  EXPECT_NE(e.find("no chat template"), std::string::npos) << e;
  // A template that uses what jinja2 lacks: named with its line.
  const std::string broken = dir + "/broken";
  fs::create_directories(broken);
  fs::copy_file(kChat + "/llama3/tokenizer.json", broken + "/tokenizer.json");
  io::write_file_atomic(broken + "/chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfro %}");
  e = refusal(broken, good);
  EXPECT_NE(e.find("chat_template.jinja: the chat template uses what jinja2"), std::string::npos) << e;
  // Any error the template raises on a sample names the sample.
  io::write_file_atomic(broken + "/chat_template.jinja", "{{ 1 // (messages|length - 2) }}");
  e = refusal(broken, good);
  EXPECT_NE(e.find("in.jsonl:1: the chat template refused this sample: ZeroDivisionError"), std::string::npos) << e;
}

TEST(ChatSamples, DamagedFilesAreRefusedByName) {
  const std::string dir = test::scratch_dir();
  const std::string path = dir + "/s.chat";
  write_chat_samples(path, {ChatSample{{5, 6, 7}, {0, 1, 1}}, ChatSample{{8, 9}, {0, 1}}});
  const ChatSamples ok({path}, 10);
  EXPECT_EQ(ok.size(), 2);
  EXPECT_EQ(ok.length(1), 2);
  EXPECT_EQ(ok.trained_tokens(), 3);
  EXPECT_NE(test::error_of([&] { ChatSamples({path}, 9); }).find("token 4 has id 9, outside the model's vocabulary of 9"), std::string::npos);
  std::string bytes = io::read_text_file(path);
  io::write_file_atomic(dir + "/torn.chat", bytes.substr(0, bytes.size() - 3));
  EXPECT_NE(test::error_of([&] { ChatSamples({dir + "/torn.chat"}, 10); }).find("torn.chat: "), std::string::npos);
  std::string flag = bytes;
  flag[128 + 16 + 1] = 2;  // the second token's loss flag (header, then 5 uint16 ids padded to 16 bytes)
  io::write_file_atomic(dir + "/flag.chat", flag);
  EXPECT_NE(test::error_of([&] { ChatSamples({dir + "/flag.chat"}, 10); }).find("token 1's loss flag is 2"), std::string::npos);
  io::write_file_atomic(dir + "/text.chat", "hello");
  EXPECT_NE(test::error_of([&] { ChatSamples({dir + "/text.chat"}, 10); }).find("not a lofi chat sample file"), std::string::npos);
}

}  // namespace
}  // namespace lofi::data
