// Internal to the Jinja engine: tokens and the AST.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/jinja.hpp"
#include "text/jinja_value.hpp"

namespace realm::text::jinja::detail {

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, Str, Int, Float, Op, Eof };

struct Token {
    Tok t;
    std::string s;
    std::int64_t i;
    double f;
    int line;
};

// Name of the variable holding a {% filter %} / {% set x | f %} body.
inline constexpr const char* kPlaceholder = "\x01body";

enum class ExprKind {
    Literal, Name, List, Tuple, Dict, GetAttr, GetItem, Slice, Call, Filter, Test,
    Neg, Pos, Not, Binary, And, Or, Cond, Compare,
};

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
    Expr() = default;
    Expr(const Expr&) = delete;
    Expr& operator=(const Expr&) = delete;
    ~Expr();  // iterative: a hostile `1+1+1+...` chain must not overflow the stack when freed

    ExprKind kind = ExprKind::Literal;
    int line = 0;
    Value lit;
    std::string name;  // Name / GetAttr attribute / Filter / Test / Binary operator
    // Operands. GetAttr: [obj]; GetItem: [obj, key]; Slice: [obj, start, stop, step] (null = absent);
    // Call: [callee, args...]; Filter/Test: [input, args...]; Cond: [then, cond, else|null];
    // Compare: [first, operands...]; Dict: [k0, v0, k1, v1, ...].
    std::vector<ExprP> args;
    std::vector<std::pair<std::string, ExprP>> kwargs;
    std::vector<std::string> ops;  // Compare operators ("==", "in", "notin", ...)
    bool negate = false;           // Test: "is not"
    bool unknown = false;          // Filter/Test not known: an error when evaluated (jinja2 defers
                                   // the check to run time inside if-blocks and x if c else y)
};

enum class StmtKind { Text, Output, If, For, Set, SetBlock, Macro, CallBlock, FilterBlock, Break, Continue, Generation };

struct Stmt;
using StmtP = std::unique_ptr<Stmt>;

struct Stmt {
    StmtKind kind = StmtKind::Text;
    int line = 0;
    std::string text;  // Text: the data; Macro: its name
    // If: conditions (bodies[i] for exprs[i]; one extra body = else). For: [iter, filter|null].
    // Set: [value]. SetBlock/FilterBlock: [filter chain over the placeholder] (SetBlock: optional).
    // CallBlock: [call expression].
    std::vector<ExprP> exprs;
    std::vector<std::vector<StmtP>> bodies;
    std::vector<std::string> targets;  // For / Set names
    std::string ns_name, ns_attr;     // Set: {% set ns.attr = ... %}
    std::vector<std::pair<std::string, ExprP>> params;  // Macro / CallBlock parameters
    bool uses_varargs = false, uses_kwargs = false;     // Macro: the body names varargs / kwargs
};

struct Program {
    std::vector<StmtP> body;
};

std::vector<StmtP> parse_program(std::string_view source, const ParseOptions& options);

}  // namespace realm::text::jinja::detail
