// JSON Lines files, read a line at a time.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace lofi::io {

// Calls F(value, "PATH:LINE") for each line of PATH that is not blank. Fails naming PATH when it
// cannot be opened and PATH:LINE for a line that is not JSON (WHAT: what a line should hold).
void for_each_jsonl_line(const std::string& path, const std::string& what,
                         const std::function<void(const nlohmann::json& value, const std::string& where)>& f);

}  // namespace lofi::io
