// UTF-8 helpers and the streaming detokenizer.
#include <gtest/gtest.h>

#include <string>

#include "text/unicode.hpp"
#include "text/utf8.hpp"

using namespace realm::text;

namespace {
const std::string kFFFD = "\xEF\xBF\xBD";
}

TEST(Utf8, DecodeValidAndInvalid) {
    EXPECT_EQ(utf8_to_codepoints("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\xA6\x99"),
              (std::vector<uint32_t>{'a', 0xE9, 0x20AC, 0x1F999}));
    // lone continuation, truncated sequence, overlong, surrogate, > U+10FFFF: one U+FFFD per byte
    EXPECT_EQ(utf8_to_codepoints("\x80"), (std::vector<uint32_t>{0xFFFD}));
    EXPECT_EQ(utf8_to_codepoints("\xE2\x82"
                                 "a"),
              (std::vector<uint32_t>{0xFFFD, 0xFFFD, 'a'}));
    EXPECT_EQ(utf8_to_codepoints("\xC0\x80"), (std::vector<uint32_t>{0xFFFD, 0xFFFD}));
    EXPECT_EQ(utf8_to_codepoints("\xED\xA0\x80"), (std::vector<uint32_t>{0xFFFD, 0xFFFD, 0xFFFD}));
    EXPECT_EQ(utf8_to_codepoints("\xF4\x90\x80\x80"), (std::vector<uint32_t>(4, 0xFFFD)));
    EXPECT_EQ(utf8_to_codepoints("\xF8"), (std::vector<uint32_t>{0xFFFD}));
    EXPECT_TRUE(utf8_is_valid("h\xC3\xA9llo"));
    EXPECT_FALSE(utf8_is_valid("h\xC3llo"));
    EXPECT_EQ(utf8_sanitize("a\xFF"
                            "b"),
              "a" + kFFFD + "b");
    EXPECT_EQ(utf8_encode(0x1F999), "\xF0\x9F\xA6\x99");
    EXPECT_EQ(utf8_encode(0xD800), kFFFD);
}

TEST(Utf8Streamer, HoldsBackSplitCharacters) {
    Utf8Streamer s;
    const std::string llama = "\xF0\x9F\xA6\x99";  // 🦙
    EXPECT_EQ(s.push("a"), "a");
    EXPECT_EQ(s.push(llama.substr(0, 1)), "");
    EXPECT_EQ(s.pending(), 1u);
    EXPECT_EQ(s.push(llama.substr(1, 2)), "");
    EXPECT_EQ(s.push(llama.substr(3) + "b\xC3"), llama + "b");
    EXPECT_EQ(s.push("\xA9"), "\xC3\xA9");
    EXPECT_EQ(s.pending(), 0u);
    EXPECT_EQ(s.flush(), "");
}

TEST(Utf8Streamer, InvalidBytes) {
    Utf8Streamer s;
    // a byte that can never start a character is replaced at once
    EXPECT_EQ(s.push("x\xFFy"), "x" + kFFFD + "y");
    // a lead byte followed by a non-continuation byte
    EXPECT_EQ(s.push("\xE2"), "");
    EXPECT_EQ(s.push("z"), kFFFD + "z");
    // a truncated character at the end of the stream
    EXPECT_EQ(s.push("\xE2\x82"), "");
    EXPECT_EQ(s.flush(), kFFFD + kFFFD);
    EXPECT_EQ(s.pending(), 0u);
    // overlong / surrogate prefixes are rejected as soon as the second byte shows it
    EXPECT_EQ(s.push("\xE0\x80"), kFFFD + kFFFD);
    EXPECT_EQ(s.push("\xED\xA0"), kFFFD + kFFFD);
}

TEST(Utf8Streamer, ByteAtATimeEqualsWhole) {
    const std::string text = "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x81!";
    Utf8Streamer s;
    std::string out;
    for (char c : text) out += s.push(std::string(1, c));
    out += s.flush();
    EXPECT_EQ(out, text);
}

TEST(Unicode, Properties) {
    EXPECT_TRUE(is_letter('a'));
    EXPECT_TRUE(is_letter(0x0416));  // Ж
    EXPECT_TRUE(is_letter(0x6211));  // 我
    EXPECT_TRUE(is_number('7'));
    EXPECT_TRUE(is_number(0xBD));  // ½
    EXPECT_TRUE(is_punctuation('!'));
    EXPECT_TRUE(is_symbol('$'));
    EXPECT_TRUE(is_symbol(0x1F999));
    EXPECT_TRUE(is_mark(0x0301));
    EXPECT_TRUE(is_whitespace(0x3000));
    EXPECT_FALSE(is_whitespace(0x200B));
    EXPECT_EQ(to_lower('A'), uint32_t('a'));
    EXPECT_EQ(to_lower(0x0416), 0x0436u);
    EXPECT_EQ(to_lower(0x0100), 0x0101u);
    EXPECT_EQ(to_lower(0x0101), 0x0101u);
    EXPECT_EQ(to_lower(0x0130), uint32_t('i'));
    std::vector<uint32_t> v;
    append_stripped_accents(v, 0xC4);    // Ä
    append_stripped_accents(v, 0x0301);  // combining acute
    append_stripped_accents(v, 0xD55C);  // 한
    EXPECT_EQ(v, (std::vector<uint32_t>{'A', 0x1112, 0x1161, 0x11AB}));
}
