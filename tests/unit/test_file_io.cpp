// runtime/core/checked.h and file_io.h: overflow-checked counts, number parsing, safe reads and
// atomic writes through symlinks and devices (docs/reliability.md).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "runtime/core/checked.h"
#include "runtime/core/file_io.h"
#include "runtime/core/tensor.h"

namespace fs = std::filesystem;
using namespace otter;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("otter_file_io_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Checked, ShapeProductsNeverWrap) {
  EXPECT_EQ(shape_numel({3, 4, 5}), 60);
  EXPECT_EQ(shape_numel({int64_t(1) << 40, 0, int64_t(1) << 40}), 0);  // empty, whatever the other dims
  EXPECT_EQ(shape_numel({int64_t(1) << 30, int64_t(1) << 30}), int64_t(1) << 60);
  // [2^61, 64] is 2^67 elements: it wrapped to 0 bytes and passed the C API's NULL check.
  EXPECT_NE(error_of([] { shape_numel({int64_t(1) << 61, 64}); }).find("overflows"), std::string::npos);
  EXPECT_NE(error_of([] { shape_numel({int64_t(1) << 32, int64_t(1) << 32}); }).find("overflows"), std::string::npos);
  EXPECT_LT(shape_numel({-1, 64}), 0);  // symbolic IR shapes stay a marker
  EXPECT_NE(error_of([] { checked_mul(int64_t(1) << 59, 4, "bytes"); }).find("bytes"), std::string::npos);
  EXPECT_EQ(checked_add(2, 3, "x"), 5);
  EXPECT_FALSE(error_of([] { checked_add(kMaxCount, 1, "offset"); }).empty());
}

TEST(Checked, ParsingNamesTheField) {
  EXPECT_EQ(parse_int64("-42", "n"), -42);
  EXPECT_EQ(parse_uint64("18446744073709551615", "seed"), UINT64_MAX);
  EXPECT_NE(error_of([] { parse_int64("9223372036854775808", "step"); }).find("step: 9223372036854775808 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_int64("12x", "offset"); }).find("offset: '12x' is not an integer"), std::string::npos);
  EXPECT_FALSE(error_of([] { parse_int64("", "n"); }).empty());
  EXPECT_FALSE(error_of([] { parse_int64(" 1", "n"); }).empty());
  EXPECT_FALSE(error_of([] { parse_int64("-1", "n", 0); }).empty());
  EXPECT_FALSE(error_of([] { parse_uint64("-1", "n"); }).empty());
  EXPECT_FALSE(error_of([] { parse_finite_double("nan", "loss_scale"); }).empty());
  EXPECT_FALSE(error_of([] { parse_finite_double("1e999", "x"); }).empty());
  EXPECT_DOUBLE_EQ(parse_finite_double("0.5", "x"), 0.5);
}

TEST(FileIo, ReadsRegularFilesOnly) {
  fs::path d = fresh_dir("read");
  std::ofstream(d / "a.bin") << "hello";
  EXPECT_EQ(read_file((d / "a.bin").string(), "data"), "hello");
  EXPECT_NE(error_of([&] { read_file(d.string(), "model"); }).find("is a folder"), std::string::npos);
  EXPECT_NE(error_of([] { read_file("/dev/zero", "model"); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { read_file((d / "missing").string(), "checkpoint"); }).find("(checkpoint)"), std::string::npos);
  EXPECT_NE(error_of([&] { read_file((d / "a.bin").string(), "model", 3); }).find("over the limit"), std::string::npos);
  fs::remove_all(d);
}

TEST(FileIo, MappedFilesSurviveRenamesAndRefuseInPlaceChanges) {
  fs::path d = fresh_dir("map");
  const fs::path f = d / "m.onnx";
  write_file_atomic(f.string(), "model bytes", 11, "model");
  SharedBytes mapped = SharedBytes::map_file(f.string(), "model");
  const SharedBytes copy = mapped;  // handles share the mapping
  EXPECT_EQ(copy.str(), "model bytes");
  // An atomic replace (a rename over the path, as exports do) leaves the mapped file as it was.
  write_file_atomic(f.string(), "new", 3, "model");
  EXPECT_NO_THROW(mapped.check_unchanged("export"));
  EXPECT_EQ(mapped.str(), "model bytes");
  EXPECT_EQ(slurp(f), "new");
  // Truncated and rewritten in place: refused before a byte is read.
  SharedBytes again = SharedBytes::map_file(f.string(), "model");
  EXPECT_EQ(again.str(), "new");
  std::ofstream(f, std::ios::binary | std::ios::trunc) << "rewritten in place";
  const std::string err = error_of([&] { again.check_unchanged("export"); });
  EXPECT_NE(err.find("export: the model file '" + f.string() + "' was changed in place"), std::string::npos) << err;
  EXPECT_NO_THROW(mapped.check_unchanged("export"));  // the first mapping's file is another inode
  // Mappings hold no descriptor; a deleted file stays readable through them.
  auto open_fds = [] { return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator()); };
  const auto fds = open_fds();
  std::vector<SharedBytes> many;
  for (int i = 0; i < 8; ++i) many.push_back(SharedBytes::map_file(f.string(), "model"));
  EXPECT_EQ(open_fds(), fds);
  fs::remove(f);
  EXPECT_NO_THROW(many[0].check_unchanged("export"));
  EXPECT_EQ(many[0].str(), "rewritten in place");
  std::ofstream(f) << "a model";
  // The checks of read_file; an empty file and owned bytes.
  EXPECT_NE(error_of([&] { SharedBytes::map_file(d.string(), "model"); }).find("is a folder"), std::string::npos);
  EXPECT_NE(error_of([] { SharedBytes::map_file("/dev/zero", "model"); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { SharedBytes::map_file((d / "missing").string(), "model"); }).find("(model)"), std::string::npos);
  EXPECT_NE(error_of([&] { SharedBytes::map_file(f.string(), "model", 3); }).find("over the limit"), std::string::npos);
  std::ofstream(d / "empty.onnx").close();
  EXPECT_TRUE(SharedBytes::map_file((d / "empty.onnx").string(), "model").empty());
  const SharedBytes owned(std::string("abc"));
  EXPECT_EQ(owned.str(), "abc");
  EXPECT_NO_THROW(owned.check_unchanged("export"));
  fs::remove_all(d);
}

TEST(FileIo, AtomicWritesKeepModesAndLeaveNoTemporaries) {
  fs::path d = fresh_dir("write");
  fs::path f = d / "out.bin";
  write_file_atomic(f.string(), "one", 3, "output");
  EXPECT_EQ(slurp(f), "one");
  ::chmod(f.c_str(), 0640);
  write_file_atomic(f.string(), "second", 6, "output");
  EXPECT_EQ(slurp(f), "second");
  struct stat st;
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  int entries = 0;
  for (auto& e : fs::directory_iterator(d)) entries += e.path() != f;
  EXPECT_EQ(entries, 0) << "a temporary file was left behind";
  EXPECT_NE(error_of([&] { write_file_atomic((d / "no" / "x").string(), "x", 1, "output"); }).find("does not exist"),
            std::string::npos);
  EXPECT_NE(error_of([&] { write_file_atomic(d.string(), "x", 1, "output"); }).find("folder"), std::string::npos);
  fs::remove_all(d);
}

TEST(FileIo, SymlinksAreWrittenThroughAndDevicesInPlace) {
  fs::path d = fresh_dir("links");
  fs::create_directories(d / "sub");
  fs::create_symlink("sub/target.json", d / "link.json");  // relative, dangling until written
  write_file_atomic((d / "link.json").string(), "{}", 2, "metrics");
  EXPECT_TRUE(fs::is_symlink(d / "link.json"));
  EXPECT_EQ(slurp(d / "sub" / "target.json"), "{}");
  write_file_atomic((d / "link.json").string(), "[1]", 3, "metrics");
  EXPECT_TRUE(fs::is_symlink(d / "link.json"));
  EXPECT_EQ(slurp(d / "sub" / "target.json"), "[1]");
  write_file_atomic("/dev/null", "discarded", 9, "metrics");
  struct stat st;
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  fs::remove_all(d);
}

TEST(FileIo, SameFileSeesThroughSpellingsAndLinks) {
  fs::path d = fresh_dir("same");
  std::ofstream(d / "m.onnx") << "x";
  fs::create_hard_link(d / "m.onnx", d / "hard.onnx");
  fs::create_symlink(d / "m.onnx", d / "soft.onnx");
  EXPECT_TRUE(same_file((d / "m.onnx").string(), (d / "." / "m.onnx").string()));
  EXPECT_TRUE(same_file((d / "m.onnx").string(), (d / "hard.onnx").string()));
  EXPECT_TRUE(same_file((d / "m.onnx").string(), (d / "soft.onnx").string()));
  EXPECT_TRUE(same_file((d / "new.json").string(), (d / "sub" / ".." / "new.json").string()));
  EXPECT_FALSE(same_file((d / "m.onnx").string(), (d / "new.json").string()));
  fs::remove_all(d);
}
