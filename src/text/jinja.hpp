// A Jinja2 subset for chat templates: lexer, parser to an AST and a tree-walking evaluator.
//
// The reference is Python jinja2 3.1 (as configured by HF transformers' apply_chat_template:
// ImmutableSandboxedEnvironment, loopcontrols, the `generation` tag, HF's tojson filter).
// Templates come from untrusted model files: every failure (syntax, unsupported construct,
// runtime error, raise_exception, resource limits) comes back as a realm::Error, never an abort.
// Implementation note: inside jinja*.cpp a failure unwinds as a private exception type that
// Template::parse/render catch and turn into the Error; nothing throws out of this API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gguf/result.hpp"

namespace realm::text::jinja {

struct ParseOptions {
    // jinja2's defaults; chat templates are rendered with both set to true (as HF does).
    bool trim_blocks = false;
    bool lstrip_blocks = false;
    bool keep_trailing_newline = false;
    // Nesting limit for expressions and statements (hostile input cannot overflow the stack).
    int max_nesting = 128;
};

struct RenderOptions {
    std::size_t max_output_bytes = std::size_t{16} << 20;  // also caps every string and list built
    std::uint64_t max_steps = 10'000'000;  // evaluated nodes, loop iterations, elements scanned
    int max_call_depth = 64;                              // nested macro / caller() calls
    // Machine stack the evaluator may use below the render() call (real templates need < 32 KiB
    // even under ASan); the calling thread must have at least this much free.
    std::size_t max_stack_bytes = std::size_t{512} << 10;
    // What strftime_now() formats; local time now when unset.
    std::optional<std::tm> now;
};

namespace detail {
struct Program;
}

class Template {
public:
    static Result<Template> parse(std::string_view source, const ParseOptions& options = {});

    // `context` is a JSON object whose members become template variables (key order is kept).
    // Globals always present: range, namespace, dict, raise_exception, strftime_now.
    Result<std::string> render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;

private:
    explicit Template(std::shared_ptr<const detail::Program> program) : program_(std::move(program)) {}
    std::shared_ptr<const detail::Program> program_;
};

}  // namespace realm::text::jinja
