// .npy/.npz reading and writing (see npz.h).
#include "runtime/train/npz.h"

#include <zlib.h>

#include <sstream>

#include "runtime/core/checked.h"
#include "runtime/core/file_io.h"

namespace otter {
namespace {

uint64_t le(const std::string& s, uint64_t pos, int bytes) {
  OTTER_CHECK(pos <= s.size() && static_cast<uint64_t>(bytes) <= s.size() - pos, "truncated zip structure");
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[pos + i]);
  return v;
}

void put(std::string& s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

DType dtype_from_descr(const std::string& d, const std::string& what) {
  OTTER_CHECK(d.size() >= 3, what, ": bad dtype descriptor '", d, "'");
  OTTER_CHECK(d[0] != '>', what, ": big-endian arrays are not supported (descr '", d, "')");
  std::string t = d.substr(1);
  if (t == "f4") return DType::Float32;
  if (t == "f8") return DType::Float64;
  if (t == "i8") return DType::Int64;
  if (t == "i4") return DType::Int32;
  if (t == "i1") return DType::Int8;
  if (t == "u1") return DType::Uint8;
  if (t == "b1") return DType::Bool;
  OTTER_FAIL(what, ": unsupported array dtype '", d, "'");
}

const char* descr_of(DType t) {
  switch (t) {
    case DType::Float32: return "<f4";
    case DType::Float64: return "<f8";
    case DType::Int64: return "<i8";
    case DType::Int32: return "<i4";
    case DType::Int8: return "|i1";
    case DType::Uint8: return "|u1";
    case DType::Bool: return "|b1";
    default: OTTER_FAIL("cannot write ", dtype_name(t), " to .npy");
  }
}

std::string inflate_raw(const std::string& in, size_t out_size, const std::string& what) {
  std::string out(out_size, '\0');
  z_stream zs{};
  OTTER_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, what, ": zlib init failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&zs, Z_FINISH);
  inflateEnd(&zs);
  OTTER_CHECK(rc == Z_STREAM_END && zs.total_out == out_size, what, ": corrupt compressed data");
  return out;
}

}  // namespace

Tensor parse_npy(const std::string& b, const std::string& what) {
  OTTER_CHECK(b.size() >= 10 && b.compare(0, 6, "\x93NUMPY") == 0, what, ": not a .npy array");
  int major = static_cast<unsigned char>(b[6]);
  OTTER_CHECK(major >= 1 && major <= 3, what, ": unsupported .npy version ", major);
  uint64_t header_len = major == 1 ? le(b, 8, 2) : le(b, 8, 4);
  uint64_t start = major == 1 ? 10 : 12;
  OTTER_CHECK(start <= b.size() && header_len <= b.size() - start, what, ": truncated .npy header");
  std::string h = b.substr(start, header_len);
  auto field = [&](const std::string& key) {
    size_t k = h.find("'" + key + "'");
    OTTER_CHECK(k != std::string::npos && h.find(':', k) != std::string::npos, what, ": .npy header lacks '", key, "'");
    return h.substr(h.find(':', k) + 1);
  };
  std::string descr = field("descr");
  OTTER_CHECK(descr.find('\'') != std::string::npos, what, ": bad .npy header (descr)");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  std::string fortran = field("fortran_order");
  OTTER_CHECK(fortran.find("False") < fortran.find(','), what, ": Fortran-ordered arrays are not supported");
  std::string shape_text = field("shape");
  OTTER_CHECK(shape_text.find('(') != std::string::npos && shape_text.find(')') != std::string::npos, what,
              ": bad .npy header (shape)");
  shape_text = shape_text.substr(shape_text.find('(') + 1);
  shape_text = shape_text.substr(0, shape_text.find(')'));
  Shape shape;
  std::stringstream ss(shape_text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t first = item.find_first_not_of(" "), last = item.find_last_not_of(" L");
    if (first == std::string::npos) continue;
    shape.push_back(parse_int64(item.substr(first, last - first + 1), what + ": shape", 0));
  }
  OTTER_CHECK(shape.size() <= 16, what, ": ", shape.size(), " dims (at most 16 are supported)");
  DType dtype = dtype_from_descr(descr, what);
  // Size the array from its header before allocating: the header may claim far more than the file holds.
  int64_t nbytes = 0;
  try {
    nbytes = checked_mul(shape_numel(shape), static_cast<int64_t>(dtype_size(dtype)), "array size");
  } catch (const Error& e) {
    OTTER_FAIL(what, ": ", e.what());
  }
  uint64_t data_start = start + header_len;
  OTTER_CHECK(b.size() - data_start == static_cast<uint64_t>(nbytes), what, ": the array data has ", b.size() - data_start,
              " bytes but shape ", shape_str(shape), " of ", dtype_name(dtype), " needs ", nbytes);
  Tensor t(dtype, shape);
  if (nbytes) std::memcpy(t.raw(), b.data() + data_start, static_cast<size_t>(nbytes));
  return t;
}

std::string serialize_npy(const Tensor& t) {
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) shape += std::to_string(t.shape()[i]) + ", ";
  if (t.shape().size() > 1) shape.resize(shape.size() - 2);
  else if (t.shape().size() == 1) shape.resize(shape.size() - 1);
  shape += ")";
  std::string header = std::string("{'descr': '") + descr_of(t.dtype()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  put(out, header.size(), 2);
  out += header;
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  return out;
}

std::map<std::string, Tensor> read_npz(const std::string& path) {
  std::string z = read_file(path, "data file");
  std::string what = "'" + path + "'";
  // End of central directory: scan back for its signature.
  OTTER_CHECK(z.size() >= 22, what, " is not an .npz file (too short)");
  size_t eocd = std::string::npos;
  for (size_t i = z.size() - 22 + 1; i-- > 0 && z.size() - i < 65536 + 22;)
    if (le(z, i, 4) == 0x06054b50) { eocd = i; break; }
  OTTER_CHECK(eocd != std::string::npos, what, " is not an .npz (zip) file");
  try {
    uint64_t entries = le(z, eocd + 10, 2), cd_offset = le(z, eocd + 16, 4);
    if (cd_offset == 0xffffffffu || entries == 0xffff) {  // ZIP64
      OTTER_CHECK(eocd >= 20 && le(z, eocd - 20, 4) == 0x07064b50, "bad ZIP64 locator");
      uint64_t z64 = le(z, eocd - 20 + 8, 8);
      OTTER_CHECK(le(z, z64, 4) == 0x06064b50, "bad ZIP64 end record");
      entries = le(z, z64 + 32, 8);
      cd_offset = le(z, z64 + 48, 8);
    }
    // Each central directory entry takes at least 46 bytes: a count beyond that is corrupt.
    OTTER_CHECK(entries <= z.size() / 46, "the zip directory claims ", entries, " members");
    std::map<std::string, Tensor> arrays;
    uint64_t pos = cd_offset;
    for (uint64_t e = 0; e < entries; ++e) {
      OTTER_CHECK(le(z, pos, 4) == 0x02014b50, "corrupt zip central directory");
      int method = static_cast<int>(le(z, pos + 10, 2));
      uint64_t csize = le(z, pos + 20, 4), usize = le(z, pos + 24, 4);
      uint64_t name_len = le(z, pos + 28, 2), extra_len = le(z, pos + 30, 2), comment_len = le(z, pos + 32, 2);
      uint64_t local = le(z, pos + 42, 4);
      OTTER_CHECK(pos + 46 + name_len <= z.size(), "corrupt zip central directory (name)");
      std::string name = z.substr(pos + 46, name_len);
      uint64_t extra = pos + 46 + name_len, extra_end = extra + extra_len;
      while (extra + 4 <= extra_end) {  // ZIP64 extended information
        uint64_t id = le(z, extra, 2), len = le(z, extra + 2, 2);
        if (id == 1) {
          uint64_t q = extra + 4;
          if (usize == 0xffffffffu) { usize = le(z, q, 8); q += 8; }
          if (csize == 0xffffffffu) { csize = le(z, q, 8); q += 8; }
          if (local == 0xffffffffu) { local = le(z, q, 8); }
        }
        extra += 4 + len;
      }
      pos = extra_end + comment_len;
      std::string member = "member '" + name + "'";
      OTTER_CHECK(le(z, local, 4) == 0x04034b50, "corrupt zip ", member);
      uint64_t data = local + 30 + le(z, local + 26, 2) + le(z, local + 28, 2);
      OTTER_CHECK(data <= z.size() && csize <= z.size() - data, member, " is truncated");
      std::string raw = z.substr(data, csize);
      if (method == 8) {
        // Deflate expands at most ~1032:1; a larger claimed size is a corrupt header, not an allocation to attempt.
        OTTER_CHECK(usize <= csize * 1032 + 1024, member, ": claims ", usize, " bytes from ", csize, " compressed");
        raw = inflate_raw(raw, usize, member);
      } else {
        OTTER_CHECK(method == 0, member, ": unsupported compression method ", method);
      }
      std::string key = name.size() > 4 && name.substr(name.size() - 4) == ".npy" ? name.substr(0, name.size() - 4) : name;
      OTTER_CHECK(!arrays.count(key), member, " appears twice");
      arrays[key] = parse_npy(raw, member);
    }
    return arrays;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::OutOfMemory) throw;
    OTTER_FAIL(what, ": ", e.what());
  }
}

void write_npz(const std::string& path, const std::map<std::string, Tensor>& arrays) {
  std::string z, cd;
  uint64_t count = 0;
  for (auto& kv : arrays) {
    std::string name = kv.first + ".npy";
    std::string data = serialize_npy(kv.second);
    uint32_t crc = static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    OTTER_CHECK(data.size() < 0xffffffffu, "write_npz: array '", kv.first, "' is too large");
    uint64_t offset = z.size();
    put(z, 0x04034b50, 4); put(z, 20, 2); put(z, 0, 2); put(z, 0, 2); put(z, 0, 2); put(z, 0x21, 2);
    put(z, crc, 4); put(z, data.size(), 4); put(z, data.size(), 4); put(z, name.size(), 2); put(z, 0, 2);
    z += name;
    z += data;
    put(cd, 0x02014b50, 4); put(cd, 20, 2); put(cd, 20, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2);
    put(cd, 0x21, 2); put(cd, crc, 4); put(cd, data.size(), 4); put(cd, data.size(), 4); put(cd, name.size(), 2);
    put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4); put(cd, offset, 4);
    cd += name;
    ++count;
  }
  uint64_t cd_offset = z.size();
  z += cd;
  put(z, 0x06054b50, 4); put(z, 0, 2); put(z, 0, 2); put(z, count, 2); put(z, count, 2);
  put(z, cd.size(), 4); put(z, cd_offset, 4); put(z, 0, 2);
  write_file_atomic(path, z.data(), z.size(), "data file");
}

}  // namespace otter
