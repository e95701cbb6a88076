// Memory-mapped GGUF reader (format versions 2 and 3).
//
// Every count, length, offset and size read from a file is checked against the
// bytes actually present, in 64-bit arithmetic with overflow checks, before it is
// used; malformed input yields an Error that names the field and its byte offset.
//
//   auto f = realm::gguf::File::open("model.gguf");
//   if (!f) { report(f.error().message); return; }
//   uint32_t n_layer = f->metadata().get_u32("llama.block_count").value();
//   for (const auto& t : f->tensors()) use(t.name, t.type, t.data);
//
// Split models ("name-00001-of-00003.gguf", as written by llama.cpp's gguf-split)
// open as one logical file: open any shard and all shards are mapped; metadata
// comes from the first shard and tensors from all of them, each tensor's data
// pointing into its own shard's mapping.
//
// Accepted like ggml does: zero-sized dimensions (a tensor with no data), version 2.
// Rejected: n_dims 0 or > 4, unknown value/tensor types, duplicate keys or tensor
// names, empty keys, unaligned or overlapping tensor data, data past the end of the
// file, element counts over 2^63. More lenient than llama.cpp: tensors need not be
// stored contiguously in info order, names may be 64 bytes or longer, and
// general.alignment may be any integer type holding a power of two.
//
// A File is immutable once opened, so concurrent readers need no locking. As with any
// mmap, truncating the file on disk while it is mapped makes later reads fault (SIGBUS).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/result.hpp"
#include "gguf/types.hpp"
#include "gguf/value.hpp"

namespace realm::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;
inline constexpr std::string_view kKeyAlignment = "general.alignment";
inline constexpr std::string_view kKeySplitNo = "split.no";                    // 0-based shard index
inline constexpr std::string_view kKeySplitCount = "split.count";              // number of shards
inline constexpr std::string_view kKeySplitTensorsCount = "split.tensors.count";  // tensors in all shards

struct TensorInfo {
    std::string name;
    uint32_t n_dims = 0;                     // 1..4
    std::array<uint64_t, kMaxDims> ne{1, 1, 1, 1};  // ggml order: ne[0] is the contiguous (row) dim; unused dims are 1
    TensorType type = TensorType::F32;
    uint64_t offset = 0;       // as stored: relative to the shard's data section
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;      // from type_traits: (ne[0] / block_size) * type_size * ne[1] * ne[2] * ne[3]
    uint32_t shard = 0;        // which shard (0-based) holds the data
    uint64_t file_offset = 0;  // absolute byte offset of the data within its shard
    std::span<const std::byte> data;  // n_bytes bytes inside the shard's mapping

    std::span<const uint64_t> dims() const { return {ne.data(), n_dims}; }
};

struct ShardInfo {
    std::string path;         // empty for open_memory
    uint32_t version = 0;     // 2 or 3
    uint32_t alignment = kDefaultAlignment;
    uint64_t data_offset = 0; // start of the data section (aligned; may be >= size when there are no tensors)
    uint64_t size = 0;        // file size in bytes
    std::span<const std::byte> bytes;  // the whole mapped file
};

// An opened GGUF file (or split set). Owns the mappings; movable, not copyable.
// Tensor data spans stay valid while the File lives (moving the File keeps them valid).
class File {
public:
    // Maps `path`. If its metadata says it is one shard of a split model, maps all shards.
    static Result<File> open(const std::string& path);
    // Parses bytes already in memory with the same code as open(). The bytes are not
    // copied: the caller keeps them alive and unchanged for the File's lifetime.
    // Split metadata is reported as-is; no other shards are looked for.
    static Result<File> open_memory(std::span<const std::byte> bytes);

    File(File&&) noexcept;
    File& operator=(File&&) noexcept;
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    ~File();

    uint32_t version() const { return shards_.front().version; }
    uint32_t alignment() const { return shards_.front().alignment; }
    // Metadata of the first shard, in file order.
    const Metadata& metadata() const { return metadata_; }
    // All tensors, in file order (shard 0's first, then shard 1's, ...).
    std::span<const TensorInfo> tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;
    std::span<const ShardInfo> shards() const { return shards_; }
    // Tells the kernel that `bytes` (inside a mapping of this File) will not be read soon: the
    // whole pages in it leave this process's resident set (a later read maps them in again from
    // the file). For tensors a caller keeps its own copy of. Bytes outside the mappings: no-op.
    void release_pages(std::span<const std::byte> bytes) const;

private:
    struct Mapping;
    File() = default;

    std::vector<std::unique_ptr<Mapping>> mappings_;  // unique_ptr: spans must not move with the File
    std::vector<ShardInfo> shards_;
    Metadata metadata_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> by_name_;
};

// The file name of shard `split_no` (0-based) of `split_count`, llama.cpp style:
// split_path("out/model", 0, 3) == "out/model-00001-of-00003.gguf".
std::string split_path(std::string_view prefix, uint32_t split_no, uint32_t split_count);

}  // namespace realm::gguf
