#include "lofi/data/chat_template.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "lofi/data/tokenizer.h"
#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/io/temporaries.h"

// chat_render.py's text goes into read-only data with the assembler's .incbin (as shipped_vit.cpp
// embeds its file), so the binary renders templates wherever it is copied. LOFI_CHAT_RENDER is the
// script's absolute path (CMakeLists.txt).
__asm__(".pushsection .rodata\n"
        ".global lofi_chat_render_begin\n"
        ".hidden lofi_chat_render_begin\n"
        "lofi_chat_render_begin:\n"
        ".incbin \"" LOFI_CHAT_RENDER "\"\n"
        ".global lofi_chat_render_end\n"
        ".hidden lofi_chat_render_end\n"
        "lofi_chat_render_end:\n"
        ".popsection\n");
extern "C" const char lofi_chat_render_begin[];
extern "C" const char lofi_chat_render_end[];

extern char** environ;

namespace lofi::data {
namespace fs = std::filesystem;

std::string chat_python() {
  if (const char* p = std::getenv("LOFI_PYTHON"); p && *p) return p;
  const std::string built = LOFI_BUILD_PYTHON;
  if (!built.empty() && fs::exists(built)) return built;
  return "python3";
}

std::vector<int64_t> stop_token_ids(const Tokenizer& tokenizer, const std::string& model_dir) {
  std::vector<int64_t> ids{tokenizer.end_of_text()};
  auto add = [&](int64_t id) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  for (const char* name : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>", "<|end_of_text|>"})
    for (const AddedToken& t : tokenizer.added_tokens())
      if (t.special && t.content == name) add(t.id);
  const std::string config = model_dir + "/generation_config.json";
  if (!model_dir.empty() && fs::exists(config)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(io::read_text_file(config));
    } catch (const nlohmann::json::exception& e) {
      fail(config, ": not JSON (", e.what(), ")");
    }
    const nlohmann::json eos = j.value("eos_token_id", nlohmann::json());
    if (eos.is_number_integer()) add(eos.get<int64_t>());
    if (eos.is_array())
      for (const auto& id : eos)
        if (id.is_number_integer()) add(id.get<int64_t>());
  }
  return ids;
}

nlohmann::json parse_chat_template_kwargs(const std::string& text, const std::string& option) {
  nlohmann::json kwargs;
  try {
    kwargs = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    fail(option, ": expected a JSON object such as '{\"enable_thinking\": false}', found '", text, "', which is not JSON");
  }
  if (!kwargs.is_object())
    fail(option, ": expected a JSON object such as '{\"enable_thinking\": false}', found a JSON ", kwargs.type_name());
  for (const char* own : {"messages", "add_generation_prompt", "tools", "documents"})
    if (kwargs.contains(own)) fail(option, ": \"", own, "\" is set by lofi itself; leave it out");
  return kwargs;
}

std::vector<ChatRender> render_chats(const std::string& tokenizer_dir, const std::vector<nlohmann::json>& conversations,
                                     bool train_on_prompt, bool add_generation_prompt, const ChatTemplateChoice& choice) {
  if (!fs::is_directory(tokenizer_dir)) fail("tokenizer ", tokenizer_dir, ": not a directory (give a Hugging Face model or tokenizer directory)");
  if (!choice.file.empty() && !fs::is_regular_file(choice.file))
    fail("chat template ", choice.file, ": not a file (give a Jinja template, e.g. a model's chat_template.jinja)");
  if (!choice.kwargs.is_object()) fail("internal: chat template variables must be a JSON object");
  const std::string source = choice.file.empty() ? "chat template of " + tokenizer_dir : "chat template " + choice.file;
  // The exchange files live in a private temporary directory, removed whatever happens.
  std::string tmp_template = (fs::temp_directory_path() / "lofi-chat-XXXXXX").string();
  if (!::mkdtemp(tmp_template.data())) fail("cannot make a temporary directory under ", fs::temp_directory_path().string());
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{tmp_template};
  io::register_temporary(tmp_template, /*directory=*/true);  // a signal removes it too
  struct Unregister {
    std::string dir;
    ~Unregister() { io::unregister_temporary(dir); }
  } unregister{tmp_template};
  const std::string in = tmp_template + "/in.jsonl", out = tmp_template + "/out.jsonl";
  {
    std::ofstream f(in, std::ios::binary);
    for (const auto& messages : conversations)
      f << nlohmann::json{{"messages", messages}, {"add_generation_prompt", add_generation_prompt}}.dump(
               -1, ' ', false, nlohmann::json::error_handler_t::replace)
        << '\n';
    if (!f) fail("cannot write ", in);
  }
  const std::string script(lofi_chat_render_begin, static_cast<size_t>(lofi_chat_render_end - lofi_chat_render_begin));
  const std::string python = chat_python();
  // -I: isolated, so that a json.py or jinja2/ in the working directory or on PYTHONPATH cannot
  // stand in for the real modules.
  std::vector<std::string> args{python, "-I", "-c", script, tokenizer_dir, in, out, train_on_prompt ? "1" : "0",
                                choice.file, choice.kwargs.dump()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Its one-line refusals (no template, jinja2 missing, a syntax it lacks) come back on a pipe.
  const std::string err = tmp_template + "/err.txt";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, python.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0)
    fail("chat templates are rendered by jinja2 in Python, and ", python, " could not be started (", std::strerror(spawned),
         "); set LOFI_PYTHON to a Python with jinja2 >= 3.1.6");
  int status = 0;
  pid_t waited = 0;
  while ((waited = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  if (waited != pid) fail("chat template: could not wait for ", python, " (", std::strerror(errno), ")");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string why = fs::exists(err) ? io::read_text_file(err) : std::string();
    while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
    if (const size_t last = why.rfind('\n'); last != std::string::npos && WIFEXITED(status) && WEXITSTATUS(status) != 2)
      why = why.substr(last + 1);  // a traceback: its last line
    fail(source, ": ", why.empty() ? cat(python, " failed (status ", status, ")") : why);
  }
  std::vector<ChatRender> renders;
  std::ifstream f(out, std::ios::binary);
  std::string line;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    ChatRender r;
    if (j.contains("error")) r.error = j["error"].get<std::string>();
    else
      for (const auto& s : j["segments"]) r.segments.push_back({s[0].get<std::string>(), s[1].get<int>() != 0});
    renders.push_back(std::move(r));
  }
  if (renders.size() != conversations.size())
    fail(source, ": the renderer answered ", renders.size(), " of ", conversations.size(), " samples");
  return renders;
}

}  // namespace lofi::data
