#include <gtest/gtest.h>

#include <limits>

#include "gguf/value.hpp"

namespace realm::gguf {
namespace {

TEST(ggufValue, TypeFollowsTheHeldAlternative) {
    EXPECT_EQ(Value(uint8_t{1}).type(), ValueType::U8);
    EXPECT_EQ(Value(int8_t{1}).type(), ValueType::I8);
    EXPECT_EQ(Value(uint16_t{1}).type(), ValueType::U16);
    EXPECT_EQ(Value(int16_t{1}).type(), ValueType::I16);
    EXPECT_EQ(Value(uint32_t{1}).type(), ValueType::U32);
    EXPECT_EQ(Value(int32_t{1}).type(), ValueType::I32);
    EXPECT_EQ(Value(1.0f).type(), ValueType::F32);
    EXPECT_EQ(Value(true).type(), ValueType::Bool);
    EXPECT_EQ(Value("text").type(), ValueType::String);  // not bool
    EXPECT_EQ(Value(std::string_view("x")).type(), ValueType::String);
    EXPECT_EQ(Value(std::vector<float>{1.0f}).type(), ValueType::Array);
    EXPECT_EQ(Value(uint64_t{1}).type(), ValueType::U64);
    EXPECT_EQ(Value(int64_t{1}).type(), ValueType::I64);
    EXPECT_EQ(Value(1.0).type(), ValueType::F64);
    EXPECT_EQ(value_type_name(ValueType::F32), "f32");
    EXPECT_EQ(value_type_name(static_cast<ValueType>(99)), "unknown");
}

TEST(ggufValue, IntegerConversionChecksRange) {
    EXPECT_EQ(Value(int32_t{7}).to_int<uint32_t>(), 7u);
    EXPECT_EQ(Value(uint8_t{255}).to_int<int64_t>(), 255);
    EXPECT_EQ(Value(int32_t{-1}).to_int<uint32_t>(), std::nullopt);
    EXPECT_EQ(Value(uint64_t{1} << 32).to_int<uint32_t>(), std::nullopt);
    EXPECT_EQ(Value(std::numeric_limits<uint64_t>::max()).to_int<int64_t>(), std::nullopt);
    EXPECT_EQ(Value(true).to_int<uint32_t>(), std::nullopt);  // bool is not an integer here
    EXPECT_EQ(Value(1.0f).to_int<uint32_t>(), std::nullopt);
    EXPECT_EQ(Value("1").to_int<uint32_t>(), std::nullopt);
}

TEST(ggufValue, ArrayAccess) {
    Array a(std::vector<std::string>{"a", "bc"});
    EXPECT_EQ(a.type(), ValueType::String);
    EXPECT_EQ(a.size(), 2u);
    ASSERT_NE(a.get_if<std::string>(), nullptr);
    EXPECT_EQ(a.get_if<float>(), nullptr);
    EXPECT_EQ(a.at(1), Value("bc"));
    EXPECT_EQ(a.at(2), std::nullopt);
    Array b(std::vector<bool>{true, false});
    EXPECT_EQ(b.at(0), Value(true));
    EXPECT_EQ(Array::empty_of(ValueType::F64).type(), ValueType::F64);
    EXPECT_TRUE(Array::empty_of(ValueType::Array).empty());
}

TEST(ggufValue, ToStringEscapesAndTruncates) {
    EXPECT_EQ(Value("a\"b\n\x01").to_string(), "\"a\\\"b\\n\\x01\"");
    EXPECT_EQ(Value(std::vector<int32_t>{1, 2, 3}).to_string(2), "[1, 2, ... (3 items)]");
    Array nested(std::vector<Array>{Array(std::vector<uint8_t>{1}), Array(std::vector<std::string>{"x"})});
    EXPECT_EQ(Value(nested).to_string(), "[[1], [\"x\"]]");
    EXPECT_EQ(Value(true).to_string(), "true");
    EXPECT_EQ(Value(1.5f).to_string(), "1.5");
}

TEST(ggufMetadata, SetKeepsOrderAndReplacesInPlace) {
    Metadata m;
    m.set("a", uint32_t{1});
    m.set("b", "two");
    m.set("c", 3.0f);
    m.set("a", int32_t{-1});
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m.entries()[0].key, "a");
    EXPECT_EQ(m.entries()[0].value, Value(int32_t{-1}));
    EXPECT_FALSE(m.insert("b", "dup"));
    EXPECT_EQ(m.get_string("b").value(), "two");
    EXPECT_TRUE(m.erase("a"));
    EXPECT_FALSE(m.erase("a"));
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m.entries()[0].key, "b");
    EXPECT_EQ(m.get_f32("c").value(), 3.0f);  // index still right after erase
    std::vector<std::string> keys;
    for (const auto& kv : m) keys.push_back(kv.key);
    EXPECT_EQ(keys, (std::vector<std::string>{"b", "c"}));
}

TEST(ggufMetadata, TypedGetters) {
    Metadata m;
    m.set("u32", uint32_t{5});
    m.set("i32", int32_t{6});
    m.set("neg", int32_t{-6});
    m.set("big", uint64_t{1} << 40);
    m.set("f32", 0.5f);
    m.set("f64", 0.25);
    m.set("b", true);
    m.set("s", "str");
    m.set("arr", std::vector<int32_t>{1, 2});

    EXPECT_EQ(m.get_u32("u32").value(), 5u);
    EXPECT_EQ(m.get_u32("i32").value(), 6u);  // any integer type that fits
    EXPECT_EQ(m.get_i64("big").value(), int64_t{1} << 40);
    EXPECT_EQ(m.get_u8("u32").value(), 5u);
    EXPECT_EQ(m.get_f32("f32").value(), 0.5f);
    EXPECT_EQ(m.get_f32("f64").value(), 0.25f);
    EXPECT_EQ(m.get_f64("f32").value(), 0.5);
    EXPECT_TRUE(m.get_bool("b").value());
    EXPECT_EQ(m.get_string("s").value(), "str");
    EXPECT_EQ(m.get_array("arr").value()->size(), 2u);

    auto missing = m.get_u32("nope");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().message, "gguf: metadata key 'nope' not found");
    auto neg = m.get_u32("neg");
    ASSERT_FALSE(neg);
    EXPECT_EQ(neg.error().message, "gguf: metadata key 'neg' value -6 (i32) does not fit in u32");
    auto big = m.get_u32("big");
    ASSERT_FALSE(big);
    EXPECT_NE(big.error().message.find("does not fit in u32"), std::string::npos);
    auto wrong = m.get_u32("s");
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().message, "gguf: metadata key 's' has type string, expected an integer");
    EXPECT_FALSE(m.get_string("u32"));
    EXPECT_FALSE(m.get_bool("u32"));
    EXPECT_FALSE(m.get_f32("u32"));
    EXPECT_FALSE(m.get_array("s"));

    // Fallbacks apply to missing keys only.
    EXPECT_EQ(m.get_u32("nope", 9).value(), 9u);
    EXPECT_EQ(m.get_u32("u32", 9).value(), 5u);
    EXPECT_FALSE(m.get_u32("s", 9));
    EXPECT_EQ(m.get_string("nope", "dflt").value(), "dflt");
    EXPECT_EQ(m.get_f32("nope", 1.5f).value(), 1.5f);
    EXPECT_FALSE(m.get_bool("nope", false).value());
}

}  // namespace
}  // namespace realm::gguf
