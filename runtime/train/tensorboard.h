// TensorBoard event files without TensorFlow: an append-only writer of scalar summaries in the
// format TensorBoard reads (a file named events.out.tfevents.* in a run folder, a sequence of
// TFRecord records, each an Event protobuf). Only the few protobuf fields needed are encoded, by
// hand (see tensorboard.cpp); the first record is the file version "brain.Event:2", then one
// Event per (step, tag) scalar.
//
// TFRecord framing of each record: uint64 length (little endian), uint32 masked CRC-32C of the
// length bytes, the data, uint32 masked CRC-32C of the data; mask(c) = ((c >> 15) | (c << 17)) +
// 0xa282ead8.
//
// Unlike Otter's other output files (written whole and atomically, runtime/core/file_io.h), an
// event file grows while training runs, as TensorBoard expects: records are appended and flushed
// after each group of scalars, so a crash loses at most the last group and never corrupts earlier
// records (readers stop at a truncated record).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace otter {

// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), and TFRecord's masked form of it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

class EventWriter {
 public:
  // Creates `dir` (and missing parents) and a new event file in it. Throws an Io error naming the
  // folder when it cannot be created or written (a file in the way, no permission, ...), and
  // InvalidArgument for an empty path.
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // Appends scalars (tag, value) at `step`, wall time now, and flushes. Tags are non-empty UTF-8;
  // a value is stored as float (TensorBoard's simple_value). Throws Io if the write fails (the
  // writer is then closed: later calls throw too).
  void add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);
  void add_scalar(int64_t step, const std::string& tag, double value) { add_scalars(step, {{tag, value}}); }
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  void flush();
  std::FILE* file_ = nullptr;
  std::string path_;
};

// The serialized Event protobufs (exposed for tests).
std::string encode_file_version_event(double wall_time);
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);

}  // namespace otter
