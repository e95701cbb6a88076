// Helpers for the GGUF tests: a raw little-endian byte builder for hand-made
// (often malformed) files, and per-test temporary directories.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace realm::gguf::test {

class Bytes {
public:
    Bytes& u8(uint8_t v) { return pod(v); }
    Bytes& u16(uint16_t v) { return pod(v); }
    Bytes& u32(uint32_t v) { return pod(v); }
    Bytes& i32(int32_t v) { return pod(v); }
    Bytes& u64(uint64_t v) { return pod(v); }
    Bytes& i64(int64_t v) { return pod(v); }
    Bytes& f32(float v) { return pod(v); }
    Bytes& str(std::string_view s) {
        u64(s.size());
        for (char c : s) b_.push_back(static_cast<std::byte>(c));
        return *this;
    }
    Bytes& zeros(size_t n) {
        b_.insert(b_.end(), n, std::byte{0});
        return *this;
    }
    // Zero-pad to a multiple of `a`.
    Bytes& align(size_t a) { return zeros((a - b_.size() % a) % a); }
    // Standard header: magic, version, counts.
    Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        b_.push_back(std::byte{'G'});
        b_.push_back(std::byte{'G'});
        b_.push_back(std::byte{'U'});
        b_.push_back(std::byte{'F'});
        return u32(version).u64(n_tensors).u64(n_kv);
    }
    // A tensor info record.
    Bytes& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(dims.size()));
        for (uint64_t d : dims) u64(d);
        return u32(type).u64(offset);
    }

    size_t size() const { return b_.size(); }
    std::span<const std::byte> span() const { return b_; }
    std::vector<std::byte>& vec() { return b_; }

private:
    template <class T>
    Bytes& pod(T v) {
        std::byte tmp[sizeof(T)];
        std::memcpy(tmp, &v, sizeof(T));
        b_.insert(b_.end(), tmp, tmp + sizeof(T));
        return *this;
    }
    std::vector<std::byte> b_;
};

// A fresh directory for the current test, removed and recreated on each call.
inline std::filesystem::path test_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    auto dir = std::filesystem::path(::testing::TempDir()) /
               (std::string("realm_gguf_") + info->test_suite_name() + "_" + info->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

inline void write_bytes(const std::filesystem::path& p, std::span<const std::byte> b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// REALM_SHARED_DIR, or empty when unset (tests then skip).
inline std::filesystem::path shared_dir() {
    const char* d = std::getenv("REALM_SHARED_DIR");
    return d ? std::filesystem::path(d) : std::filesystem::path();
}

}  // namespace realm::gguf::test
