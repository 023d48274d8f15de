// Session checkpoints in the safetensors layout (docs/checkpoint.md): an 8-byte little-endian
// header length, a JSON header mapping each tensor name to {dtype, shape, data_offsets}, and the
// raw little-endian data. Tensors: "param/<name>" (FP32 master), "<state>/<name>" for each
// optimizer buffer (momentum, exp_avg, exp_avg_sq), "accum/<name>" while a gradient
// accumulation is in progress. "__metadata__" holds the format, step, micro_step, base learning
// rate, optimizer, seed, loss-scaler state, the caller's own entries ("user.<key>", e.g. the CLI's
// data order) and a CRC-32 of the whole file. Saving is atomic and durable (runtime/core/file_io.h);
// loading verifies the checksum and validates everything before changing the session.
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "runtime/core/checked.h"
#include "runtime/core/file_io.h"
#include "runtime/train/session.h"
#include "runtime/train/ort_session.h"
#include "runtime/train/training_graph.h"

namespace otter {
namespace {

constexpr const char* kFormat = "otter-checkpoint-2";
constexpr const char* kFormatV1 = "otter-checkpoint-1";  // no checksum; still read
// The checksum is the last metadata field: its 8 hex digits are zeros while the CRC is computed.
constexpr const char* kChecksumKey = "\"checksum\":\"";

// The file's CRC-32 as 8 hex digits, with the 8 characters at `digits_at` (where the checksum
// itself is written) read as '0'; computed in place, without a copy of the file.
std::string checksum_hex(const std::string& bytes, size_t digits_at) {
  auto update = [](uLong crc, const char* p, size_t n) {
    const size_t chunk = size_t(1) << 30;  // zlib takes 32-bit lengths
    for (size_t i = 0; i < n; i += chunk)
      crc = crc32(crc, reinterpret_cast<const Bytef*>(p + i), static_cast<uInt>(std::min(chunk, n - i)));
    return crc;
  };
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = update(crc, bytes.data(), digits_at);
  crc = update(crc, "00000000", 8);
  crc = update(crc, bytes.data() + digits_at + 8, bytes.size() - digits_at - 8);
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(crc));
  return hex;
}

struct Entry {
  Shape shape;
  size_t begin = 0, end = 0;
  std::string dtype;
};

// A small parser for the header's JSON (objects, arrays, strings, integers).
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& s) : s_(s) {}
  void parse(std::map<std::string, Entry>* entries, std::map<std::string, std::string>* meta) {
    expect('{');
    while (!peek('}')) {
      std::string key = string();
      expect(':');
      expect('{');
      Entry e;
      while (!peek('}')) {
        std::string field = string();
        expect(':');
        if (key == "__metadata__") (*meta)[field] = string();
        else if (field == "dtype") e.dtype = string();
        else if (field == "shape") e.shape = ints();
        else if (field == "data_offsets") {
          auto o = ints();
          OTTER_CHECK(o.size() == 2 && o[0] >= 0 && o[1] >= o[0], "checkpoint header: bad data_offsets for '", key, "'");
          e.begin = static_cast<size_t>(o[0]);
          e.end = static_cast<size_t>(o[1]);
        } else OTTER_FAIL("checkpoint header: unknown field '", field, "'");
        comma();
      }
      expect('}');
      if (key != "__metadata__") (*entries)[key] = e;
      comma();
    }
    expect('}');
  }

 private:
  void ws() { while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_; }
  bool peek(char c) { ws(); return pos_ < s_.size() && s_[pos_] == c; }
  void expect(char c) {
    OTTER_CHECK(peek(c), "checkpoint header: expected '", c, "' at byte ", pos_);
    ++pos_;
  }
  void comma() { if (peek(',')) ++pos_; }
  std::string string() {
    expect('"');
    std::string r;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) ++pos_;
      r.push_back(s_[pos_++]);
    }
    expect('"');
    return r;
  }
  std::vector<int64_t> ints() {
    expect('[');
    std::vector<int64_t> r;
    while (!peek(']')) {
      size_t start = pos_;
      while (pos_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '-')) ++pos_;
      OTTER_CHECK(pos_ > start, "checkpoint header: expected a number at byte ", start);
      r.push_back(parse_int64(s_.substr(start, pos_ - start), "checkpoint header: number at byte " + std::to_string(start)));
      comma();
    }
    expect(']');
    return r;
  }
  const std::string& s_;
  size_t pos_ = 0;
};

std::string json_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') r.push_back('\\');
    r.push_back(c);
  }
  return r;
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

void Session::save_checkpoint(const std::string& path) const {
  if (training_graph_) return training_graph_->save_checkpoint(path, user_metadata_);
  if (ort_) return ort_->save_checkpoint(path, user_metadata_);
  check_non_finite();
  // A partial gradient accumulation is each rank's own (not replicated): refused alike on every
  // rank (the micro-step count is the same everywhere).
  OTTER_CHECK_KIND(WrongState, !comm_ || comm_->world_size() == 1 || stats_.micro_step == 0,
                   "a distributed session saves checkpoints between optimizer steps only: ", stats_.micro_step, " of ",
                   config_.grad_accum, " micro-batches of this step are accumulated, and each rank holds its own partial "
                   "sum; save after the step's last micro-batch");
  if (comm_ && comm_->rank() != 0) return;  // the state is replicated: rank 0 writes
  struct Item { std::string name; const float* data; Shape shape; };
  std::vector<Item> items;
  auto& self = const_cast<Session&>(*this);
  const StepStats& stats = this->stats();  // read back from the device
  const std::vector<float> scaler = scaler_host();
  std::map<const Tensor*, Tensor> host;  // host copies of device buffers
  auto on_host = [&](const Tensor& t) -> const float* {
    if (t.device() == Device::CPU) return t.data<float>();
    Tensor& h = host[&t];
    if (!h.defined()) h = t.to(Device::CPU);
    return h.data<float>();
  };
  for (const ParameterInfo& p : params_) {
    items.push_back({"param/" + p.name, on_host(masters_) + p.offset, p.shape});
    for (auto& st : self.optimizer_->state())
      items.push_back({st.first + "/" + p.name, on_host(*st.second) + p.offset, p.shape});
    if (stats.micro_step > 0) items.push_back({"accum/" + p.name, on_host(accum_) + p.offset, p.shape});
  }
  for (auto& kv : buffers_)
    items.push_back({"buffer/" + graph_.values[kv.first].name, on_host(kv.second), kv.second.shape()});
  std::ostringstream h;
  h << "{\"__metadata__\":{\"format\":\"" << kFormat << "\",\"step\":\"" << stats.step << "\",\"micro_step\":\""
    << stats.micro_step << "\",\"base_lr\":\"" << format_double(base_lr_) << "\",\"optimizer\":\""
    << optimizer_->config().kind << "\",\"seed\":\"" << config_.seed << "\",\"skipped_steps\":\"" << stats.skipped_steps
    << "\",\"loss_scale\":\"" << format_double(scaler[kScale]) << "\",\"loss_scale_growth_tracker\":\""
    << format_double(scaler[kGrowthTracker]) << "\",\"loss_scale_hysteresis_left\":\""
    << format_double(scaler[kHysteresisLeft]) << "\"";
  for (auto& kv : user_metadata_) h << ",\"user." << json_escape(kv.first) << "\":\"" << json_escape(kv.second) << "\"";
  h << "," << kChecksumKey << "00000000\"}";
  size_t offset = 0;
  for (const Item& it : items) {
    size_t bytes = static_cast<size_t>(shape_numel(it.shape)) * sizeof(float);
    h << ",\"" << json_escape(it.name) << "\":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < it.shape.size(); ++i) h << (i ? "," : "") << it.shape[i];
    h << "],\"data_offsets\":[" << offset << "," << offset + bytes << "]}";
    offset += bytes;
  }
  h << "}";
  std::string header = h.str();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string file;
  file.reserve(8 + header.size() + offset);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  file += header;
  for (const Item& it : items)
    file.append(reinterpret_cast<const char*>(it.data), static_cast<size_t>(shape_numel(it.shape)) * sizeof(float));
  const size_t digits_at = file.find(kChecksumKey) + std::strlen(kChecksumKey);
  file.replace(digits_at, 8, checksum_hex(file, digits_at));
  write_file_atomic(path, file.data(), file.size(), "checkpoint");
}

namespace {

struct CheckpointFile {
  std::string bytes;
  size_t data_begin = 0;
  std::map<std::string, Entry> entries;
  std::map<std::string, std::string> meta;
};

// `bytes`: the file's content when already read (distributed: rank 0 read it for every rank).
CheckpointFile read_checkpoint(const std::string& path, std::string* bytes_read = nullptr) {
  CheckpointFile f;
  f.bytes = bytes_read ? std::move(*bytes_read) : read_file(path, "checkpoint");
  const std::string& bytes = f.bytes;
  std::string what = "checkpoint '" + path + "'";
  OTTER_CHECK(bytes.size() >= 8, what, " is truncated");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  OTTER_CHECK(n <= bytes.size() - 8, what, " is truncated or not a checkpoint");
  std::string header = bytes.substr(8, n);
  try {
    HeaderParser(header).parse(&f.entries, &f.meta);
  } catch (const Error& e) {
    OTTER_FAIL(what, ": ", e.what());
  }
  const std::string format = f.meta["format"];
  OTTER_CHECK(format == kFormat || format == kFormatV1, what, " has format '", format, "', expected ", kFormat);
  if (format == kFormat) {
    size_t at = header.find(kChecksumKey);
    OTTER_CHECK(f.meta.count("checksum") && at != std::string::npos && f.meta["checksum"].size() == 8, what,
                " has no checksum");
    const std::string crc = checksum_hex(bytes, 8 + at + std::strlen(kChecksumKey));
    OTTER_CHECK(f.meta["checksum"] == crc, what, " is corrupt: its checksum is ", f.meta["checksum"], " but its content hashes to ",
                crc, " (a damaged or edited file)");
  }
  f.data_begin = 8 + n;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto& kv : f.entries) {
    OTTER_CHECK(kv.second.begin <= kv.second.end && kv.second.end <= bytes.size() - f.data_begin, what, ": '", kv.first,
                "' has bad data offsets");
    if (kv.second.end > kv.second.begin) ranges.push_back({kv.second.begin, kv.second.end});
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    OTTER_CHECK(ranges[i].first >= ranges[i - 1].second, what, ": tensors overlap (data offsets ", ranges[i - 1].first, "-",
                ranges[i - 1].second, " and ", ranges[i].first, "-", ranges[i].second, ")");
  return f;
}

}  // namespace

namespace {
std::map<std::string, Tensor> read_checkpoint_group(const std::string& path, const std::string& prefix) {
  CheckpointFile f = read_checkpoint(path);
  std::map<std::string, Tensor> params;
  for (auto& kv : f.entries) {
    if (kv.first.rfind(prefix, 0) != 0) continue;
    const Entry& e = kv.second;
    OTTER_CHECK(e.dtype == "F32", "checkpoint '", path, "': '", kv.first, "' is not F32");
    OTTER_CHECK(static_cast<size_t>(shape_numel(e.shape)) * sizeof(float) == e.end - e.begin, "checkpoint '", path, "': '",
                kv.first, "' has bad data offsets");
    Tensor t(DType::Float32, e.shape);
    std::memcpy(t.raw(), f.bytes.data() + f.data_begin + e.begin, t.nbytes());
    params[kv.first.substr(prefix.size())] = t;
  }
  return params;
}
}  // namespace

std::map<std::string, Tensor> read_checkpoint_parameters(const std::string& path) {
  return read_checkpoint_group(path, "param/");
}

std::map<std::string, Tensor> read_checkpoint_buffers(const std::string& path) {
  return read_checkpoint_group(path, "buffer/");
}

void Session::load_checkpoint(const std::string& path) {
  if (training_graph_) return training_graph_->load_checkpoint(path, &user_metadata_);
  if (ort_) return ort_->load_checkpoint(path, &user_metadata_);
  // Distributed: rank 0 reads the file and every rank parses the same bytes, so every rank loads
  // the same state or fails with the same error (nothing is left to broadcast after the load).
  std::string shared;
  if (comm_) shared = dist::broadcast_file(*comm_, path, "checkpoint");
  CheckpointFile f = read_checkpoint(path, comm_ ? &shared : nullptr);
  std::string what = "checkpoint '" + path + "'";
  auto& meta = f.meta;
  auto& entries = f.entries;
  OTTER_CHECK_KIND(WrongState, meta["optimizer"] == optimizer_->config().kind, what, " was written with optimizer '", meta["optimizer"],
              "' but this session uses '", optimizer_->config().kind, "'");
  // Parse every metadata field before anything changes.
  int64_t step = 0, skipped = 0, micro = 0;
  double base_lr = 0;
  uint64_t seed = 0;
  float scale = scaler_host()[kScale], tracker = 0, hysteresis = static_cast<float>(config_.loss_scale_config.hysteresis);
  auto field = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    OTTER_CHECK(it != meta.end(), what, ": its metadata has no '", key, "'");
    return it->second;
  };
  auto number = [&](const char* key, double lo) {
    double v = parse_finite_double(field(key), what + ": metadata '" + key + "'");
    OTTER_CHECK(v >= lo, what, ": metadata '", key, "' is ", v, " (must be >= ", lo, ")");
    return v;
  };
  step = parse_int64(field("step"), what + ": metadata 'step'", 0);
  micro = parse_int64(field("micro_step"), what + ": metadata 'micro_step'", 0);
  base_lr = number("base_lr", 0);
  seed = parse_uint64(field("seed"), what + ": metadata 'seed'");
  if (meta.count("skipped_steps")) skipped = parse_int64(meta["skipped_steps"], what + ": metadata 'skipped_steps'", 0);
  if (meta.count("loss_scale")) {
    scale = static_cast<float>(number("loss_scale", 0));
    OTTER_CHECK(scale > 0 && std::isfinite(scale), what, ": metadata 'loss_scale' must be a positive float32, got ",
                meta["loss_scale"]);
  }
  if (meta.count("loss_scale_growth_tracker")) tracker = static_cast<float>(number("loss_scale_growth_tracker", 0));
  if (meta.count("loss_scale_hysteresis_left")) hysteresis = static_cast<float>(number("loss_scale_hysteresis_left", 0));
  std::map<std::string, std::string> user;
  for (auto& kv : meta)
    if (kv.first.rfind("user.", 0) == 0) user[kv.first.substr(5)] = kv.second;
  const char* data = f.bytes.data() + f.data_begin;
  size_t data_size = f.bytes.size() - f.data_begin;
  OTTER_CHECK(micro >= 0 && micro < config_.grad_accum, what, " stopped at micro-batch ", micro,
              " but this session accumulates ", config_.grad_accum);
  // Validate everything first, then copy: a bad checkpoint changes nothing. Device buffers are
  // filled through host copies, uploaded at the end.
  std::vector<std::tuple<const char*, float*, size_t>> copies;
  std::map<Tensor*, Tensor> host;
  auto on_host = [&](Tensor& t) -> float* {
    if (t.device() == Device::CPU) return t.data<float>();
    Tensor& h = host[&t];
    if (!h.defined()) h = t.to(Device::CPU);
    return h.data<float>();
  };
  auto take = [&](const std::string& name, const ParameterInfo& p, float* dst) {
    auto it = entries.find(name);
    OTTER_CHECK(it != entries.end(), what, " has no tensor '", name, "'");
    const Entry& e = it->second;
    OTTER_CHECK(e.dtype == "F32" && e.shape == p.shape, what, ": '", name, "' is ", e.dtype, " ", shape_str(e.shape),
                " but the parameter is F32 ", shape_str(p.shape));
    size_t bytes_needed = static_cast<size_t>(shape_numel(p.shape)) * sizeof(float);
    OTTER_CHECK(e.end - e.begin == bytes_needed && e.end <= data_size, what, ": '", name, "' has bad data offsets");
    for (size_t i = 0; i < bytes_needed / sizeof(float); ++i) {  // a NaN master or moment would poison every later step
      float v;
      std::memcpy(&v, data + e.begin + i * sizeof(float), sizeof v);
      OTTER_CHECK(std::isfinite(v), what, ": '", name, "' holds a non-finite value (", v, ") at element ", i);
    }
    copies.emplace_back(data + e.begin, dst + p.offset, bytes_needed);
  };
  for (const ParameterInfo& p : params_) {
    take("param/" + p.name, p, on_host(masters_));
    for (auto& st : optimizer_->state()) take(st.first + "/" + p.name, p, on_host(*st.second));
    if (micro > 0) take("accum/" + p.name, p, on_host(accum_));
  }
  for (auto& kv : buffers_) {
    const std::string name = "buffer/" + graph_.values[kv.first].name;
    ParameterInfo as_param{name, kv.second.shape(), 0};
    take(name, as_param, on_host(kv.second));
  }
  for (auto& c : copies) std::memcpy(std::get<1>(c), std::get<0>(c), std::get<2>(c));
  for (auto& kv : host) kv.first->copy_from(kv.second);
  stats_.micro_step = micro;
  user_metadata_ = user;
  reported_skips_ = skipped;
  base_lr_ = base_lr;
  config_.seed = seed;
  Tensor counters = Tensor::from_vector<int64_t>({step, skipped, 0, micro}, {kStepCounters});
  counters_.copy_from(counters);
  std::vector<float> st = scaler_host();
  st[kScale] = scale;
  st[kGrowthTracker] = tracker;
  st[kHysteresisLeft] = hysteresis;
  scaler_state_.copy_from(Tensor::from_vector<float>(st, {kLossScaleSlots}));
  refresh_low_weights();
  forget_graphs();  // the learning rate and the seed are arguments of captured kernels
  stats();
}

}  // namespace otter
