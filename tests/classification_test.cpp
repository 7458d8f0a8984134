// Classification scores on hand-checkable logits: top-1/top-5, loss, accumulation, subset and
// many-to-one class maps, malformed map files, and the results row with its shift average.
#include "lofi/eval/classification.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "test_util.h"

namespace lofi::eval {
namespace {

// Four examples over six classes. Ranks of the label: 1st, 2nd, 6th, 1st.
torch::Tensor logits4() {
  return torch::tensor({{0.1f, 0.9f, 0.3f, 0.2f, 0.05f, 0.0f},
                        {0.6f, 0.1f, 0.5f, 0.4f, 0.3f, 0.2f},
                        {0.6f, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f},
                        {0.0f, 0.1f, 0.2f, 0.3f, 0.9f, 0.4f}});
}
torch::Tensor labels4() { return torch::tensor({1, 2, 5, 4}, torch::kInt64); }

double cross_entropy(const std::vector<double>& row, int label) {
  double z = 0;
  for (double v : row) z += std::exp(v);
  return std::log(z) - row[label];
}

TEST(Classification, TopOneAndTopFive) {
  ClassificationScore s = classification_score(logits4(), labels4());
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.top1, 0.5);   // examples 0 and 3
  EXPECT_DOUBLE_EQ(s.top5, 0.75);  // example 2's label is last of six
  double loss = (cross_entropy({0.1, 0.9, 0.3, 0.2, 0.05, 0.0}, 1) + cross_entropy({0.6, 0.1, 0.5, 0.4, 0.3, 0.2}, 2) +
                 cross_entropy({0.6, 0.5, 0.4, 0.3, 0.2, 0.1}, 5) + cross_entropy({0.0, 0.1, 0.2, 0.3, 0.9, 0.4}, 4)) / 4;
  EXPECT_NEAR(s.loss, loss, 1e-6);
}

TEST(Classification, FewerThanFiveClassesMakeTopFiveCertain) {
  ClassificationScore s = classification_score(torch::tensor({{1.0f, 0.0f, 2.0f}}), torch::tensor({1}, torch::kInt64));
  EXPECT_DOUBLE_EQ(s.top1, 0);
  EXPECT_DOUBLE_EQ(s.top5, 1);
}

TEST(Classification, BatchesAccumulateLikeOneBatch) {
  ClassificationMeter meter;
  meter.add(logits4().slice(0, 0, 3), labels4().slice(0, 0, 3));
  meter.add(logits4().slice(0, 3, 4), labels4().slice(0, 3, 4).to(torch::kInt32));
  meter.add(torch::zeros({0, 6}), torch::zeros({0}, torch::kInt64));  // an empty batch changes nothing
  ClassificationScore all = classification_score(logits4(), labels4()), parts = meter.score();
  EXPECT_EQ(parts.count, 4);
  EXPECT_DOUBLE_EQ(parts.top1, all.top1);
  EXPECT_DOUBLE_EQ(parts.top5, all.top5);
  EXPECT_NEAR(parts.loss, all.loss, 1e-6);
  EXPECT_EQ(ClassificationMeter().score().count, 0);
}

TEST(Classification, RefusesMismatchedInput) {
  EXPECT_NE(test::error_of([] { classification_score(torch::zeros({2, 3}), torch::tensor({0, 3}, torch::kInt64)); })
                .find("labels must lie in [0, 3), found [0, 3]"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { classification_score(torch::zeros({2, 3}), torch::zeros({3}, torch::kInt64)); })
                .find("integer labels of shape (2)"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { classification_score(torch::zeros({2, 3}), torch::zeros({2})); }).find("Float"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { classification_score(torch::zeros({6}), torch::zeros({6}, torch::kInt64)); })
                .find("(B, C)"),
            std::string::npos);
}

TEST(ClassMap, SubsetSelectsColumnsBeforeArgmax) {
  // Test classes a, b, c are model classes 4, 1, 2; class 0 (the winner of examples 1 and 2) is out.
  ClassMap map = parse_class_map("# a subset, as ImageNet-R's 200 of 1000\na 4\nb 1  # trailing comment\n\nc 2\n", 6);
  EXPECT_EQ(map.names, (std::vector<std::string>{"a", "b", "c"}));
  torch::Tensor mapped = apply_class_map(logits4(), map);
  EXPECT_TRUE(torch::equal(mapped, logits4().index_select(1, torch::tensor({4, 1, 2}, torch::kInt64))));
  // Labels are test classes: example 1 (model argmax 0) now predicts c (model class 2), example 2 b.
  ClassificationMeter meter(map);
  meter.add(logits4(), torch::tensor({1, 2, 1, 0}, torch::kInt64));
  ClassificationScore s = meter.score();
  EXPECT_DOUBLE_EQ(s.top1, 1.0);
  EXPECT_DOUBLE_EQ(s.top5, 1.0);
}

TEST(ClassMap, ManyToOneTakesTheMaxOfItsMembers) {
  ClassMap map = parse_class_map("x 0 1\ny 2 3 4\nz 5\n", 6);
  torch::Tensor mapped = apply_class_map(logits4(), map);
  torch::Tensor expected = torch::tensor({{0.9f, 0.3f, 0.0f}, {0.6f, 0.5f, 0.2f}, {0.6f, 0.4f, 0.1f}, {0.1f, 0.9f, 0.4f}});
  EXPECT_TRUE(torch::allclose(mapped, expected));
  ClassificationMeter meter(map);
  meter.add(logits4(), torch::tensor({0, 1, 2, 1}, torch::kInt64));  // hit, miss, miss, hit
  EXPECT_DOUBLE_EQ(meter.score().top1, 0.5);
}

TEST(ClassMap, AcceptsModelClassNames) {
  std::vector<std::string> names = {"cat", "dog", "fox", "owl"};
  ClassMap map = parse_class_map("pets cat dog\nwild fox 3\n", 4, names);
  EXPECT_EQ(map.members, (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}}));
}

TEST(ClassMap, MalformedFilesNameTheFileAndLine) {
  std::string path = test::scratch_dir() + "/map.txt";
  auto error_for = [&](const std::string& text) {
    std::ofstream(path) << text;
    return test::error_of([&] { read_class_map(path, 6, {"a", "b", "c", "d", "e", "f"}); });
  };
  EXPECT_NE(error_for("x 1\ny 6\n").find(path + ":2: model class 6 is out of range; expected an index in [0, 6)"),
            std::string::npos);
  EXPECT_NE(error_for("x 1\n\ny zebra\n").find(path + ":3: \"zebra\" is neither"), std::string::npos);
  EXPECT_NE(error_for("x 1 2\ny 3 b\n").find(path + ":2: model class b already belongs to test class \"x\" (line 1)"),
            std::string::npos);
  EXPECT_NE(error_for("x 1\nx 2\n").find(path + ":2: test class \"x\" appears twice"), std::string::npos);
  EXPECT_NE(error_for("x 1\ny # nothing\n").find(path + ":2: test class \"y\" has no model classes"),
            std::string::npos);
  EXPECT_NE(error_for("# only comments\n\n").find(path + ": no test classes"), std::string::npos);
  EXPECT_NE(error_for("x -1\n").find(path + ":1: \"-1\" is neither"), std::string::npos);
  EXPECT_NE(test::error_of([&] { read_class_map(path + ".missing", 6); }).find("cannot open"), std::string::npos);
  EXPECT_NE(test::error_of([] { apply_class_map(torch::zeros({2, 5}), parse_class_map("x 1\n", 6)); }).find("(B, 6)"),
            std::string::npos);
}

TEST(Classification, RowsReportEachShiftAndTheirAverage) {
  ClassificationScore id{0.9, 0.99, 0.3, 100}, a{0.5, 0.8, 1.5, 100}, b{0.2, 0.6, 2.5, 100};
  ResultsTable table(classification_columns({"sketch", "rendition"}, {"bytes"}));
  ClassificationRow row{"lo-fi", id, {{"sketch", a}, {"rendition", b}}};
  EXPECT_DOUBLE_EQ(row.shift_average_top1(), 0.35);
  add_classification_row(table, row, {"0 B"}, {{"bytes", 0}});
  EXPECT_EQ(table.columns(), (std::vector<std::string>{"model", "in-dist top-1", "sketch top-1", "rendition top-1",
                                                        "avg shifts", "bytes"}));
  EXPECT_NE(table.markdown().find("| lo-fi | 90.0 | 50.0 | 20.0 | 35.0 | 0 B |"), std::string::npos);
  nlohmann::json record = table.json()[0];
  EXPECT_DOUBLE_EQ(record["shifts"]["rendition"]["top5"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(record["shift_average_top1"].get<double>(), 0.35);
  EXPECT_EQ(record["bytes"], 0);
  // Shifts in another order than the columns would put numbers under the wrong heading.
  ClassificationRow swapped{"x", id, {{"rendition", b}, {"sketch", a}}};
  EXPECT_NE(test::error_of([&] { add_classification_row(table, swapped, {"0 B"}); }).find("do not match"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { add_classification_row(table, row); }).find("do not match"), std::string::npos);
}

}  // namespace
}  // namespace lofi::eval
