// TensorBoard event files (see tensorboard.h): CRC-32C, TFRecord framing, and the hand-written
// protobuf encoding of the Event/Summary fields a scalar needs:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
// (tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto).
#include "runtime/train/tensorboard.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "runtime/core/error.h"

namespace otter {

namespace {

struct Crc32cTable {
  uint32_t t[256];
  Crc32cTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
  }
};

// ---- protobuf wire format ----
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) { put_varint(out, (uint64_t(field) << 3) | uint64_t(wire_type)); }
template <class T>
void put_fixed(std::string& out, T v) {  // little endian (the machines Otter runs on)
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string sys_error() { return std::strerror(errno); }

// mkdir -p; a clear error for a component that is not a folder or cannot be made.
void make_dirs(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    OTTER_CHECK_KIND(Io, S_ISDIR(st.st_mode), "TensorBoard folder '", dir, "' exists and is not a folder");
    return;
  }
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) make_dirs(dir.substr(0, slash));
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    throw Error("cannot create the TensorBoard folder '" + dir + "': " + sys_error(), ErrorKind::Io);
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static const Crc32cTable table;
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) c = table.t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string encode_file_version_event(double wall_time) {
  std::string e;
  put_key(e, 1, 1);
  put_fixed(e, wall_time);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string v;  // Summary.Value
  put_bytes(v, 1, tag);
  put_key(v, 2, 5);
  put_fixed(v, value);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string e;
  put_key(e, 1, 1);
  put_fixed(e, wall_time);
  put_key(e, 2, 0);
  put_varint(e, static_cast<uint64_t>(step));
  put_bytes(e, 5, summary);
  return e;
}

EventWriter::EventWriter(const std::string& dir) {
  OTTER_CHECK(!dir.empty(), "the TensorBoard folder is an empty path");
  make_dirs(dir);
  // events.out.tfevents.<seconds>.<host>.<pid>.<n>: TensorBoard's naming, made unique per writer.
  static std::atomic<int> counter{0};
  char host[256] = "localhost";
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) + "." + host + "." +
          std::to_string(::getpid()) + "." + std::to_string(counter++) + ".otter";
  file_ = std::fopen(path_.c_str(), "wbx");
  if (!file_) throw Error("cannot write a TensorBoard event file in '" + dir + "': " + sys_error(), ErrorKind::Io);
  write_record(encode_file_version_event(now_seconds()));
  flush();
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

void EventWriter::write_record(const std::string& data) {
  OTTER_CHECK_KIND(Io, file_ != nullptr, "the TensorBoard event file '", path_,
                   "' was closed after a failed write");
  std::string r;
  uint64_t length = data.size();
  put_fixed(r, length);
  put_fixed(r, masked_crc32c(r.data(), 8));
  r += data;
  put_fixed(r, masked_crc32c(data.data(), data.size()));
  if (std::fwrite(r.data(), 1, r.size(), file_) != r.size()) {
    std::string why = sys_error();
    std::fclose(file_);
    file_ = nullptr;
    throw Error("cannot write the TensorBoard event file '" + path_ + "': " + why, ErrorKind::Io);
  }
}

void EventWriter::flush() {
  if (file_ && std::fflush(file_) != 0) {
    std::string why = sys_error();
    std::fclose(file_);
    file_ = nullptr;
    throw Error("cannot write the TensorBoard event file '" + path_ + "': " + why, ErrorKind::Io);
  }
}

void EventWriter::add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
  double t = now_seconds();
  for (const auto& s : scalars) {
    OTTER_CHECK(!s.first.empty(), "a TensorBoard scalar needs a non-empty tag");
    write_record(encode_scalar_event(t, step, s.first, static_cast<float>(s.second)));
  }
  flush();
}

}  // namespace otter
