// Reading input files and writing output files safely: every file Otter reads or writes (models,
// external data, .npz, checkpoints, exports, the CLI's metrics and plots) goes through here, so
// the promises of docs/reliability.md hold in one place.
//
// Reading: only regular files (through symlinks); a directory, a device such as /dev/zero or a
// FIFO is a clear error, and so is a file over the caller's size cap.
//
// Writing (write_file_atomic):
//  - a new path or a regular file is replaced atomically: the bytes go to an unnamed temporary
//    file in the same folder (O_TMPFILE; a killed process leaves nothing behind), which is
//    fsync'ed, linked under a unique name, renamed over the path, and the folder fsync'ed. So a
//    reader sees the old file or the new one, after a crash or a power loss. An existing file keeps
//    its permission bits.
//  - a symlink is written through: its final target is replaced as above (the link stays).
//  - a character device or a FIFO (/dev/null, /dev/stdout) is written in place, without a rename.
//  - a directory or any other kind of file is refused.
// Mapping (SharedBytes::map_file): a model is read through a private read-only mapping of its
// file, so its bytes are the page cache's (no second copy in memory, no fresh pages to touch);
// a use after the file was changed in place is refused (below).
// This file depends on nothing but runtime/core/error.h, so the CLI compiles it too.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace otter {

// The whole content of `path`; `what` names it in errors ("model", "checkpoint", ...). Throws
// NotFound for a missing file, InvalidArgument for a non-regular file or one over max_bytes.
std::string read_file(const std::string& path, const std::string& what, uint64_t max_bytes = UINT64_MAX);

// Read-only bytes shared by every copy of the handle: an owned string, or a whole file mapped.
class SharedBytes {
 public:
  SharedBytes() = default;
  explicit SharedBytes(std::string bytes);
  // The file at `path` mapped (the checks and errors of read_file). A file system that cannot map
  // it is read into memory instead.
  static SharedBytes map_file(const std::string& path, const std::string& what, uint64_t max_bytes = UINT64_MAX);

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string str() const { return std::string(data_, size_); }

  // Throws (InvalidArgument, naming the file) when the mapped file, still at its path, was written
  // or truncated in place since it was mapped (its size or modification time changed): its pages
  // would then no longer hold the bytes that were loaded, and reading past a truncation would
  // crash the process (SIGBUS). A file replaced by a rename (as write_file_atomic does, even over
  // the same path) or deleted keeps the mapped one intact. Owned bytes always pass.
  void check_unchanged(const std::string& use) const;

 private:
  struct Mapping;
  std::shared_ptr<const void> owner_;
  std::shared_ptr<const Mapping> mapping_;
  const char* data_ = "";
  size_t size_ = 0;
};

// Writes `size` bytes to `path` as described above; throws an Io error naming the path (the old
// file is then untouched and no temporary file is left).
void write_file_atomic(const std::string& path, const void* data, size_t size, const std::string& what);

// True when `a` and `b` name the same file: the same existing inode (hard links, symlinks and
// "./x" vs "x" included), or the same absolute path once normalised when neither exists yet.
bool same_file(const std::string& a, const std::string& b);

}  // namespace otter
