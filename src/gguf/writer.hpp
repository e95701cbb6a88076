// GGUF v3 writer producing files that llama.cpp (gguf.cpp) loads.
//
//   realm::gguf::Writer w;
//   w.metadata() = in.metadata();                       // copy everything from a reader ...
//   w.metadata().set("general.file_type", uint32_t{15}); // ... and edit
//   w.add_tensor("tok_embd.weight", {64, 512}, TensorType::F32, bytes);
//   if (auto s = w.write("out.gguf"); !s) report(s.error().message);
//
// Layout (what llama.cpp expects): header, key/values, tensor infos, zero padding to
// the alignment, then each tensor's data in the order added, each padded to the
// alignment, with offsets relative to the data section. The alignment is
// general.alignment from the metadata if set (a power-of-two integer), else 32.
// Note: llama.cpp itself cannot read nested arrays (array of arrays); this writer
// and realm's reader support them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "gguf/result.hpp"
#include "gguf/types.hpp"
#include "gguf/value.hpp"

namespace realm::gguf {

// llama.cpp rejects tensor names of 64 bytes or more (GGML_MAX_NAME includes the NUL).
inline constexpr size_t kMaxTensorNameLength = 63;

class Writer {
public:
    // Fills `out` (exactly the tensor's byte size) when the data is written; lets callers
    // produce tensors (e.g. quantize them) one at a time instead of holding all in memory.
    using Producer = std::function<Status(std::span<std::byte> out)>;

    Metadata& metadata() { return metadata_; }
    const Metadata& metadata() const { return metadata_; }
    // Shorthand for metadata().set(key, value).
    void set(std::string key, Value value) { metadata_.set(std::move(key), std::move(value)); }

    // Adds a tensor; dims in ggml order (dims[0] is the row length), 1 to 4 of them.
    // Checks: unique non-empty name of at most 63 bytes, known type, dims[0] a multiple
    // of the block size, no size overflow, and data.size() equal to the computed byte size.
    // `data` is NOT copied: it must stay valid until write() returns (a reader's
    // mapping or a caller-owned buffer).
    Status add_tensor(std::string name, std::vector<uint64_t> dims, TensorType type,
                      std::span<const std::byte> data);
    // Same, with data produced during write().
    Status add_tensor(std::string name, std::vector<uint64_t> dims, TensorType type, Producer produce);

    size_t tensor_count() const { return tensors_.size(); }

    class Sink;  // internal byte sink (defined in writer.cpp)

    // Writes `path` atomically: to a temporary file in the same directory, then renamed over it
    // (so rewriting the file a reader has mapped is safe: the old mapping keeps the old inode).
    Status write(const std::string& path) const;
    // The complete file image in memory (for tests, fuzz seeds and small files).
    Result<std::vector<std::byte>> write_to_memory() const;

private:
    struct Tensor {
        std::string name;
        std::vector<uint64_t> dims;
        TensorType type;
        uint64_t n_bytes;
        std::span<const std::byte> data;
        Producer produce;
    };
    Result<uint64_t> check_tensor(const std::string& name, const std::vector<uint64_t>& dims, TensorType type) const;
    Status write_to(Sink& sink) const;

    Metadata metadata_;
    std::vector<Tensor> tensors_;
    std::map<std::string, size_t, std::less<>> names_;
};

}  // namespace realm::gguf
