// Internal to the Jinja engine: the runtime value model (Python/jinja2 semantics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace realm::text::jinja::detail {

// Internal failure; converted to realm::Error at the public API boundary (never escapes it).
struct Failure {
    std::string message;
};
[[noreturn]] inline void fail(std::string message) { throw Failure{std::move(message)}; }

enum class Kind : std::uint8_t { Undefined, None, Bool, Int, Float, Str, List, Dict, Func };

struct Value;
struct Interp;

struct ListData {
    std::vector<Value> items;
    bool tuple = false;
    // A Python generator (what jinja2's map/select/items/unique/batch/reverse filters return):
    // always truthy, no len(), not JSON serialisable, single pass (`consumed` items are gone).
    bool generator = false;
    std::size_t consumed = 0;
    // dict.items()/keys()/values(): a view (len() works; repr "dict_items([...])"; not JSON).
    const char* view = nullptr;
    int depth_memo = 0;        // nesting depth once measured (lists are immutable in the sandbox)
    bool holds_namespace = false;  // valid with depth_memo: some element (transitively) is a namespace
};

// Keys are usually strings; Python allows any hashable key (ints appear in real templates).
struct DictData {
    std::vector<std::pair<Value, Value>> items;
    bool is_namespace = false;
    bool readonly = false;  // the loop object
    int depth_memo = 0;     // nesting depth once measured (never cached for mutable namespaces)
    bool holds_namespace = false;  // valid with depth_memo
    Value* find(const std::string& key);
    Value* find(const Value& key);  // Python equality: 1 == 1.0 == True
    void set(const std::string& key, Value value);
    void set(const Value& key, Value value);
};

struct Args {
    std::vector<Value> pos;
    std::vector<std::pair<std::string, Value>> kw;
};

struct FuncData {
    std::string name;
    std::function<Value(Interp&, Args&)> fn;
};

struct Value {
    Kind kind = Kind::Undefined;
    bool b = false;
    bool unsafe = false;  // Undefined produced by a sandbox refusal: fails when called
    bool markup = false;  // Str that is markupsafe.Markup (|safe, |escape): `+` escapes plain operands
    std::int64_t i = 0;
    double f = 0;
    std::string s;  // Str: the text (UTF-8); Undefined: the hint used in error messages
    std::shared_ptr<ListData> list;
    std::shared_ptr<DictData> dict;
    std::shared_ptr<FuncData> func;

    static Value undefined(std::string hint = {}) {
        Value v;
        v.s = std::move(hint);
        return v;
    }
    static Value none() {
        Value v;
        v.kind = Kind::None;
        return v;
    }
    static Value boolean(bool x) {
        Value v;
        v.kind = Kind::Bool;
        v.b = x;
        return v;
    }
    static Value integer(std::int64_t x) {
        Value v;
        v.kind = Kind::Int;
        v.i = x;
        return v;
    }
    static Value floating(double x) {
        Value v;
        v.kind = Kind::Float;
        v.f = x;
        return v;
    }
    static Value string(std::string x) {
        Value v;
        v.kind = Kind::Str;
        v.s = std::move(x);
        return v;
    }
    static Value make_list(std::vector<Value> items = {}, bool tuple = false) {
        Value v;
        v.kind = Kind::List;
        v.list = std::make_shared<ListData>();
        v.list->items = std::move(items);
        v.list->tuple = tuple;
        return v;
    }
    static Value make_dict() {
        Value v;
        v.kind = Kind::Dict;
        v.dict = std::make_shared<DictData>();
        return v;
    }
    static Value function(std::string name, std::function<Value(Interp&, Args&)> fn) {
        Value v;
        v.kind = Kind::Func;
        v.func = std::make_shared<FuncData>(FuncData{std::move(name), std::move(fn)});
        return v;
    }

    bool is_undefined() const { return kind == Kind::Undefined; }
    bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
};

inline Value* DictData::find(const std::string& key) {
    for (auto& [k, v] : items)
        if (k.kind == Kind::Str && k.s == key) return &v;
    return nullptr;
}

inline void DictData::set(const std::string& key, Value value) {
    if (Value* v = find(key)) {
        *v = std::move(value);
        return;
    }
    items.emplace_back(Value::string(key), std::move(value));
}

}  // namespace realm::text::jinja::detail
