// A results.json: what `lofi demo` writes for each half and the report reads. One schema, written
// and read here; `lofi eval --json`'s {"results": rows} reads as its rows.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace lofi::eval {

struct ResultsFile {
  std::string title, note;
  nlohmann::json table;                           // ResultsTable::display(), the table as printed; null: none
  nlohmann::json rows = nlohmann::json::array();  // ResultsTable::json(): one record per row
  nlohmann::json claims = nlohmann::json::array();  // eval/verdict.h claims
  nlohmann::json spectrum_table;                  // the communication spectrum, display(); null: none
  std::string spectrum_note;
  nlohmann::json more = nlohmann::json::object(); // the writer's own keys (barrier heights, shifts, ...)

  nlohmann::json to_json() const;
  // What of the schema J holds (keys of another type are left empty: an older or foreign file);
  // nothing when J is not an object.
  static std::optional<ResultsFile> from_json(const nlohmann::json& j);
};

}  // namespace lofi::eval
