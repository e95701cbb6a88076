// UTF-8 helpers for the text layer: lenient decoding (invalid bytes become U+FFFD,
// never an exception), encoding, and a streamer that only releases complete characters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace realm::text {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the UTF-8 sequence announced by lead byte `b` (1 for ASCII, continuation
// bytes and invalid leads, 2..4 otherwise). Does not validate the following bytes.
inline size_t utf8_lead_len(unsigned char b) {
    if (b < 0xC0) return 1;
    if (b < 0xE0) return 2;
    if (b < 0xF0) return 3;
    if (b < 0xF8) return 4;
    return 1;
}

// Decodes one code point at `pos`. On success returns the code point and sets `len`
// to its byte length. On an invalid or truncated sequence (overlong forms, surrogates,
// values above U+10FFFF included) returns U+FFFD with len = 1.
uint32_t utf8_decode(std::string_view s, size_t pos, size_t& len);

// Whole string to code points; every invalid byte becomes one U+FFFD.
std::vector<uint32_t> utf8_to_codepoints(std::string_view s);

// Appends the UTF-8 encoding of `cp` (U+FFFD for surrogates and values > U+10FFFF).
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_encode(uint32_t cp);

// True when `s` is entirely valid UTF-8.
bool utf8_is_valid(std::string_view s);

// Replaces every invalid byte of `s` by U+FFFD.
std::string utf8_sanitize(std::string_view s);

// Streaming detokenization: feed token pieces (arbitrary byte chunks) and get back
// only complete, valid UTF-8. A multi-byte character split across pieces is held back
// until its last byte arrives; bytes that can never form a valid character are
// replaced by U+FFFD as soon as that is certain. flush() releases what is left
// (an incomplete tail becomes U+FFFD per byte) and resets the streamer.
class Utf8Streamer {
public:
    std::string push(std::string_view bytes);
    std::string flush();
    // Bytes currently held back (0..3).
    size_t pending() const { return pending_.size(); }
    void reset() { pending_.clear(); }

private:
    std::string pending_;
};

}  // namespace realm::text
