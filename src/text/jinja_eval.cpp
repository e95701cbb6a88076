// Jinja2 subset: evaluator, Python-compatible value operations, filters, tests and methods.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "text/jinja.hpp"
#include "text/jinja_ast.hpp"
#include "text/utf8.hpp"

namespace realm::text::jinja {
namespace detail {
namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8 (strings are indexed by code point, as in Python). Invalid bytes map to U+DC80..U+DCFF
// (Python's surrogateescape) so that they survive a round trip unchanged.

std::u32string decode(std::string_view s) {
    std::u32string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        bool ok = n > 0 && i + n <= s.size();
        std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
        for (std::size_t k = 1; ok && k < n; ++k) {
            auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80) ok = false;
            cp = (cp << 6) | (d & 0x3F);
        }
        if (ok && n > 1 && ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
                            (cp >= 0xD800 && cp <= 0xDFFF)))
            ok = false;
        if (!ok) {
            out += static_cast<char32_t>(0xDC00 + c);
            ++i;
        } else {
            out += static_cast<char32_t>(cp);
            i += n;
        }
    }
    return out;
}

// Code points U+DC80..U+DCFF carry raw bytes (Python's surrogateescape).
void put_utf8(std::string& out, char32_t cp) {
    if (cp >= 0xDC80 && cp <= 0xDCFF) {
        out += static_cast<char>(cp - 0xDC00);
    } else {
        utf8_append(out, static_cast<uint32_t>(cp));
    }
}

std::string encode(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s) put_utf8(out, c);
    return out;
}

bool is_ascii(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

std::size_t str_len(std::string_view s) { return is_ascii(s) ? s.size() : decode(s).size(); }

bool py_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

char32_t ascii_upper(char32_t c) { return (c >= 'a' && c <= 'z') ? c - 32 : c; }
char32_t ascii_lower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }
bool is_alpha(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0xC0; }

// Case mapping: ASCII plus Latin-1/Latin Extended-A/Greek/Cyrillic basics.
char32_t to_upper(char32_t c) {
    if (c < 0x80) return ascii_upper(c);
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 0x20;
    if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 0x20;
    if (c >= 0x430 && c <= 0x44F) return c - 0x20;
    if (c >= 0x450 && c <= 0x45F) return c - 0x50;
    if (c >= 0x100 && c <= 0x17F && (c & 1) && c != 0x131 && c != 0x138 && c != 0x149 && !(c >= 0x139 && c <= 0x148) &&
        !(c >= 0x179 && c <= 0x17E))
        return c - 1;
    return c;
}
char32_t to_lower(char32_t c) {
    if (c < 0x80) return ascii_lower(c);
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 0x20;
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 0x20;
    if (c >= 0x410 && c <= 0x42F) return c + 0x20;
    if (c >= 0x400 && c <= 0x40F) return c + 0x50;
    if (c >= 0x100 && c <= 0x17F && !(c & 1) && c != 0x130 && c != 0x138 && !(c >= 0x139 && c <= 0x148) &&
        !(c >= 0x179 && c <= 0x17E))
        return c + 1;
    return c;
}

std::string map_case(std::string_view s, bool upper) {
    if (is_ascii(s)) {
        std::string out(s);
        for (char& c : out) c = static_cast<char>(upper ? ascii_upper(static_cast<unsigned char>(c)) : ascii_lower(static_cast<unsigned char>(c)));
        return out;
    }
    auto u = decode(s);
    for (auto& c : u) c = upper ? to_upper(c) : to_lower(c);
    return encode(u);
}

// Work done outside the evaluator proper (printing, comparing, serialising values) is charged to
// the render's step budget and output limit too: values may share structure (a list holding the
// same list twice, repeatedly), so their expanded size can be exponential in the steps that built it.
void tick();
void check_len(std::size_t n);

// std::stable_sort trips a libstdc++ deprecation warning under clang; sort indices instead.
template <class T, class Less>
void stable_sort_by(std::vector<T>& v, Less less) {
    std::vector<std::size_t> idx(v.size());
    for (std::size_t k = 0; k < idx.size(); ++k) idx[k] = k;
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
        if (less(v[a], v[b])) return true;
        if (less(v[b], v[a])) return false;
        return a < b;
    });
    std::vector<T> out;
    out.reserve(v.size());
    for (auto k : idx) out.push_back(std::move(v[k]));
    v = std::move(out);
}

// ---------------------------------------------------------------------------------------------
// Python formatting

std::string float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string sci(buf, r.ptr);
    // sci: [-]D[.DDD]e[+-]XX
    bool neg = sci[0] == '-';
    if (neg) sci.erase(0, 1);
    std::size_t epos = sci.find('e');
    std::string mant = sci.substr(0, epos);
    int exp = std::atoi(sci.c_str() + epos + 1);
    std::string digits;
    for (char c : mant)
        if (c != '.') digits += c;
    std::string out;
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out = "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
        } else {
            auto ip = static_cast<std::size_t>(exp) + 1;
            if (digits.size() <= ip) {
                out = digits + std::string(ip - digits.size(), '0') + ".0";
            } else {
                out = digits.substr(0, ip) + "." + digits.substr(ip);
            }
        }
    } else {
        out = digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        out += eb;
    }
    return neg ? "-" + out : out;
}

std::string str_repr(std::string_view s) {
    char quote = '\'';
    if (s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos) quote = '"';
    std::string out(1, quote);
    for (char32_t c : decode(s)) {
        if (c == static_cast<char32_t>(quote) || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0) || (c >= 0xDC80 && c <= 0xDCFF)) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", static_cast<unsigned>(c >= 0xDC80 ? c - 0xDC00 : c));
            out += b;
        } else {
            put_utf8(out, c);
        }
    }
    out += quote;
    return out;
}

std::string py_str(const Value& v);
int compare(const Value& a, const Value& b, const char* op);

std::string py_repr(const Value& v) {
    tick();
    switch (v.kind) {
        case Kind::Str: return str_repr(v.s);
        case Kind::List: {
            if (v.list->generator) fail("unsupported construct: printing a generator object (e.g. the result of map/select without |list)");
            std::string out = v.list->tuple ? "(" : "[";
            for (std::size_t k = 0; k < v.list->items.size(); ++k) {
                if (k) out += ", ";
                out += py_repr(v.list->items[k]);
                check_len(out.size());
            }
            if (v.list->tuple && v.list->items.size() == 1) out += ",";
            out += v.list->tuple ? ")" : "]";
            if (v.list->view) return std::string(v.list->view) + "(" + out + ")";
            return out;
        }
        case Kind::Dict: {
            std::string out = v.dict->is_namespace ? "<Namespace {" : "{";
            bool first = true;
            for (const auto& [k, val] : v.dict->items) {
                if (!first) out += ", ";
                first = false;
                out += py_repr(k) + ": " + py_repr(val);
                check_len(out.size());
            }
            return out + (v.dict->is_namespace ? "}>" : "}");
        }
        case Kind::Undefined: return "Undefined";
        default: return py_str(v);
    }
}

std::string py_str(const Value& v) {
    switch (v.kind) {
        case Kind::Undefined: return "";
        case Kind::None: return "None";
        case Kind::Bool: return v.b ? "True" : "False";
        case Kind::Int: return std::to_string(v.i);
        case Kind::Float: return float_repr(v.f);
        case Kind::Str: return v.s;
        case Kind::Func: return "<function " + v.func->name + ">";
        default: return py_repr(v);
    }
}

// json.dumps as HF's tojson filter calls it (ensure_ascii=False by default).
void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
    out += '"';
    auto esc = [&](unsigned cp) {
        char b[8];
        std::snprintf(b, sizeof b, "\\u%04x", cp);
        out += b;
    };
    if (!ensure_ascii) {
        for (char ch : s) {
            auto c = static_cast<unsigned char>(ch);
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                default:
                    if (c < 0x20) esc(c);
                    else out += ch;
            }
        }
    } else {
        for (char32_t c : decode(s)) {
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                default:
                    if (c < 0x20 || (c >= 0x7F && c < 0x10000)) {
                        if (c < 0x7F || c >= 0x80) esc(static_cast<unsigned>(c));
                        else out += static_cast<char>(c);
                    } else if (c >= 0x10000) {
                        unsigned v = static_cast<unsigned>(c) - 0x10000;
                        esc(0xD800 + (v >> 10));
                        esc(0xDC00 + (v & 0x3FF));
                    } else {
                        out += static_cast<char>(c);
                    }
            }
        }
    }
    out += '"';
}

struct JsonOpts {
    int indent = -1;  // -1: None
    std::string item_sep = ", ", key_sep = ": ";
    bool sort_keys = false;
    bool ensure_ascii = false;
    std::size_t limit = 0;
};

void to_json(std::string& out, const Value& v, const JsonOpts& o, int level) {
    tick();
    if (out.size() > o.limit) fail("output too large");
    if (level > 200) fail("tojson: value nested too deeply");
    auto newline = [&](int lvl) {
        if (o.indent < 0) return;
        out += '\n';
        out.append(static_cast<std::size_t>(o.indent) * static_cast<std::size_t>(lvl), ' ');
    };
    switch (v.kind) {
        case Kind::None: out += "null"; return;
        case Kind::Bool: out += v.b ? "true" : "false"; return;
        case Kind::Int: out += std::to_string(v.i); return;
        case Kind::Float:
            if (std::isnan(v.f)) out += "NaN";
            else if (std::isinf(v.f)) out += v.f < 0 ? "-Infinity" : "Infinity";
            else out += float_repr(v.f);
            return;
        case Kind::Str: json_string(out, v.s, o.ensure_ascii); return;
        case Kind::List: {
            if (v.list->generator) fail("tojson: Object of type generator is not JSON serializable");
            if (v.list->view) fail(std::string("tojson: Object of type ") + v.list->view + " is not JSON serializable");
            if (v.list->items.empty()) {
                out += "[]";
                return;
            }
            out += '[';
            bool first = true;
            for (const auto& item : v.list->items) {
                if (!first) out += o.item_sep;
                first = false;
                newline(level + 1);
                to_json(out, item, o, level + 1);
            }
            newline(level);
            out += ']';
            return;
        }
        case Kind::Dict: {
            if (v.dict->is_namespace) fail("tojson: Object of type Namespace is not JSON serializable");
            if (v.dict->items.empty()) {
                out += "{}";
                return;
            }
            std::vector<const std::pair<Value, Value>*> items;
            for (const auto& p : v.dict->items) items.push_back(&p);
            if (o.sort_keys) stable_sort_by(items, [](auto* a, auto* b) { return compare(a->first, b->first, "<") < 0; });
            out += '{';
            bool first = true;
            for (const auto* p : items) {
                if (!first) out += o.item_sep;
                first = false;
                newline(level + 1);
                const Value& key = p->first;
                if (key.kind == Kind::Str) json_string(out, key.s, o.ensure_ascii);
                else if (key.kind == Kind::Int || key.kind == Kind::Float) out += '"' + py_str(key) + '"';
                else if (key.kind == Kind::Bool) out += key.b ? "\"true\"" : "\"false\"";
                else if (key.kind == Kind::None) out += "\"null\"";
                else fail("tojson: keys must be str, int, float, bool or None");
                out += o.key_sep;
                to_json(out, p->second, o, level + 1);
            }
            newline(level);
            out += '}';
            return;
        }
        case Kind::Undefined: fail("tojson: Object of type Undefined is not JSON serializable");
        case Kind::Func: fail("tojson: Object of type function is not JSON serializable");
    }
}

// Values may nest at most this deep (JSON input, assignments): printing, comparing and freeing
// values recurse, so depth must stay bounded whatever a template does in a loop.
constexpr int kMaxValueDepth = 256;

Value from_json(const nlohmann::ordered_json& j, int depth = 0) {
    if (depth > kMaxValueDepth) fail("template context nested too deeply");
    switch (j.type()) {
        case nlohmann::ordered_json::value_t::null: return Value::none();
        case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
        case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<std::int64_t>());
        case nlohmann::ordered_json::value_t::number_unsigned: {
            auto u = j.get<std::uint64_t>();
            if (u > static_cast<std::uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(u));
            return Value::integer(static_cast<std::int64_t>(u));
        }
        case nlohmann::ordered_json::value_t::number_float: return Value::floating(j.get<double>());
        case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
        case nlohmann::ordered_json::value_t::array: {
            auto v = Value::make_list();
            for (const auto& e : j) v.list->items.push_back(from_json(e, depth + 1));
            return v;
        }
        case nlohmann::ordered_json::value_t::object: {
            auto v = Value::make_dict();
            for (auto it = j.begin(); it != j.end(); ++it) v.dict->items.emplace_back(Value::string(it.key()), from_json(it.value(), depth + 1));
            return v;
        }
        default: fail("unsupported JSON value in the template context");
    }
}

// ---------------------------------------------------------------------------------------------
// Value semantics

const char* type_name(const Value& v) {
    switch (v.kind) {
        case Kind::Undefined: return "Undefined";
        case Kind::None: return "NoneType";
        case Kind::Bool: return "bool";
        case Kind::Int: return "int";
        case Kind::Float: return "float";
        case Kind::Str: return "str";
        case Kind::List: return v.list->generator ? "generator" : v.list->view ? v.list->view : v.list->tuple ? "tuple" : "list";
        case Kind::Dict: return v.dict->is_namespace ? "Namespace" : "dict";
        case Kind::Func: return "function";
    }
    return "object";
}

[[noreturn]] void undefined_error(const Value& v) {
    if (v.unsafe) fail(v.s);
    fail(v.s.empty() ? "undefined value" : v.s);
}

bool truthy(const Value& v) {
    switch (v.kind) {
        case Kind::Undefined: return false;
        case Kind::None: return false;
        case Kind::Bool: return v.b;
        case Kind::Int: return v.i != 0;
        case Kind::Float: return v.f != 0;
        case Kind::Str: return !v.s.empty();
        case Kind::List: return v.list->generator || !v.list->items.empty();
        case Kind::Dict: return v.dict->is_namespace || !v.dict->items.empty();
        case Kind::Func: return true;
    }
    return false;
}

double as_double(const Value& v) { return v.kind == Kind::Float ? v.f : v.kind == Kind::Bool ? (v.b ? 1 : 0) : static_cast<double>(v.i); }
std::int64_t as_int(const Value& v) { return v.kind == Kind::Bool ? (v.b ? 1 : 0) : v.i; }

bool equals(const Value& a, const Value& b) {
    tick();
    if (a.is_number() && b.is_number()) {
        if (a.kind == Kind::Float || b.kind == Kind::Float) return as_double(a) == as_double(b);
        return as_int(a) == as_int(b);
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
        case Kind::Undefined:
        case Kind::None: return true;
        case Kind::Str: return a.s == b.s;
        case Kind::List: {
            if (a.list == b.list) return true;
            if (a.list->generator || b.list->generator || a.list->view != b.list->view) return false;
            if (a.list->items.size() != b.list->items.size() || a.list->tuple != b.list->tuple) return false;
            for (std::size_t k = 0; k < a.list->items.size(); ++k)
                if (!equals(a.list->items[k], b.list->items[k])) return false;
            return true;
        }
        case Kind::Dict: {
            if (a.dict == b.dict) return true;
            if (a.dict->is_namespace || b.dict->is_namespace) return false;
            if (a.dict->items.size() != b.dict->items.size()) return false;
            for (const auto& [k, v] : a.dict->items) {
                const Value* o = b.dict->find(k);  // Value overload
                if (!o || !equals(v, *o)) return false;
            }
            return true;
        }
        case Kind::Func: return a.func == b.func;
        default: return false;
    }
}

}  // namespace

Value* DictData::find(const Value& key) {
    if (key.kind == Kind::Str) return find(key.s);
    for (auto& [k, v] : items)
        if (k.kind != Kind::Str && equals(k, key)) return &v;
    return nullptr;
}

void DictData::set(const Value& key, Value value) {
    if (Value* v = find(key)) {
        *v = std::move(value);
        return;
    }
    items.emplace_back(key, std::move(value));
}

namespace {

// Nesting depth of a value (0 for scalars); fails beyond kMaxValueDepth (which also stops cycles).
int value_depth(const Value& v, int level = 0) {
    tick();
    if (level > kMaxValueDepth) fail("value nested too deeply (limit " + std::to_string(kMaxValueDepth) + ")");
    auto holds_ns = [](const Value& x) {
        return x.kind == Kind::Dict ? (x.dict->is_namespace || x.dict->holds_namespace)
                                    : x.kind == Kind::List && x.list->holds_namespace;
    };
    if (v.kind == Kind::List) {
        if (v.list->depth_memo) return v.list->depth_memo;
        int d = 0;
        bool ns = false;
        for (const auto& x : v.list->items) {
            d = std::max(d, value_depth(x, level + 1));
            ns = ns || holds_ns(x);
        }
        v.list->holds_namespace = ns;
        return v.list->depth_memo = d + 1;
    }
    if (v.kind == Kind::Dict) {
        if (v.dict->depth_memo) return v.dict->depth_memo;
        int d = 0;
        bool ns = false;
        for (const auto& [k, x] : v.dict->items) {
            d = std::max(d, value_depth(x, level + 1));
            ns = ns || holds_ns(x);
        }
        if (v.dict->is_namespace) return d + 1;  // mutable: measured afresh every time
        v.dict->holds_namespace = ns;
        return v.dict->depth_memo = d + 1;
    }
    return 0;
}

// Whether `v` reaches the namespace `target` (call value_depth(v) first: it bounds the depth and
// marks the containers that hold no namespace at all, which are skipped).
bool refers_to(const Value& v, const DictData* target) {
    tick();
    if (v.kind == Kind::Dict) {
        if (v.dict.get() == target) return true;
        if (!v.dict->is_namespace && v.dict->depth_memo && !v.dict->holds_namespace) return false;
        for (const auto& [k, x] : v.dict->items)
            if (refers_to(x, target)) return true;
    } else if (v.kind == Kind::List) {
        if (v.list->depth_memo && !v.list->holds_namespace) return false;
        for (const auto& x : v.list->items)
            if (refers_to(x, target)) return true;
    }
    return false;
}

// Python ordering: <0, 0, >0.
int compare(const Value& a, const Value& b, const char* op) {
    if (a.is_undefined()) undefined_error(a);
    if (b.is_undefined()) undefined_error(b);
    if (a.is_number() && b.is_number()) {
        if (a.kind == Kind::Float || b.kind == Kind::Float) {
            double x = as_double(a), y = as_double(b);
            return x < y ? -1 : x > y ? 1 : 0;
        }
        auto x = as_int(a), y = as_int(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.kind == Kind::Str && b.kind == Kind::Str) {
        int c = a.s.compare(b.s);  // UTF-8 byte order == code point order
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (a.kind == Kind::List && b.kind == Kind::List) {
        const auto& x = a.list->items;
        const auto& y = b.list->items;
        for (std::size_t k = 0; k < x.size() && k < y.size(); ++k) {
            if (equals(x[k], y[k])) continue;
            return compare(x[k], y[k], op);
        }
        return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
    }
    fail(std::string("'") + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

struct Frame {
    std::unordered_map<std::string, Value> vars;
    std::shared_ptr<Frame> parent;
};
using FrameP = std::shared_ptr<Frame>;

enum class Flow { Normal, Break, Continue };

}  // namespace

// ---------------------------------------------------------------------------------------------
// Interpreter

struct Interp {
    const RenderOptions& opt;
    std::uint64_t steps = 0;
    int call_depth = 0;
    FrameP globals;
    std::vector<FrameP> macro_frames;  // frames holding macros: cleared after rendering (cycles)

    std::uintptr_t stack_base = 0;
    std::size_t stack_peak = 0;

    explicit Interp(const RenderOptions& o) : opt(o) {
        stack_base = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    }

    // Recursion guard by bytes of machine stack actually used (frame sizes differ a lot between
    // optimised and sanitizer builds, so counting levels alone is not a safe bound).
    void check_stack() {
        auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
        std::size_t used = stack_base > here ? stack_base - here : 0;
        if (used > stack_peak) stack_peak = used;
        if (used > opt.max_stack_bytes) fail("template nesting/recursion too deep (stack limit of " + std::to_string(opt.max_stack_bytes) + " bytes)");
    }

    // Work proportional to n elements (iteration, membership, copies) counts as n steps.
    void step(std::uint64_t n = 1) {
        steps += n;
        if (steps > opt.max_steps) fail("template exceeded the evaluation step limit (" + std::to_string(opt.max_steps) + ")");
    }
    void check_size(std::size_t n) const {
        if (n > opt.max_output_bytes) fail("template output exceeds the limit of " + std::to_string(opt.max_output_bytes) + " bytes");
    }
    void emit(std::string& out, std::string_view s) {
        check_size(out.size() + s.size());
        out += s;
    }

    Value lookup(const FrameP& frame, const std::string& name) {
        for (Frame* f = frame.get(); f; f = f->parent.get()) {
            auto it = f->vars.find(name);
            if (it != f->vars.end()) return it->second;
        }
        return Value::undefined("'" + name + "' is undefined");
    }

    // ----- attribute / item access (jinja2 sandbox semantics) -----
    Value method(const Value& obj, const std::string& name);
    Value getattr(const Value& obj, const std::string& name);
    Value getitem(const Value& obj, const Value& key);
    Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

    Value call(const Value& callee, Args& args, int line) {
        if (callee.is_undefined()) {
            if (callee.unsafe) fail(callee.s + where(line));
            fail((callee.s.empty() ? std::string("undefined value") : callee.s) + " (called as a function)" + where(line));
        }
        if (callee.kind != Kind::Func) fail(std::string("'") + type_name(callee) + "' object is not callable" + where(line));
        return callee.func->fn(*this, args);
    }

    std::string where(int line) const { return " at line " + std::to_string(line); }

    // ----- expressions -----
    Value eval(const Expr& e, const FrameP& f);
    Value binary(const std::string& op, const Value& a, const Value& b, int line);
    Value filter(const Expr& e, const FrameP& f);
    bool test(const Expr& e, const FrameP& f);
    bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, int line);
    Value apply_filter(const std::string& name, const Value& v, Args& args, int line);
    bool contains(const Value& container, const Value& item, int line);
    std::vector<Value> iterate(const Value& v, int line);

    // ----- statements -----
    Flow exec(const std::vector<StmtP>& body, const FrameP& f, std::string& out);
    Flow exec(const Stmt& s, const FrameP& f, std::string& out);
    void assign(const Stmt& s, const FrameP& f, Value v);
    Value make_macro(const Stmt& s, const FrameP& f);
};

namespace {

thread_local Interp* t_interp = nullptr;  // the render in progress on this thread

void tick() {
    if (t_interp) t_interp->step();
}

void check_len(std::size_t n) {
    if (t_interp) t_interp->check_size(n);
}

std::int64_t to_index(const Value& v, const char* what) {
    if (v.kind == Kind::Int) return v.i;
    if (v.kind == Kind::Bool) return v.b;
    fail(std::string(what) + " indices must be integers, not " + type_name(v));
}

Value make_string_list(const std::vector<std::string>& parts) {
    auto v = Value::make_list();
    for (const auto& p : parts) v.list->items.push_back(Value::string(p));
    return v;
}

const Value* kwarg(Args& a, const char* name) {
    for (auto& [k, v] : a.kw)
        if (k == name) return &v;
    return nullptr;
}

// Positional-or-keyword argument `idx` / `name`, or nullptr.
const Value* arg(Args& a, std::size_t idx, const char* name) {
    if (idx < a.pos.size()) return &a.pos[idx];
    return kwarg(a, name);
}

std::string need_str(const Value& v, const char* what) {
    if (v.kind != Kind::Str) fail(std::string(what) + " must be a string, not " + type_name(v));
    return v.s;
}

std::vector<std::string> py_split(const std::string& s, const Value* sep, std::int64_t maxsplit) {
    std::vector<std::string> out;
    if (!sep || sep->kind == Kind::None) {
        auto u = decode(s);
        std::size_t i = 0;
        while (i < u.size()) {
            while (i < u.size() && py_space(u[i])) ++i;
            if (i >= u.size()) break;
            if (maxsplit >= 0 && static_cast<std::int64_t>(out.size()) >= maxsplit) {
                std::size_t e = u.size();
                while (e > i && py_space(u[e - 1])) --e;
                out.push_back(encode(u.substr(i, e - i)));
                return out;
            }
            std::size_t j = i;
            while (j < u.size() && !py_space(u[j])) ++j;
            out.push_back(encode(u.substr(i, j - i)));
            i = j;
        }
        return out;
    }
    std::string d = need_str(*sep, "separator");
    if (d.empty()) fail("empty separator");
    std::size_t pos = 0;
    for (;;) {
        if (maxsplit >= 0 && static_cast<std::int64_t>(out.size()) >= maxsplit) break;
        std::size_t k = s.find(d, pos);
        if (k == std::string::npos) break;
        out.push_back(s.substr(pos, k - pos));
        pos = k + d.size();
    }
    out.push_back(s.substr(pos));
    return out;
}

std::vector<std::string> py_rsplit(const std::string& s, const Value* sep, std::int64_t maxsplit) {
    if (!sep || sep->kind == Kind::None || maxsplit < 0) return py_split(s, sep, maxsplit);
    std::string d = need_str(*sep, "separator");
    if (d.empty()) fail("empty separator");
    std::vector<std::string> out;
    std::size_t end = s.size();
    while (static_cast<std::int64_t>(out.size()) < maxsplit) {
        if (end < d.size()) break;
        std::size_t k = s.rfind(d, end - d.size());
        if (k == std::string::npos) break;
        out.push_back(s.substr(k + d.size(), end - k - d.size()));
        end = k;
    }
    out.push_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
}

std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
    std::u32string set;
    bool ws = !chars || chars->kind == Kind::None;
    if (!ws) set = decode(need_str(*chars, "strip argument"));
    auto u = decode(s);
    auto drop = [&](char32_t c) { return ws ? py_space(c) : set.find(c) != std::u32string::npos; };
    std::size_t b = 0, e = u.size();
    if (left)
        while (b < e && drop(u[b])) ++b;
    if (right)
        while (e > b && drop(u[e - 1])) --e;
    return encode(u.substr(b, e - b));
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, std::int64_t count, std::size_t limit) {
    std::string out;
    if (from.empty()) {
        auto u = decode(s);
        std::int64_t n = 0;
        for (std::size_t k = 0; k <= u.size(); ++k) {
            if (count < 0 || n < count) {
                out += to;
                ++n;
            }
            if (k < u.size()) put_utf8(out, u[k]);
            if (out.size() > limit) fail("string too large");
        }
        return out;
    }
    std::size_t pos = 0;
    std::int64_t n = 0;
    for (;;) {
        std::size_t k = (count >= 0 && n >= count) ? std::string::npos : s.find(from, pos);
        if (k == std::string::npos) break;
        out.append(s, pos, k - pos);
        out += to;
        if (out.size() > limit) fail("string too large");
        pos = k + from.size();
        ++n;
    }
    out.append(s, pos);
    return out;
}

bool starts_or_ends(const std::string& s, const Value& prefix, bool start) {
    auto check = [&](const Value& p) {
        std::string x = need_str(p, start ? "startswith argument" : "endswith argument");
        if (x.size() > s.size()) return false;
        return start ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (prefix.kind == Kind::List) {
        for (const auto& p : prefix.list->items)
            if (check(p)) return true;
        return false;
    }
    return check(prefix);
}

std::string py_title(const std::string& s) {
    auto u = decode(s);
    bool prev_cased = false;
    for (auto& c : u) {
        bool cased = is_alpha(c);
        if (cased) c = prev_cased ? to_lower(c) : to_upper(c);
        prev_cased = cased;
    }
    return encode(u);
}

std::string py_capitalize(const std::string& s) {
    auto u = decode(s);
    for (std::size_t k = 0; k < u.size(); ++k) u[k] = k == 0 ? to_upper(u[k]) : to_lower(u[k]);
    return encode(u);
}

// str.format with automatic/explicit positional and keyword fields (no format specs).
std::string py_format(const std::string& fmt, Args& args) {
    std::string out;
    std::size_t auto_idx = 0;
    for (std::size_t k = 0; k < fmt.size(); ++k) {
        char c = fmt[k];
        if (c == '{') {
            if (k + 1 < fmt.size() && fmt[k + 1] == '{') {
                out += '{';
                ++k;
                continue;
            }
            std::size_t e = fmt.find('}', k);
            if (e == std::string::npos) fail("str.format: single '{' encountered in format string");
            std::string field = fmt.substr(k + 1, e - k - 1);
            if (field.find_first_of(":!.[") != std::string::npos) fail("unsupported construct: str.format field '{" + field + "}'");
            const Value* v = nullptr;
            if (field.empty()) {
                if (auto_idx >= args.pos.size()) fail("str.format: replacement index out of range");
                v = &args.pos[auto_idx++];
            } else if (std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
                std::size_t idx = std::stoul(field);
                if (idx >= args.pos.size()) fail("str.format: replacement index out of range");
                v = &args.pos[idx];
            } else {
                v = kwarg(args, field.c_str());
                if (!v) fail("str.format: missing key '" + field + "'");
            }
            out += py_str(*v);
            k = e;
        } else if (c == '}') {
            if (k + 1 < fmt.size() && fmt[k + 1] == '}') ++k;
            else fail("str.format: single '}' encountered in format string");
            out += '}';
        } else {
            out += c;
        }
    }
    return out;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&#34;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

bool is_unsafe_method(const Value& obj, const std::string& name) {
    static const char* const list_mut[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};
    static const char* const dict_mut[] = {"clear", "pop", "popitem", "setdefault", "update"};
    if (obj.kind == Kind::List && !obj.list->tuple)
        for (const char* m : list_mut)
            if (name == m) return true;
    if (obj.kind == Kind::Dict && !obj.dict->is_namespace)
        for (const char* m : dict_mut)
            if (name == m) return true;
    return false;
}

bool is_str_method(const std::string& n) {
    static const char* const names[] = {
        "capitalize", "casefold", "center",     "count",      "encode",     "endswith",  "expandtabs", "find",
        "format",     "format_map", "index",    "isalnum",    "isalpha",    "isascii",   "isdecimal",  "isdigit",
        "isidentifier", "islower", "isnumeric", "isprintable", "isspace",   "istitle",   "isupper",    "join",
        "ljust",      "lower",     "lstrip",    "maketrans",  "partition",  "removeprefix", "removesuffix", "replace",
        "rfind",      "rindex",    "rjust",     "rpartition", "rsplit",     "rstrip",    "split",      "splitlines",
        "startswith", "strip",     "swapcase",  "title",      "translate",  "upper",     "zfill"};
    for (const char* m : names)
        if (n == m) return true;
    return false;
}

}  // namespace

Value Interp::method(const Value& obj, const std::string& name) {
    Value self = obj;
    auto fn = [&](std::function<Value(Interp&, Args&)> f) { return Value::function(name, std::move(f)); };
    if (obj.kind == Kind::Str) {
        if (!is_str_method(name)) return Value::undefined("'str object' has no attribute '" + name + "'");
        const std::string s = obj.s;
        if (name == "strip" || name == "lstrip" || name == "rstrip")
            return fn([s, name](Interp&, Args& a) {
                return Value::string(py_strip(s, arg(a, 0, "chars"), name != "rstrip", name != "lstrip"));
            });
        if (name == "split" || name == "rsplit")
            return fn([s, name](Interp&, Args& a) {
                const Value* m = arg(a, 1, "maxsplit");
                std::int64_t maxsplit = m ? to_index(*m, "maxsplit") : -1;
                return make_string_list(name == "split" ? py_split(s, arg(a, 0, "sep"), maxsplit) : py_rsplit(s, arg(a, 0, "sep"), maxsplit));
            });
        if (name == "startswith" || name == "endswith")
            return fn([s, name](Interp&, Args& a) {
                if (a.pos.empty()) fail(name + "() takes at least 1 argument");
                return Value::boolean(starts_or_ends(s, a.pos[0], name == "startswith"));
            });
        if (name == "upper" || name == "lower")
            return fn([s, name](Interp&, Args&) { return Value::string(map_case(s, name == "upper")); });
        if (name == "title") return fn([s](Interp&, Args&) { return Value::string(py_title(s)); });
        if (name == "capitalize") return fn([s](Interp&, Args&) { return Value::string(py_capitalize(s)); });
        if (name == "replace")
            return fn([s](Interp& in, Args& a) {
                if (a.pos.size() < 2) fail("replace() takes at least 2 arguments");
                const Value* c = arg(a, 2, "count");
                return Value::string(py_replace(s, need_str(a.pos[0], "replace argument"), need_str(a.pos[1], "replace argument"),
                                                c ? to_index(*c, "count") : -1, in.opt.max_output_bytes));
            });
        if (name == "format")
            return fn([s](Interp& in, Args& a) {
                auto r = py_format(s, a);
                in.check_size(r.size());
                return Value::string(std::move(r));
            });
        if (name == "join")
            return fn([s](Interp& in, Args& a) {
                if (a.pos.empty()) fail("join() takes exactly one argument");
                std::string out;
                bool first = true;
                for (const auto& item : in.iterate(a.pos[0], 0)) {
                    if (!first) out += s;
                    first = false;
                    if (item.kind != Kind::Str) fail(std::string("sequence item: expected str instance, ") + type_name(item) + " found");
                    out += item.s;
                    in.check_size(out.size());
                }
                return Value::string(std::move(out));
            });
        if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count")
            return fn([s, name](Interp&, Args& a) {
                if (a.pos.empty()) fail(name + "() takes at least 1 argument");
                std::string sub = need_str(a.pos[0], "argument");
                if (a.pos.size() > 1) fail("unsupported construct: str." + name + " with start/end");
                if (name == "count") {
                    if (sub.empty()) return Value::integer(static_cast<std::int64_t>(str_len(s) + 1));
                    std::int64_t n = 0;
                    for (std::size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
                    return Value::integer(n);
                }
                std::size_t p = (name == "find" || name == "index") ? s.find(sub) : s.rfind(sub);
                if (p == std::string::npos) {
                    if (name == "index" || name == "rindex") fail("substring not found");
                    return Value::integer(-1);
                }
                return Value::integer(static_cast<std::int64_t>(str_len(std::string_view(s).substr(0, p))));
            });
        if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" || name == "isupper" ||
            name == "islower" || name == "isdecimal" || name == "isnumeric")
            return fn([s, name](Interp&, Args&) {
                auto u = decode(s);
                if (u.empty()) return Value::boolean(false);
                if (name == "isupper" || name == "islower") {
                    bool cased = false;
                    for (char32_t c : u) {
                        if (to_upper(c) != to_lower(c)) {
                            cased = true;
                            if (name == "isupper" ? c != to_upper(c) : c != to_lower(c)) return Value::boolean(false);
                        }
                    }
                    return Value::boolean(cased);
                }
                for (char32_t c : u) {
                    bool digit = c >= '0' && c <= '9';
                    bool ok = name == "isspace" ? py_space(c)
                              : name == "isalpha" ? is_alpha(c)
                              : name == "isalnum" ? (is_alpha(c) || digit)
                                                  : digit;
                    if (!ok) return Value::boolean(false);
                }
                return Value::boolean(true);
            });
        if (name == "isascii") return fn([s](Interp&, Args&) { return Value::boolean(is_ascii(s)); });
        if (name == "removeprefix" || name == "removesuffix")
            return fn([s, name](Interp&, Args& a) {
                if (a.pos.empty()) fail(name + "() takes exactly one argument");
                std::string x = need_str(a.pos[0], "argument");
                if (name == "removeprefix" && s.compare(0, x.size(), x) == 0) return Value::string(s.substr(x.size()));
                if (name == "removesuffix" && !x.empty() && x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
                    return Value::string(s.substr(0, s.size() - x.size()));
                return Value::string(s);
            });
        if (name == "splitlines")
            return fn([s](Interp&, Args&) {
                std::vector<std::string> parts;
                std::string cur;
                for (std::size_t k = 0; k < s.size(); ++k) {
                    if (s[k] == '\n' || s[k] == '\r') {
                        parts.push_back(cur);
                        cur.clear();
                        if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
                    } else {
                        cur += s[k];
                    }
                }
                if (!cur.empty()) parts.push_back(cur);
                return make_string_list(parts);
            });
        return fn([name](Interp&, Args&) -> Value { fail("unsupported construct: string method '" + name + "'"); });
    }
    if (obj.kind == Kind::Dict && !obj.dict->is_namespace) {
        if (name == "items" || name == "keys" || name == "values")
            return fn([self, name](Interp&, Args&) {
                auto out = Value::make_list();
                for (const auto& [k, v] : self.dict->items) {
                    if (name == "items") out.list->items.push_back(Value::make_list({k, v}, true));
                    else if (name == "keys") out.list->items.push_back(k);
                    else out.list->items.push_back(v);
                }
                out.list->view = name == "items" ? "dict_items" : name == "keys" ? "dict_keys" : "dict_values";
                return out;
            });
        if (name == "get")
            return fn([self](Interp&, Args& a) {
                if (a.pos.empty()) fail("get expected at least 1 argument");
                const Value* def = arg(a, 1, "default");
                if (const Value* v = self.dict->find(a.pos[0])) return *v;
                return def ? *def : Value::none();
            });
        if (name == "copy")
            return fn([self](Interp&, Args&) {
                auto out = Value::make_dict();
                out.dict->items = self.dict->items;
                return out;
            });
    }
    if (obj.kind == Kind::List) {
        if (name == "index" || name == "count")
            return fn([self, name](Interp&, Args& a) {
                if (a.pos.empty()) fail(name + "() takes exactly one argument");
                std::int64_t n = 0;
                for (std::size_t k = 0; k < self.list->items.size(); ++k) {
                    if (equals(self.list->items[k], a.pos[0])) {
                        if (name == "index") return Value::integer(static_cast<std::int64_t>(k));
                        ++n;
                    }
                }
                if (name == "index") fail("value is not in list");
                return Value::integer(n);
            });
        if (name == "copy") return fn([self](Interp&, Args&) { return Value::make_list(self.list->items); });
    }
    return Value::undefined();
}

Value Interp::getattr(const Value& obj, const std::string& name) {
    if (obj.is_undefined()) undefined_error(obj);
    if (!name.empty() && name[0] == '_') {
        Value u = Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe");
        u.unsafe = true;
        return u;
    }
    if (is_unsafe_method(obj, name)) {
        Value u = Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe");
        u.unsafe = true;
        return u;
    }
    Value m = method(obj, name);
    if (!m.is_undefined()) return m;
    if (obj.kind == Kind::Dict) {
        if (const Value* v = obj.dict->find(name)) return *v;
    }
    std::string desc = obj.kind == Kind::None ? "None" : std::string("'") + type_name(obj) + " object'";
    return Value::undefined(desc + " has no attribute '" + name + "'");
}

Value Interp::getitem(const Value& obj, const Value& key) {
    if (obj.is_undefined()) undefined_error(obj);
    if (obj.kind == Kind::Dict && !obj.dict->is_namespace) {
        if (const Value* v = obj.dict->find(key)) return *v;
    } else if (obj.kind == Kind::List && (obj.list->generator || obj.list->view)) {
        fail(std::string("'") + type_name(obj) + "' object is not subscriptable");
    } else if (obj.kind == Kind::List && (key.kind == Kind::Int || key.kind == Kind::Bool)) {
        auto n = static_cast<std::int64_t>(obj.list->items.size());
        std::int64_t k = as_int(key);
        if (k < 0) k += n;
        if (k >= 0 && k < n) return obj.list->items[static_cast<std::size_t>(k)];
    } else if (obj.kind == Kind::Str && (key.kind == Kind::Int || key.kind == Kind::Bool)) {
        auto u = decode(obj.s);
        auto n = static_cast<std::int64_t>(u.size());
        std::int64_t k = as_int(key);
        if (k < 0) k += n;
        if (k >= 0 && k < n) return Value::string(encode(u.substr(static_cast<std::size_t>(k), 1)));
    }
    if (key.kind == Kind::Str) {
        if (is_unsafe_method(obj, key.s) || (!key.s.empty() && key.s[0] == '_')) {
            Value u = Value::undefined("access to attribute '" + key.s + "' of '" + type_name(obj) + "' object is unsafe");
            u.unsafe = true;
            return u;
        }
        Value m = method(obj, key.s);
        if (!m.is_undefined()) return m;
        if (obj.kind == Kind::Dict && obj.dict->is_namespace)
            if (const Value* v = obj.dict->find(key.s)) return *v;
    }
    std::string desc = obj.kind == Kind::None ? "None" : std::string("'") + type_name(obj) + " object'";
    return Value::undefined(desc + " has no attribute " + py_repr(key));
}

Value Interp::slice(const Value& obj, const Value& start, const Value& stop, const Value& stepv) {
    if (obj.is_undefined()) undefined_error(obj);
    auto opt_int = [](const Value& v, std::int64_t def) {
        if (v.is_undefined() || v.kind == Kind::None) return def;
        return to_index(v, "slice");
    };
    std::int64_t stp = opt_int(stepv, 1);
    if (stp == 0) fail("slice step cannot be zero");
    std::u32string u;
    std::int64_t n;
    if (obj.kind == Kind::Str) {
        u = decode(obj.s);
        n = static_cast<std::int64_t>(u.size());
    } else if (obj.kind == Kind::List && !obj.list->generator && !obj.list->view) {
        n = static_cast<std::int64_t>(obj.list->items.size());
    } else {
        fail(std::string("'") + type_name(obj) + "' object is not subscriptable");
    }
    auto norm = [&](std::int64_t k) {
        if (k < 0) k += n;
        if (stp > 0) return std::clamp<std::int64_t>(k, 0, n);
        return std::clamp<std::int64_t>(k, -1, n - 1);
    };
    std::int64_t b = start.is_undefined() || start.kind == Kind::None ? (stp > 0 ? 0 : n - 1) : norm(opt_int(start, 0));
    std::int64_t e = stop.is_undefined() || stop.kind == Kind::None ? (stp > 0 ? n : -1) : norm(opt_int(stop, 0));
    std::vector<std::int64_t> idx;
    if (stp > 0)
        for (std::int64_t k = b; k < e; k += stp) idx.push_back(k);
    else
        for (std::int64_t k = b; k > e; k += stp) idx.push_back(k);
    if (obj.kind == Kind::Str) {
        std::u32string r;
        for (auto k : idx) r += u[static_cast<std::size_t>(k)];
        return Value::string(encode(r));
    }
    auto out = Value::make_list({}, obj.list->tuple);
    for (auto k : idx) out.list->items.push_back(obj.list->items[static_cast<std::size_t>(k)]);
    return out;
}

std::vector<Value> Interp::iterate(const Value& v, int line) {
    if (v.kind == Kind::List) step(v.list->items.size());
    if (v.kind == Kind::Dict) step(v.dict->items.size());
    if (v.kind == Kind::Str) step(v.s.size());
    switch (v.kind) {
        case Kind::Undefined: return {};
        case Kind::List: {
            if (!v.list->generator) return v.list->items;
            std::vector<Value> rest(v.list->items.begin() + static_cast<std::ptrdiff_t>(v.list->consumed), v.list->items.end());
            v.list->consumed = v.list->items.size();
            return rest;
        }
        case Kind::Dict: {
            if (v.dict->is_namespace) fail("'Namespace' object is not iterable" + where(line));
            std::vector<Value> keys;
            for (const auto& [k, val] : v.dict->items) keys.push_back(k);
            return keys;
        }
        case Kind::Str: {
            std::vector<Value> chars;
            for (char32_t c : decode(v.s)) chars.push_back(Value::string(encode(std::u32string(1, c))));
            return chars;
        }
        default: fail(std::string("'") + type_name(v) + "' object is not iterable" + where(line));
    }
}

bool Interp::contains(const Value& container, const Value& item, int line) {
    if (container.kind == Kind::List) step(container.list->items.size());
    if (container.kind == Kind::Dict) step(container.dict->items.size());
    if (container.kind == Kind::Str) step(container.s.size() / 16);
    switch (container.kind) {
        case Kind::Str:
            if (item.kind != Kind::Str) fail(std::string("'in <string>' requires string as left operand, not ") + type_name(item) + where(line));
            return container.s.find(item.s) != std::string::npos;
        case Kind::List:
            if (container.list->generator) {
                for (const auto& x : iterate(container, line))
                    if (equals(x, item)) return true;
                return false;
            }
            for (const auto& x : container.list->items)
                if (equals(x, item)) return true;
            return false;
        case Kind::Dict:
            if (container.dict->is_namespace) fail("argument of type 'Namespace' is not iterable" + where(line));
            return container.dict->find(item) != nullptr;
        case Kind::Undefined: return false;
        default: fail(std::string("argument of type '") + type_name(container) + "' is not iterable" + where(line));
    }
}

Value Interp::binary(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "~") {
        std::string r = py_str(a) + py_str(b);
        check_size(r.size());
        step(r.size() / 256);
        return Value::string(std::move(r));
    }
    if (a.is_undefined()) undefined_error(a);
    if (b.is_undefined()) undefined_error(b);
    auto type_err = [&]() -> Value {
        fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'" + where(line));
    };
    if (a.is_number() && b.is_number()) {
        bool fl = a.kind == Kind::Float || b.kind == Kind::Float;
        if (op == "/") {
            if (as_double(b) == 0) fail("division by zero" + where(line));
            return Value::floating(as_double(a) / as_double(b));
        }
        if (fl) {
            double x = as_double(a), y = as_double(b);
            if (op == "+") return Value::floating(x + y);
            if (op == "-") return Value::floating(x - y);
            if (op == "*") return Value::floating(x * y);
            if (op == "**") return Value::floating(std::pow(x, y));
            if (y == 0) fail("float division by zero" + where(line));
            if (op == "//") return Value::floating(std::floor(x / y));
            if (op == "%") {
                double m = std::fmod(x, y);
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                return Value::floating(m);
            }
        } else {
            std::int64_t x = as_int(a), y = as_int(b), r = 0;
            bool ovf = false;
            if (op == "+") ovf = __builtin_add_overflow(x, y, &r);
            else if (op == "-") ovf = __builtin_sub_overflow(x, y, &r);
            else if (op == "*") ovf = __builtin_mul_overflow(x, y, &r);
            else if (op == "**") {
                if (y < 0) return Value::floating(std::pow(static_cast<double>(x), static_cast<double>(y)));
                r = 1;
                for (std::int64_t k = 0; k < y && !ovf; ++k) {
                    ovf = __builtin_mul_overflow(r, x, &r);
                    if (r == 0 || r == 1) break;
                    if (r == -1) {
                        r = (y % 2) ? -1 : 1;
                        break;
                    }
                }
            } else {
                if (y == 0) fail("integer division or modulo by zero" + where(line));
                if (x == INT64_MIN && y == -1) ovf = true;
                else if (op == "//") {
                    r = x / y;
                    if ((x % y != 0) && ((x < 0) != (y < 0))) --r;
                } else {
                    r = x % y;
                    if (r != 0 && ((r < 0) != (y < 0))) r += y;
                }
            }
            if (ovf) fail("integer overflow (outside 64-bit range)" + where(line));
            return Value::integer(r);
        }
    }
    if (op == "+") {
        if (a.kind == Kind::Str && b.kind == Kind::Str) {
            check_size(a.s.size() + b.s.size());
            step((a.s.size() + b.s.size()) / 256);
            if (a.markup || b.markup) {  // Markup.__add__ / __radd__ escape the plain operand
                Value r = Value::string((a.markup ? a.s : html_escape(a.s)) + (b.markup ? b.s : html_escape(b.s)));
                r.markup = true;
                return r;
            }
            return Value::string(a.s + b.s);
        }
        if (a.kind == Kind::List && b.kind == Kind::List && a.list->tuple == b.list->tuple && !a.list->generator && !b.list->generator &&
            !a.list->view && !b.list->view) {
            check_size((a.list->items.size() + b.list->items.size()) * 64);
            step(a.list->items.size() + b.list->items.size());
            auto items = a.list->items;
            items.insert(items.end(), b.list->items.begin(), b.list->items.end());
            return Value::make_list(std::move(items), a.list->tuple);
        }
        return type_err();
    }
    if (op == "*") {
        const Value* seq = (a.kind == Kind::Str || a.kind == Kind::List) ? &a : (b.kind == Kind::Str || b.kind == Kind::List) ? &b : nullptr;
        const Value* cnt = seq == &a ? &b : &a;
        if (!seq || !(cnt->kind == Kind::Int || cnt->kind == Kind::Bool)) return type_err();
        if (seq->kind == Kind::List && (seq->list->generator || seq->list->view)) return type_err();
        std::int64_t n = std::max<std::int64_t>(0, as_int(*cnt));
        std::size_t unit = seq->kind == Kind::Str ? seq->s.size() : seq->list->items.size() * 64;
        if (unit && static_cast<std::uint64_t>(n) > opt.max_output_bytes / unit) check_size(opt.max_output_bytes + 1);
        if (seq->kind == Kind::Str) {
            std::string r;
            for (std::int64_t k = 0; k < n; ++k) r += seq->s;
            return Value::string(std::move(r));
        }
        std::vector<Value> items;
        for (std::int64_t k = 0; k < n; ++k) items.insert(items.end(), seq->list->items.begin(), seq->list->items.end());
        return Value::make_list(std::move(items), seq->list->tuple);
    }
    if (op == "%" && a.kind == Kind::Str) fail("unsupported construct: printf-style string formatting ('%')" + where(line));
    return type_err();
}

Value Interp::eval(const Expr& e, const FrameP& f) {
    step();
    check_stack();
    switch (e.kind) {
        case ExprKind::Literal: return e.lit;
        case ExprKind::Name: return lookup(f, e.name);
        case ExprKind::List:
        case ExprKind::Tuple: {
            auto v = Value::make_list({}, e.kind == ExprKind::Tuple);
            for (const auto& a : e.args) v.list->items.push_back(eval(*a, f));
            return v;
        }
        case ExprKind::Dict: {
            auto v = Value::make_dict();
            for (std::size_t k = 0; k + 1 < e.args.size(); k += 2) {
                Value key = eval(*e.args[k], f);
                if (key.kind == Kind::List || key.kind == Kind::Dict || key.kind == Kind::Undefined)
                    fail(std::string("unhashable dict key of type '") + type_name(key) + "'" + where(e.line));
                v.dict->set(key, eval(*e.args[k + 1], f));
            }
            return v;
        }
        case ExprKind::GetAttr: return getattr(eval(*e.args[0], f), e.name);
        case ExprKind::GetItem: {
            Value obj = eval(*e.args[0], f);
            return getitem(obj, eval(*e.args[1], f));
        }
        case ExprKind::Slice: {
            Value obj = eval(*e.args[0], f);
            Value parts[3];
            for (int k = 0; k < 3; ++k)
                if (e.args[static_cast<std::size_t>(k) + 1]) parts[k] = eval(*e.args[static_cast<std::size_t>(k) + 1], f);
            return slice(obj, parts[0], parts[1], parts[2]);
        }
        case ExprKind::Call: {
            Value callee = eval(*e.args[0], f);
            Args a;
            for (std::size_t k = 1; k < e.args.size(); ++k) a.pos.push_back(eval(*e.args[k], f));
            for (const auto& [k, v] : e.kwargs) a.kw.emplace_back(k, eval(*v, f));
            return call(callee, a, e.line);
        }
        case ExprKind::Filter: return filter(e, f);
        case ExprKind::Test: return Value::boolean(test(e, f));
        case ExprKind::Neg:
        case ExprKind::Pos: {
            Value v = eval(*e.args[0], f);
            if (v.is_undefined()) undefined_error(v);
            if (!v.is_number()) fail(std::string("bad operand type for unary ") + (e.kind == ExprKind::Neg ? "-" : "+") + ": '" + type_name(v) + "'" + where(e.line));
            if (e.kind == ExprKind::Pos) return v.kind == Kind::Bool ? Value::integer(v.b) : v;
            if (v.kind == Kind::Float) return Value::floating(-v.f);
            if (as_int(v) == INT64_MIN) fail("integer overflow" + where(e.line));
            return Value::integer(-as_int(v));
        }
        case ExprKind::Not: return Value::boolean(!truthy(eval(*e.args[0], f)));
        case ExprKind::And: {
            Value l = eval(*e.args[0], f);
            return truthy(l) ? eval(*e.args[1], f) : l;
        }
        case ExprKind::Or: {
            Value l = eval(*e.args[0], f);
            return truthy(l) ? l : eval(*e.args[1], f);
        }
        case ExprKind::Cond: {
            if (truthy(eval(*e.args[1], f))) return eval(*e.args[0], f);
            if (e.args[2]) return eval(*e.args[2], f);
            return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
        }
        case ExprKind::Binary: {
            Value a = eval(*e.args[0], f);
            Value b = eval(*e.args[1], f);
            return binary(e.name, a, b, e.line);
        }
        case ExprKind::Compare: {
            Value l = eval(*e.args[0], f);
            for (std::size_t k = 0; k < e.ops.size(); ++k) {
                Value r = eval(*e.args[k + 1], f);
                const std::string& op = e.ops[k];
                bool ok;
                if (op == "==") ok = equals(l, r);
                else if (op == "!=") ok = !equals(l, r);
                else if (op == "in") ok = contains(r, l, e.line);
                else if (op == "notin") ok = !contains(r, l, e.line);
                else {
                    int c = compare(l, r, op.c_str());
                    ok = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
                }
                if (!ok) return Value::boolean(false);
                l = std::move(r);
            }
            return Value::boolean(true);
        }
    }
    fail("internal error: unknown expression");
}

bool Interp::test(const Expr& e, const FrameP& f) {
    if (e.unknown) fail("unsupported construct: no test named '" + e.name + "'" + where(e.line));
    Value v = eval(*e.args[0], f);
    std::vector<Value> args;
    for (std::size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k], f));
    for (const auto& kv : e.kwargs) args.push_back(eval(*kv.second, f));
    bool r = apply_test(e.name, v, args, e.line);
    return e.negate ? !r : r;
}

bool Interp::apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, int line) {
    auto need = [&](std::size_t n) {
        if (args.size() < n) fail("test '" + name + "' needs an argument" + where(line));
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.kind == Kind::None;
    if (name == "string") return v.kind == Kind::Str;
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind == Kind::Int;
    if (name == "float") return v.kind == Kind::Float;
    if (name == "boolean") return v.kind == Kind::Bool;
    if (name == "true") return v.kind == Kind::Bool && v.b;
    if (name == "false") return v.kind == Kind::Bool && !v.b;
    if (name == "mapping") return v.kind == Kind::Dict && !v.dict->is_namespace;
    if (name == "iterable") return v.kind == Kind::Str || v.kind == Kind::List || (v.kind == Kind::Dict && !v.dict->is_namespace) || v.kind == Kind::Undefined;
    if (name == "sequence") return v.kind == Kind::Str || (v.kind == Kind::List && !v.list->generator && !v.list->view) || (v.kind == Kind::Dict && !v.dict->is_namespace) || v.kind == Kind::Undefined;
    if (name == "callable") return v.kind == Kind::Func;
    if (name == "lower") return v.kind == Kind::Str && map_case(v.s, false) == v.s;
    if (name == "upper") return v.kind == Kind::Str && map_case(v.s, true) == v.s;
    if (name == "escaped") return false;
    if (name == "odd" || name == "even") {
        if (!(v.kind == Kind::Int || v.kind == Kind::Bool)) fail("test '" + name + "' needs an integer" + where(line));
        return (as_int(v) % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
        need(1);
        if (!v.is_number() || !args[0].is_number()) fail("divisibleby needs numbers" + where(line));
        auto d = as_int(args[0]);
        if (d == 0) fail("integer division or modulo by zero" + where(line));
        return as_int(v) % d == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return need(1), equals(v, args[0]);
    if (name == "ne" || name == "!=") return need(1), !equals(v, args[0]);
    if (name == "sameas") {
        need(1);
        const Value& o = args[0];
        if (v.kind != o.kind) return false;
        if (v.kind == Kind::None || v.kind == Kind::Undefined) return true;
        if (v.kind == Kind::Bool) return v.b == o.b;
        if (v.kind == Kind::List) return v.list == o.list;
        if (v.kind == Kind::Dict) return v.dict == o.dict;
        if (v.kind == Kind::Func) return v.func == o.func;
        return equals(v, o);
    }
    if (name == "in") return need(1), contains(args[0], v, line);
    if (name == "lt" || name == "lessthan" || name == "<") return need(1), compare(v, args[0], "<") < 0;
    if (name == "le" || name == "<=") return need(1), compare(v, args[0], "<=") <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return need(1), compare(v, args[0], ">") > 0;
    if (name == "ge" || name == ">=") return need(1), compare(v, args[0], ">=") >= 0;
    fail("unsupported construct: test '" + name + "'" + where(line));
}

namespace {

// Dotted attribute lookup used by map/selectattr/sort/... (jinja2 make_attrgetter: getitem per part).
Value attr_path(Interp& in, const Value& item, const std::string& path) {
    Value cur = item;
    std::size_t start = 0;
    for (;;) {
        std::size_t dot = path.find('.', start);
        std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
        cur = in.getitem(cur, numeric ? Value::integer(std::stoll(part)) : Value::string(part));
        if (dot == std::string::npos) return cur;
        start = dot + 1;
    }
}

int sort_compare(const Value& a, const Value& b, bool case_sensitive) {
    if (!case_sensitive && a.kind == Kind::Str && b.kind == Kind::Str)
        return compare(Value::string(map_case(a.s, false)), Value::string(map_case(b.s, false)), "<");
    return compare(a, b, "<");
}

}  // namespace

Value Interp::filter(const Expr& e, const FrameP& f) {
    if (e.unknown) fail("unsupported construct: no filter named '" + e.name + "'" + where(e.line));
    Value v = eval(*e.args[0], f);
    Args a;
    for (std::size_t k = 1; k < e.args.size(); ++k) a.pos.push_back(eval(*e.args[k], f));
    for (const auto& [k, x] : e.kwargs) a.kw.emplace_back(k, eval(*x, f));
    return apply_filter(e.name, v, a, e.line);
}

Value Interp::apply_filter(const std::string& name, const Value& v, Args& a, int line) {
    auto bad = [&](const std::string& why) -> Value { fail("filter '" + name + "': " + why + where(line)); };
    auto flag = [&](std::size_t idx, const char* key, bool def) {
        const Value* x = arg(a, idx, key);
        return x ? truthy(*x) : def;
    };
    auto soft_str = [&](const Value& x) { return py_str(x); };
    if (name == "default" || name == "d") {
        const Value* def = arg(a, 0, "default_value");
        bool boolean = flag(1, "boolean", false);
        if (v.is_undefined() || (boolean && !truthy(v))) return def ? *def : Value::string("");
        return v;
    }
    if (name == "length" || name == "count") {
        switch (v.kind) {
            case Kind::Undefined: return Value::integer(0);
            case Kind::Str: return Value::integer(static_cast<std::int64_t>(str_len(v.s)));
            case Kind::List:
                if (v.list->generator) return bad("object of type 'generator' has no len()");
                return Value::integer(static_cast<std::int64_t>(v.list->items.size()));
            case Kind::Dict:
                if (!v.dict->is_namespace) return Value::integer(static_cast<std::int64_t>(v.dict->items.size()));
                if (v.dict->readonly) return *v.dict->find("length");  // the loop object has a len()
                [[fallthrough]];
            default: return bad(std::string("object of type '") + type_name(v) + "' has no len()");
        }
    }
    if (name == "tojson") {
        JsonOpts o;
        o.limit = opt.max_output_bytes;
        if (const Value* x = arg(a, 1, "indent"); x && x->kind != Kind::None) {
            if (x->kind == Kind::Int) o.indent = static_cast<int>(std::clamp<std::int64_t>(x->i, 0, 64));
            else return bad("unsupported indent");
        }
        if (const Value* x = arg(a, 0, "ensure_ascii")) o.ensure_ascii = truthy(*x);
        if (o.indent >= 0) o.item_sep = ",";
        if (const Value* x = arg(a, 2, "separators"); x && x->kind != Kind::None) {
            if (x->kind != Kind::List || x->list->items.size() != 2) return bad("separators must be a pair");
            o.item_sep = need_str(x->list->items[0], "separator");
            o.key_sep = need_str(x->list->items[1], "separator");
        }
        if (const Value* x = arg(a, 3, "sort_keys")) o.sort_keys = truthy(*x);
        std::string out;
        to_json(out, v, o, 0);
        check_size(out.size());
        return Value::string(std::move(out));
    }
    if (name == "string") return v.kind == Kind::Str ? v : Value::string(soft_str(v));
    auto markup = [](std::string text) {
        Value r = Value::string(std::move(text));
        r.markup = true;
        return r;
    };
    if (name == "safe") return markup(soft_str(v));
    if ((name == "e" || name == "escape") && v.kind == Kind::Str && v.markup) return v;
    if (name == "e" || name == "escape" || name == "forceescape") return markup(html_escape(soft_str(v)));
    if (name == "trim") return Value::string(py_strip(soft_str(v), arg(a, 0, "chars"), true, true));
    if (name == "upper" || name == "lower") return Value::string(map_case(soft_str(v), name == "upper"));
    if (name == "capitalize") return Value::string(py_capitalize(soft_str(v)));
    if (name == "title") {
        // jinja2: split on runs of [-\s({[<], capitalise each piece.
        auto u = decode(soft_str(v));
        std::u32string out;
        bool word_start = true;
        for (char32_t c : u) {
            bool sep = c == '-' || py_space(c) || c == '(' || c == '{' || c == '[' || c == '<';
            if (sep) {
                out += c;
                word_start = true;
            } else {
                out += word_start ? to_upper(c) : to_lower(c);
                word_start = false;
            }
        }
        return Value::string(encode(out));
    }
    if (name == "replace") {
        if (a.pos.size() < 2) return bad("needs old and new");
        const Value* c = arg(a, 2, "count");
        return Value::string(py_replace(soft_str(v), soft_str(a.pos[0]), soft_str(a.pos[1]), c && c->kind != Kind::None ? to_index(*c, "count") : -1,
                                        opt.max_output_bytes));
    }
    if (name == "indent") {
        std::string ind;
        if (const Value* w = arg(a, 0, "width")) {
            if (w->kind == Kind::Str) ind = w->s;
            else {
                auto n = to_index(*w, "width");
                check_size(static_cast<std::size_t>(std::max<std::int64_t>(0, n)));
                ind.assign(static_cast<std::size_t>(std::max<std::int64_t>(0, n)), ' ');
            }
        } else {
            ind = "    ";
        }
        bool first = flag(1, "first", false), blank = flag(2, "blank", false);
        std::string s = soft_str(v) + "\n";
        std::vector<std::string> lines;
        {
            std::string cur;
            for (std::size_t k = 0; k < s.size(); ++k) {
                if (s[k] == '\n' || s[k] == '\r') {
                    lines.push_back(cur);
                    cur.clear();
                    if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
                } else {
                    cur += s[k];
                }
            }
            if (!cur.empty()) lines.push_back(cur);
        }
        std::string rv;
        if (blank) {
            for (std::size_t k = 0; k < lines.size(); ++k) {
                if (k) rv += "\n" + ind;
                rv += lines[k];
                check_size(rv.size());
            }
        } else if (!lines.empty()) {
            rv = lines[0];
            for (std::size_t k = 1; k < lines.size(); ++k) {
                rv += "\n";
                if (!lines[k].empty()) rv += ind;
                rv += lines[k];
                check_size(rv.size());
            }
        }
        if (first) rv = ind + rv;
        return Value::string(std::move(rv));
    }
    if (name == "join") {
        std::string sep = a.pos.empty() ? "" : soft_str(a.pos[0]);
        const Value* attr = arg(a, 1, "attribute");
        std::string out;
        bool firstitem = true;
        for (const auto& item : iterate(v, line)) {
            if (!firstitem) out += sep;
            firstitem = false;
            out += soft_str(attr ? attr_path(*this, item, soft_str(*attr)) : item);
            check_size(out.size());
        }
        return Value::string(std::move(out));
    }
    if (name == "list") return Value::make_list(iterate(v, line));
    if (name == "first" && v.kind == Kind::List && v.list->generator) {
        auto& l = *v.list;
        if (l.consumed >= l.items.size()) return Value::undefined("No first item, sequence was empty.");
        return l.items[l.consumed++];
    }
    if (name == "last" && v.kind == Kind::List && v.list->generator) return bad("'generator' object is not reversible");
    if (name == "first" || name == "last") {
        auto items = iterate(v, line);
        if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
        return name == "first" ? items.front() : items.back();
    }
    if (name == "reverse") {
        if (v.kind == Kind::Str) {
            auto u = decode(v.s);
            std::reverse(u.begin(), u.end());
            return Value::string(encode(u));
        }
        bool gen = v.kind == Kind::List && !v.list->tuple;  // reversed(list) is an iterator
        auto items = iterate(v, line);
        std::reverse(items.begin(), items.end());
        auto r = Value::make_list(std::move(items));
        r.list->generator = gen || v.kind == Kind::Dict || (v.kind == Kind::List && v.list->generator);
        return r;
    }
    if (name == "items") {
        if (v.is_undefined()) {
            auto empty = Value::make_list();
            empty.list->generator = true;
            return empty;
        }
        if (v.kind != Kind::Dict || v.dict->is_namespace) return bad("can only get item pairs from a mapping");
        auto out = Value::make_list();
        for (const auto& [k, x] : v.dict->items) out.list->items.push_back(Value::make_list({k, x}, true));
        out.list->generator = true;
        return out;
    }
    if (name == "dictsort") {
        if (v.kind != Kind::Dict || v.dict->is_namespace) return bad("can only sort a mapping");
        bool cs = flag(0, "case_sensitive", false);
        std::string by = "key";
        if (const Value* b = arg(a, 1, "by")) by = soft_str(*b);
        bool rev = flag(2, "reverse", false);
        if (by != "key" && by != "value") return bad("You can only sort by either \"key\" or \"value\"");
        std::vector<Value> items;
        for (const auto& [k, x] : v.dict->items) items.push_back(Value::make_list({k, x}, true));
        std::size_t pos = by == "key" ? 0 : 1;
        stable_sort_by(items, [&](const Value& p, const Value& q) {
            int c = sort_compare(p.list->items[pos], q.list->items[pos], cs);
            return rev ? c > 0 : c < 0;
        });
        return Value::make_list(std::move(items));
    }
    if (name == "sort") {
        bool rev = flag(0, "reverse", false), cs = flag(1, "case_sensitive", false);
        const Value* attr = arg(a, 2, "attribute");
        auto items = iterate(v, line);
        auto key = [&](const Value& x) { return attr ? attr_path(*this, x, soft_str(*attr)) : x; };
        stable_sort_by(items, [&](const Value& p, const Value& q) {
            int c = sort_compare(key(p), key(q), cs);
            return rev ? c > 0 : c < 0;
        });
        return Value::make_list(std::move(items));
    }
    if (name == "unique") {
        bool cs = flag(0, "case_sensitive", false);
        const Value* attr = arg(a, 1, "attribute");
        std::vector<Value> out, seen;
        for (const auto& x : iterate(v, line)) {
            Value k = attr ? attr_path(*this, x, soft_str(*attr)) : x;
            if (!cs && k.kind == Kind::Str) k = Value::string(map_case(k.s, false));
            bool dup = false;
            for (const auto& s : seen)
                if (equals(s, k)) dup = true;
            if (!dup) {
                seen.push_back(k);
                out.push_back(x);
            }
        }
        auto r = Value::make_list(std::move(out));
        r.list->generator = true;
        return r;
    }
    if (name == "min" || name == "max") {
        bool cs = flag(0, "case_sensitive", false);
        const Value* attr = arg(a, 1, "attribute");
        auto items = iterate(v, line);
        if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
        Value best = items[0];
        for (const auto& x : items) {
            int c = sort_compare(attr ? attr_path(*this, x, soft_str(*attr)) : x, attr ? attr_path(*this, best, soft_str(*attr)) : best, cs);
            if (name == "min" ? c < 0 : c > 0) best = x;
        }
        return best;
    }
    if (name == "sum") {
        const Value* attr = arg(a, 0, "attribute");
        Value total = Value::integer(0);
        if (const Value* s = arg(a, 1, "start")) total = *s;
        for (const auto& x : iterate(v, line)) total = binary("+", total, attr ? attr_path(*this, x, soft_str(*attr)) : x, line);
        return total;
    }
    auto generator = [](std::vector<Value> items) {
        auto r = Value::make_list(std::move(items));
        r.list->generator = true;
        return r;
    };
    if (name == "map") {
        // jinja2: `if value: for item in value: ...` (a falsy input gives an empty generator).
        auto items = truthy(v) ? iterate(v, line) : std::vector<Value>{};
        std::vector<Value> out;
        if (const Value* attr = kwarg(a, "attribute")) {
            const Value* def = kwarg(a, "default");
            for (const auto& x : items) {
                Value r = attr_path(*this, x, soft_str(*attr));
                if (r.is_undefined() && def) r = *def;
                out.push_back(r);
            }
            return generator(std::move(out));
        }
        if (a.pos.empty()) return bad("map needs a filter name or attribute=");
        std::string fname = soft_str(a.pos[0]);
        Args rest;
        rest.pos.assign(a.pos.begin() + 1, a.pos.end());
        rest.kw = a.kw;
        for (const auto& x : items) {
            Args copy = rest;
            out.push_back(apply_filter(fname, x, copy, line));
        }
        return generator(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
        bool by_attr = name == "selectattr" || name == "rejectattr";
        bool want = name == "select" || name == "selectattr";
        std::size_t p = 0;
        std::string attr;
        if (by_attr) {
            if (a.pos.empty()) return bad("needs an attribute name");
            attr = soft_str(a.pos[p++]);
        }
        std::string tname;
        if (p < a.pos.size()) tname = soft_str(a.pos[p++]);
        std::vector<Value> targs(a.pos.begin() + static_cast<std::ptrdiff_t>(p), a.pos.end());
        std::vector<Value> out;
        for (const auto& x : truthy(v) ? iterate(v, line) : std::vector<Value>{}) {
            Value subject = by_attr ? attr_path(*this, x, attr) : x;
            bool r = tname.empty() ? truthy(subject) : apply_test(tname, subject, targs, line);
            if (r == want) out.push_back(x);
        }
        return generator(std::move(out));
    }
    if (name == "int") {
        std::int64_t def = 0;
        if (const Value* d = arg(a, 0, "default")) def = d->kind == Kind::Int ? d->i : 0;
        if (v.kind == Kind::Int) return v;
        if (v.kind == Kind::Bool) return Value::integer(v.b);
        if (v.kind == Kind::Float) {
            if (!std::isfinite(v.f) || std::fabs(v.f) > 9.2e18) return Value::integer(def);
            return Value::integer(static_cast<std::int64_t>(v.f));
        }
        if (v.kind == Kind::Str) {
            std::string s = py_strip(v.s, nullptr, true, true);
            std::int64_t r = 0;
            auto res = std::from_chars(s.data() + (s.size() && s[0] == '+'), s.data() + s.size(), r);
            if (res.ec == std::errc() && res.ptr == s.data() + s.size() && !s.empty()) return Value::integer(r);
            char* end = nullptr;
            double d = std::strtod(s.c_str(), &end);
            if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d) && std::fabs(d) < 9.2e18)
                return Value::integer(static_cast<std::int64_t>(d));
        }
        return Value::integer(def);
    }
    if (name == "float") {
        double def = 0;
        if (const Value* d = arg(a, 0, "default")) def = d->is_number() ? as_double(*d) : 0;
        if (v.is_number()) return Value::floating(as_double(v));
        if (v.kind == Kind::Str) {
            std::string s = py_strip(v.s, nullptr, true, true);
            char* end = nullptr;
            double d = std::strtod(s.c_str(), &end);
            if (!s.empty() && end == s.c_str() + s.size()) return Value::floating(d);
        }
        return Value::floating(def);
    }
    if (name == "abs") {
        if (v.kind == Kind::Float) return Value::floating(std::fabs(v.f));
        if (v.kind == Kind::Int || v.kind == Kind::Bool) {
            if (as_int(v) == INT64_MIN) return bad("integer overflow");
            return Value::integer(std::llabs(as_int(v)));
        }
        return bad(std::string("bad operand type for abs(): '") + type_name(v) + "'");
    }
    if (name == "round") {
        std::int64_t prec = 0;
        if (const Value* p = arg(a, 0, "precision")) prec = to_index(*p, "precision");
        std::string method = "common";
        if (const Value* m = arg(a, 1, "method")) method = soft_str(*m);
        if (!v.is_number()) return bad("needs a number");
        double x = as_double(v), m = std::pow(10.0, static_cast<double>(prec));
        double r = method == "common" ? std::round(x * m) / m : method == "floor" ? std::floor(x * m) / m : std::ceil(x * m) / m;
        return Value::floating(r);
    }
    if (name == "wordcount") return Value::integer(static_cast<std::int64_t>(py_split(soft_str(v), nullptr, -1).size()));
    if (name == "center") {
        std::int64_t w = 80;
        if (const Value* x = arg(a, 0, "width")) w = to_index(*x, "width");
        std::string s = soft_str(v);
        auto n = static_cast<std::int64_t>(str_len(s));
        if (w <= n) return Value::string(s);
        check_size(static_cast<std::size_t>(w));
        std::int64_t pad = w - n, left = pad / 2 + (pad & w & 1);
        return Value::string(std::string(static_cast<std::size_t>(left), ' ') + s + std::string(static_cast<std::size_t>(pad - left), ' '));
    }
    if (name == "batch") {
        if (a.pos.empty()) return bad("needs a size");
        auto n = to_index(a.pos[0], "batch size");
        if (n <= 0) return bad("batch size must be positive");
        const Value* fill = arg(a, 1, "fill_with");
        auto out = Value::make_list();
        Value cur = Value::make_list();
        for (const auto& x : iterate(v, line)) {
            cur.list->items.push_back(x);
            if (static_cast<std::int64_t>(cur.list->items.size()) == n) {
                out.list->items.push_back(cur);
                cur = Value::make_list();
            }
        }
        if (!cur.list->items.empty()) {
            if (fill)
                while (static_cast<std::int64_t>(cur.list->items.size()) < n) cur.list->items.push_back(*fill);
            out.list->items.push_back(cur);
        }
        out.list->generator = true;
        return out;
    }
    if (name == "attr") {
        if (a.pos.empty()) return bad("needs a name");
        return getattr(v, soft_str(a.pos[0]));
    }
    return bad("unsupported construct: filter '" + name + "'");
}

// ----- statements -----

Flow Interp::exec(const std::vector<StmtP>& body, const FrameP& f, std::string& out) {
    for (const auto& s : body) {
        Flow fl = exec(*s, f, out);
        if (fl != Flow::Normal) return fl;
    }
    return Flow::Normal;
}

void Interp::assign(const Stmt& s, const FrameP& f, Value v) {
    (void)value_depth(v);  // bounded nesting, whatever loops build
    if (s.targets.size() == 1) {
        f->vars[s.targets[0]] = std::move(v);
        return;
    }
    auto items = iterate(v, s.line);
    if (items.size() != s.targets.size())
        fail("cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(s.targets.size()) + " names" + where(s.line));
    for (std::size_t k = 0; k < items.size(); ++k) f->vars[s.targets[k]] = items[k];
}

Value Interp::make_macro(const Stmt& s, const FrameP& defining) {
    const Stmt* st = &s;
    FrameP keep = defining;
    macro_frames.push_back(defining);  // macros keep their defining scope alive (values are render-scoped)
    return Value::function(s.text, [st, keep](Interp& in, Args& a) -> Value {
        if (++in.call_depth > in.opt.max_call_depth) fail("maximum macro call depth (" + std::to_string(in.opt.max_call_depth) + ") exceeded" + in.where(st->line));
        auto frame = std::make_shared<Frame>();
        frame->parent = keep;
        std::size_t np = st->params.size();
        if (a.pos.size() > np) {
            // jinja2 only accepts extra positionals when the body references varargs.
            if (!st->uses_varargs)
                fail("macro '" + st->text + "' takes not more than " + std::to_string(np) + " argument(s)" + in.where(st->line));
            auto extra = Value::make_list({}, true);
            for (std::size_t k = np; k < a.pos.size(); ++k) extra.list->items.push_back(a.pos[k]);
            frame->vars["varargs"] = extra;
        } else {
            frame->vars["varargs"] = Value::make_list({}, true);
        }
        auto kwargs = Value::make_dict();
        for (std::size_t k = 0; k < np; ++k) {
            const auto& [pname, def] = st->params[k];
            Value val;
            bool have = false;
            if (k < a.pos.size()) {
                val = a.pos[k];
                have = true;
            }
            for (auto& [kn, kv] : a.kw) {
                if (kn == pname) {
                    if (have) fail("macro '" + st->text + "' got multiple values for argument '" + pname + "'");
                    val = kv;
                    have = true;
                }
            }
            if (!have) {
                if (def) val = in.eval(*def, frame);
                else val = Value::undefined("parameter '" + pname + "' was not provided");
            }
            frame->vars[pname] = val;
        }
        for (auto& [kn, kv] : a.kw) {
            bool known = kn == "caller";
            for (const auto& p : st->params)
                if (p.first == kn) known = true;
            if (!known) {
                if (!st->uses_kwargs) fail("macro '" + st->text + "' takes no keyword argument '" + kn + "'" + in.where(st->line));
                kwargs.dict->set(kn, kv);
            }
        }
        frame->vars["kwargs"] = kwargs;
        if (const Value* c = kwarg(a, "caller")) frame->vars["caller"] = *c;
        std::string out;
        in.exec(st->bodies[0], frame, out);
        --in.call_depth;
        return Value::string(std::move(out));
    });
}

Flow Interp::exec(const Stmt& s, const FrameP& f, std::string& out) {
    step();
    check_stack();
    switch (s.kind) {
        case StmtKind::Text: emit(out, s.text); return Flow::Normal;
        case StmtKind::Output: {
            Value v = eval(*s.exprs[0], f);
            emit(out, py_str(v));
            return Flow::Normal;
        }
        case StmtKind::If:
            for (std::size_t k = 0; k < s.exprs.size(); ++k)
                if (truthy(eval(*s.exprs[k], f))) return exec(s.bodies[k], f, out);
            if (s.bodies.size() > s.exprs.size()) return exec(s.bodies.back(), f, out);
            return Flow::Normal;
        case StmtKind::For: {
            Value seq = eval(*s.exprs[0], f);
            auto all = iterate(seq, s.line);
            std::vector<Value> items;
            auto frame = std::make_shared<Frame>();
            frame->parent = f;
            auto bind = [&](const Value& item) {
                if (s.targets.size() == 1) {
                    frame->vars[s.targets[0]] = item;
                } else {
                    auto parts = iterate(item, s.line);
                    if (parts.size() != s.targets.size())
                        fail("cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(s.targets.size()) + " loop variables" + where(s.line));
                    for (std::size_t k = 0; k < parts.size(); ++k) frame->vars[s.targets[k]] = parts[k];
                }
            };
            if (s.exprs[1]) {
                for (const auto& item : all) {
                    step();
                    bind(item);
                    if (truthy(eval(*s.exprs[1], frame))) items.push_back(item);
                }
            } else {
                items = std::move(all);
            }
            auto n = static_cast<std::int64_t>(items.size());
            // One loop object per loop, updated in place (like jinja2's LoopContext, it is live).
            auto counter = std::make_shared<std::int64_t>(0);
            auto loop = Value::make_dict();
            {
                auto& d = *loop.dict;
                const char* names[] = {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0"};
                for (int k = 0; k < 9; ++k) d.items.emplace_back(Value::string(names[k]), k >= 4 && k <= 5 ? Value::boolean(false) : Value::integer(0));
                d.items[6].second.i = n;
                d.items[7].second.i = 1;
                d.items.emplace_back(Value::string("previtem"), Value::undefined());
                d.items.emplace_back(Value::string("nextitem"), Value::undefined());
                d.items.emplace_back(Value::string("cycle"), Value::function("cycle", [counter](Interp&, Args& a) -> Value {
                                         if (a.pos.empty()) fail("no items for cycling given");
                                         return a.pos[static_cast<std::size_t>(*counter) % a.pos.size()];
                                     }));
                d.is_namespace = true;  // attribute access only, not a mapping
                d.readonly = true;
            }
            for (std::int64_t k = 0; k < n; ++k) {
                step();
                auto idx = static_cast<std::size_t>(k);
                bind(items[idx]);
                auto& d = *loop.dict;
                d.items[0].second.i = k + 1;
                d.items[1].second.i = k;
                d.items[2].second.i = n - k;
                d.items[3].second.i = n - k - 1;
                d.items[4].second.b = k == 0;
                d.items[5].second.b = k == n - 1;
                d.items[9].second = k > 0 ? items[idx - 1] : Value::undefined("there is no previous item");
                d.items[10].second = k + 1 < n ? items[idx + 1] : Value::undefined("there is no next item");
                *counter = k;
                frame->vars["loop"] = loop;
                Flow fl = exec(s.bodies[0], frame, out);
                if (fl == Flow::Break) break;
            }
            if (n == 0 && s.bodies.size() > 1) {
                auto ef = std::make_shared<Frame>();
                ef->parent = f;
                exec(s.bodies[1], ef, out);
            }
            return Flow::Normal;
        }
        case StmtKind::Set: {
            Value v = eval(*s.exprs[0], f);
            if (!s.ns_name.empty()) {
                Value ns = lookup(f, s.ns_name);
                if (ns.kind != Kind::Dict || !ns.dict->is_namespace || ns.dict->readonly)
                    fail("cannot assign attribute on non-namespace object '" + s.ns_name + "'" + where(s.line));
                if (value_depth(v) + 1 > kMaxValueDepth) fail("value nested too deeply" + where(s.line));
                if (refers_to(v, ns.dict.get())) fail("unsupported construct: a namespace holding itself" + where(s.line));
                ns.dict->set(s.ns_attr, std::move(v));
                return Flow::Normal;
            }
            assign(s, f, std::move(v));
            return Flow::Normal;
        }
        case StmtKind::SetBlock: {
            std::string body;
            exec(s.bodies[0], f, body);
            Value v = Value::string(std::move(body));
            if (!s.exprs.empty()) {
                auto pf = std::make_shared<Frame>();
                pf->parent = f;
                pf->vars[kPlaceholder] = v;
                v = eval(*s.exprs[0], pf);
            }
            f->vars[s.targets[0]] = v;
            return Flow::Normal;
        }
        case StmtKind::Macro: f->vars[s.text] = make_macro(s, f); return Flow::Normal;
        case StmtKind::CallBlock: {
            const Stmt* st = &s;
            FrameP keep = f;
            Value caller = Value::function("caller", [st, keep](Interp& in, Args& a) -> Value {
                if (++in.call_depth > in.opt.max_call_depth) fail("maximum macro call depth exceeded" + in.where(st->line));
                auto frame = std::make_shared<Frame>();
                frame->parent = keep;
                for (std::size_t k = 0; k < st->params.size(); ++k) {
                    const auto& [pname, def] = st->params[k];
                    if (k < a.pos.size()) frame->vars[pname] = a.pos[k];
                    else if (const Value* kv = kwarg(a, pname.c_str())) frame->vars[pname] = *kv;
                    else if (def) frame->vars[pname] = in.eval(*def, frame);
                    else frame->vars[pname] = Value::undefined("parameter '" + pname + "' was not provided");
                }
                std::string body;
                in.exec(st->bodies[0], frame, body);
                --in.call_depth;
                return Value::string(std::move(body));
            });
            const Expr& ce = *s.exprs[0];
            Value callee = eval(*ce.args[0], f);
            Args a;
            for (std::size_t k = 1; k < ce.args.size(); ++k) a.pos.push_back(eval(*ce.args[k], f));
            for (const auto& [k, v] : ce.kwargs) a.kw.emplace_back(k, eval(*v, f));
            a.kw.emplace_back("caller", caller);
            emit(out, py_str(call(callee, a, s.line)));
            return Flow::Normal;
        }
        case StmtKind::FilterBlock: {
            std::string body;
            auto bf = std::make_shared<Frame>();
            bf->parent = f;
            exec(s.bodies[0], bf, body);
            auto pf = std::make_shared<Frame>();
            pf->parent = f;
            pf->vars[kPlaceholder] = Value::string(std::move(body));
            emit(out, py_str(eval(*s.exprs[0], pf)));
            return Flow::Normal;
        }
        case StmtKind::Break: return Flow::Break;
        case StmtKind::Continue: return Flow::Continue;
        case StmtKind::Generation: return exec(s.bodies[0], f, out);
    }
    return Flow::Normal;
}

namespace {

std::string format_time(const std::string& fmt, const std::tm& tm) {
    if (fmt.size() > 256) fail("strftime_now: format too long");
    std::string out(fmt.size() * 8 + 64, '\0');
    std::size_t n = fmt.empty() ? 0 : std::strftime(out.data(), out.size(), fmt.c_str(), &tm);
    out.resize(n);
    return out;
}

void install_globals(Frame& g) {
    g.vars["range"] = Value::function("range", [](Interp& it, Args& a) -> Value {
        if (a.pos.empty() || a.pos.size() > 3) fail("range expected 1 to 3 arguments");
        std::int64_t start = 0, stop, stp = 1;
        if (a.pos.size() == 1) {
            stop = to_index(a.pos[0], "range");
        } else {
            start = to_index(a.pos[0], "range");
            stop = to_index(a.pos[1], "range");
            if (a.pos.size() == 3) stp = to_index(a.pos[2], "range");
        }
        if (stp == 0) fail("range() arg 3 must not be zero");
        long double count = stp > 0 ? (stop > start ? (static_cast<long double>(stop) - start + stp - 1) / stp : 0)
                                    : (stop < start ? (static_cast<long double>(start) - stop - stp - 1) / -stp : 0);
        if (count > static_cast<long double>(it.opt.max_output_bytes / 64))
            fail("range() too large (" + std::to_string(static_cast<std::uint64_t>(count)) + " items)");
        auto out = Value::make_list();
        for (std::int64_t k = start; stp > 0 ? k < stop : k > stop; k += stp) {
            out.list->items.push_back(Value::integer(k));
            if (__builtin_add_overflow(k, stp, &k)) break;
            k -= stp;
        }
        return out;
    });
    g.vars["namespace"] = Value::function("namespace", [](Interp&, Args& a) -> Value {
        auto ns = Value::make_dict();
        ns.dict->is_namespace = true;
        for (const auto& p : a.pos) {
            if (p.kind != Kind::Dict || p.dict->is_namespace) fail("namespace() positional argument must be a mapping");
            for (const auto& [k, v] : p.dict->items) ns.dict->set(k, v);
        }
        for (const auto& [k, v] : a.kw) ns.dict->set(k, v);
        return ns;
    });
    g.vars["dict"] = Value::function("dict", [](Interp&, Args& a) -> Value {
        auto d = Value::make_dict();
        for (const auto& p : a.pos) {
            if (p.kind != Kind::Dict) fail("dict() positional argument must be a mapping");
            for (const auto& [k, v] : p.dict->items) d.dict->set(k, v);
        }
        for (const auto& [k, v] : a.kw) d.dict->set(k, v);
        return d;
    });
    g.vars["raise_exception"] = Value::function("raise_exception", [](Interp&, Args& a) -> Value {
        fail("raise_exception: " + (a.pos.empty() ? std::string() : py_str(a.pos[0])));
    });
    g.vars["strftime_now"] = Value::function("strftime_now", [](Interp& it, Args& a) -> Value {
        if (a.pos.empty()) fail("strftime_now() takes exactly one argument");
        std::tm tm{};
        if (it.opt.now) {
            tm = *it.opt.now;
        } else {
            std::time_t t = std::time(nullptr);
            localtime_r(&t, &tm);
        }
        return Value::string(format_time(need_str(a.pos[0], "format"), tm));
    });
}

}  // namespace
}  // namespace detail

Result<std::string> Template::render(const nlohmann::ordered_json& context, const RenderOptions& options) const {
    using namespace detail;
    try {
        if (!context.is_object() && !context.is_null()) return make_error("template context must be a JSON object");
        Interp in(options);
        struct Current {
            Interp* saved;
            explicit Current(Interp* in) : saved(t_interp) { t_interp = in; }
            ~Current() { t_interp = saved; }
            Current(const Current&) = delete;
            Current& operator=(const Current&) = delete;
        } current(&in);
        in.globals = std::make_shared<Frame>();
        install_globals(*in.globals);
        auto top = std::make_shared<Frame>();
        top->parent = in.globals;
        // Break cycles on every exit: macros hold their defining frame, which holds the macros.
        struct Cleanup {
            Interp& in;
            FrameP top;
            ~Cleanup() {
                for (auto& fr : in.macro_frames) fr->vars.clear();
                top->vars.clear();
                in.globals->vars.clear();
            }
        } cleanup{in, top};
        if (context.is_object())
            for (auto it = context.begin(); it != context.end(); ++it) top->vars[it.key()] = from_json(it.value());
        std::string out;
        in.exec(program_->body, top, out);
        return out;
    } catch (const Failure& f) {
        return make_error("template render error: " + f.message);
    } catch (const std::bad_alloc&) {
        return make_error("template render error: out of memory");
    } catch (const std::exception& e) {
        return make_error(std::string("template render error: ") + e.what());
    }
}

}  // namespace realm::text::jinja
