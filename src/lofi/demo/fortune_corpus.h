#pragma once
// Real text for the demo's language half: Debian's fortunes package (fortune-mod's data files,
// installed by scripts/install-deps.sh), written by people over decades, in categories that are
// real domains: computers, science, songs and poems, people, work, ... A category's file holds
// its fortunes between lines of "%". The demo pretrains on most categories, fine-tunes on one and
// measures the shift to others — real text and real shifts, nothing generated here.
#include <cstdint>
#include <string>
#include <vector>

namespace lofi::demo {

// The fortunes directory: LOFI_FORTUNES, else /usr/share/games/fortunes.
std::string fortunes_dir();

// The text categories there (files without an extension, ascii-art left out), sorted.
std::vector<std::string> fortune_categories();

// CATEGORIES' fortunes as byte tokens, each fortune followed by "\n%\n" as in the files, split by
// fortune: a fortune goes to validation with probability VAL_FRACTION, drawn from (SEED, category,
// index), so the split never changes. Throws naming a missing file and the package to install.
struct FortuneTokens {
  std::vector<uint32_t> train, val;
  int64_t fortunes = 0;
};
FortuneTokens fortune_tokens(const std::vector<std::string>& categories, double val_fraction, uint64_t seed);

}  // namespace lofi::demo
