#include "gguf/value.hpp"

#include <array>
#include <algorithm>
#include <cstdio>

namespace realm::gguf {

namespace {

constexpr std::array<std::string_view, kValueTypeCount> kValueTypeNames = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

template <class T>
void append_scalar(std::string& out, const T& x) {
    if constexpr (std::is_same_v<T, bool>) {
        out += x ? "true" : "false";
    } else if constexpr (std::is_floating_point_v<T>) {
        char buf[64];
        const int n = std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(x));
        out.append(buf, static_cast<size_t>(n > 0 ? n : 0));
    } else if constexpr (std::is_integral_v<T>) {
        out += std::to_string(x);
    }
}

void append_string(std::string& out, std::string_view s) {
    // Quoted and escaped so that control characters in file contents cannot mangle a terminal.
    constexpr size_t kMax = 200;
    out += '"';
    size_t n = 0;
    for (char c : s) {
        if (n++ == kMax) {
            out += "...";
            break;
        }
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    out += '"';
}

void append_array(std::string& out, const Array& a, size_t max_items);

void append_value(std::string& out, const Value::Storage& v, size_t max_items) {
    std::visit(
        [&](const auto& x) {
            using X = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<X, std::string>) {
                append_string(out, x);
            } else if constexpr (std::is_same_v<X, Array>) {
                append_array(out, x, max_items);
            } else {
                append_scalar(out, x);
            }
        },
        v);
}

void append_array(std::string& out, const Array& a, size_t max_items) {
    out += '[';
    a.visit([&](const auto& vec) {
        using E = typename std::decay_t<decltype(vec)>::value_type;
        const size_t n = std::min(vec.size(), max_items);
        for (size_t i = 0; i < n; ++i) {
            if (i) out += ", ";
            if constexpr (std::is_same_v<E, std::string>) {
                append_string(out, vec[i]);
            } else if constexpr (std::is_same_v<E, Array>) {
                append_array(out, vec[i], max_items);
            } else {
                append_scalar(out, static_cast<E>(vec[i]));
            }
        }
        if (vec.size() > n) out += ", ... (" + std::to_string(vec.size()) + " items)";
    });
    out += ']';
}

}  // namespace

std::string_view value_type_name(ValueType t) {
    const auto i = static_cast<uint32_t>(t);
    return i < kValueTypeCount ? kValueTypeNames[i] : std::string_view("unknown");
}

size_t value_type_size(ValueType t) {
    switch (t) {
        case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
        case ValueType::U16: case ValueType::I16: return 2;
        case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
        case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
        case ValueType::String: case ValueType::Array: return 0;
    }
    return 0;
}

// ---- Array ----

Array Array::empty_of(ValueType element_type) {
    Array a;
    switch (element_type) {
        case ValueType::U8: a.v_.emplace<0>(); break;
        case ValueType::I8: a.v_.emplace<1>(); break;
        case ValueType::U16: a.v_.emplace<2>(); break;
        case ValueType::I16: a.v_.emplace<3>(); break;
        case ValueType::U32: a.v_.emplace<4>(); break;
        case ValueType::I32: a.v_.emplace<5>(); break;
        case ValueType::F32: a.v_.emplace<6>(); break;
        case ValueType::Bool: a.v_.emplace<7>(); break;
        case ValueType::String: a.v_.emplace<8>(); break;
        case ValueType::Array: a.v_.emplace<9>(); break;
        case ValueType::U64: a.v_.emplace<10>(); break;
        case ValueType::I64: a.v_.emplace<11>(); break;
        case ValueType::F64: a.v_.emplace<12>(); break;
    }
    return a;
}

size_t Array::size() const {
    return std::visit([](const auto& vec) { return vec.size(); }, v_);
}

std::optional<Value> Array::at(size_t i) const {
    return std::visit(
        [i](const auto& vec) -> std::optional<Value> {
            using E = typename std::decay_t<decltype(vec)>::value_type;
            if (i >= vec.size()) return std::nullopt;
            return Value(static_cast<E>(vec[i]));  // static_cast: vector<bool>'s proxy -> bool
        },
        v_);
}

// ---- Value ----

std::optional<double> Value::to_float() const {
    if (const auto* f = std::get_if<float>(&v_)) return *f;
    if (const auto* d = std::get_if<double>(&v_)) return *d;
    return std::nullopt;
}

std::optional<bool> Value::to_bool() const {
    if (const auto* b = std::get_if<bool>(&v_)) return *b;
    return std::nullopt;
}

std::optional<std::string_view> Value::to_string_view() const {
    if (const auto* s = std::get_if<std::string>(&v_)) return std::string_view(*s);
    return std::nullopt;
}

std::string Value::to_string(size_t max_items) const {
    std::string out;
    append_value(out, v_, max_items);
    return out;
}

// ---- Metadata ----

const Value* Metadata::find(std::string_view key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].value;
}

void Metadata::set(std::string key, Value value) {
    if (auto it = index_.find(key); it != index_.end()) {
        items_[it->second].value = std::move(value);
        return;
    }
    index_.emplace(key, items_.size());
    items_.push_back(KeyValue{std::move(key), std::move(value)});
}

bool Metadata::insert(std::string key, Value value) {
    if (index_.contains(key)) return false;
    index_.emplace(key, items_.size());
    items_.push_back(KeyValue{std::move(key), std::move(value)});
    return true;
}

bool Metadata::erase(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    const size_t pos = it->second;
    index_.erase(it);
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(pos));
    for (auto& [k, i] : index_) {
        if (i > pos) --i;
    }
    return true;
}

Error Metadata::missing(std::string_view key) {
    return make_error("gguf: metadata key '" + std::string(key) + "' not found");
}

Error Metadata::bad_type(std::string_view key, const Value& v, std::string_view want) {
    return make_error("gguf: metadata key '" + std::string(key) + "' has type " +
                      std::string(value_type_name(v.type())) + ", expected " + std::string(want));
}

Error Metadata::bad_int(std::string_view key, const Value& v, std::string_view want) {
    const bool is_int = std::visit(
        [](const auto& x) {
            using X = std::decay_t<decltype(x)>;
            return std::is_integral_v<X> && !std::is_same_v<X, bool>;
        },
        v.storage());
    if (!is_int) return bad_type(key, v, "an integer");
    return make_error("gguf: metadata key '" + std::string(key) + "' value " + v.to_string() + " (" +
                      std::string(value_type_name(v.type())) + ") does not fit in " + std::string(want));
}

Result<float> Metadata::get_f32(std::string_view key) const {
    auto d = get_f64(key);
    if (!d) return d.error();
    return static_cast<float>(*d);
}

Result<double> Metadata::get_f64(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (auto x = v->to_float()) return *x;
    return bad_type(key, *v, "f32 or f64");
}

Result<bool> Metadata::get_bool(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (auto x = v->to_bool()) return *x;
    return bad_type(key, *v, "bool");
}

Result<std::string_view> Metadata::get_string(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (auto x = v->to_string_view()) return *x;
    return bad_type(key, *v, "string");
}

Result<const Array*> Metadata::get_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (const Array* a = v->to_array()) return a;
    return bad_type(key, *v, "array");
}

Result<float> Metadata::get_f32(std::string_view key, float fallback) const {
    if (!contains(key)) return fallback;
    return get_f32(key);
}

Result<bool> Metadata::get_bool(std::string_view key, bool fallback) const {
    if (!contains(key)) return fallback;
    return get_bool(key);
}

Result<std::string_view> Metadata::get_string(std::string_view key, std::string_view fallback) const {
    if (!contains(key)) return fallback;
    return get_string(key);
}

}  // namespace realm::gguf
