// Jinja2 subset: lexer and parser (this file), evaluator and builtins (jinja_eval.cpp).
#include "text/jinja.hpp"

#include <algorithm>
#include <cstring>

#include "text/jinja_ast.hpp"
#include "text/utf8.hpp"

namespace realm::text::jinja {
namespace detail {

Expr::~Expr() {
    std::vector<ExprP> pending;
    auto take = [&pending](Expr& e) {
        for (auto& a : e.args)
            if (a) pending.push_back(std::move(a));
        for (auto& kv : e.kwargs)
            if (kv.second) pending.push_back(std::move(kv.second));
    };
    take(*this);
    while (!pending.empty()) {
        ExprP next = std::move(pending.back());
        pending.pop_back();
        take(*next);
    }  // `next` is freed childless here
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_ident(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string where(int line) { return " at line " + std::to_string(line); }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Python's "unicode-escape" decoding of a string literal body (what jinja2's lexer does).
std::string unescape(std::string_view body, int line) {
    std::string out;
    for (std::size_t i = 0; i < body.size(); ++i) {
        char c = body[i];
        if (c != '\\' || i + 1 >= body.size()) {
            out += c;
            continue;
        }
        char e = body[++i];
        switch (e) {
            case '\n': break;
            case '\\': out += '\\'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'v': out += '\v'; break;
            case 'x':
            case 'u':
            case 'U': {
                std::size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                std::uint32_t cp = 0;
                for (std::size_t k = 1; k <= n; ++k) {
                    int h = i + k < body.size() ? hex_value(body[i + k]) : -1;
                    if (h < 0) fail("truncated \\" + std::string(1, e) + " escape" + where(line));
                    cp = cp * 16 + static_cast<std::uint32_t>(h);
                }
                if (cp > 0x10FFFF) fail("invalid \\U escape" + where(line));
                utf8_append(out, cp);
                i += n;
                break;
            }
            default:
                if (e >= '0' && e <= '7') {
                    std::uint32_t cp = static_cast<std::uint32_t>(e - '0');
                    for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
                        cp = cp * 8 + static_cast<std::uint32_t>(body[++i] - '0');
                    utf8_append(out, cp);
                } else {
                    out += '\\';
                    out += e;
                }
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Lexer

class Lexer {
public:
    Lexer(std::string src, const ParseOptions& opt) : src_(std::move(src)), opt_(opt) {}

    std::vector<Token> run() {
        std::size_t pos = 0;
        bool line_starting = true;
        const std::size_t n = src_.size();
        while (pos < n) {
            std::size_t start = find_tag(pos);
            if (start == std::string::npos) {
                emit_text(src_.substr(pos), line_of(pos));
                break;
            }
            char kind = src_[start + 1];  // '{', '%' or '#'
            char sign = start + 2 < n ? src_[start + 2] : '\0';
            std::string text = src_.substr(pos, start - pos);
            if (sign == '-') {
                std::size_t e = text.size();
                while (e > 0 && is_space(text[e - 1])) --e;
                text.resize(e);
            } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
                std::size_t nl = text.rfind('\n');
                std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
                if (l_pos > 0 || line_starting) {
                    bool ws = true;
                    for (std::size_t k = l_pos; k < text.size(); ++k)
                        if (!is_space(text[k])) ws = false;
                    if (ws) text.resize(l_pos);
                }
            }
            emit_text(std::move(text), line_of(pos));
            std::size_t p = start + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
            if (kind == '#') {
                std::size_t end = src_.find("#}", p);
                if (end == std::string::npos) fail("missing end of comment tag" + where(line_of(start)));
                pos = finish_tag(end, 2, end > p && (src_[end - 1] == '-'), end > p && src_[end - 1] == '+', true);
                // jinja2 only honours a sign directly before the end marker.
            } else if (kind == '%' && is_raw(p)) {
                pos = lex_raw(start, p);
            } else {
                tokens_.push_back({kind == '{' ? Tok::VarBegin : Tok::BlockBegin, {}, 0, 0, line_of(start)});
                pos = lex_tag(p, kind == '{');
            }
            line_starting = pos > 0 && src_[pos - 1] == '\n';
        }
        tokens_.push_back({Tok::Eof, {}, 0, 0, line_of(n)});
        return std::move(tokens_);
    }

private:
    std::size_t find_tag(std::size_t pos) const {
        for (std::size_t k = src_.find('{', pos); k != std::string::npos; k = src_.find('{', k + 1)) {
            if (k + 1 < src_.size() && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
        }
        return std::string::npos;
    }

    int line_of(std::size_t pos) {
        // Incremental: positions are requested in increasing order most of the time.
        if (pos < line_pos_) {
            line_pos_ = 0;
            line_ = 1;
        }
        for (; line_pos_ < pos && line_pos_ < src_.size(); ++line_pos_)
            if (src_[line_pos_] == '\n') ++line_;
        return line_;
    }

    void emit_text(std::string text, int line) {
        if (!text.empty()) tokens_.push_back({Tok::Text, std::move(text), 0, 0, line});
    }

    // Position after an end marker at `end` of length `len`, applying whitespace control.
    std::size_t finish_tag(std::size_t end, std::size_t len, bool minus, bool plus, bool block_like) {
        std::size_t pos = end + len;
        if (minus) {
            while (pos < src_.size() && is_space(src_[pos])) ++pos;
        } else if (!plus && block_like && opt_.trim_blocks && pos < src_.size() && src_[pos] == '\n') {
            ++pos;
        }
        return pos;
    }

    bool is_raw(std::size_t p) const {
        while (p < src_.size() && is_space(src_[p])) ++p;
        if (src_.compare(p, 3, "raw") != 0) return false;
        p += 3;
        while (p < src_.size() && is_space(src_[p])) ++p;
        return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
    }

    std::size_t lex_raw(std::size_t start, std::size_t p) {
        std::size_t close = src_.find("%}", p);
        bool minus = src_[close - 1] == '-';
        std::size_t body = close + 2;
        if (minus)
            while (body < src_.size() && is_space(src_[body])) ++body;
        // Find {% endraw %} (with optional signs).
        for (std::size_t k = src_.find("{%", body); k != std::string::npos; k = src_.find("{%", k + 2)) {
            std::size_t q = k + 2;
            char sign = q < src_.size() ? src_[q] : '\0';
            if (sign == '-' || sign == '+') ++q;
            while (q < src_.size() && is_space(src_[q])) ++q;
            if (src_.compare(q, 6, "endraw") != 0) continue;
            q += 6;
            while (q < src_.size() && is_space(src_[q])) ++q;
            bool end_minus = false;
            if (q < src_.size() && src_[q] == '-') {
                end_minus = true;
                ++q;
            } else if (q < src_.size() && src_[q] == '+') {
                ++q;
            }
            if (src_.compare(q, 2, "%}") != 0) continue;
            std::string text = src_.substr(body, k - body);
            if (sign == '-') {
                std::size_t e = text.size();
                while (e > 0 && is_space(text[e - 1])) --e;
                text.resize(e);
            }
            emit_text(std::move(text), line_of(body));
            return finish_tag(q, 2, end_minus, false, true);
        }
        fail("missing endraw" + where(line_of(start)));
    }

    std::size_t lex_tag(std::size_t p, bool var) {
        const std::size_t n = src_.size();
        int depth = 0;  // brackets, so that "}}" inside a dict literal does not end a {{ }} tag
        for (;;) {
            while (p < n && is_space(src_[p])) ++p;
            if (p >= n) fail(std::string("unexpected end of template inside a ") + (var ? "{{ }}" : "{% %}") + " tag" + where(line_of(p)));
            const char* endm = var ? "}}" : "%}";
            if (depth == 0 || !var) {
                if (src_[p] == '-' && src_.compare(p + 1, 2, endm) == 0) {
                    tokens_.push_back({var ? Tok::VarEnd : Tok::BlockEnd, {}, 0, 0, line_of(p)});
                    return finish_tag(p + 1, 2, true, false, !var);
                }
                if (src_[p] == '+' && src_.compare(p + 1, 2, endm) == 0 && !var) {
                    tokens_.push_back({Tok::BlockEnd, {}, 0, 0, line_of(p)});
                    return finish_tag(p + 1, 2, false, true, true);
                }
                if (src_.compare(p, 2, endm) == 0 && (depth == 0)) {
                    tokens_.push_back({var ? Tok::VarEnd : Tok::BlockEnd, {}, 0, 0, line_of(p)});
                    return finish_tag(p, 2, false, false, !var);
                }
            }
            int line = line_of(p);
            char c = src_[p];
            if (is_ident_start(c)) {
                std::size_t e = p;
                while (e < n && is_ident(src_[e])) ++e;
                tokens_.push_back({Tok::Name, src_.substr(p, e - p), 0, 0, line});
                p = e;
            } else if (is_digit(c)) {
                std::size_t e = p;
                while (e < n && (is_digit(src_[e]) || src_[e] == '_')) ++e;
                bool is_float = false;
                if (e + 1 < n && src_[e] == '.' && is_digit(src_[e + 1])) {
                    is_float = true;
                    ++e;
                    while (e < n && (is_digit(src_[e]) || src_[e] == '_')) ++e;
                }
                if (e < n && (src_[e] == 'e' || src_[e] == 'E')) {
                    std::size_t q = e + 1;
                    if (q < n && (src_[q] == '+' || src_[q] == '-')) ++q;
                    if (q < n && is_digit(src_[q])) {
                        is_float = true;
                        e = q;
                        while (e < n && is_digit(src_[e])) ++e;
                    }
                }
                std::string text;
                for (std::size_t k = p; k < e; ++k)
                    if (src_[k] != '_') text += src_[k];
                Token t{is_float ? Tok::Float : Tok::Int, text, 0, 0, line};
                if (is_float) {
                    t.f = std::strtod(text.c_str(), nullptr);
                } else {
                    std::int64_t v = 0;
                    for (char d : text) {
                        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d - '0', &v))
                            fail("integer literal too large" + where(line));
                    }
                    t.i = v;
                }
                tokens_.push_back(std::move(t));
                p = e;
            } else if (c == '\'' || c == '"') {
                std::size_t e = p + 1;
                while (e < n && src_[e] != c) {
                    if (src_[e] == '\\') ++e;
                    ++e;
                }
                if (e >= n) fail("unterminated string literal" + where(line));
                tokens_.push_back({Tok::Str, unescape(std::string_view(src_).substr(p + 1, e - p - 1), line), 0, 0, line});
                p = e + 1;
            } else {
                static const char* const ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                                  "<",  ">",  "=",  ".",  ",",  ":",  "|", "(", ")", "[", "]", "{",
                                                  "}"};
                std::string op;
                for (const char* o : ops) {
                    if (src_.compare(p, std::strlen(o), o) == 0) {
                        op = o;
                        break;
                    }
                }
                if (op.empty()) fail(std::string("unexpected character '") + c + "'" + where(line));
                if (op == "(" || op == "[" || op == "{") ++depth;
                if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
                tokens_.push_back({Tok::Op, op, 0, 0, line});
                p += op.size();
            }
        }
    }

    std::string src_;
    const ParseOptions& opt_;
    std::vector<Token> tokens_;
    std::size_t line_pos_ = 0;
    int line_ = 1;
};

// ---------------------------------------------------------------------------------------------
// Parser

const char* const kFilters[] = {
    "abs",      "attr",    "batch",   "capitalize", "center",    "count",     "d",          "default", "dictsort",
    "e",        "escape",  "first",   "float",      "format",    "indent",    "int",        "items",   "join",
    "last",     "length",  "list",    "lower",      "map",       "max",       "min",        "reject",  "rejectattr",
    "replace",  "reverse", "round",   "safe",       "select",    "selectattr", "sort",      "string",  "sum",
    "title",    "tojson",  "trim",    "unique",     "upper",     "wordcount", "striptags", "truncate", "pprint",
    "urlencode", "groupby", "slice",  "wordwrap",   "xmlattr",   "forceescape", "filesizeformat", "urlize",
};
const char* const kTests[] = {
    "boolean",  "callable",  "defined", "divisibleby", "eq",     "equalto", "escaped", "even",     "false",
    "filter",   "float",     "ge",      "gt",          "greaterthan", "in", "integer", "iterable", "le",
    "lessthan", "lower",     "lt",      "mapping",     "ne",     "none",    "number",  "odd",      "sameas",
    "sequence", "string",    "test",    "true",        "undefined", "upper", "==",     "!=",       "<",
    "<=",       ">",         ">=",
};

template <std::size_t N>
bool contains(const char* const (&list)[N], const std::string& name) {
    for (const char* s : list)
        if (name == s) return true;
    return false;
}

class Parser {
public:
    Parser(std::vector<Token> toks, const ParseOptions& opt) : t_(std::move(toks)), opt_(opt) {}

    std::vector<StmtP> parse_template() {
        std::string end;
        auto body = parse_body({}, end);
        return body;
    }

private:
    const Token& cur() const { return t_[i_]; }
    const Token& peek(std::size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
    bool is_op(const char* op) const { return cur().t == Tok::Op && cur().s == op; }
    bool is_name(const char* name) const { return cur().t == Tok::Name && cur().s == name; }
    void next() {
        if (i_ + 1 < t_.size()) ++i_;
    }
    std::string describe(const Token& t) const {
        switch (t.t) {
            case Tok::Text: return "template data";
            case Tok::VarBegin: return "'{{'";
            case Tok::VarEnd: return "'}}'";
            case Tok::BlockBegin: return "'{%'";
            case Tok::BlockEnd: return "'%}'";
            case Tok::Name: return "'" + t.s + "'";
            case Tok::Str: return "string literal";
            case Tok::Int:
            case Tok::Float: return "number '" + t.s + "'";
            case Tok::Op: return "'" + t.s + "'";
            case Tok::Eof: return "end of template";
        }
        return "token";
    }
    [[noreturn]] void error(const std::string& what) const { fail(what + where(cur().line)); }
    void expect_op(const char* op) {
        if (!is_op(op)) error(std::string("expected '") + op + "', got " + describe(cur()));
        next();
    }
    std::string expect_name() {
        if (cur().t != Tok::Name) error("expected a name, got " + describe(cur()));
        std::string s = cur().s;
        next();
        return s;
    }
    void expect_block_end() {
        if (cur().t != Tok::BlockEnd) error("expected end of statement block '%}', got " + describe(cur()));
        next();
    }

    struct Depth {
        Parser& p;
        explicit Depth(Parser& parser) : p(parser) {
            if (++p.depth_ > p.opt_.max_nesting) p.error("template nesting too deep");
        }
        ~Depth() { --p.depth_; }
        Depth(const Depth&) = delete;
        Depth& operator=(const Depth&) = delete;
    };

    ExprP make(ExprKind k, int line) {
        auto e = std::make_unique<Expr>();
        e->kind = k;
        e->line = line;
        return e;
    }

    // Parses statements until one of `ends` (a block tag name) is found; that tag's name is
    // stored in `found` and the parser sits just after the tag name.
    std::vector<StmtP> parse_body(const std::vector<std::string>& ends, std::string& found) {
        Depth guard(*this);
        std::vector<StmtP> body;
        for (;;) {
            const Token& tk = cur();
            if (tk.t == Tok::Eof) {
                if (ends.empty()) return body;
                std::string list;
                for (const auto& e : ends) list += (list.empty() ? "'" : " or '") + e + "'";
                error("unexpected end of template, expected " + list);
            }
            if (tk.t == Tok::Text) {
                auto s = std::make_unique<Stmt>();
                s->kind = StmtKind::Text;
                s->line = tk.line;
                s->text = tk.s;
                body.push_back(std::move(s));
                next();
                continue;
            }
            if (tk.t == Tok::VarBegin) {
                auto s = std::make_unique<Stmt>();
                s->kind = StmtKind::Output;
                s->line = tk.line;
                next();
                s->exprs.push_back(parse_tuple_or_expr());
                if (cur().t != Tok::VarEnd) error("expected end of print statement '}}', got " + describe(cur()));
                next();
                body.push_back(std::move(s));
                continue;
            }
            if (tk.t != Tok::BlockBegin) error("unexpected " + describe(tk));
            next();
            if (cur().t != Tok::Name) error("expected a statement name, got " + describe(cur()));
            std::string name = cur().s;
            for (const auto& e : ends) {
                if (name == e) {
                    found = name;
                    next();
                    return body;
                }
            }
            body.push_back(parse_statement());
        }
    }

    StmtP parse_statement() {
        int line = cur().line;
        std::string name = cur().s;
        next();
        auto s = std::make_unique<Stmt>();
        s->line = line;
        if (name == "if") {
            s->kind = StmtKind::If;
            s->exprs.push_back(parse_expr());
            expect_block_end();
            for (;;) {
                std::string found;
                s->bodies.push_back(parse_body({"elif", "else", "endif"}, found));
                if (found == "elif") {
                    s->exprs.push_back(parse_expr());
                    expect_block_end();
                } else if (found == "else") {
                    expect_block_end();
                    std::string f2;
                    s->bodies.push_back(parse_body({"endif"}, f2));
                    expect_block_end();
                    break;
                } else {
                    expect_block_end();
                    break;
                }
            }
        } else if (name == "for") {
            s->kind = StmtKind::For;
            parse_targets(s->targets);
            if (!is_name("in")) error("expected 'in' in for loop, got " + describe(cur()));
            next();
            s->exprs.push_back(parse_expr(/*no_cond=*/true));
            if (is_name("if")) {
                next();
                s->exprs.push_back(parse_expr(true));
            } else {
                s->exprs.push_back(nullptr);
            }
            if (is_name("recursive")) error("unsupported construct: recursive for loop");
            expect_block_end();
            std::string found;
            ++loop_depth_;
            s->bodies.push_back(parse_body({"else", "endfor"}, found));
            --loop_depth_;
            expect_block_end();
            if (found == "else") {
                s->bodies.push_back(parse_body({"endfor"}, found));
                expect_block_end();
            }
        } else if (name == "set") {
            int tline = cur().line;
            std::string first = expect_name();
            if (is_op(".")) {
                next();
                s->kind = StmtKind::Set;
                s->ns_name = first;
                s->ns_attr = expect_name();
                expect_op("=");
                s->exprs.push_back(parse_tuple_or_expr());
                expect_block_end();
            } else {
                s->targets.push_back(first);
                while (is_op(",")) {
                    next();
                    if (cur().t != Tok::Name) break;
                    s->targets.push_back(expect_name());
                }
                if (is_op("=")) {
                    next();
                    s->kind = StmtKind::Set;
                    s->exprs.push_back(parse_tuple_or_expr());
                    expect_block_end();
                } else {
                    if (s->targets.size() != 1) fail("block set needs a single name" + where(tline));
                    s->kind = StmtKind::SetBlock;
                    if (is_op("|")) {
                        s->exprs.push_back(parse_filter_chain(make_placeholder(tline)));
                    }
                    expect_block_end();
                    std::string found;
                    s->bodies.push_back(parse_body({"endset"}, found));
                    expect_block_end();
                }
            }
        } else if (name == "macro") {
            s->kind = StmtKind::Macro;
            s->text = expect_name();
            parse_params(s->params);
            expect_block_end();
            std::string found;
            int saved = loop_depth_;
            loop_depth_ = 0;
            s->bodies.push_back(parse_body({"endmacro"}, found));
            loop_depth_ = saved;
            if (cur().t == Tok::Name) next();  // {% endmacro name %}
            expect_block_end();
        } else if (name == "call") {
            s->kind = StmtKind::CallBlock;
            if (is_op("(")) parse_params(s->params);
            auto call = parse_expr();
            if (call->kind != ExprKind::Call) fail("expected a call in {% call %}" + where(line));
            s->exprs.push_back(std::move(call));
            expect_block_end();
            std::string found;
            s->bodies.push_back(parse_body({"endcall"}, found));
            expect_block_end();
        } else if (name == "filter") {
            s->kind = StmtKind::FilterBlock;
            // The first filter name follows directly (no leading '|').
            s->exprs.push_back(parse_filter_chain(make_placeholder(line), /*leading_pipe=*/false));
            expect_block_end();
            std::string found;
            s->bodies.push_back(parse_body({"endfilter"}, found));
            expect_block_end();
        } else if (name == "break" || name == "continue") {
            if (loop_depth_ == 0) fail("'" + name + "' outside of a loop" + where(line));
            s->kind = name == "break" ? StmtKind::Break : StmtKind::Continue;
            expect_block_end();
        } else if (name == "generation") {
            s->kind = StmtKind::Generation;
            expect_block_end();
            std::string found;
            s->bodies.push_back(parse_body({"endgeneration"}, found));
            expect_block_end();
        } else {
            fail("unsupported construct: '{% " + name + " %}' tag" + where(line));
        }
        return s;
    }

    ExprP make_placeholder(int line) {
        auto e = make(ExprKind::Name, line);
        e->name = kPlaceholder;
        return e;
    }

    void parse_targets(std::vector<std::string>& out) {
        bool paren = false;
        if (is_op("(")) {
            paren = true;
            next();
        }
        out.push_back(expect_name());
        while (is_op(",")) {
            next();
            if (cur().t != Tok::Name) break;
            out.push_back(expect_name());
        }
        if (paren) expect_op(")");
    }

    void parse_params(std::vector<std::pair<std::string, ExprP>>& params) {
        expect_op("(");
        while (!is_op(")")) {
            if (!params.empty()) expect_op(",");
            if (is_op(")")) break;
            std::string pname = expect_name();
            ExprP def;
            if (is_op("=")) {
                next();
                def = parse_expr();
            }
            params.emplace_back(pname, std::move(def));
        }
        next();
    }

    // ----- expressions -----

    ExprP parse_tuple_or_expr() {
        int line = cur().line;
        auto e = parse_expr();
        if (!is_op(",")) return e;
        auto t = make(ExprKind::Tuple, line);
        t->args.push_back(std::move(e));
        while (is_op(",")) {
            next();
            if (cur().t == Tok::VarEnd || cur().t == Tok::BlockEnd || is_op(")")) break;
            t->args.push_back(parse_expr());
        }
        return t;
    }

    ExprP parse_expr(bool no_cond = false) {
        Depth guard(*this);
        int line = cur().line;
        auto e = parse_or();
        if (no_cond) return e;
        while (is_name("if")) {
            next();
            auto cond = parse_or();
            auto c = make(ExprKind::Cond, line);
            c->args.push_back(std::move(e));
            c->args.push_back(std::move(cond));
            if (is_name("else")) {
                next();
                c->args.push_back(parse_expr());
            } else {
                c->args.push_back(nullptr);
            }
            e = std::move(c);
        }
        return e;
    }

    ExprP parse_or() {
        auto l = parse_and();
        while (is_name("or")) {
            int line = cur().line;
            next();
            auto e = make(ExprKind::Or, line);
            e->args.push_back(std::move(l));
            e->args.push_back(parse_and());
            l = std::move(e);
        }
        return l;
    }

    ExprP parse_and() {
        auto l = parse_not();
        while (is_name("and")) {
            int line = cur().line;
            next();
            auto e = make(ExprKind::And, line);
            e->args.push_back(std::move(l));
            e->args.push_back(parse_not());
            l = std::move(e);
        }
        return l;
    }

    ExprP parse_not() {
        if (is_name("not")) {
            Depth guard(*this);
            int line = cur().line;
            next();
            auto e = make(ExprKind::Not, line);
            e->args.push_back(parse_not());
            return e;
        }
        return parse_compare();
    }

    ExprP parse_compare() {
        int line = cur().line;
        auto l = parse_math1();
        ExprP cmp;
        for (;;) {
            std::string op;
            if (cur().t == Tok::Op && (cur().s == "==" || cur().s == "!=" || cur().s == "<" || cur().s == ">" ||
                                       cur().s == "<=" || cur().s == ">=")) {
                op = cur().s;
                next();
            } else if (is_name("in")) {
                op = "in";
                next();
            } else if (is_name("not") && peek().t == Tok::Name && peek().s == "in") {
                op = "notin";
                next();
                next();
            } else {
                break;
            }
            if (!cmp) {
                cmp = make(ExprKind::Compare, line);
                cmp->args.push_back(std::move(l));
            }
            cmp->ops.push_back(op);
            cmp->args.push_back(parse_math1());
        }
        return cmp ? std::move(cmp) : std::move(l);
    }

    ExprP binary(const std::string& op, ExprP l, ExprP r, int line) {
        auto e = make(ExprKind::Binary, line);
        e->name = op;
        e->args.push_back(std::move(l));
        e->args.push_back(std::move(r));
        return e;
    }

    ExprP parse_math1() {
        auto l = parse_concat();
        while (is_op("+") || is_op("-")) {
            std::string op = cur().s;
            int line = cur().line;
            next();
            l = binary(op, std::move(l), parse_concat(), line);
        }
        return l;
    }

    ExprP parse_concat() {
        auto l = parse_math2();
        while (is_op("~")) {
            int line = cur().line;
            next();
            l = binary("~", std::move(l), parse_math2(), line);
        }
        return l;
    }

    ExprP parse_math2() {
        auto l = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            std::string op = cur().s;
            int line = cur().line;
            next();
            l = binary(op, std::move(l), parse_pow(), line);
        }
        return l;
    }

    ExprP parse_pow() {
        auto l = parse_unary();
        while (is_op("**")) {
            int line = cur().line;
            next();
            l = binary("**", std::move(l), parse_unary(), line);
        }
        return l;
    }

    ExprP parse_unary(bool with_filter = true) {
        Depth guard(*this);
        int line = cur().line;
        ExprP node;
        if (is_op("-") || is_op("+")) {
            bool neg = is_op("-");
            next();
            node = make(neg ? ExprKind::Neg : ExprKind::Pos, line);
            node->args.push_back(parse_unary(false));
        } else {
            node = parse_primary();
            node = parse_postfix(std::move(node));
        }
        if (with_filter) node = parse_filter_expr(std::move(node));
        return node;
    }

    ExprP parse_primary() {
        const Token& tk = cur();
        int line = tk.line;
        if (tk.t == Tok::Name) {
            auto e = make(ExprKind::Literal, line);
            if (tk.s == "true" || tk.s == "True") {
                e->lit = Value::boolean(true);
            } else if (tk.s == "false" || tk.s == "False") {
                e->lit = Value::boolean(false);
            } else if (tk.s == "none" || tk.s == "None") {
                e->lit = Value::none();
            } else {
                e->kind = ExprKind::Name;
                e->name = tk.s;
            }
            next();
            return e;
        }
        if (tk.t == Tok::Str) {
            std::string s = tk.s;
            next();
            while (cur().t == Tok::Str) {
                s += cur().s;
                next();
            }
            auto e = make(ExprKind::Literal, line);
            e->lit = Value::string(std::move(s));
            return e;
        }
        if (tk.t == Tok::Int || tk.t == Tok::Float) {
            auto e = make(ExprKind::Literal, line);
            e->lit = tk.t == Tok::Int ? Value::integer(tk.i) : Value::floating(tk.f);
            next();
            return e;
        }
        if (is_op("(")) {
            next();
            if (is_op(")")) {
                next();
                return make(ExprKind::Tuple, line);
            }
            auto e = parse_expr();
            if (is_op(",")) {
                auto t = make(ExprKind::Tuple, line);
                t->args.push_back(std::move(e));
                while (is_op(",")) {
                    next();
                    if (is_op(")")) break;
                    t->args.push_back(parse_expr());
                }
                e = std::move(t);
            }
            expect_op(")");
            return e;
        }
        if (is_op("[")) {
            next();
            auto e = make(ExprKind::List, line);
            while (!is_op("]")) {
                if (!e->args.empty()) expect_op(",");
                if (is_op("]")) break;
                e->args.push_back(parse_expr());
            }
            next();
            return e;
        }
        if (is_op("{")) {
            next();
            auto e = make(ExprKind::Dict, line);
            while (!is_op("}")) {
                if (!e->args.empty()) expect_op(",");
                if (is_op("}")) break;
                e->args.push_back(parse_expr());
                expect_op(":");
                e->args.push_back(parse_expr());
            }
            next();
            return e;
        }
        error("unexpected " + describe(tk));
    }

    ExprP parse_postfix(ExprP node) {
        for (;;) {
            int line = cur().line;
            if (is_op(".")) {
                next();
                auto e = make(ExprKind::GetAttr, line);
                if (cur().t == Tok::Name) {
                    e->name = cur().s;
                } else if (cur().t == Tok::Int) {
                    e->kind = ExprKind::GetItem;
                    auto idx = make(ExprKind::Literal, line);
                    idx->lit = Value::integer(cur().i);
                    e->args.push_back(std::move(node));
                    e->args.push_back(std::move(idx));
                    next();
                    node = std::move(e);
                    continue;
                } else {
                    error("expected an attribute name after '.', got " + describe(cur()));
                }
                next();
                e->args.push_back(std::move(node));
                node = std::move(e);
            } else if (is_op("[")) {
                next();
                node = parse_subscript(std::move(node), line);
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprP parse_subscript(ExprP obj, int line) {
        ExprP parts[3];
        bool slice = false;
        int k = 0;
        for (;;) {
            if (is_op("]")) break;
            if (is_op(":")) {
                slice = true;
                if (++k > 2) error("invalid slice");
                next();
                continue;
            }
            if (parts[k]) error("invalid subscript");
            parts[k] = parse_expr();
        }
        next();
        if (!slice) {
            if (!parts[0]) error("empty subscript");
            auto e = make(ExprKind::GetItem, line);
            e->args.push_back(std::move(obj));
            e->args.push_back(std::move(parts[0]));
            return e;
        }
        auto e = make(ExprKind::Slice, line);
        e->args.push_back(std::move(obj));
        for (auto& p : parts) e->args.push_back(std::move(p));
        return e;
    }

    void parse_call_args(Expr& e) {
        expect_op("(");
        bool first = true;
        while (!is_op(")")) {
            if (!first) expect_op(",");
            first = false;
            if (is_op(")")) break;
            if (is_op("*") || is_op("**")) error("unsupported construct: *args/**kwargs in a call");
            if (cur().t == Tok::Name && peek().t == Tok::Op && peek().s == "=") {
                std::string key = cur().s;
                next();
                next();
                e.kwargs.emplace_back(key, parse_expr());
            } else {
                if (!e.kwargs.empty()) error("positional argument after keyword argument");
                e.args.push_back(parse_expr());
            }
        }
        next();
    }

    ExprP parse_call(ExprP callee) {
        auto e = make(ExprKind::Call, cur().line);
        e->args.push_back(std::move(callee));
        parse_call_args(*e);
        return e;
    }

    ExprP parse_filter_chain(ExprP input, bool leading_pipe = true) {
        if (!leading_pipe) input = parse_one_filter(std::move(input));
        while (is_op("|")) {
            next();
            input = parse_one_filter(std::move(input));
        }
        return input;
    }

    ExprP parse_one_filter(ExprP input) {
        int line = cur().line;
        std::string fname = expect_name();
        while (is_op(".")) {
            next();
            fname += "." + expect_name();
        }
        auto e = make(ExprKind::Filter, line);
        e->name = fname;
        e->unknown = !contains(kFilters, fname);
        e->args.push_back(std::move(input));
        if (is_op("(")) parse_call_args(*e);
        return e;
    }

    ExprP parse_filter_expr(ExprP node) {
        for (;;) {
            if (is_op("|")) {
                next();
                node = parse_one_filter(std::move(node));
            } else if (is_name("is")) {
                int line = cur().line;
                next();
                bool negate = false;
                if (is_name("not")) {
                    negate = true;
                    next();
                }
                std::string tname;
                if (cur().t == Tok::Name) {
                    tname = cur().s;
                    next();
                    while (is_op(".")) {
                        next();
                        tname += "." + expect_name();
                    }
                } else if (cur().t == Tok::Op) {
                    tname = cur().s;  // is ==, is < ...
                    next();
                } else {
                    error("expected a test name after 'is', got " + describe(cur()));
                }
                if (tname == "none" || tname == "None") tname = "none";
                if (tname == "true" || tname == "True") tname = "true";
                if (tname == "false" || tname == "False") tname = "false";
                auto e = make(ExprKind::Test, line);
                e->name = tname;
                e->unknown = !contains(kTests, tname);
                e->negate = negate;
                e->args.push_back(std::move(node));
                if (is_op("(")) {
                    parse_call_args(*e);
                } else if ((cur().t == Tok::Name || cur().t == Tok::Str || cur().t == Tok::Int || cur().t == Tok::Float ||
                            is_op("(") || is_op("[") || is_op("{")) &&
                           !is_name("else") && !is_name("or") && !is_name("and")) {
                    auto arg = parse_primary();
                    e->args.push_back(parse_postfix(std::move(arg)));
                }
                node = std::move(e);
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    std::vector<Token> t_;
    const ParseOptions& opt_;
    std::size_t i_ = 0;
    int depth_ = 0;
    int loop_depth_ = 0;
};

constexpr int kMaxExprDepth = 256;

bool names_in_expr(const Expr* e, const char* name) {
    if (!e) return false;
    if (e->kind == ExprKind::Name && e->name == name) return true;
    for (const auto& a : e->args)
        if (names_in_expr(a.get(), name)) return true;
    for (const auto& kv : e->kwargs)
        if (names_in_expr(kv.second.get(), name)) return true;
    return false;
}

bool names_in_body(const std::vector<StmtP>& body, const char* name) {
    for (const auto& s : body) {
        for (const auto& e : s->exprs)
            if (names_in_expr(e.get(), name)) return true;
        for (const auto& p : s->params)
            if (names_in_expr(p.second.get(), name)) return true;
        for (const auto& b : s->bodies)
            if (names_in_body(b, name)) return true;
    }
    return false;
}

// Depth of an expression tree, without recursion (chains such as a+b+c+... grow the tree
// without nesting in the source, so the parser's nesting guard does not bound them).
int expr_depth(const Expr* root) {
    int max_depth = 0;
    std::vector<std::pair<const Expr*, int>> stack;
    if (root) stack.emplace_back(root, 1);
    while (!stack.empty()) {
        auto [e, d] = stack.back();
        stack.pop_back();
        max_depth = std::max(max_depth, d);
        for (const auto& a : e->args)
            if (a) stack.emplace_back(a.get(), d + 1);
        for (const auto& kv : e->kwargs)
            if (kv.second) stack.emplace_back(kv.second.get(), d + 1);
    }
    return max_depth;
}

// jinja2 rejects unknown filters/tests at compile time, except inside if-statements and
// conditional expressions ("soft" frames), where the error happens only if evaluated.
void check_expr_rec(const Expr* e, bool soft) {
    if (!e) return;
    if (e->unknown && !soft)
        fail(std::string("unsupported construct: no ") + (e->kind == ExprKind::Filter ? "filter" : "test") + " named '" + e->name + "'" + where(e->line));
    bool inner = soft || e->kind == ExprKind::Cond;
    for (const auto& a : e->args) check_expr_rec(a.get(), inner);
    for (const auto& kv : e->kwargs) check_expr_rec(kv.second.get(), inner);
}

void check_expr(const Expr* e, bool soft) {
    if (!e) return;
    if (expr_depth(e) > kMaxExprDepth) fail("expression nested too deeply" + where(e->line));
    check_expr_rec(e, soft);
}

void check_body(const std::vector<StmtP>& body, bool soft) {
    for (const auto& s : body) {
        switch (s->kind) {
            case StmtKind::If:
                for (const auto& e : s->exprs) check_expr(e.get(), true);
                for (const auto& b : s->bodies) check_body(b, true);
                break;
            case StmtKind::For:
                check_expr(s->exprs[0].get(), soft);
                check_expr(s->exprs[1].get(), false);
                check_body(s->bodies[0], false);
                if (s->bodies.size() > 1) check_body(s->bodies[1], soft);
                break;
            case StmtKind::Macro:
            case StmtKind::CallBlock:
                for (const auto& p : s->params) check_expr(p.second.get(), false);
                for (const auto& e : s->exprs) check_expr(e.get(), soft);
                for (const auto& b : s->bodies) check_body(b, false);
                if (s->kind == StmtKind::Macro) {  // safe now: depths are bounded
                    s->uses_varargs = names_in_body(s->bodies[0], "varargs");
                    s->uses_kwargs = names_in_body(s->bodies[0], "kwargs");
                }
                break;
            default:
                for (const auto& e : s->exprs) check_expr(e.get(), soft);
                for (const auto& b : s->bodies) check_body(b, false);
        }
    }
}

}  // namespace

std::vector<StmtP> parse_program(std::string_view source, const ParseOptions& options) {
    // jinja2 normalises newlines to "\n" and drops a single trailing newline.
    std::string src;
    src.reserve(source.size());
    for (std::size_t k = 0; k < source.size(); ++k) {
        if (source[k] == '\r') {
            src += '\n';
            if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
        } else {
            src += source[k];
        }
    }
    if (!options.keep_trailing_newline && !src.empty() && src.back() == '\n') src.pop_back();
    Lexer lexer(std::move(src), options);
    Parser parser(lexer.run(), options);
    auto body = parser.parse_template();
    check_body(body, false);
    return body;
}

}  // namespace detail

Result<Template> Template::parse(std::string_view source, const ParseOptions& options) {
    try {
        auto program = std::make_shared<detail::Program>();
        program->body = detail::parse_program(source, options);
        return Template(std::move(program));
    } catch (const detail::Failure& f) {
        return make_error("template syntax error: " + f.message);
    } catch (const std::exception& e) {
        return make_error(std::string("template parse failed: ") + e.what());
    }
}

}  // namespace realm::text::jinja
