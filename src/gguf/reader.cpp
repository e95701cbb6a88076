#include "gguf/reader.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <system_error>

namespace realm::gguf {

// Multi-byte fields are decoded with memcpy, which is only correct on little-endian hosts.
static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

// Nested arrays recurse; the limit keeps hostile files from exhausting the stack.
constexpr uint32_t kMaxArrayDepth = 64;
// Smallest possible encodings, used to reject counts that the remaining bytes cannot hold
// before anything is allocated: a key/value is a non-empty key (8 + 1), a type (4) and
// at least one value byte; a tensor info is a name length (8), n_dims (4), one dim (8),
// a type (4) and an offset (8).
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

std::string num(uint64_t v) { return std::to_string(v); }

// Names and keys come from the file: escape them and cap their length for messages.
std::string printable(std::string_view s) {
    constexpr size_t kMax = 96;
    std::string out;
    for (size_t i = 0; i < s.size() && i < kMax; ++i) {
        const auto u = static_cast<unsigned char>(s[i]);
        if (u < 0x20 || u == 0x7f || s[i] == '\'' || s[i] == '\\') {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out += s[i];
        }
    }
    if (s.size() > kMax) out += "...";
    return out;
}

std::string shape_string(const TensorInfo& t) {
    std::string s = "[";
    for (uint32_t i = 0; i < t.n_dims; ++i) {
        if (i) s += ", ";
        s += num(t.ne[i]);
    }
    return s + "]";
}

struct ParsedShard {
    uint32_t version = 0;
    uint32_t alignment = kDefaultAlignment;
    uint64_t data_offset = 0;
    Metadata metadata;
    std::vector<TensorInfo> tensors;
};

// Parses one GGUF image. All reads go through need(), which checks the remaining size.
class Parser {
public:
    Parser(std::span<const std::byte> bytes, std::string prefix) : b_(bytes), prefix_(std::move(prefix)) {}

    Result<ParsedShard> parse();

private:
    uint64_t remaining() const { return b_.size() - pos_; }

    Error fail_at(uint64_t at, std::string_view what) const {
        std::string m = prefix_;
        if (!where_.empty()) m += where_ + " ";
        m += "at byte " + num(at) + ": ";
        m += what;
        return make_error(std::move(m));
    }
    Error fail(std::string_view what) const {
        std::string m = prefix_;
        if (!where_.empty()) m += where_ + ": ";
        m += what;
        return make_error(std::move(m));
    }

    Status need(uint64_t n, std::string_view field) const {
        if (n <= remaining()) return {};
        return fail_at(pos_, std::string(field) + " needs " + num(n) + " bytes but only " + num(remaining()) +
                                 " remain (file size " + num(b_.size()) + ")");
    }

    template <class T>
    T load() {
        T v;
        std::memcpy(&v, b_.data() + pos_, sizeof v);
        pos_ += sizeof v;
        return v;
    }

    template <class T>
    Result<T> read(std::string_view field) {
        if (auto s = need(sizeof(T), field); !s) return s.error();
        return load<T>();
    }

    Result<std::string> read_string(std::string_view field);
    Result<ValueType> read_value_type(std::string_view field);
    Result<Value> read_value(ValueType type, uint32_t depth);
    Result<Array> read_array(uint32_t depth);
    template <class T>
    Array read_scalars(uint64_t count);

    Status read_header(ParsedShard& out, uint64_t& n_tensors, uint64_t& n_kv);
    Status read_metadata(ParsedShard& out, uint64_t n_kv);
    Status read_tensor_infos(ParsedShard& out, uint64_t n_tensors);
    Status place_tensors(ParsedShard& out);

    std::span<const std::byte> b_;
    uint64_t pos_ = 0;
    std::string prefix_;  // "gguf: " or "gguf: <path>: "
    std::string where_;   // the item being read, e.g. "metadata key #3 'general.name'"
};

Result<std::string> Parser::read_string(std::string_view field) {
    const uint64_t at = pos_;
    auto len = read<uint64_t>(field);
    if (!len) return len.error();
    if (*len > remaining()) {
        return fail_at(at, std::string(field) + " " + num(*len) + " exceeds remaining " + num(remaining()) +
                               " bytes");
    }
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(*len));
    pos_ += *len;
    return s;
}

Result<ValueType> Parser::read_value_type(std::string_view field) {
    const uint64_t at = pos_;
    auto t = read<uint32_t>(field);
    if (!t) return t.error();
    if (*t >= kValueTypeCount) return fail_at(at, "unknown " + std::string(field) + " " + num(*t));
    return static_cast<ValueType>(*t);
}

template <class T>
Array Parser::read_scalars(uint64_t count) {
    // Caller has checked count * sizeof(T) <= remaining().
    std::vector<T> v(static_cast<size_t>(count));
    if (count) std::memcpy(v.data(), b_.data() + pos_, static_cast<size_t>(count) * sizeof(T));
    pos_ += count * sizeof(T);
    return Array(std::move(v));
}

Result<Value> Parser::read_value(ValueType type, uint32_t depth) {
    switch (type) {
        case ValueType::U8: { auto r = read<uint8_t>("u8 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::I8: { auto r = read<int8_t>("i8 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::U16: { auto r = read<uint16_t>("u16 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::I16: { auto r = read<int16_t>("i16 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::U32: { auto r = read<uint32_t>("u32 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::I32: { auto r = read<int32_t>("i32 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::F32: { auto r = read<float>("f32 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::U64: { auto r = read<uint64_t>("u64 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::I64: { auto r = read<int64_t>("i64 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::F64: { auto r = read<double>("f64 value"); if (!r) return r.error(); return Value(*r); }
        case ValueType::Bool: {
            // Read as a byte: a byte other than 0/1 loaded into a bool would be undefined behaviour.
            auto r = read<uint8_t>("bool value");
            if (!r) return r.error();
            return Value(*r != 0);
        }
        case ValueType::String: {
            auto r = read_string("string length");
            if (!r) return r.error();
            return Value(std::move(*r));
        }
        case ValueType::Array: {
            auto r = read_array(depth + 1);
            if (!r) return r.error();
            return Value(std::move(*r));
        }
    }
    return fail_at(pos_, "unknown value type");  // unreachable: callers validate the type
}

Result<Array> Parser::read_array(uint32_t depth) {
    if (depth > kMaxArrayDepth) {
        return fail_at(pos_, "arrays nested deeper than " + num(kMaxArrayDepth) + " levels");
    }
    auto elem = read_value_type("array element type");
    if (!elem) return elem.error();
    const uint64_t count_at = pos_;
    auto count = read<uint64_t>("array length");
    if (!count) return count.error();

    // A string needs at least its length, a nested array its type and length.
    uint64_t min_size = value_type_size(*elem);
    if (*elem == ValueType::String) min_size = 8;
    if (*elem == ValueType::Array) min_size = 4 + 8;
    if (*count > remaining() / min_size) {
        return fail_at(count_at, "array length " + num(*count) + " of " + std::string(value_type_name(*elem)) +
                                     " needs at least " +
                                     (*count > std::numeric_limits<uint64_t>::max() / min_size
                                          ? std::string("2^64")
                                          : num(*count * min_size)) +
                                     " bytes but only " + num(remaining()) + " remain");
    }
    const uint64_t n = *count;
    auto element_error = [n](const Error& e, uint64_t i) {
        return make_error(e.message + " (array element " + num(i) + " of " + num(n) + ")");
    };

    switch (*elem) {
        case ValueType::U8: return read_scalars<uint8_t>(n);
        case ValueType::I8: return read_scalars<int8_t>(n);
        case ValueType::U16: return read_scalars<uint16_t>(n);
        case ValueType::I16: return read_scalars<int16_t>(n);
        case ValueType::U32: return read_scalars<uint32_t>(n);
        case ValueType::I32: return read_scalars<int32_t>(n);
        case ValueType::F32: return read_scalars<float>(n);
        case ValueType::U64: return read_scalars<uint64_t>(n);
        case ValueType::I64: return read_scalars<int64_t>(n);
        case ValueType::F64: return read_scalars<double>(n);
        case ValueType::Bool: {
            std::vector<bool> v(static_cast<size_t>(n));
            for (uint64_t i = 0; i < n; ++i) v[i] = load<uint8_t>() != 0;
            return Array(std::move(v));
        }
        case ValueType::String: {
            std::vector<std::string> v;
            v.reserve(static_cast<size_t>(n));
            for (uint64_t i = 0; i < n; ++i) {
                auto s = read_string("string length");
                if (!s) return element_error(s.error(), i);
                v.push_back(std::move(*s));
            }
            return Array(std::move(v));
        }
        case ValueType::Array: {
            std::vector<Array> v;
            v.reserve(static_cast<size_t>(n));
            for (uint64_t i = 0; i < n; ++i) {
                auto a = read_array(depth + 1);
                if (!a) return element_error(a.error(), i);
                v.push_back(std::move(*a));
            }
            return Array(std::move(v));
        }
    }
    return fail_at(pos_, "unknown array element type");  // unreachable
}

Status Parser::read_header(ParsedShard& out, uint64_t& n_tensors, uint64_t& n_kv) {
    where_ = "header";
    auto magic = read<uint32_t>("magic");
    if (!magic) return magic.error();
    if (*magic != kMagic) {
        std::string shown;
        for (size_t i = 0; i < 4; ++i) {
            const auto c = static_cast<unsigned char>(b_[i]);
            shown += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
        }
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%08" PRIx32, *magic);
        return fail_at(0, "bad magic '" + shown + "' (" + hex + "), expected 'GGUF': not a GGUF file");
    }
    auto version = read<uint32_t>("version");
    if (!version) return version.error();
    const uint32_t v = *version;
    if (v == 1) return fail_at(4, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (v != 0 && (v & 0xFFFFu) == 0) {
        return fail_at(4, "version " + num(v) + " looks byte-swapped: big-endian GGUF files are not supported");
    }
    if (v != 2 && v != 3) return fail_at(4, "unsupported GGUF version " + num(v) + " (only versions 2 and 3)");
    out.version = v;

    auto nt = read<uint64_t>("tensor count");
    if (!nt) return nt.error();
    auto nk = read<uint64_t>("metadata key/value count");
    if (!nk) return nk.error();
    n_tensors = *nt;
    n_kv = *nk;

    if (n_kv > remaining() / kMinKvBytes) {
        return fail_at(16, "metadata key/value count " + num(n_kv) + " is absurd: each needs at least " +
                               num(kMinKvBytes) + " bytes but only " + num(remaining()) + " remain");
    }
    const uint64_t left = remaining() - n_kv * kMinKvBytes;
    if (n_tensors > left / kMinTensorInfoBytes) {
        return fail_at(8, "tensor count " + num(n_tensors) + " is absurd: each needs at least " +
                              num(kMinTensorInfoBytes) + " bytes but only " + num(remaining()) +
                              " remain for " + num(n_kv) + " key/values and the tensor infos");
    }
    return {};
}

Status Parser::read_metadata(ParsedShard& out, uint64_t n_kv) {
    for (uint64_t i = 0; i < n_kv; ++i) {
        where_ = "metadata key #" + num(i);
        const uint64_t key_at = pos_;
        auto key = read_string("key length");
        if (!key) return key.error();
        if (key->empty()) return fail_at(key_at, "empty key");
        where_ += " '" + printable(*key) + "'";
        if (out.metadata.contains(*key)) return fail_at(key_at, "duplicate key");
        auto type = read_value_type("value type");
        if (!type) return type.error();
        auto value = read_value(*type, 0);
        if (!value) return value.error();
        out.metadata.insert(std::move(*key), std::move(*value));
    }
    where_.clear();

    if (const Value* a = out.metadata.find(kKeyAlignment)) {
        where_ = "metadata key '" + std::string(kKeyAlignment) + "'";
        auto align = a->to_int<uint32_t>();
        if (!align) return fail("must be a u32 integer, got " + a->to_string() + " (" +
                                std::string(value_type_name(a->type())) + ")");
        if (*align == 0 || !std::has_single_bit(*align)) {
            return fail("alignment " + num(*align) + " is not a nonzero power of two");
        }
        out.alignment = *align;
        where_.clear();
    }
    return {};
}

Status Parser::read_tensor_infos(ParsedShard& out, uint64_t n_tensors) {
    std::map<std::string_view, uint64_t> seen;  // views into out.tensors[i].name: reserve() keeps them stable
    out.tensors.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        where_ = "tensor #" + num(i);
        TensorInfo t;
        const uint64_t name_at = pos_;
        auto name = read_string("name length");
        if (!name) return name.error();
        t.name = std::move(*name);
        where_ += " '" + printable(t.name) + "'";

        const uint64_t dims_at = pos_;
        auto n_dims = read<uint32_t>("n_dims");
        if (!n_dims) return n_dims.error();
        if (*n_dims == 0 || *n_dims > kMaxDims) {
            return fail_at(dims_at, "n_dims " + num(*n_dims) + " is not in 1.." + num(kMaxDims));
        }
        t.n_dims = *n_dims;
        for (uint32_t d = 0; d < t.n_dims; ++d) {
            const uint64_t at = pos_;
            auto ne = read<uint64_t>("dimension");
            if (!ne) return ne.error();
            // Stored as int64 (ggml's ne); a value above INT64_MAX is a negative dimension.
            if (*ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                return fail_at(at, "dimension " + num(d) + " is negative (" +
                                       std::to_string(static_cast<int64_t>(*ne)) + ")");
            }
            t.ne[d] = *ne;
        }

        const uint64_t type_at = pos_;
        auto type_id = read<uint32_t>("tensor type");
        if (!type_id) return type_id.error();
        const auto traits = type_traits(*type_id);
        if (!traits) return fail_at(type_at, "unknown tensor type id " + num(*type_id));
        t.type = traits->type;

        // ggml keeps element counts in int64_t: the product must stay below 2^63.
        uint64_t n = 1;
        bool overflow = false;
        for (uint64_t ne : t.ne) overflow = overflow || mul_overflows(n, ne, &n);
        if (overflow || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            return fail_at(dims_at, "element count of shape " + shape_string(t) + " overflows int64");
        }
        t.n_elements = n;
        if (t.ne[0] % traits->block_size != 0) {
            return fail_at(dims_at, "first dimension " + num(t.ne[0]) + " is not a multiple of the " +
                                        std::string(traits->name) + " block size " + num(traits->block_size));
        }
        if (mul_overflows(n / traits->block_size, traits->type_size, &t.n_bytes)) {
            return fail_at(dims_at, "byte size of shape " + shape_string(t) + " as " + std::string(traits->name) +
                                        " overflows 64 bits");
        }

        auto offset = read<uint64_t>("data offset");
        if (!offset) return offset.error();
        t.offset = *offset;

        out.tensors.push_back(std::move(t));
        if (!seen.emplace(out.tensors.back().name, i).second) {
            return fail_at(name_at, "duplicate tensor name (first used by tensor #" +
                                        num(seen[out.tensors.back().name]) + ")");
        }
    }
    where_.clear();
    return {};
}

Status Parser::place_tensors(ParsedShard& out) {
    // The data section starts at the next multiple of the alignment after the tensor infos.
    const uint64_t a = out.alignment;
    uint64_t padded = 0;
    if (add_overflows(pos_, a - 1, &padded)) return fail("data section offset overflows");
    out.data_offset = padded / a * a;
    if (out.tensors.empty()) return {};
    if (out.data_offset > b_.size()) {
        return fail("data section starts at byte " + num(out.data_offset) + " (tensor infos end at " + num(pos_) +
                    ", alignment " + num(a) + "), past end of file (size " + num(b_.size()) + ")");
    }

    for (auto& t : out.tensors) {
        where_ = "tensor '" + printable(t.name) + "'";
        if (t.offset % a != 0) {
            return fail("data offset " + num(t.offset) + " is not a multiple of the alignment " + num(a));
        }
        uint64_t start = 0;
        uint64_t end = 0;
        if (add_overflows(out.data_offset, t.offset, &start) || add_overflows(start, t.n_bytes, &end) ||
            end > b_.size()) {
            return fail("data [offset " + num(t.offset) + " (file offset " +
                        (start >= out.data_offset ? num(start) : std::string("overflow")) + "), size " +
                        num(t.n_bytes) + "] extends past end of file (size " + num(b_.size()) + ")");
        }
        t.file_offset = start;
        t.data = b_.subspan(static_cast<size_t>(start), static_cast<size_t>(t.n_bytes));
    }
    where_.clear();

    // Overlap check: sort by start; each non-empty range must end before the next one begins.
    std::vector<const TensorInfo*> order;
    order.reserve(out.tensors.size());
    for (const auto& t : out.tensors) {
        if (t.n_bytes) order.push_back(&t);
    }
    std::sort(order.begin(), order.end(),
              [](const TensorInfo* x, const TensorInfo* y) { return x->file_offset < y->file_offset; });
    for (size_t i = 1; i < order.size(); ++i) {
        const TensorInfo& p = *order[i - 1];
        const TensorInfo& c = *order[i];
        if (p.file_offset + p.n_bytes > c.file_offset) {
            return fail("tensor '" + printable(c.name) + "' data [offset " + num(c.offset) + ", size " +
                        num(c.n_bytes) + "] overlaps tensor '" + printable(p.name) + "' data [offset " +
                        num(p.offset) + ", size " + num(p.n_bytes) + "]");
        }
    }
    return {};
}

Result<ParsedShard> Parser::parse() {
    ParsedShard out;
    uint64_t n_tensors = 0;
    uint64_t n_kv = 0;
    if (auto s = read_header(out, n_tensors, n_kv); !s) return s.error();
    if (auto s = read_metadata(out, n_kv); !s) return s.error();
    if (auto s = read_tensor_infos(out, n_tensors); !s) return s.error();
    if (auto s = place_tensors(out); !s) return s.error();
    return out;
}

std::string error_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// Closes a file descriptor on every path.
struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

std::string split_suffix(uint32_t split_no, uint32_t split_count) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "-%05" PRIu32 "-of-%05" PRIu32 ".gguf", split_no + 1, split_count);
    return buf;
}

}  // namespace

struct File::Mapping {
    void* addr = nullptr;
    size_t size = 0;

    Mapping() = default;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() {
        if (addr) ::munmap(addr, size);
    }
    std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(addr), size}; }

    static Result<std::unique_ptr<Mapping>> map(const std::string& path) {
        Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
        if (f.fd < 0) return make_error("gguf: cannot open '" + path + "': " + error_text(errno));
        struct stat st {};
        if (::fstat(f.fd, &st) != 0) return make_error("gguf: cannot stat '" + path + "': " + error_text(errno));
        if (!S_ISREG(st.st_mode)) return make_error("gguf: '" + path + "' is not a regular file");
        auto m = std::make_unique<Mapping>();
        if (st.st_size == 0) return m;  // nothing to map; the parser reports the file as too short
        if (static_cast<uint64_t>(st.st_size) > std::numeric_limits<size_t>::max()) {
            return make_error("gguf: '" + path + "' is too large to map");
        }
        const auto size = static_cast<size_t>(st.st_size);
        void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f.fd, 0);
        if (p == MAP_FAILED) return make_error("gguf: cannot map '" + path + "': " + error_text(errno));
        m->addr = p;
        m->size = size;
        return m;
    }
};

File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

std::string split_path(std::string_view prefix, uint32_t split_no, uint32_t split_count) {
    return std::string(prefix) + split_suffix(split_no, split_count);
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Result<File> File::open_memory(std::span<const std::byte> bytes) {
    auto parsed = Parser(bytes, "gguf: ").parse();
    if (!parsed) return parsed.error();
    File f;
    f.shards_.push_back(ShardInfo{"", parsed->version, parsed->alignment, parsed->data_offset, bytes.size(), bytes});
    f.metadata_ = std::move(parsed->metadata);
    f.tensors_ = std::move(parsed->tensors);
    for (size_t i = 0; i < f.tensors_.size(); ++i) f.by_name_.emplace(f.tensors_[i].name, i);
    return f;
}

void File::release_pages(std::span<const std::byte> bytes) const {
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<uintptr_t>(bytes.data());
    const uintptr_t end = begin + bytes.size();
    for (const auto& m : mappings_) {
        const auto mb = reinterpret_cast<uintptr_t>(m->addr);
        if (m->addr == nullptr || begin < mb || end > mb + m->size) continue;
        const uintptr_t first = (begin + page - 1) / page * page;
        const uintptr_t last = end / page * page;
        // Advice only: a failure changes nothing that matters, so it is not reported.
        if (first < last) (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
        return;
    }
}

Result<File> File::open(const std::string& path) {
    struct Loaded {
        std::unique_ptr<Mapping> map;
        ParsedShard parsed;
    };
    auto load = [](const std::string& p) -> Result<Loaded> {
        auto m = Mapping::map(p);
        if (!m) return m.error();
        auto parsed = Parser((*m)->bytes(), "gguf: " + p + ": ").parse();
        if (!parsed) return parsed.error();
        return Loaded{std::move(*m), std::move(*parsed)};
    };
    auto first = load(path);
    if (!first) return first.error();

    // Split detection. split.count absent or 1 means a single file.
    const Metadata& md = first->parsed.metadata;
    uint32_t count = 1;
    uint32_t no = 0;
    if (const Value* c = md.find(kKeySplitCount)) {
        auto v = c->to_int<uint32_t>();
        if (!v || *v == 0) {
            return make_error("gguf: " + path + ": split.count " + c->to_string() + " is not a positive integer");
        }
        count = *v;
    }
    if (count > 1) {
        auto v = md.get_int<uint32_t>(kKeySplitNo);
        if (!v) return make_error("gguf: " + path + ": split model (split.count " + num(count) + "): " + v.error().message);
        if (*v >= count) {
            return make_error("gguf: " + path + ": split.no " + num(*v) + " is not below split.count " + num(count));
        }
        no = *v;
    }

    std::vector<Loaded> loaded;
    std::vector<std::string> paths;
    if (count == 1) {
        loaded.push_back(std::move(*first));
        paths.push_back(path);
    } else {
        const std::string suffix = split_suffix(no, count);
        if (path.size() <= suffix.size() || path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0) {
            return make_error("gguf: " + path + ": shard " + num(no + 1) + " of a " + num(count) +
                              "-way split model, but the file name does not end in '" + suffix + "'");
        }
        const std::string prefix = path.substr(0, path.size() - suffix.size());
        for (uint32_t i = 0; i < count; ++i) {
            std::string p = split_path(prefix, i, count);
            if (i == no) {
                loaded.push_back(std::move(*first));
                paths.push_back(std::move(p));
                continue;
            }
            auto l = load(p);
            if (!l) {
                return make_error("gguf: split model '" + path + "': shard " + num(i + 1) + " of " + num(count) +
                                  " is missing or invalid: " + l.error().message);
            }
            const Metadata& smd = l->parsed.metadata;
            auto sc = smd.get_int<uint32_t>(kKeySplitCount);
            auto sn = smd.get_int<uint32_t>(kKeySplitNo);
            if (!sc || *sc != count || !sn || *sn != i) {
                return make_error("gguf: " + p + ": expected shard split.no " + num(i) + " of split.count " +
                                  num(count) + ", found split.no " + (sn ? num(*sn) : std::string("(missing)")) +
                                  ", split.count " + (sc ? num(*sc) : std::string("(missing)")));
            }
            loaded.push_back(std::move(*l));
            paths.push_back(std::move(p));
        }
    }

    File f;
    for (size_t i = 0; i < loaded.size(); ++i) {
        Loaded& l = loaded[i];
        const auto bytes = l.map->bytes();
        f.shards_.push_back(ShardInfo{paths[i], l.parsed.version, l.parsed.alignment, l.parsed.data_offset,
                                      bytes.size(), bytes});
        for (auto& t : l.parsed.tensors) {
            t.shard = static_cast<uint32_t>(i);
            if (!f.by_name_.emplace(t.name, f.tensors_.size()).second) {
                return make_error("gguf: " + paths[i] + ": tensor '" + printable(t.name) +
                                  "' also appears in an earlier shard");
            }
            f.tensors_.push_back(std::move(t));
        }
        f.mappings_.push_back(std::move(l.map));
    }
    f.metadata_ = std::move(loaded.front().parsed.metadata);

    if (count > 1) {
        if (const Value* tc = f.metadata_.find(kKeySplitTensorsCount)) {
            auto n = tc->to_int<uint64_t>();
            if (!n || *n != f.tensors_.size()) {
                return make_error("gguf: split model '" + path + "': split.tensors.count is " + tc->to_string() +
                                  " but the shards hold " + num(f.tensors_.size()) + " tensors");
            }
        }
    }
    return f;
}

}  // namespace realm::gguf
