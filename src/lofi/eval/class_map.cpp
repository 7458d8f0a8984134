#include "lofi/eval/class_map.h"

#include <algorithm>
#include <cerrno>
#include <map>
#include <sstream>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"

namespace lofi::eval {
namespace {

// An index in [0, classes), or a model class name; fails naming the place and the token.
int64_t model_class_of(const std::string& token, int64_t classes, const std::vector<std::string>& names,
                       const std::string& where) {
  bool digits = !token.empty() && std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits) {
    if (token.size() > 18 || std::stoll(token) >= classes)
      fail(where, ": model class ", token, " is out of range; expected an index in [0, ", classes, ")");
    return std::stoll(token);
  }
  auto it = std::find(names.begin(), names.end(), token);
  if (it == names.end())
    fail(where, ": \"", token, "\" is neither a model class index in [0, ", classes, ")",
         names.empty() ? "" : " nor a model class name");
  return it - names.begin();
}

}  // namespace

ClassMap parse_class_map(const std::string& text, int64_t model_classes,
                         const std::vector<std::string>& model_class_names, const std::string& origin) {
  if (model_classes <= 0) fail(origin, ": the model must have at least one class, found ", model_classes);
  if (!model_class_names.empty() && static_cast<int64_t>(model_class_names.size()) != model_classes)
    fail(origin, ": ", model_class_names.size(), " model class names given for ", model_classes, " model classes");
  ClassMap map;
  map.model_classes = model_classes;
  std::map<int64_t, std::string> owner;  // model class -> "name (line N)", to name both sides of a clash
  std::istringstream lines(text);
  std::string line;
  for (int line_no = 1; std::getline(lines, line); ++line_no) {
    std::string where = cat(origin, ":", line_no);
    line = line.substr(0, line.find('#'));
    std::istringstream tokens(line);
    std::string name, token;
    if (!(tokens >> name)) continue;
    if (std::find(map.names.begin(), map.names.end(), name) != map.names.end())
      fail(where, ": test class \"", name, "\" appears twice; expected each name once");
    std::vector<int64_t> members;
    while (tokens >> token) {
      int64_t c = model_class_of(token, model_classes, model_class_names, where);
      auto [it, fresh] = owner.emplace(c, cat("\"", name, "\" (line ", line_no, ")"));
      if (!fresh)
        fail(where, ": model class ", token, " already belongs to test class ", it->second,
             "; expected each model class in one test class at most");
      members.push_back(c);
    }
    if (members.empty())
      fail(where, ": test class \"", name, "\" has no model classes; expected NAME MODEL_CLASS [MODEL_CLASS ...]");
    map.names.push_back(name);
    map.members.push_back(std::move(members));
  }
  if (map.names.empty()) fail(origin, ": no test classes; expected lines of NAME MODEL_CLASS [MODEL_CLASS ...]");
  return map;
}

ClassMap read_class_map(const std::string& path, int64_t model_classes,
                        const std::vector<std::string>& model_class_names) {
  return parse_class_map(io::read_text_file(path), model_classes, model_class_names, path);
}

torch::Tensor apply_class_map(const torch::Tensor& logits, const ClassMap& map) {
  if (logits.dim() != 2 || logits.size(1) != map.model_classes)
    fail("apply_class_map: expected logits of shape (B, ", map.model_classes, "), found ", logits.sizes());
  std::vector<torch::Tensor> columns;
  columns.reserve(map.members.size());
  for (const auto& members : map.members) {
    torch::Tensor index = torch::tensor(members, torch::TensorOptions(torch::kInt64).device(logits.device()));
    columns.push_back(std::get<0>(logits.index_select(1, index).max(1)));  // (B)
  }
  return torch::stack(columns, 1);  // (B, test classes)
}

}  // namespace lofi::eval
