// libFuzzer target for the GGUF reader (and, for inputs it accepts, the writer).
//
//   gguf_fuzz -max_total_time=60 CORPUS_DIR
//
// A corpus directory that is missing or empty is first filled with the built-in seeds
// (the same files gguf_seed_corpus writes), so the command above works on its own.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string_view>

#include "gguf/reader.hpp"
#include "gguf/writer.hpp"
#include "seeds.hpp"

namespace {

using namespace realm::gguf;

volatile unsigned char g_sink;  // keeps the touches below from being optimized out

void touch(std::span<const std::byte> b) {
    if (b.empty()) return;
    g_sink = g_sink ^ static_cast<unsigned char>(b.front()) ^ static_cast<unsigned char>(b.back());
}
void touch(std::string_view s) { touch(std::as_bytes(std::span(s.data(), s.size()))); }
template <class T>
void touch_scalar(T x) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, &x, sizeof(T));  // bytes, not a value conversion (float -> uchar can be UB)
    g_sink = g_sink ^ b[0];
}

[[noreturn]] void bug(const char* what, const std::string& detail) {
    std::fprintf(stderr, "gguf_fuzz: %s: %s\n", what, detail.c_str());
    __builtin_trap();
}

void walk(const Array& a);

void walk(const Value& v) {
    v.visit([](const auto& x) {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) {
            touch(x);
        } else if constexpr (std::is_same_v<X, Array>) {
            walk(x);
        } else {
            touch_scalar(x);
        }
    });
}

void walk(const Array& a) {
    a.visit([](const auto& vec) {
        using E = typename std::decay_t<decltype(vec)>::value_type;
        for (const auto& e : vec) {
            if constexpr (std::is_same_v<E, std::string>) {
                touch(e);
            } else if constexpr (std::is_same_v<E, Array>) {
                walk(e);
            } else {
                touch_scalar(static_cast<E>(e));
            }
        }
    });
    if (!a.empty()) {
        if (!a.at(a.size() - 1)) bug("array", "at(size-1) failed");
        if (a.at(a.size())) bug("array", "at(size) succeeded");
    }
}

void walk(const File& f) {
    const Metadata& md = f.metadata();
    for (const auto& kv : md) {
        touch(kv.key);
        walk(kv.value);
        if (md.find(kv.key) != &kv.value) bug("metadata", "find() disagrees with iteration");
        (void)md.get_u32(kv.key);  // exercise the typed getters' error paths
        (void)md.get_string(kv.key);
        touch(kv.value.to_string(4));
    }
    for (const auto& t : f.tensors()) {
        if (t.data.size() != t.n_bytes) bug("tensor", t.name + ": data size differs from n_bytes");
        touch(t.data);  // first and last byte: ASan flags any out-of-bounds span
        if (f.find_tensor(t.name) != &t) bug("tensor", t.name + ": find_tensor mismatch");
    }
}

// Whatever the reader accepts and the writer can express must survive write -> read -> write.
void round_trip(const File& f) {
    // The writer pads to the alignment; a valid but huge one (up to 2^31) would make this
    // harness allocate gigabytes, which libFuzzer reports as out-of-memory.
    if (f.alignment() > (1u << 16)) return;
    Writer w;
    w.metadata() = f.metadata();
    for (const auto& t : f.tensors()) {
        if (!w.add_tensor(t.name, {t.dims().begin(), t.dims().end()}, t.type, t.data)) return;  // e.g. name too long
    }
    auto first = w.write_to_memory();
    if (!first) return;  // e.g. general.alignment stored as a type other than u32
    auto again = File::open_memory(*first);
    if (!again) bug("round trip", "re-reading written file failed: " + again.error().message);
    if (again->tensors().size() != f.tensors().size()) bug("round trip", "tensor count changed");
    for (size_t i = 0; i < f.tensors().size(); ++i) {
        const auto& a = f.tensors()[i];
        const auto& b = again->tensors()[i];
        if (a.name != b.name || a.type != b.type || a.ne != b.ne || a.n_bytes != b.n_bytes ||
            (a.n_bytes && std::memcmp(a.data.data(), b.data.data(), a.n_bytes) != 0)) {
            bug("round trip", "tensor " + a.name + " changed");
        }
    }
    Writer w2;
    w2.metadata() = again->metadata();
    for (const auto& t : again->tensors()) {
        if (!w2.add_tensor(t.name, {t.dims().begin(), t.dims().end()}, t.type, t.data)) bug("round trip", t.name);
    }
    auto second = w2.write_to_memory();
    if (!second) bug("round trip", "second write failed: " + second.error().message);
    if (*first != *second) bug("round trip", "writer output is not stable");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
    // Seed missing or empty corpus directories (arguments that are not -flags).
    for (int i = 1; i < *argc; ++i) {
        const std::string_view arg = (*argv)[i];
        if (arg.empty() || arg.front() == '-') continue;
        std::error_code ec;
        const std::filesystem::path p(arg);
        const bool missing = !std::filesystem::exists(p, ec);
        const bool empty_dir = !missing && std::filesystem::is_directory(p, ec) && std::filesystem::is_empty(p, ec);
        if (missing || empty_dir) {
            const int n = realm::gguf::fuzz::write_seeds(std::string(arg));
            if (n > 0) std::fprintf(stderr, "gguf_fuzz: seeded %s with %d files\n", (*argv)[i], n);
        }
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto bytes = std::as_bytes(std::span(data, size));
    auto f = File::open_memory(bytes);
    if (!f) {
        if (f.error().message.rfind("gguf: ", 0) != 0) bug("error", "message without 'gguf: ' prefix: " + f.error().message);
        return 0;
    }
    walk(*f);
    round_trip(*f);
    return 0;
}
