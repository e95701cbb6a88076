// Jinja engine and ChatTemplate: language features, error reporting and hostile templates.
// (Byte-exact agreement with Python jinja2 on real templates is checked by tests/py/test_templates.py.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "text/chat_template.hpp"
#include "text/jinja.hpp"

namespace {

using realm::text::ChatTemplate;
using realm::text::jinja::ParseOptions;
using realm::text::jinja::RenderOptions;
using realm::text::jinja::Template;
using json = nlohmann::ordered_json;

ParseOptions chat_options() {
    ParseOptions o;
    o.trim_blocks = true;
    o.lstrip_blocks = true;
    return o;
}

// Renders with HF's chat settings (trim_blocks + lstrip_blocks); "ERROR: ..." on failure.
std::string render(const std::string& src, const json& ctx = json::object(), const RenderOptions& ro = {},
                   const ParseOptions& po = chat_options()) {
    auto t = Template::parse(src, po);
    if (!t) return "ERROR: " + t.error().message;
    auto r = t->render(ctx, ro);
    if (!r) return "ERROR: " + r.error().message;
    return *r;
}

bool is_error(const std::string& s) { return s.rfind("ERROR: ", 0) == 0; }

TEST(Jinja, TextAndExpressions) {
    EXPECT_EQ(render("hello"), "hello");
    EXPECT_EQ(render("{{ 1 + 2 * 3 }}"), "7");
    EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }}"), "3 -4 2 1024");
    EXPECT_EQ(render("{{ 7 / 2 }} {{ 1 / 3 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 2.0 }}"), "3.5 0.3333333333333333 0.30000000000000004 1e+20 2.0");
    EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ true }}"), "a1NoneTrue");
    EXPECT_EQ(render("{{ [1, 'a', none, {'k': 1.5}] }}"), "[1, 'a', None, {'k': 1.5}]");
    EXPECT_EQ(render("{{ 'x' if false else 'y' }}{{ 'z' if false }}"), "y");
    EXPECT_EQ(render("{{ not 1 }} {{ 1 and 'v' }} {{ 0 or 'w' }}"), "False v w");
    EXPECT_EQ(render("{{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 1 == 1.0 }}"), "True True True True");
}

TEST(Jinja, WhitespaceControl) {
    ParseOptions plain;  // jinja2 defaults: no trim_blocks / lstrip_blocks
    EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c", {}, {}, plain), "abc");
    EXPECT_EQ(render("{% if true %}\nx\n{% endif %}\n", {}, {}, plain), "\nx\n");
    EXPECT_EQ(render("  {% if true %}\nx\n  {% endif %}\ny", {}, {}), "x\ny");
    EXPECT_EQ(render("{# comment #}a{{- ' b ' -}}  c"), "a b c");
    EXPECT_EQ(render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
    EXPECT_EQ(render("trailing\n"), "trailing");  // one trailing newline is dropped, as in jinja2
}

TEST(Jinja, Strings) {
    EXPECT_EQ(render("{{ 'héllo'|length }} {{ 'héllo'[1:3] }} {{ 'héllo'[::-1] }} {{ 'abc'[-1] }}"), "5 él olléh c");
    EXPECT_EQ(render("{{ '  x  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}"), "x|['a', 'b', '', 'c']|['a', 'b']");
    EXPECT_EQ(render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a-b'.replace('-', '+') }}"), "True True a+b");
    EXPECT_EQ(render("{{ '<{}>'.format('x') }} {{ 'hi there'|title }} {{ 'Hi'|upper }} {{ 'Hi'|lower }}"), "<x> Hi There HI hi");
    EXPECT_EQ(render("{{ \"it's\" }} {{ ['it\\'s'] }} {{ 'a\\nb' }}"), "it's [\"it's\"] a\nb");
}

TEST(Jinja, ToJsonMatchesPythonJsonDumps) {
    EXPECT_EQ(render("{{ {'b': 1, 'a': [true, none, 1.5, 'é\"\\n']}|tojson }}"), "{\"b\": 1, \"a\": [true, null, 1.5, \"é\\\"\\n\"]}");
    EXPECT_EQ(render("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}"), "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}"), "{\"a\": 2, \"b\": 1}");
    EXPECT_EQ(render("{{ 'é😀'|tojson(ensure_ascii=true) }}"), "\"\\u00e9\\ud83d\\ude00\"");
    EXPECT_TRUE(is_error(render("{{ undefined_thing|tojson }}")));
}

TEST(Jinja, Loops) {
    EXPECT_EQ(render("{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"), "1a,2b,3c");
    EXPECT_EQ(render("{% for x in [1, 2] %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.length }};{% endfor %}"),
              "02True2;11False2;");
    EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}"), "a=1 b=2 ");
    EXPECT_EQ(render("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}"), "ab");
    EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
    EXPECT_EQ(render("{% for x in range(10) if x is odd %}{{ x }}{% endfor %}"), "13579");
    EXPECT_EQ(render("{% for x in range(9) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
              "023");
    EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}"), "-2;1-3;2-;");
}

TEST(Jinja, ScopesSetAndNamespace) {
    EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{% set x = 5 %}{% endfor %}{{ x }}"), "1");
    EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in [1] %}{% set ns.x = 5 %}{% endfor %}{{ ns.x }}"), "5");
    EXPECT_EQ(render("{% if true %}{% set y = 2 %}{% endif %}{{ y }}"), "2");
    EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
    EXPECT_EQ(render("{% set s %}in {{ 1 }}{% endset %}[{{ s }}]"), "[in 1]");
    EXPECT_TRUE(is_error(render("{% set x = 1 %}{% set x.y = 2 %}")));
}

TEST(Jinja, MacrosAndCall) {
    EXPECT_EQ(render("{% macro m(a, b='d') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}"), "<1d><12><43>");
    EXPECT_EQ(render("{% macro m() %}[{{ caller() }}]{% endmacro %}{% call m() %}body{% endcall %}"), "[body]");
    EXPECT_EQ(render("{% filter upper %}abc{% endfilter %}"), "ABC");
    EXPECT_TRUE(is_error(render("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}")));
}

TEST(Jinja, FiltersAndTests) {
    EXPECT_EQ(render("{{ x|default('d') }} {{ ''|default('e', true) }} {{ none|default('n') }}"), "d e None");
    EXPECT_EQ(render("{{ [3, 1, 2]|sort|join(',') }} {{ [1, 1, 2]|unique|list }} {{ [1, 2]|reverse|list }}"), "1,2,3 [1, 2] [2, 1]");
    EXPECT_EQ(render("{{ [{'a': 1}, {'a': 2}]|map(attribute='a')|list }} {{ [{'t': 'x'}, {'t': 'y'}]|selectattr('t', 'equalto', 'y')|list }}"),
              "[1, 2] [{'t': 'y'}]");
    EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|dictsort }} {{ {'a': 1}|items|list }}"), "[('a', 2), ('b', 1)] [('a', 1)]");
    EXPECT_EQ(render("{{ 'a\\nb'|indent(2) }}|{{ ' x '|trim }}|{{ '5'|int + 1 }}|{{ -2|abs }}|{{ [1, 2]|first }}{{ [1, 2]|last }}"), "a\n  b|x|6|2|12");
    EXPECT_EQ(render("{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ 1 is number }} {{ [] is iterable }}"),
              "False True True True True True");
    EXPECT_EQ(render("{{ '<a>'|safe + '<b>' }}"), "<a>&lt;b&gt;");  // Markup + str escapes the str
}

TEST(Jinja, UndefinedBehavesLikeJinja2) {
    EXPECT_EQ(render("[{{ missing }}]{% if missing %}x{% endif %}{{ missing|length }}"), "[]0");
    EXPECT_EQ(render("{{ d.nope }}|{{ d.nope is defined }}", json{{"d", json::object()}}), "|False");
    EXPECT_TRUE(is_error(render("{{ missing.attr }}")));
    EXPECT_TRUE(is_error(render("{{ missing + 1 }}")));
}

TEST(Jinja, SandboxRefusesMutation) {
    EXPECT_TRUE(is_error(render("{% set l = [1] %}{{ l.append(2) }}")));
    EXPECT_TRUE(is_error(render("{% set d = {} %}{{ d.update({'a': 1}) }}")));
    EXPECT_TRUE(is_error(render("{{ ''.__class__ }}")) || render("{{ ''.__class__ }}").empty());
}

TEST(Jinja, ErrorsNameTheProblemAndLine) {
    auto r = render("line1\n{% while true %}{% endwhile %}");
    EXPECT_TRUE(is_error(r));
    EXPECT_NE(r.find("while"), std::string::npos) << r;
    EXPECT_NE(r.find("line 2"), std::string::npos) << r;
    r = render("{{ x|no_such_filter }}");
    EXPECT_NE(r.find("no_such_filter"), std::string::npos) << r;
    r = render("{{ raise_exception('bad role') }}");
    EXPECT_TRUE(is_error(r));
    EXPECT_NE(r.find("bad role"), std::string::npos) << r;
    EXPECT_TRUE(is_error(render("{% if x %}")));
    EXPECT_TRUE(is_error(render("{{ 'unterminated }}")));
    EXPECT_TRUE(is_error(render("{{ 1 / 0 }}")));
    EXPECT_TRUE(is_error(render("{{ 9223372036854775807 + 1 }}")));
    // Unknown filters inside an if are only an error when reached (jinja2 does the same).
    EXPECT_EQ(render("{% if false %}{{ x|no_such_filter }}{% endif %}ok"), "ok");
}

TEST(Jinja, StrftimeNowIsInjectable) {
    RenderOptions ro;
    std::tm tm{};
    tm.tm_year = 2024 - 1900;
    tm.tm_mon = 6;
    tm.tm_mday = 26;
    ro.now = tm;
    EXPECT_EQ(render("{{ strftime_now('%Y-%m-%d') }}", json::object(), ro), "2024-07-26");
}

TEST(JinjaHostile, HugeRangeIsRefused) {
    auto r = render("{% for i in range(1000000000000) %}x{% endfor %}");
    EXPECT_TRUE(is_error(r));
}

TEST(JinjaHostile, LongLoopsHitTheStepLimit) {
    RenderOptions ro;
    ro.max_steps = 100000;
    auto r = render("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", json::object(), ro);
    EXPECT_TRUE(is_error(r));
    EXPECT_NE(r.find("step limit"), std::string::npos) << r;
}

TEST(JinjaHostile, DeepMacroRecursionIsRefused) {
    auto r = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    EXPECT_TRUE(is_error(r));
    EXPECT_NE(r.find("depth"), std::string::npos) << r;
}

TEST(JinjaHostile, EnormousOutputIsRefused) {
    RenderOptions ro;
    ro.max_output_bytes = 1 << 20;
    EXPECT_TRUE(is_error(render("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", json::object(), ro)));
    EXPECT_TRUE(is_error(render("{{ 'x' * 1000000000 }}", json::object(), ro)));
    // Doubling a string: each step is cheap, the result is not.
    EXPECT_TRUE(is_error(render("{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                                json::object(), ro)));
}

TEST(JinjaHostile, DeepNestingIsRefusedAtParse) {
    std::string deep(100000, '(');
    EXPECT_TRUE(is_error(render("{{ " + deep + " }}")));
    std::string ifs;
    for (int i = 0; i < 10000; ++i) ifs += "{% if true %}";
    EXPECT_TRUE(is_error(render(ifs)));
    std::string nots = "{{ ";
    for (int i = 0; i < 100000; ++i) nots += "not ";
    EXPECT_TRUE(is_error(render(nots + "1 }}")));
}

TEST(JinjaHostile, GarbageInputNeverCrashes) {
    const char* inputs[] = {"{{", "{%", "{#", "{{ }}", "{% %}", "{% for %}", "{% endfor %}", "{{ [ }}", "{{ {'a' }}",
                            "{{ a[ }}", "{{ 'a' is }}", "{% set %}", "{% macro %}", "{{ x | }}", "{{ 1e999999 }}",
                            "{% raw %}", "\xff\xfe{{ '\xc3' }}", "{{ '\\x' }}", "{{ '\\U0011ffff' }}"};
    for (const char* in : inputs) {
        auto t = Template::parse(in, chat_options());
        if (t) (void)t->render(json::object());
    }
    SUCCEED();
}

TEST(ChatTemplate, RendersMessages) {
    const char* src =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    auto t = ChatTemplate::parse(src);
    ASSERT_TRUE(t) << t.error().message;
    nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", "Hi"}}});
    auto r = t->render(messages, true, nlohmann::json{{"bos_token", "<s>"}});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(*r, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    auto r2 = t->render(messages, false, nlohmann::json::object());
    ASSERT_TRUE(r2);
    EXPECT_EQ(*r2, "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, UnsupportedConstructIsAParseError) {
    auto t = ChatTemplate::parse("{% extends 'base.html' %}");
    ASSERT_FALSE(t);
    EXPECT_NE(t.error().message.find("extends"), std::string::npos) << t.error().message;
}

TEST(ChatTemplate, GemmaRejectsSystemRole) {
    const char* dir = std::getenv("REALM_SHARED_DIR");
    if (!dir) GTEST_SKIP() << "REALM_SHARED_DIR not set";
    std::ifstream f(std::filesystem::path(dir) / "templates" / "google-gemma-2-2b-it.jinja");
    ASSERT_TRUE(f) << "missing shared template";
    std::stringstream ss;
    ss << f.rdbuf();
    auto t = ChatTemplate::parse(ss.str());
    ASSERT_TRUE(t) << t.error().message;
    nlohmann::json user = nlohmann::json::array({{{"role", "user"}, {"content", "Hi"}}});
    auto r = t->render(user, true, nlohmann::json{{"bos_token", "<bos>"}});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(*r, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    nlohmann::json sys = nlohmann::json::array({{{"role", "system"}, {"content", "S"}}, {{"role", "user"}, {"content", "Hi"}}});
    auto e = t->render(sys, true, nlohmann::json{{"bos_token", "<bos>"}});
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find("System role not supported"), std::string::npos) << e.error().message;
}

}  // namespace

namespace {

TEST(JinjaHostile, DeepStatementNestingInRecursiveMacroIsRefused) {
    std::string ifs, ends;
    for (int i = 0; i < 40; ++i) {
        ifs += "{% if true %}";
        ends += "{% endif %}";
    }
    std::string expr = std::string(30, '(') + "f(n + 1)" + std::string(30, ')');
    auto r = render("{% macro f(n) %}" + ifs + "{{ " + expr + " }}" + ends + "{% endmacro %}{{ f(0) }}");
    EXPECT_TRUE(is_error(r));
    r = render("{% macro f(n) %}{% for i in [1] %}{% for j in [1] %}{{ f(n+1)|upper|trim }}{% endfor %}{% endfor %}{% endmacro %}{{ f(0) }}");
    EXPECT_TRUE(is_error(r));
}

TEST(JinjaHostile, QuadraticMembershipHitsTheStepLimit) {
    RenderOptions ro;
    ro.max_steps = 1'000'000;
    auto r = render("{% set big = range(100000)|list %}{% for i in range(100000) %}{% if -1 in big %}{% endif %}{% endfor %}",
                    json::object(), ro);
    EXPECT_TRUE(is_error(r));
}

}  // namespace

namespace {

TEST(JinjaHostile, LongOperatorAndFilterChainsAreRefusedNotOverflowed) {
    std::string plus = "{{ 1";
    for (int i = 0; i < 50000; ++i) plus += "+1";
    EXPECT_TRUE(is_error(render(plus + " }}")));
    std::string filters = "{{ 'x'";
    for (int i = 0; i < 50000; ++i) filters += "|trim";
    EXPECT_TRUE(is_error(render(filters + " }}")));
    std::string attrs = "{{ x";
    for (int i = 0; i < 50000; ++i) attrs += ".a";
    EXPECT_TRUE(is_error(render(attrs + " }}")));
    EXPECT_EQ(render("{{ 1+1+1+1+1+1+1+1+1+1 }}"), "10");  // ordinary chains are fine
}

}  // namespace

namespace {

TEST(JinjaHostile, DeeplyNestedValuesBuiltInALoopAreRefused) {
    auto r = render("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}");
    EXPECT_TRUE(is_error(r));
    r = render("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set l2 = [ns.l] %}{% set ns.l = l2 %}{% endfor %}");
    EXPECT_TRUE(is_error(r));
    EXPECT_TRUE(is_error(render("{% set ns = namespace() %}{% set ns.me = [ns] %}{{ ns }}")));
}

TEST(JinjaHostile, SharedStructureCannotExplodeWhenPrinted) {
    // Each step doubles the printed size of ns.l while costing O(1) to build.
    RenderOptions ro;
    ro.max_output_bytes = 1 << 20;
    auto r = render("{% set ns = namespace(l=[1]) %}{% for i in range(200) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
                    json::object(), ro);
    EXPECT_TRUE(is_error(r));
    r = render("{% set ns = namespace(l=[1]) %}{% for i in range(200) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|tojson }}",
               json::object(), ro);
    EXPECT_TRUE(is_error(r));
    r = render("{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}"
               "{% endfor %}{{ ns.a == ns.b }}",
               json::object(), ro);
    EXPECT_TRUE(is_error(r));
}

}  // namespace
