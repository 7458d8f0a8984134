// The list of semantic mutants (tests/mutants.txt, read by scripts/mutants_list.py for `make
// mutants`): well formed, every mutant applicable to the code as it is, any code text kept as
// written, and a malformed block refused by its line number.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace lofi {
namespace {

const std::string kRoot = std::string(LOFI_FIXTURES) + "/../..";

// Runs the list tool on LIST with EXTRA arguments, its output through PIPE (a shell command).
test::CommandResult list_tool(const std::string& list, const std::string& extra = "", const std::string& pipe = "") {
  return test::run_shell(std::string(LOFI_TEST_PYTHON) + " " + kRoot + "/scripts/mutants_list.py " + list + " " + kRoot + " " +
                         extra + " 2>&1" + pipe);
}

TEST(Mutants, ListParsesAndEveryMutantApplies) {
  const auto r = list_tool(kRoot + "/tests/mutants.txt", "--check");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(", 0 that cannot be applied"), std::string::npos) << r.output;
}

TEST(Mutants, CodeOfAnyKindIsKeptAndMalformedBlocksAreNamed) {
  const std::string dir = test::scratch_dir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  // `||` and `|` in the code: the old one-line format split them; the blocks keep them.
  const auto ok = list_tool(write("ok.txt", "# a comment\n[or-dropped]\nfile: a.cpp\nfrom: if (a || b | c)\nto: if (a)\ntests: X|Y\n"), "",
                            " | tr '\\0' '\\n'");
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_EQ(ok.output, "or-dropped\na.cpp\nif (a || b | c)\nif (a)\nX|Y\n");
  const auto missing = list_tool(write("missing.txt", "[a]\nfile: a.cpp\nfrom: x\nto: y\ntests: t\n\n[b]\nfile: b.cpp\n"));
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("missing.txt:7: mutant [b] lacks from, to, tests"), std::string::npos) << missing.output;
  const auto stray = list_tool(write("stray.txt", "[a]\nfile: a.cpp\nfrom x\n"));
  EXPECT_NE(stray.status, 0);
  EXPECT_NE(stray.output.find("stray.txt:3: expected one of file: , from: , to: , tests: in mutant [a]"), std::string::npos)
      << stray.output;
  const auto twice = list_tool(write("twice.txt", "[a]\nfile: a\nfrom: x\nto: y\ntests: t\n[a]\nfile: a\nfrom: z\nto: y\ntests: t\n"));
  EXPECT_NE(twice.output.find("twice.txt:6: mutant [a] is defined twice (first at line 1)"), std::string::npos) << twice.output;
  // --check: a mutant whose text is not in its file is named.
  const auto absent = list_tool(write("absent.txt", "[gone]\nfile: README.md\nfrom: no such text in the readme 7f3a\nto: y\ntests: t\n"),
                                "--check");
  EXPECT_NE(absent.status, 0);
  EXPECT_NE(absent.output.find("absent.txt:1: [gone]: its 'from' text occurs 0 times in README.md"), std::string::npos)
      << absent.output;
}

}  // namespace
}  // namespace lofi
