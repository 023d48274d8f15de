// Safe file reading and atomic, durable writing (see file_io.h).
#include "runtime/core/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "runtime/core/error.h"

namespace otter {
namespace fs = std::filesystem;
namespace {

std::string errno_text(int e) { return std::strerror(e); }

// Closes a descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { if (fd >= 0) ::close(fd); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) OTTER_FAIL_KIND(Io, "writing '", path, "' failed: ", errno_text(n < 0 ? errno : EIO));
    p += n;
    size -= static_cast<size_t>(n);
  }
}

// Follows symlinks to the final path they name (which may not exist yet); relative link targets
// are resolved against the link's folder.
std::string resolve_links(const std::string& path) {
  fs::path p(path);
  for (int hops = 0; hops < 40; ++hops) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p.string();
    fs::path target = fs::read_symlink(p);
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  OTTER_FAIL_KIND(Io, "cannot write '", path, "': too many levels of symbolic links");
}

void fsync_folder(const fs::path& folder, const std::string& path) {
  Fd dir(::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // Some file systems refuse fsync on a folder (EINVAL); the rename itself has happened.
  if (dir.fd >= 0 && ::fsync(dir.fd) != 0 && errno != EINVAL)
    OTTER_FAIL_KIND(Io, "writing '", path, "': fsync of its folder failed: ", errno_text(errno));
}

}  // namespace

namespace {

// Opens `path` for reading after read_file's checks; `st` gets its status.
int open_regular(const std::string& path, const std::string& what, uint64_t max_bytes, struct stat* st) {
  if (::stat(path.c_str(), st) != 0)
    OTTER_FAIL_KIND(NotFound, "cannot open '", path, "' (", what, "): ", errno_text(errno));
  OTTER_CHECK(!S_ISDIR(st->st_mode), what, " '", path, "' is a folder, not a file");
  OTTER_CHECK(S_ISREG(st->st_mode), what, " '", path, "' is not a regular file (a device, FIFO or socket cannot be read as a ",
              what, ")");
  OTTER_CHECK(static_cast<uint64_t>(st->st_size) <= max_bytes, what, " '", path, "' is ", st->st_size,
              " bytes, over the limit of ", max_bytes);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) OTTER_FAIL_KIND(NotFound, "cannot open '", path, "' (", what, "): ", errno_text(errno));
  if (::fstat(fd, st) != 0) {  // the file opened, which may not be the one stat saw
    const int e = errno;
    ::close(fd);
    OTTER_FAIL_KIND(Io, "cannot read '", path, "' (", what, "): ", errno_text(e));
  }
  return fd;
}

std::string read_fd(int fd, size_t size, const std::string& path, const std::string& what) {
  std::string bytes(size, '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) OTTER_FAIL_KIND(Io, "reading ", what, " '", path, "' failed: ", errno_text(errno));
    if (n == 0) break;  // the file shrank while being read
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace

std::string read_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  struct stat st;
  Fd fd(open_regular(path, what, max_bytes, &st));
  return read_fd(fd.fd, static_cast<size_t>(st.st_size), path, what);
}

// The mapping holds the file (its inode) itself: no descriptor stays open, so a process may hold
// as many sessions as it likes.
struct SharedBytes::Mapping {
  std::string path, what;
  void* addr = nullptr;
  size_t size = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  struct timespec mtime {};
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
};

SharedBytes::SharedBytes(std::string bytes) {
  auto owned = std::make_shared<const std::string>(std::move(bytes));
  data_ = owned->data();
  size_ = owned->size();
  owner_ = std::move(owned);
}

SharedBytes SharedBytes::map_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  struct stat st;
  Fd fd(open_regular(path, what, max_bytes, &st));
  const size_t size = static_cast<size_t>(st.st_size);
  // An empty file cannot be mapped; MAP_POPULATE maps the whole file in one call (the caller
  // parses all of it) instead of a page fault per few pages.
  void* addr = size == 0 ? MAP_FAILED : ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.fd, 0);
  if (addr == MAP_FAILED) return SharedBytes(read_fd(fd.fd, size, path, what));
  auto m = std::make_shared<Mapping>();
  m->path = path;
  m->what = what;
  m->addr = addr;
  m->size = size;
  m->dev = st.st_dev;
  m->ino = st.st_ino;
  m->mtime = st.st_mtim;
  SharedBytes out;
  out.data_ = static_cast<const char*>(addr);
  out.size_ = size;
  out.mapping_ = std::move(m);
  return out;
}

void SharedBytes::check_unchanged(const std::string& use) const {
  if (!mapping_) return;
  const Mapping& m = *mapping_;
  // The path now names another file (replaced by a rename) or none (deleted): the mapped file is no
  // longer reachable by that name, so it was not written through it. The same file: its size and
  // modification time must be the mapped ones.
  struct stat st;
  if (::stat(m.path.c_str(), &st) != 0 || st.st_dev != m.dev || st.st_ino != m.ino) return;
  const bool same = static_cast<size_t>(st.st_size) == m.size && st.st_mtim.tv_sec == m.mtime.tv_sec &&
                    st.st_mtim.tv_nsec == m.mtime.tv_nsec;
  OTTER_CHECK(same, use, ": the ", m.what, " file '", m.path, "' was changed in place since it was loaded (",
              "written or truncated, not replaced), so its original bytes are gone; load the ", m.what,
              " again (a file replaced through a rename, as Otter's own exports do, is not affected)");
}

void write_file_atomic(const std::string& requested, const void* data, size_t size, const std::string& what) {
  const std::string path = resolve_links(requested);
  struct stat st;
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {  // /dev/null, a pipe: write through
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.fd < 0) OTTER_FAIL_KIND(Io, "cannot write ", what, " '", requested, "': ", errno_text(errno));
    write_all(fd.fd, data, size, requested);
    return;
  }
  OTTER_CHECK_KIND(Io, !exists || S_ISREG(st.st_mode), "cannot write ", what, " '", requested, "': ",
                   exists && S_ISDIR(st.st_mode) ? "it is a folder" : "it is not a regular file");
  const fs::path target(path);
  const fs::path folder = target.parent_path();
  const std::string folder_text = folder.empty() ? "." : folder.string();

  // An unnamed temporary file in the target's folder; a named one where O_TMPFILE is unsupported.
  static std::atomic<uint64_t> counter{0};
  const std::string temp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  bool named = false;
  int raw = ::open(folder_text.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
  if (raw < 0) {
    if (errno == ENOENT || errno == EACCES || errno == EROFS || errno == ENOTDIR)
      OTTER_FAIL_KIND(Io, "cannot write ", what, " '", requested, "': ", errno == ENOENT ? "its folder does not exist" : errno_text(errno));
    raw = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (raw < 0) OTTER_FAIL_KIND(Io, "cannot write ", what, " '", requested, "': ", errno_text(errno));
    named = true;
  }
  Fd fd(raw);
  bool linked = named;
  try {
    if (exists) (void)::fchmod(fd.fd, st.st_mode & 07777);
    write_all(fd.fd, data, size, requested);
    if (::fsync(fd.fd) != 0) OTTER_FAIL_KIND(Io, "writing '", requested, "' failed: fsync: ", errno_text(errno));
    if (!named) {
      std::string proc = "/proc/self/fd/" + std::to_string(fd.fd);
      if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, temp.c_str(), AT_SYMLINK_FOLLOW) != 0)
        OTTER_FAIL_KIND(Io, "cannot write ", what, " '", requested, "': ", errno_text(errno));
      linked = true;
    }
    if (::rename(temp.c_str(), path.c_str()) != 0)
      OTTER_FAIL_KIND(Io, "cannot write ", what, " '", requested, "': rename failed: ", errno_text(errno));
    linked = false;
    fsync_folder(folder, requested);
  } catch (...) {
    if (linked) ::unlink(temp.c_str());
    throw;
  }
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  const bool ea = ::stat(a.c_str(), &sa) == 0, eb = ::stat(b.c_str(), &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea != eb) return false;
  std::error_code e1, e2;
  fs::path pa = fs::weakly_canonical(fs::absolute(a), e1), pb = fs::weakly_canonical(fs::absolute(b), e2);
  return !e1 && !e2 && pa == pb;
}

}  // namespace otter
