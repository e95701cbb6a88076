#include "text/utf8.hpp"

namespace realm::text {

namespace {

bool is_cont(unsigned char c) {
    return (c & 0xC0) == 0x80;
}

// How many bytes of a valid sequence starting at s[pos] are present (possibly
// fewer than needed when the input ends), or 0 if the bytes present already make
// the sequence invalid. `need` receives the full sequence length.
size_t valid_prefix(std::string_view s, size_t pos, size_t& need) {
    const auto b0 = static_cast<unsigned char>(s[pos]);
    if (b0 < 0x80) {
        need = 1;
        return 1;
    }
    if (b0 < 0xC2 || b0 > 0xF4) {
        need = 1;
        return 0;
    }
    need = b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
    size_t n = 1;
    for (; n < need && pos + n < s.size(); ++n) {
        const auto c = static_cast<unsigned char>(s[pos + n]);
        if (!is_cont(c)) return 0;
        if (n == 1) {
            // second-byte ranges that exclude overlongs, surrogates and > U+10FFFF
            if (b0 == 0xE0 && c < 0xA0) return 0;
            if (b0 == 0xED && c > 0x9F) return 0;
            if (b0 == 0xF0 && c < 0x90) return 0;
            if (b0 == 0xF4 && c > 0x8F) return 0;
        }
    }
    return n;
}

}  // namespace

uint32_t utf8_decode(std::string_view s, size_t pos, size_t& len) {
    len = 1;
    if (pos >= s.size()) return kReplacementChar;
    size_t need = 0;
    const size_t have = valid_prefix(s, pos, need);
    if (have == 0 || have < need) return kReplacementChar;
    const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[pos + i])); };
    len = need;
    switch (need) {
        case 1:
            return b(0);
        case 2:
            return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
        case 3:
            return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
        default:
            return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    }
}

std::vector<uint32_t> utf8_to_codepoints(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    for (size_t pos = 0; pos < s.size();) {
        size_t len = 1;
        out.push_back(utf8_decode(s, pos, len));
        pos += len;
    }
    return out;
}

void utf8_append(std::string& out, uint32_t cp) {
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = kReplacementChar;
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string utf8_encode(uint32_t cp) {
    std::string s;
    utf8_append(s, cp);
    return s;
}

bool utf8_is_valid(std::string_view s) {
    for (size_t pos = 0; pos < s.size();) {
        size_t need = 0;
        const size_t have = valid_prefix(s, pos, need);
        if (have == 0 || have < need) return false;
        pos += need;
    }
    return true;
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t pos = 0; pos < s.size();) {
        size_t need = 0;
        const size_t have = valid_prefix(s, pos, need);
        if (have == 0 || have < need) {
            utf8_append(out, kReplacementChar);
            pos += 1;
        } else {
            out.append(s.substr(pos, need));
            pos += need;
        }
    }
    return out;
}

std::string Utf8Streamer::push(std::string_view bytes) {
    pending_.append(bytes);
    std::string out;
    out.reserve(pending_.size());
    size_t pos = 0;
    while (pos < pending_.size()) {
        size_t need = 0;
        const size_t have = valid_prefix(pending_, pos, need);
        if (have == 0) {  // can never become valid
            utf8_append(out, kReplacementChar);
            pos += 1;
        } else if (have < need) {  // valid so far but incomplete: must be the tail
            break;
        } else {
            out.append(pending_, pos, need);
            pos += need;
        }
    }
    pending_.erase(0, pos);
    return out;
}

std::string Utf8Streamer::flush() {
    std::string out = utf8_sanitize(pending_);
    pending_.clear();
    return out;
}

}  // namespace realm::text
