#include "gguf/writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>

namespace realm::gguf {

// Values are emitted with memcpy of native integers: GGUF is little-endian.
static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

namespace {

constexpr uint32_t kVersion = 3;

std::string error_text(int err) { return std::error_code(err, std::generic_category()).message(); }
std::string num(uint64_t v) { return std::to_string(v); }

}  // namespace

// Byte sink with a running count, so padding can be computed from the position.
class Writer::Sink {
public:
    virtual ~Sink() = default;
    Status put(std::span<const std::byte> b) {
        written_ += b.size();
        return put_raw(b);
    }
    uint64_t written() const { return written_; }

protected:
    virtual Status put_raw(std::span<const std::byte> b) = 0;

private:
    uint64_t written_ = 0;
};

namespace {

class VectorSink final : public Writer::Sink {
public:
    std::vector<std::byte> bytes;

protected:
    Status put_raw(std::span<const std::byte> b) override {
        bytes.insert(bytes.end(), b.begin(), b.end());
        return {};
    }
};

// Buffered writes to a file descriptor (which it does not own).
class FdSink final : public Writer::Sink {
public:
    FdSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) { buf_.reserve(kBufSize); }

    Status flush() {
        auto s = write_all(buf_);
        buf_.clear();
        return s;
    }

protected:
    Status put_raw(std::span<const std::byte> b) override {
        if (buf_.size() + b.size() > kBufSize) {
            if (auto s = flush(); !s) return s;
            if (b.size() >= kBufSize) return write_all(b);  // big tensor data: skip the copy
        }
        buf_.insert(buf_.end(), b.begin(), b.end());
        return {};
    }

private:
    static constexpr size_t kBufSize = size_t{1} << 20;

    Status write_all(std::span<const std::byte> b) {
        while (!b.empty()) {
            const ssize_t n = ::write(fd_, b.data(), b.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return make_error("gguf: writing '" + path_ + "' failed: " + error_text(errno));
            }
            b = b.subspan(static_cast<size_t>(n));
        }
        return {};
    }

    int fd_;
    std::string path_;
    std::vector<std::byte> buf_;
};

template <class T>
Status put_pod(Writer::Sink& s, const T& v) {
    std::byte b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    return s.put(b);
}

Status put_string(Writer::Sink& s, std::string_view str) {
    if (auto r = put_pod<uint64_t>(s, str.size()); !r) return r;
    return s.put(std::as_bytes(std::span(str.data(), str.size())));
}

Status put_array_body(Writer::Sink& s, const Array& a);

Status put_value_body(Writer::Sink& s, const Value& v) {
    return v.visit([&](const auto& x) -> Status {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) {
            return put_string(s, x);
        } else if constexpr (std::is_same_v<X, Array>) {
            return put_array_body(s, x);
        } else if constexpr (std::is_same_v<X, bool>) {
            return put_pod<uint8_t>(s, x ? 1 : 0);
        } else {
            return put_pod<X>(s, x);
        }
    });
}

// An array value without its leading ARRAY tag: element type, count, elements.
// Nested arrays are written the same way for each element.
Status put_array_body(Writer::Sink& s, const Array& a) {
    if (auto r = put_pod<uint32_t>(s, static_cast<uint32_t>(a.type())); !r) return r;
    if (auto r = put_pod<uint64_t>(s, a.size()); !r) return r;
    return a.visit([&](const auto& vec) -> Status {
        using E = typename std::decay_t<decltype(vec)>::value_type;
        if constexpr (std::is_same_v<E, std::string>) {
            for (const auto& str : vec) {
                if (auto r = put_string(s, str); !r) return r;
            }
            return {};
        } else if constexpr (std::is_same_v<E, Array>) {
            for (const auto& sub : vec) {
                if (auto r = put_array_body(s, sub); !r) return r;
            }
            return {};
        } else if constexpr (std::is_same_v<E, bool>) {
            std::vector<std::byte> bytes(vec.size());
            for (size_t i = 0; i < vec.size(); ++i) bytes[i] = vec[i] ? std::byte{1} : std::byte{0};
            return s.put(bytes);
        } else {
            return s.put(std::as_bytes(std::span(vec)));
        }
    });
}

Status pad_to(Writer::Sink& s, uint64_t alignment) {
    static constexpr std::byte kZeros[256] = {};
    uint64_t n = (alignment - s.written() % alignment) % alignment;
    while (n) {
        const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof kZeros));
        if (auto r = s.put(std::span(kZeros, k)); !r) return r;
        n -= k;
    }
    return {};
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Removes the temporary file unless the write succeeded; closes the descriptor.
struct TempFile {
    std::string path;
    int fd = -1;
    bool keep = false;
    ~TempFile() {
        if (fd >= 0) ::close(fd);
        if (!keep && !path.empty()) ::unlink(path.c_str());
    }
};

}  // namespace

Result<uint64_t> Writer::check_tensor(const std::string& name, const std::vector<uint64_t>& dims,
                                      TensorType type) const {
    const std::string what = "gguf: writer: tensor '" + name + "': ";
    if (name.empty()) return make_error("gguf: writer: tensor name is empty");
    if (name.size() > kMaxTensorNameLength) {
        return make_error(what + "name is " + num(name.size()) + " bytes, llama.cpp allows at most " +
                          num(kMaxTensorNameLength));
    }
    if (names_.contains(name)) return make_error(what + "duplicate tensor name");
    if (dims.empty() || dims.size() > kMaxDims) {
        return make_error(what + num(dims.size()) + " dimensions, expected 1.." + num(kMaxDims));
    }
    const auto traits = type_traits(type);
    if (!traits) return make_error(what + "unknown tensor type id " + num(static_cast<uint32_t>(type)));
    uint64_t n = 1;
    for (uint64_t d : dims) {
        if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(n, d, &n) ||
            n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            return make_error(what + "element count overflows int64");
        }
    }
    if (dims[0] % traits->block_size != 0) {
        return make_error(what + "first dimension " + num(dims[0]) + " is not a multiple of the " +
                          std::string(traits->name) + " block size " + num(traits->block_size));
    }
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(n / traits->block_size, uint64_t{traits->type_size}, &bytes)) {
        return make_error(what + "byte size overflows 64 bits");
    }
    return bytes;
}

Status Writer::add_tensor(std::string name, std::vector<uint64_t> dims, TensorType type,
                          std::span<const std::byte> data) {
    auto bytes = check_tensor(name, dims, type);
    if (!bytes) return bytes.error();
    if (data.size() != *bytes) {
        return make_error("gguf: writer: tensor '" + name + "': data is " + num(data.size()) + " bytes, its shape as " +
                          std::string(type_name(type)) + " needs " + num(*bytes));
    }
    names_.emplace(name, tensors_.size());
    tensors_.push_back(Tensor{std::move(name), std::move(dims), type, *bytes, data, nullptr});
    return {};
}

Status Writer::add_tensor(std::string name, std::vector<uint64_t> dims, TensorType type, Producer produce) {
    auto bytes = check_tensor(name, dims, type);
    if (!bytes) return bytes.error();
    if (!produce) return make_error("gguf: writer: tensor '" + name + "': empty producer");
    names_.emplace(name, tensors_.size());
    tensors_.push_back(Tensor{std::move(name), std::move(dims), type, *bytes, {}, std::move(produce)});
    return {};
}

Status Writer::write_to(Sink& s) const {
    uint32_t alignment = kDefaultAlignment;
    if (const Value* a = metadata_.find(kKeyAlignment)) {
        // llama.cpp insists on u32 here.
        const auto* v = a->get_if<uint32_t>();
        if (!v) {
            return make_error("gguf: writer: general.alignment must be a u32, got " +
                              std::string(value_type_name(a->type())));
        }
        if (*v == 0 || !std::has_single_bit(*v)) {
            return make_error("gguf: writer: general.alignment " + num(*v) + " is not a nonzero power of two");
        }
        alignment = *v;
    }
    for (const auto& kv : metadata_) {
        if (kv.key.empty()) return make_error("gguf: writer: empty metadata key");
    }

    if (auto r = put_pod<uint32_t>(s, kMagic); !r) return r;
    if (auto r = put_pod<uint32_t>(s, kVersion); !r) return r;
    if (auto r = put_pod<uint64_t>(s, tensors_.size()); !r) return r;
    if (auto r = put_pod<uint64_t>(s, metadata_.size()); !r) return r;

    for (const auto& kv : metadata_) {
        if (auto r = put_string(s, kv.key); !r) return r;
        if (auto r = put_pod<uint32_t>(s, static_cast<uint32_t>(kv.value.type())); !r) return r;
        if (auto r = put_value_body(s, kv.value); !r) return r;
    }

    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        if (auto r = put_string(s, t.name); !r) return r;
        if (auto r = put_pod<uint32_t>(s, static_cast<uint32_t>(t.dims.size())); !r) return r;
        for (uint64_t d : t.dims) {
            if (auto r = put_pod<uint64_t>(s, d); !r) return r;
        }
        if (auto r = put_pod<uint32_t>(s, static_cast<uint32_t>(t.type)); !r) return r;
        if (auto r = put_pod<uint64_t>(s, offset); !r) return r;
        if (__builtin_add_overflow(offset, align_up(t.n_bytes, alignment), &offset)) {
            return make_error("gguf: writer: total data size overflows 64 bits");
        }
    }
    if (auto r = pad_to(s, alignment); !r) return r;

    std::vector<std::byte> scratch;
    for (const auto& t : tensors_) {
        std::span<const std::byte> data = t.data;
        if (t.produce) {
            scratch.assign(static_cast<size_t>(t.n_bytes), std::byte{0});
            if (auto r = t.produce(scratch); !r) {
                return make_error("gguf: writer: tensor '" + t.name + "': " + r.error().message);
            }
            data = scratch;
        }
        if (auto r = s.put(data); !r) return r;
        if (auto r = pad_to(s, alignment); !r) return r;
    }
    return {};
}

Result<std::vector<std::byte>> Writer::write_to_memory() const {
    VectorSink s;
    if (auto r = write_to(s); !r) return r.error();
    return std::move(s.bytes);
}

Status Writer::write(const std::string& path) const {
    TempFile tmp;
    std::string templ = path + ".tmp-XXXXXX";
    tmp.fd = ::mkstemp(templ.data());
    if (tmp.fd < 0) return make_error("gguf: cannot create a temporary file for '" + path + "': " + error_text(errno));
    tmp.path = templ;
    ::fchmod(tmp.fd, 0644);  // mkstemp makes 0600; a model file is normally world-readable

    FdSink sink(tmp.fd, tmp.path);
    if (auto r = write_to(sink); !r) return r;
    if (auto r = sink.flush(); !r) return r;
    if (::fsync(tmp.fd) != 0) return make_error("gguf: fsync of '" + tmp.path + "' failed: " + error_text(errno));
    const int fd = tmp.fd;
    tmp.fd = -1;
    if (::close(fd) != 0) return make_error("gguf: closing '" + tmp.path + "' failed: " + error_text(errno));
    if (::rename(tmp.path.c_str(), path.c_str()) != 0) {
        return make_error("gguf: renaming '" + tmp.path + "' to '" + path + "' failed: " + error_text(errno));
    }
    tmp.keep = true;
    return {};
}

}  // namespace realm::gguf
