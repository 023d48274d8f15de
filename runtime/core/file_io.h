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
// This file depends on nothing but runtime/core/error.h, so the CLI compiles it too.
#pragma once
#include <cstdint>
#include <string>

namespace otter {

// The whole content of `path`; `what` names it in errors ("model", "checkpoint", ...). Throws
// NotFound for a missing file, InvalidArgument for a non-regular file or one over max_bytes.
std::string read_file(const std::string& path, const std::string& what, uint64_t max_bytes = UINT64_MAX);

// Writes `size` bytes to `path` as described above; throws an Io error naming the path (the old
// file is then untouched and no temporary file is left).
void write_file_atomic(const std::string& path, const void* data, size_t size, const std::string& what);

// True when `a` and `b` name the same file: the same existing inode (hard links, symlinks and
// "./x" vs "x" included), or the same absolute path once normalised when neither exists yet.
bool same_file(const std::string& a, const std::string& b);

}  // namespace otter
