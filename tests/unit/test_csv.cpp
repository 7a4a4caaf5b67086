// CSV / TSV tables: RFC 4180 quoting, line ends, the BOM, and errors that name the file,
// the physical line a record starts on, and the column where the text goes wrong.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "safetune/core/error.h"
#include "safetune/data/csv.h"
#include "test_util.h"

using namespace safetune;
using Cells = std::vector<std::string>;

namespace {

std::string error_of(const std::string& text, char sep = ',') {
  return test_util::input_error_of([&] { data::parse_csv(text, "t.csv", sep); });
}

}  // namespace

TEST(Csv, QuotedCommasAndDoubledQuotes) {
  const auto t = data::parse_csv("a,b,c\n\"x, y\",\"say \"\"hi\"\"\",\"\"\n", "t.csv");
  EXPECT_EQ(t.header, (Cells{"a", "b", "c"}));
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].cells, (Cells{"x, y", "say \"hi\"", ""}));
  EXPECT_EQ(t.rows[0].line, 2u);
}

TEST(Csv, NewlinesInsideQuotesKeepPhysicalLineNumbers) {
  const auto t = data::parse_csv("a,b\n\"one\ntwo\nthree\",x\nlast,y\n", "t.csv");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].cells, (Cells{"one\ntwo\nthree", "x"}));
  EXPECT_EQ(t.rows[0].line, 2u);
  EXPECT_EQ(t.rows[1].line, 5u);  // after the three lines of row 1
  // An error after a multi-line field still points at the line a person sees.
  EXPECT_EQ(error_of("a,b\n\"one\ntwo\",x\nbad\n"), "t.csv:4: expected 2 fields (as the header on line 1), found 1");
}

TEST(Csv, CrlfLineEndsAndBom) {
  const auto t = data::parse_csv("\xEF\xBB\xBFgoal,target\r\n\"a\r\nb\",c\r\nd,\"e\"\r\n", "t.csv");
  EXPECT_EQ(t.header, (Cells{"goal", "target"}));  // no BOM left on the first name
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].cells, (Cells{"a\r\nb", "c"}));  // a line break inside quotes is data
  EXPECT_EQ(t.rows[1].cells, (Cells{"d", "e"}));       // no CR left on the last field
  EXPECT_EQ(t.rows[1].line, 4u);
  // A CRLF file without a final line end, and a lone CR at the very end.
  EXPECT_EQ(data::parse_csv("a,b\r\nc,d", "t.csv").rows[0].cells, (Cells{"c", "d"}));
  EXPECT_EQ(data::parse_csv("a,b\r\nc,d\r", "t.csv").rows[0].cells, (Cells{"c", "d"}));
}

TEST(Csv, BlankLinesEmptyFieldsAndStrayQuotes) {
  const auto t = data::parse_csv("\na,b,c\n\n,,\n5\" screen,x\"y,\n\n", "t.csv");
  EXPECT_EQ(t.header_line, 2u);
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].cells, (Cells{"", "", ""}));
  EXPECT_EQ(t.rows[0].line, 4u);
  EXPECT_EQ(t.rows[1].cells, (Cells{"5\" screen", "x\"y", ""}));  // a quote mid-field is a character
}

TEST(Csv, TabSeparated) {
  const auto t = data::parse_csv("prompt\tcompletion\na, b\t\"tab\there\"\n", "t.tsv", '\t');
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].cells, (Cells{"a, b", "tab\there"}));  // commas are plain text in TSV
}

TEST(Csv, RaggedRowsNameTheLineAndTheCounts) {
  EXPECT_EQ(error_of("a,b\n1,2\n1,2,3\n"), "t.csv:3: expected 2 fields (as the header on line 1), found 3");
  EXPECT_EQ(error_of("a,b\n1,2\r\n1\r\n"), "t.csv:3: expected 2 fields (as the header on line 1), found 1");
  EXPECT_EQ(error_of("a\tb\n1\t2\t\n", '\t'), "t.csv:2: expected 2 fields (as the header on line 1), found 3");
}

TEST(Csv, QuoteErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("a,b\nx,\"ab\"c\n"),
            "t.csv:2:7: expected ',' or the end of the line after a closing quote, got 'c' (a quote inside a "
            "quoted field is written \"\")");
  // Never closed: the error points at the opening quote, not at the end of the file.
  EXPECT_EQ(error_of("a,b\nx,y\nz,\"open\nmore\n"),
            "t.csv:3:3: the quoted field that starts here is never closed (a \" is missing)");
  EXPECT_EQ(error_of("a\tb\n\"q\" \tx\n", '\t').rfind("t.csv:2:4: expected a tab or the end of the line", 0), 0u);
}

TEST(Csv, HeaderAndEncodingErrors) {
  EXPECT_EQ(error_of(""), "t.csv: empty file: no header row (the first line names the columns)");
  EXPECT_EQ(error_of("\xEF\xBB\xBF\r\n\n"), "t.csv: empty file: no header row (the first line names the columns)");
  EXPECT_EQ(error_of("goal,target,goal\n"), "t.csv:1: column 'goal' appears twice in the header (columns 1 and 3)");
  EXPECT_EQ(error_of("a,b\nok,fine\n\"x\xC3\",y\n"), "t.csv:3:3: invalid UTF-8 (byte offset 14)");
  // Unnamed columns (a pandas index) may repeat: they are never read by name.
  EXPECT_EQ(data::parse_csv(",,a\n0,1,x\n", "t.csv").rows[0].cells, (Cells{"0", "1", "x"}));
}

TEST(Csv, SeparatorFromTheFileName) {
  EXPECT_EQ(data::csv_separator_for("d/harmful_behaviors.csv"), ',');
  EXPECT_EQ(data::csv_separator_for("X.CSV"), ',');
  EXPECT_EQ(data::csv_separator_for("x.tsv"), '\t');
  EXPECT_EQ(data::csv_separator_for("x.jsonl"), '\0');
  EXPECT_EQ(data::csv_separator_for("csv"), '\0');
  EXPECT_EQ(data::csv_separator_for("x.csv.json"), '\0');
}
