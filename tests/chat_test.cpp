// Chat and instruction data: lofi prepare --chat renders with the model's chat template and flags
// the assistant's tokens exactly as transformers' apply_chat_template (ids) and its assistant mask
// (return_assistant_tokens_mask) do, on the Llama 3, Qwen2 (ChatML) and Mistral templates
// (fixtures/chat/make_chat_fixtures.py), and on Qwen3's through --chat-template's training variant
// and Gemma 3's (make_trl_fixtures.py); the sample file refuses damage; bad input is named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lofi/data/chat_prepare.h"
#include "lofi/data/chat_samples.h"
#include "lofi/data/tokenizer.h"
#include "lofi/io/atomic_file.h"
#include "test_util.h"

namespace lofi::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kChat = LOFI_FIXTURES "/chat";

json expected() { return json::parse(io::read_text_file(kChat + "/expected.json")); }

ChatSamples prepared(const std::string& family, const std::string& file, const std::string& out, bool train_on_prompt = false,
                     const ChatTemplateChoice& choice = {}) {
  ChatPrepareOptions o;
  o.tokenizer = kChat + "/" + family;
  o.out = out;
  o.inputs = {file.find('/') == std::string::npos ? kChat + "/" + file : file};
  o.train_on_prompt = train_on_prompt;
  o.chat_template = choice;
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

// Sample S of GOT: its ids and loss flags.
std::pair<std::vector<int64_t>, std::vector<int>> sample_of(const ChatSamples& got, int64_t s) {
  std::vector<int64_t> ids(static_cast<size_t>(got.length(s)));
  std::vector<uint8_t> mask(ids.size());
  got.copy(s, ids.data(), mask.data());
  return {ids, std::vector<int>(mask.begin(), mask.end())};
}

// Qwen3's published template drops earlier turns' reasoning, so a conversation's turns are not
// continuations of each other: lofi refuses to guess its masks and names --chat-template. TRL's
// training variant, given there, gives transformers' ids and assistant masks; single turns, which
// both templates render alike, prepare with the published one too.
TEST(ChatPrepare, Qwen3ThroughATrainingTemplateEqualsTransformers) {
  const std::string dir = test::scratch_dir();
  const json want = json::parse(io::read_text_file(kChat + "/expected_qwen3.json"));
  ChatTemplateChoice training;
  training.file = kChat + "/qwen3_training.jinja";
  int compared = 0, single = 0;
  for (const auto& [file, rows] : want.items()) {
    const ChatSamples got = prepared("qwen3", file, dir + "/" + file, false, training);
    ASSERT_EQ(got.size(), static_cast<int64_t>(rows.size())) << file;
    std::string single_turns;  // the file's lines that the published template renders alike
    std::ifstream lines(kChat + "/" + file);
    std::string line;
    for (int64_t s = 0; s < got.size() && std::getline(lines, line); ++s) {
      const json& row = rows[static_cast<size_t>(s)];
      const auto [ids, mask] = sample_of(got, s);
      EXPECT_EQ(ids, row["ids"].get<std::vector<int64_t>>()) << file << " sample " << s;
      EXPECT_EQ(mask, row["mask"].get<std::vector<int>>()) << file << " sample " << s;
      ++compared;
      if (row["published_ids"] == row["ids"]) single_turns += line + "\n";
    }
    if (!single_turns.empty()) {
      io::write_file_atomic(dir + "/single.jsonl", single_turns);
      const ChatSamples published = prepared("qwen3", dir + "/single.jsonl", dir + "/single");
      for (int64_t s = 0, r = 0; s < published.size(); ++r) {
        const json& row = rows[static_cast<size_t>(r)];
        if (row["published_ids"] != row["ids"]) continue;
        EXPECT_EQ(sample_of(published, s), std::make_pair(row["ids"].get<std::vector<int64_t>>(), row["mask"].get<std::vector<int>>()))
            << file << " sample " << r << " under the published template";
        ++s, ++single;
      }
    }
  }
  EXPECT_EQ(compared, 6 + 1 + 2);
  EXPECT_EQ(single, 5 + 1);
  for (const char* multi_turn : {"system.jsonl", "thinking.jsonl"}) {
    const std::string e = test::error_of([&] { prepared("qwen3", multi_turn, dir + "/refused"); });
    EXPECT_NE(e.find(std::string(multi_turn) + ":1: the chat template refused this sample: the chat template does not render turn"),
              std::string::npos) << e;
    EXPECT_NE(e.find("give --chat-template a training template that renders every turn once"), std::string::npos) << e;
  }
}

// Gemma 3's published template renders every turn once: prepared as it is (its SentencePiece
// tokenizer as GemmaConverter writes it), ids and masks equal transformers' with TRL's tagged
// training variant, which renders the same text.
TEST(ChatPrepare, Gemma3EqualsTransformers) {
  const std::string dir = test::scratch_dir();
  const json want = json::parse(io::read_text_file(kChat + "/expected_gemma3.json"));
  int compared = 0;
  for (const auto& [file, rows] : want.items()) {
    const ChatSamples got = prepared("gemma3", file, dir + "/" + file);
    ASSERT_EQ(got.size(), static_cast<int64_t>(rows.size())) << file;
    for (int64_t s = 0; s < got.size(); ++s) {
      const json& row = rows[static_cast<size_t>(s)];
      ASSERT_EQ(row["published_ids"], row["ids"]) << file << " sample " << s;
      EXPECT_EQ(sample_of(got, s), std::make_pair(row["ids"].get<std::vector<int64_t>>(), row["mask"].get<std::vector<int>>()))
          << file << " sample " << s;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 6 + 1 + 2);
}

// A vision-language model's processor may hold the template (chat_template.json) where its
// tokenizer has none: that is the one its users chat with, and it renders as the same text does.
TEST(ChatPrepare, AProcessorsTemplateServesWhereTheTokenizerHasNone) {
  const std::string dir = test::scratch_dir(), model = dir + "/model";
  std::filesystem::create_directories(model);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(kChat + "/gemma3/" + file, model + "/" + file);
  io::write_file_atomic(model + "/chat_template.json",
                        json{{"chat_template", io::read_text_file(kChat + "/gemma3/chat_template.jinja")}}.dump());
  ChatPrepareOptions o;
  o.tokenizer = model;
  o.out = dir + "/processor";
  o.inputs = {kChat + "/conversations.jsonl"};
  prepare_chat(o);
  prepared("gemma3", "conversations.jsonl", dir + "/tokenizer");
  EXPECT_EQ(io::read_text_file(dir + "/processor.train.chat"), io::read_text_file(dir + "/tokenizer.train.chat"));
  std::filesystem::remove(model + "/chat_template.json");
  o.out = dir + "/none";
  EXPECT_NE(test::error_of([&] { prepare_chat(o); }).find("no chat template (neither chat_template.jinja nor"), std::string::npos);
}

// --chat-template-kwargs reaches the template as apply_chat_template's keyword arguments:
// enable_thinking = false closes Qwen3's thinking block in the generation prompt, so that block
// is prompt, not a training target.
TEST(ChatPrepare, TemplateVariablesReachTheTemplate) {
  const std::string dir = test::scratch_dir();
  const json want = json::parse(io::read_text_file(kChat + "/expected_qwen3.json"));
  // The published template (generate --chat's prompt), then the training one (prepare's masks).
  ChatTemplateChoice plain, no_thinking;
  no_thinking.kwargs = parse_chat_template_kwargs(R"({"enable_thinking": false})", "--chat-template-kwargs");
  const json& row = want["thinking.jsonl"][0];
  const std::string lines = io::read_text_file(kChat + "/thinking.jsonl");
  json messages = json::parse(lines.substr(0, lines.find('\n')))["messages"];
  messages.erase(messages.size() - 1);  // through the last user turn
  auto prompt = [&](const ChatTemplateChoice& c) {
    const std::vector<ChatRender> renders = render_chats(kChat + "/qwen3", {messages}, true, /*add_generation_prompt=*/true, c);
    std::string text;
    for (const auto& segment : renders.at(0).segments) text += segment.text;
    return text;
  };
  EXPECT_EQ(prompt(plain), row["generation_prompt"].get<std::string>());
  EXPECT_EQ(prompt(no_thinking), row["generation_prompt_no_thinking"].get<std::string>());
  EXPECT_NE(prompt(plain), prompt(no_thinking));
  plain.file = no_thinking.file = kChat + "/qwen3_training.jinja";
  // A single turn: the same ids either way; without thinking, the empty block is not trained.
  const Tokenizer tokenizer = Tokenizer::load(kChat + "/qwen3");
  auto trained_text = [&](const ChatSamples& got) {
    const auto [ids, mask] = sample_of(got, 0);
    std::vector<uint32_t> trained;
    for (size_t t = 0; t < ids.size(); ++t)
      if (mask[t]) trained.push_back(static_cast<uint32_t>(ids[t]));
    return tokenizer.decode(trained);
  };
  io::write_file_atomic(dir + "/one.jsonl", R"({"prompt": "Name a colour.", "completion": "Blue."})" "\n");
  const ChatSamples thinking = prepared("qwen3", dir + "/one.jsonl", dir + "/a", false, plain);
  const ChatSamples not_thinking = prepared("qwen3", dir + "/one.jsonl", dir + "/b", false, no_thinking);
  EXPECT_EQ(sample_of(thinking, 0).first, sample_of(not_thinking, 0).first);
  EXPECT_EQ(trained_text(thinking), "<think>\n\n</think>\n\nBlue.<|im_end|>\n");
  EXPECT_EQ(trained_text(not_thinking), "Blue.<|im_end|>\n");
  // Bad variables and files are named.
  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"[1]", "--chat-template-kwargs: expected a JSON object such as '{\"enable_thinking\": false}', found a JSON array"},
           {"{enable_thinking: false}", "which is not JSON"},
           {R"({"messages": []})", "--chat-template-kwargs: \"messages\" is set by lofi itself; leave it out"}}) {
    const std::string e = test::error_of([&] { parse_chat_template_kwargs(text, "--chat-template-kwargs"); });
    EXPECT_NE(e.find(says), std::string::npos) << e;
  }
  ChatTemplateChoice missing;
  missing.file = dir + "/nothing.jinja";
  const std::string e = test::error_of([&] { prepared("qwen3", dir + "/one.jsonl", dir + "/c", false, missing); });
  EXPECT_NE(e.find("chat template " + dir + "/nothing.jinja: not a file"), std::string::npos) << e;
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
