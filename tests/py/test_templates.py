"""Chat templates: Realm's Jinja engine (tests/tools/render_template) against Python jinja2 3.1.6.

Reference set-up: jinja2 configured as HF transformers' apply_chat_template configures it (and as
llama.cpp's chat code mimics): ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
with the loopcontrols extension and the `{% generation %}` tag, the globals raise_exception and
strftime_now (a fixed date here, passed to both sides), and HF's tojson filter, i.e.
json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys) instead
of jinja2's HTML-escaping tojson. See templates_cases.py for the conversations and the renderer.

Every template in ../shared/templates is rendered for every conversation, with and without
add_generation_prompt; outputs must be byte-identical, and where Python raises (e.g. a template
that rejects the system role), Realm must fail too. Templates in XFAIL are known not to match yet
(strict xfail: one that starts matching makes the suite fail so that the list stays honest).
"""
import os
from pathlib import Path

import pytest

from conftest import ROOT, _env_path
import templates_cases as tc

SHARED = Path(os.environ.get("REALM_SHARED_DIR") or ROOT.parent / "shared")
TEMPLATES_DIR = SHARED / "templates"
TEMPLATES = sorted(p.name for p in TEMPLATES_DIR.glob("*.jinja"))

# Templates known not to match yet, with the reason. Empty: all of them match today.
XFAIL: dict[str, str] = {}

# Must match whatever happens to the list above.
MUST_PASS = ["google-gemma-2-2b-it.jinja"]

RESULTS: dict[str, bool] = {}


@pytest.fixture(scope="session")
def render_bin() -> Path:
    return _env_path("REALM_RENDER_TEMPLATE")


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    if not RESULTS:
        return
    good = sorted(n for n, ok in RESULTS.items() if ok)
    bad = sorted(n for n, ok in RESULTS.items() if not ok)
    lines = [f"chat templates: {len(good)} of {len(TEMPLATES)} fully matching jinja2 "
             f"({len(tc.CASES)} cases each)"]
    lines += [f"  not matching: {n} ({XFAIL.get(n, 'unexpected')})" for n in bad]
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n" + "\n".join(lines))
    else:
        print("\n".join(lines))


def test_templates_present():
    assert len(TEMPLATES) >= 68, f"expected the 68 shared templates in {TEMPLATES_DIR}, found {len(TEMPLATES)}"
    for name in MUST_PASS:
        assert name in TEMPLATES and name not in XFAIL


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[n])) if n in XFAIL else n for n in TEMPLATES])
def test_template_matches_jinja2(render_bin, name):
    source = (TEMPLATES_DIR / name).read_text(encoding="utf-8")
    problems = tc.compare(render_bin, source)
    RESULTS[name] = not problems
    assert not problems, f"{name}: {len(problems)} of {len(tc.CASES)} cases differ:\n" + "\n".join(problems[:6])


def _gguf_chat_template(path: Path) -> str:
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.get_field("tokenizer.chat_template")
    assert field is not None, f"{path} has no tokenizer.chat_template"
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def test_smollm2_template_from_gguf(render_bin):
    source = _gguf_chat_template(_env_path("REALM_SMOLLM2"))
    problems = tc.compare(render_bin, source)
    assert not problems, "\n".join(problems)
    ok, out = tc.render_python(source, "system_user", True)
    assert ok and out.endswith("<|im_start|>assistant\n")


def test_single_job_interface(render_bin):
    # The documented one-job interface: path in, rendering on stdout / error on stderr with exit 1.
    ok, out = tc.render_realm(render_bin, (TEMPLATES_DIR / "google-gemma-2-2b-it.jinja").read_text(), "user_only", True)
    assert ok and out == tc.render_python((TEMPLATES_DIR / "google-gemma-2-2b-it.jinja").read_text(), "user_only", True)[1]
    ok, err = tc.render_realm(render_bin, (TEMPLATES_DIR / "google-gemma-2-2b-it.jinja").read_text(), "system_user", True)
    assert not ok and "System role not supported" in err


# Language features, each checked against jinja2 with the same environment (small, targeted
# snippets: failures here point at one construct rather than at a whole model template).
SNIPPETS = [
    "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1 / 3 }}",
    "{{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 3.0 }} {{ 2.5 * 2 }} {{ 10 / 4 }}",
    "{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }}",
    "{{ [1, 'a', none, true, 1.5, {'k': 'v'}] }} {{ ('x',) }} {{ {'a': [1, {'b': none}]} }}",
    "{{ \"it's\" }} {{ ['it\\'s', 'say \"hi\"', 'both \\' \"'] }} {{ ['tab\\tnl\\n'] }}",
    "{{ 'héllo wörld'|upper }} {{ 'ÀB'|lower }} {{ 'hello world'|title }} {{ 'hELLO'|capitalize }}",
    "{{ 'héllo'|length }} {{ 'héllo'[1:3] }} {{ 'héllo'[::-1] }} {{ 'abc'[-1] }} {{ [1,2,3,4][1:] }} {{ [1,2,3][::-1] }}",
    "{{ '  x y  '.strip() }}|{{ 'xxabcxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ ' a b  c '.split() }}",
    "{{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'abc'.startswith(('x', 'a')) }}",
    "{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'|replace('-', '', 1) }} {{ '{} and {}'.format(1, 'x') }} {{ 'abc'.endswith('bc') }}",
    "{{ {'b': 1, 'a': 2}|tojson }} {{ [1, 'é', none, true, 1.0]|tojson }} {{ {'a': [1, {'b': 2}], 'c': {}}|tojson(indent=2) }}",
    "{{ 'x\\u2028y\\x01\"\\\\'|tojson }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} {{ 'é'|tojson(ensure_ascii=true) }}",
    "{% for k, v in {'b': 1, 'a': 2}.items() %}{{ loop.index }}{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}",
    "{% for x in [3, 1, 2] %}{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.first }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nextitem }};{% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in range(10) if x % 3 == 0 %}{{ x }}{% endfor %}",
    "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% set ns = namespace(n=0, items=[]) %}{% for x in range(4) %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}",
    "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{% endfor %}{{ x }}",
    "{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set s %}block {{ a }}{% endset %}[{{ s }}]",
    "{% macro m(a, b='d', c=none) %}<{{ a }}|{{ b }}|{{ c }}>{% endmacro %}{{ m(1) }}{{ m(1, 2, c=3) }}{{ m(b='x', a=0) }}",
    "{% macro outer() %}[{{ caller() }}]{% endmacro %}{% call outer() %}inside{% endcall %}",
    "{% filter upper %}shout {{ 'this' }}{% endfilter %}",
    "{{ undefined_var }}|{{ undefined_var is defined }}|{{ undefined_var|default('dflt') }}|{{ none|default('x') }}|{{ ''|default('e', true) }}",
    "{{ x is none }} {{ none is none }} {{ 1 is number }} {{ true is number }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }}",
    "{{ [] is sequence }} {{ 'a' is sequence }} {{ 3 is odd }} {{ 4 is even }} {{ 6 is divisibleby 3 }} {{ true is boolean }} {{ 1 is integer }}",
    "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 1 < 2 < 3 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }}",
    "{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'c']|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ [{'n': 2}, {'n': 1}]|sort(attribute='n') }}",
    "{{ [1, 2, 2, 3, 1]|unique|list }} {{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }}",
    "{{ [1, 2, 3]|join('-') }} {{ [{'a': 'x'}, {'a': 'y'}]|map(attribute='a')|join(',') }} {{ ['a', 'b']|map('upper')|list }}",
    "{{ [{'t': 1, 'n': 'a'}, {'t': 2, 'n': 'b'}]|selectattr('t', 'equalto', 2)|list }} {{ [1, none, 2]|reject('none')|list }}",
    "{{ [{'x': true}, {'x': false}, {}]|selectattr('x')|list|length }} {{ [{'x': 1}, {}]|rejectattr('x', 'defined')|list }}",
    "{{ {'b': 1, 'a': 2}|dictsort }} {{ {'b': 1, 'a': 2}|items|list }} {{ {'a': 1}.keys()|list }} {{ {'a': 1}.values()|list }}",
    "{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b') }} {{ {'a': 1}.get('b', 'dflt') }} {{ {'a': 1}['a'] }} {{ {'items': 1}.items() }}",
    "{{ '3'|int + 1 }} {{ 'x'|int }} {{ '2.5'|float }} {{ 3|float }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 7|string ~ '!' }}",
    "{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ '  pad  '|trim }}|{{ 'x'|center(5) }}",
    "{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|sum }} {{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }} {{ 'a b c'|wordcount }}",
    "{{ 'yes' if 1 > 2 else 'no' }} {{ 'x' if false }}| {{ not true }} {{ true and 'v' }} {{ false or 'w' }} {{ none or [] }}",
    "{% if 1 %}a{% elif 2 %}b{% else %}c{% endif %}{% if 0 %}a{% elif 2 %}b{% else %}c{% endif %}{% if 0 %}a{% elif 0 %}b{% else %}c{% endif %}",
    "{{ strftime_now('%Y-%m-%d %H:%M:%S %b %B %a %A %d') }}",
    "{% set d = {1: 'one', 'k': 2} %}{{ d[1] }} {{ d }} {{ d|tojson }}",
    "  {% if true %}\n    kept\n  {% endif %}\n{%- if true -%}  trimmed  {%- endif %}\n{# comment #}\nend  {{- ' x ' -}}  \n",
    "{% raw %}{{ not rendered }}{% endraw %} {{ '{{' }}",
    "{{ '<b>'|safe + '<i>' }} {{ '<b>'|e }} {{ '<&>'|escape }}",
    "{{ [1, 2]|map('string')|join }} {{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {{ ['x', 'y']|select('equalto', 'y')|list }}",
    "{{ dict(a=1, b='x') }} {{ namespace(a=1).a }} {{ [1, [2, 3]]|length }} {{ {'a': 1}|length }} {{ 'abc'|list }}",
    "{{ messages[0]['content'] }} {{ messages[0].role }} {{ messages|length }} {{ messages[-1].content|upper }}",
    "{{ messages[0].nope }}|{{ messages[0].nope is defined }}|{{ messages[9] }}|{{ messages[9] is defined }}",
    # Errors: Python raises, so must we.
    "{{ undefined_var.attr }}",
    "{{ undefined_var + 1 }}",
    "{{ raise_exception('custom failure') }}",
    "{{ 1 / 0 }}",
    "{{ [1, 2].append(3) }}",
    "{{ {'a': 1}.update({'b': 2}) }}",
    "{{ 'a' + 1 }}",
    "{{ [1]|map(attribute='x')|tojson }}",
    "{{ none|length }}",
    "{% for x in 5 %}{% endfor %}",
    "{{ 1 < 'a' }}",
    "{{ x|nosuchfilter }}",
    "{% if false %}{{ x|nosuchfilter }}{% endif %}ok",
    "{% set x = 1 %}{% set x.y = 2 %}",
    "{{ namespace(a=1)|tojson }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_language_snippet(render_bin, index):
    source = SNIPPETS[index]
    py_ok, py_out = tc.render_python(source, "system_user", True)
    rl_ok, rl_out = tc.render_realm_batch(render_bin, source, [("system_user", True)])[0]
    assert py_ok == rl_ok, f"{source!r}: python {'ok' if py_ok else 'raises'} ({py_out!r}), realm {rl_out!r}"
    if py_ok:
        assert rl_out == py_out, f"{source!r}"
