#include "lofi/eval/results_file.h"

#include <algorithm>

namespace lofi::eval {

namespace {

const char* const kKeys[] = {"title", "note", "table", "rows", "claims", "spectrum_table", "spectrum_note"};

bool is_display(const nlohmann::json& t) {
  return t.is_object() && t.contains("columns") && t["columns"].is_array() && t.contains("cells") && t["cells"].is_array();
}

}  // namespace

nlohmann::json ResultsFile::to_json() const {
  nlohmann::json j = more.is_object() ? more : nlohmann::json::object();
  j["title"] = title, j["note"] = note, j["rows"] = rows, j["claims"] = claims;
  if (!table.is_null()) j["table"] = table;
  if (!spectrum_table.is_null()) j["spectrum_table"] = spectrum_table, j["spectrum_note"] = spectrum_note;
  return j;
}

std::optional<ResultsFile> ResultsFile::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return std::nullopt;
  ResultsFile r;
  auto text = [&](const char* key) { return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : ""; };
  r.title = text("title"), r.note = text("note"), r.spectrum_note = text("spectrum_note");
  if (j.contains("table") && is_display(j["table"])) r.table = j["table"];
  if (j.contains("spectrum_table") && is_display(j["spectrum_table"])) r.spectrum_table = j["spectrum_table"];
  if (j.contains("claims") && j["claims"].is_array()) r.claims = j["claims"];
  for (const char* key : {"rows", "results"})  // `lofi eval --json` writes "results"
    if (j.contains(key) && j[key].is_array()) {
      r.rows = j[key];
      break;
    }
  for (const auto& [key, value] : j.items())
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys) && key != "results") r.more[key] = value;
  return r;
}

}  // namespace lofi::eval
