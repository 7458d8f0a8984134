#include "lofi/io/safetensors_set.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "lofi/error.h"
#include "lofi/io/atomic_file.h"
#include "lofi/strings.h"

namespace lofi::io {
namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

// Splits LAYOUT into shards of at most SHARD_BYTES (a larger tensor gets a shard of its own).
std::vector<std::vector<size_t>> plan_shards(const std::vector<TensorEntry>& layout, int64_t shard_bytes) {
  std::vector<std::vector<size_t>> shards(1);
  int64_t size = 0;
  for (size_t i = 0; i < layout.size(); ++i) {
    int64_t bytes = static_cast<int64_t>(layout[i].end - layout[i].begin);
    if (!shards.back().empty() && size + bytes > shard_bytes) shards.emplace_back(), size = 0;
    shards.back().push_back(i);
    size += bytes;
  }
  return shards;
}

}  // namespace

SafetensorsSet::SafetensorsSet(const std::string& path) {
  std::string file = path;
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / kSingleName)) file = (fs::path(path) / kSingleName).string();
    else if (fs::exists(fs::path(path) / kIndexName)) file = (fs::path(path) / kIndexName).string();
    else fail(path, ": a directory with neither ", kSingleName, " nor ", kIndexName);
  }
  source_ = file;
  if (!ends_with(file, ".json")) {
    files_.push_back(std::make_unique<SafetensorsFile>(file));
    for (const auto& e : files_[0]->entries()) tensors_.push_back({files_[0].get(), &e});
    index_names();
    return;
  }

  nlohmann::json index;
  // A key twice in one object (a tensor listed twice in weight_map) would keep the last silently:
  // refused, as lofi's safetensors header parser refuses it.
  std::vector<std::set<std::string>> keys_of_open_objects;
  std::string twice;
  try {
    index = nlohmann::json::parse(read_text_file(file), [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::object_start) keys_of_open_objects.emplace_back();
      if (event == nlohmann::json::parse_event_t::object_end) keys_of_open_objects.pop_back();
      if (event == nlohmann::json::parse_event_t::key && !keys_of_open_objects.back().insert(parsed.get<std::string>()).second &&
          twice.empty())
        twice = parsed.get<std::string>();
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    fail(file, ": not valid JSON (", e.what(), ")");
  }
  if (!twice.empty()) fail(file, ": key \"", twice, "\" appears twice in one object; each tensor is listed once");
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail(file, ": expected an object with a \"weight_map\" object of tensor -> shard file");
  // Shards in name order (model-00001-of-... first); each opened, and validated, once.
  std::map<std::string, std::string> expected;  // tensor -> shard file name
  std::map<std::string, std::string> first_tensor_of;  // shard file name -> a tensor it should hold
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) fail(file, ": weight_map[\"", it.key(), "\"] is ", it.value().dump(), ", expected a file name");
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      fail(file, ": weight_map[\"", it.key(), "\"] names \"", shard, "\"; shards must be plain file names beside the index");
    expected[it.key()] = shard;
    first_tensor_of.emplace(shard, it.key());
  }
  for (const auto& [shard, tensor] : first_tensor_of) {
    const fs::path shard_path = fs::path(file).parent_path() / shard;
    if (!fs::exists(shard_path)) fail(file, ": shard \"", shard, "\" (holding tensor '", tensor, "') does not exist");
    files_.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
  }
  if (expected.empty()) fail(file, ": weight_map is empty");
  std::map<std::string, std::string> found;  // tensor -> shard holding it
  for (const auto& f : files_) {
    const std::string shard = fs::path(f->path()).filename().string();
    for (const auto& e : f->entries()) {
      if (auto seen = found.find(e.name); seen != found.end())
        fail(file, ": tensor '", e.name, "' is in two shards, ", seen->second, " and ", shard);
      found[e.name] = shard;
      auto want = expected.find(e.name);
      if (want == expected.end()) fail(file, ": shard ", shard, " holds tensor '", e.name, "', which weight_map does not list");
      if (want->second != shard)
        fail(file, ": weight_map puts tensor '", e.name, "' in ", want->second, " but it is in ", shard);
      tensors_.push_back({f.get(), &e});
    }
  }
  for (const auto& [name, shard] : expected)
    if (!found.count(name)) fail(file, ": weight_map puts tensor '", name, "' in ", shard, ", which does not hold it");
  index_names();
}

void SafetensorsSet::index_names() {
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_[tensors_[i].entry->name] = i;
}

const SafetensorsSet::Tensor* SafetensorsSet::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

std::string SafetensorsSet::checksum() const {
  std::string out;
  for (const auto& f : files_) out += (out.empty() ? "" : "+") + f->checksum();
  return out;
}

void SafetensorsSet::verify_data_checksums() const {
  for (const auto& f : files_) f->verify_data_checksum();
}

NamedTensors SafetensorsSet::views() const {
  NamedTensors out;
  for (const auto& t : tensors_) out.emplace_back(t.entry->name, t.file->view(*t.entry));
  return out;
}

void SafetensorsSet::release(const std::string& name) const {
  if (const Tensor* t = find(name)) t->file->release(*t->entry);
}

std::vector<std::string> write_safetensors_shards(const std::string& dir, const std::vector<TensorEntry>& layout,
                                                  int64_t shard_bytes, const Metadata& metadata,
                                                  const TensorWriteFn& write_tensor) {
  if (shard_bytes <= 0) {
    SafetensorsWriter writer(dir + "/" + kSingleName, layout, metadata);
    for (size_t i = 0; i < layout.size(); ++i) write_tensor(writer, i);
    writer.commit();
    return {kSingleName};
  }
  const auto shards = plan_shards(layout, shard_bytes);
  std::vector<std::string> names;
  nlohmann::ordered_json index{{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::ordered_json::object()}};
  uint64_t total_size = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::vector<TensorEntry> shard_layout;
    for (size_t i : shards[s]) shard_layout.push_back(layout[i]);
    SafetensorsWriter writer(dir + "/" + name, shard_layout, metadata);
    for (size_t i : shards[s]) {
      write_tensor(writer, i);
      index["weight_map"][layout[i].name] = name;
      total_size += layout[i].end - layout[i].begin;
    }
    writer.commit();
    names.push_back(name);
  }
  index["metadata"]["total_size"] = total_size;
  write_file_atomic(dir + "/" + kIndexName, index.dump(2) + "\n");
  return names;
}

}  // namespace lofi::io
