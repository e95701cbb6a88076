// GGUF metadata values, shared by the reader and the writer so that a file's
// metadata can be copied, edited and written back unchanged (e.g. by quantize).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "gguf/result.hpp"

namespace realm::gguf {

// The on-disk value type ids. The numbering is part of the file format.
enum class ValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
    String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
inline constexpr uint32_t kValueTypeCount = 13;

// "u8", "i32", "f32", "bool", "string", "array", ... ("unknown" for invalid ids).
std::string_view value_type_name(ValueType t);
// Byte size of a fixed-size value type; 0 for string and array.
size_t value_type_size(ValueType t);

class Array;
class Value;

namespace detail {
template <class T, class... Ts>
inline constexpr bool one_of = (std::is_same_v<T, Ts> || ...);
template <class T>
inline constexpr bool is_scalar = one_of<T, uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                                         uint64_t, int64_t, double>;
}  // namespace detail

// A typed array value. Elements are stored in a std::vector of their own C++ type
// (vector<float>, vector<std::string>, vector<Array> for nested arrays, ...), so
// large arrays such as token lists stay compact and can be used without copying.
class Array {
public:
    // Alternative index == ValueType id of the element type.
    using Storage = std::variant<std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>,
                                 std::vector<int16_t>, std::vector<uint32_t>, std::vector<int32_t>,
                                 std::vector<float>, std::vector<bool>, std::vector<std::string>,
                                 std::vector<Array>, std::vector<uint64_t>, std::vector<int64_t>,
                                 std::vector<double>>;

    Array() = default;  // empty array of u8
    template <class T>
        requires(detail::is_scalar<T> || std::is_same_v<T, std::string> || std::is_same_v<T, Array>)
    Array(std::vector<T> items) : v_(std::move(items)) {}  // NOLINT(implicit)
    // An empty array with the given element type (for builders and the parser).
    static Array empty_of(ValueType element_type);

    ValueType type() const { return static_cast<ValueType>(v_.index()); }  // element type
    size_t size() const;
    bool empty() const { return size() == 0; }

    // The elements if they are of type T, else nullptr.
    template <class T>
    const std::vector<T>* get_if() const { return std::get_if<std::vector<T>>(&v_); }
    template <class T>
    std::vector<T>* get_if() { return std::get_if<std::vector<T>>(&v_); }
    // Element i as a Value (a copy); nullopt when out of range. For generic walkers.
    std::optional<Value> at(size_t i) const;

    const Storage& storage() const { return v_; }
    Storage& storage() { return v_; }
    template <class F>
    decltype(auto) visit(F&& f) const { return std::visit(std::forward<F>(f), v_); }

    bool operator==(const Array& o) const { return v_ == o.v_; }

private:
    Storage v_;
};

// One metadata value of any GGUF type.
class Value {
public:
    // Alternative index == ValueType id.
    using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                                 std::string, Array, uint64_t, int64_t, double>;

    template <class T>
        requires(detail::is_scalar<T> || std::is_same_v<T, std::string> || std::is_same_v<T, Array>)
    Value(T v) : v_(std::move(v)) {}  // NOLINT(implicit)
    Value(const char* s) : v_(std::string(s)) {}  // NOLINT(implicit): keeps "x" from becoming bool
    Value(std::string_view s) : v_(std::string(s)) {}  // NOLINT(implicit)
    template <class T>
        requires(detail::is_scalar<T> || std::is_same_v<T, std::string> || std::is_same_v<T, Array>)
    Value(std::vector<T> items) : v_(Array(std::move(items))) {}  // NOLINT(implicit)

    ValueType type() const { return static_cast<ValueType>(v_.index()); }

    template <class T>
    const T* get_if() const { return std::get_if<T>(&v_); }

    // The value as integer type T if it holds any integer type (not bool) whose
    // value fits T; GGUF writers disagree on u32 vs i32 etc., so readers should use this.
    template <std::integral T>
        requires(!std::is_same_v<T, bool>)
    std::optional<T> to_int() const {
        return std::visit(
            [](const auto& x) -> std::optional<T> {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_integral_v<X> && !std::is_same_v<X, bool>) {
                    if (std::in_range<T>(x)) return static_cast<T>(x);
                }
                return std::nullopt;
            },
            v_);
    }
    // f32 or f64 as double.
    std::optional<double> to_float() const;
    std::optional<bool> to_bool() const;
    std::optional<std::string_view> to_string_view() const;
    const Array* to_array() const { return std::get_if<Array>(&v_); }

    // Human-readable rendering for dumps and messages; arrays show at most max_items elements.
    std::string to_string(size_t max_items = 8) const;

    const Storage& storage() const { return v_; }
    template <class F>
    decltype(auto) visit(F&& f) const { return std::visit(std::forward<F>(f), v_); }

    bool operator==(const Value& o) const { return v_ == o.v_; }

private:
    Storage v_;
};

struct KeyValue {
    std::string key;
    Value value;
    bool operator==(const KeyValue&) const = default;
};

// Ordered key/value store: iteration is in insertion (= file) order; lookups are by key.
class Metadata {
public:
    size_t size() const { return items_.size(); }
    bool empty() const { return items_.empty(); }
    auto begin() const { return items_.begin(); }
    auto end() const { return items_.end(); }
    std::span<const KeyValue> entries() const { return items_; }

    const Value* find(std::string_view key) const;
    bool contains(std::string_view key) const { return find(key) != nullptr; }
    // Replaces the value in place (keeping its position) or appends a new key.
    void set(std::string key, Value value);
    // Appends only if the key is new; returns false (and changes nothing) for a duplicate.
    bool insert(std::string key, Value value);
    bool erase(std::string_view key);

    // Typed getters. Errors: missing key, wrong type, or an integer that does not fit.
    // The integer getters accept any integer type whose value fits.
    Result<uint8_t> get_u8(std::string_view key) const { return get_int<uint8_t>(key); }
    Result<uint16_t> get_u16(std::string_view key) const { return get_int<uint16_t>(key); }
    Result<uint32_t> get_u32(std::string_view key) const { return get_int<uint32_t>(key); }
    Result<int32_t> get_i32(std::string_view key) const { return get_int<int32_t>(key); }
    Result<uint64_t> get_u64(std::string_view key) const { return get_int<uint64_t>(key); }
    Result<int64_t> get_i64(std::string_view key) const { return get_int<int64_t>(key); }
    Result<float> get_f32(std::string_view key) const;  // f32, or f64 narrowed
    Result<double> get_f64(std::string_view key) const;  // f32 or f64
    Result<bool> get_bool(std::string_view key) const;
    // The view points into this Metadata and lives as long as the entry does.
    Result<std::string_view> get_string(std::string_view key) const;
    // Never null on success; points into this Metadata.
    Result<const Array*> get_array(std::string_view key) const;

    // Same, but a missing key yields `fallback` (a present key of the wrong type is still an error).
    Result<uint32_t> get_u32(std::string_view key, uint32_t fallback) const { return get_int_or<uint32_t>(key, fallback); }
    Result<int32_t> get_i32(std::string_view key, int32_t fallback) const { return get_int_or<int32_t>(key, fallback); }
    Result<uint64_t> get_u64(std::string_view key, uint64_t fallback) const { return get_int_or<uint64_t>(key, fallback); }
    Result<float> get_f32(std::string_view key, float fallback) const;
    Result<bool> get_bool(std::string_view key, bool fallback) const;
    Result<std::string_view> get_string(std::string_view key, std::string_view fallback) const;

    template <std::integral T>
    Result<T> get_int(std::string_view key) const {
        const Value* v = find(key);
        if (!v) return missing(key);
        if (auto x = v->to_int<T>()) return *x;
        return bad_int(key, *v, int_type_name<T>());
    }
    template <std::integral T>
    Result<T> get_int_or(std::string_view key, T fallback) const {
        if (!contains(key)) return fallback;
        return get_int<T>(key);
    }

    bool operator==(const Metadata& o) const { return items_ == o.items_; }

private:
    template <class T>
    static constexpr std::string_view int_type_name() {
        if constexpr (std::is_signed_v<T>) {
            return sizeof(T) == 1 ? "i8" : sizeof(T) == 2 ? "i16" : sizeof(T) == 4 ? "i32" : "i64";
        } else {
            return sizeof(T) == 1 ? "u8" : sizeof(T) == 2 ? "u16" : sizeof(T) == 4 ? "u32" : "u64";
        }
    }
    static Error missing(std::string_view key);
    static Error bad_int(std::string_view key, const Value& v, std::string_view want);
    static Error bad_type(std::string_view key, const Value& v, std::string_view want);

    std::vector<KeyValue> items_;
    std::map<std::string, size_t, std::less<>> index_;  // key -> position in items_
};

}  // namespace realm::gguf
