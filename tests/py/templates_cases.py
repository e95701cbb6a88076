"""Conversations and the Python reference renderer for the chat-template suite.

The reference is jinja2 configured exactly as HF transformers' apply_chat_template does
(transformers/utils/chat_template_utils.py, _compile_jinja_template):
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[AssistantTracker, jinja2.ext.loopcontrols])
  filters["tojson"] = json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
                                 sort_keys=sort_keys)   (HF overrides jinja2's HTML-escaping tojson)
  globals["raise_exception"] raises TemplateError(message)
  globals["strftime_now"](fmt) = datetime.now().strftime(fmt)   (here: a fixed date, see NOW)
AssistantTracker only adds the {% generation %} ... {% endgeneration %} tag, which renders its body.
Can be run directly: `python templates_cases.py RENDER_TEMPLATE_BIN [TEMPLATE...]` prints a report.
"""
import copy
import functools
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

NOW = datetime(2026, 1, 15, 9, 30, 5)
BOS = "<|bos|>"
EOS = "<|eos|>"

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}]

CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello! Who are you?"},
    ],
    "user_only": [
        {"role": "user", "content": "What is 2 + 2?"},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "unicode_newlines": [
        {"role": "system", "content": "Réponds en français.\nSois bref."},
        {"role": "user", "content": "Écris un haïku 🌸"},
        {"role": "assistant", "content": "Cerisier en fleur —\n  pétales sur l'eau calme\n\t日本語 «ok» \"quoted\" \\ back"},
        {"role": "user", "content": "Merci !  "},
    ],
    "tools": [
        {"role": "user", "content": "What's the weather in Paris?"},
    ],
    "tool_calls": [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "id": "call_1",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 21.5}"},
        {"role": "assistant", "content": "It is 21.5 °C in Paris."},
        {"role": "user", "content": "Thanks!"},
    ],
    "thinking": [
        {"role": "user", "content": "Is 7 prime?"},
        {"role": "assistant", "content": "<think>\n7 has no divisors but 1 and 7.\n</think>\n\nYes, 7 is prime."},
        {"role": "user", "content": "And 9?"},
    ],
    "content_parts": [
        {"role": "system", "content": [{"type": "text", "text": "Be concise."}]},
        {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "text", "text": "a cat."}]},
    ],
}
EXTRA = {"tools": {"tools": TOOLS}, "tool_calls": {"tools": TOOLS}}

CASES = [(conv, agp) for conv in CONVERSATIONS for agp in (True, False)]


class AssistantTracker(jinja2.ext.Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return NOW.strftime(fmt)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_env()


def context(conv, agp):
    ctx = {"messages": CONVERSATIONS[conv], "add_generation_prompt": agp, "bos_token": BOS, "eos_token": EOS}
    ctx.update(EXTRA.get(conv, {}))
    return ctx


@functools.lru_cache(maxsize=None)
def compiled(source):
    return ENV.from_string(source)


def render_python(source, conv, agp):
    """(True, text) or (False, error message)."""
    try:
        return True, compiled(source).render(**copy.deepcopy(context(conv, agp)))
    except Exception as e:  # noqa: BLE001 - any failure of the reference counts as "raises"
        return False, f"{type(e).__name__}: {e}"


def job(source, conv, agp):
    ctx = context(conv, agp)
    return {"template_source": source, "messages": ctx["messages"], "add_generation_prompt": agp,
            "bos_token": BOS, "eos_token": EOS, "extra": {k: v for k, v in ctx.items() if k in EXTRA.get(conv, {})},
            "now": [NOW.year, NOW.month, NOW.day, NOW.hour, NOW.minute, NOW.second]}


def render_realm(binary, source, conv, agp, timeout=60):
    """One job through render_template's single-job interface: (True, text) or (False, error)."""
    proc = subprocess.run([str(binary)], input=json.dumps(job(source, conv, agp), ensure_ascii=False).encode(),
                          capture_output=True, timeout=timeout)
    if proc.returncode == 0:
        return True, proc.stdout.decode("utf-8", errors="surrogateescape")
    if proc.returncode == 1:
        return False, proc.stderr.decode("utf-8", errors="replace").strip()
    raise RuntimeError(f"render_template failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")


def render_realm_batch(binary, source, cases, timeout=300):
    """All cases in one render_template run (batch mode): [(ok, text-or-error), ...]."""
    jobs = [job(source, conv, agp) for conv, agp in cases]
    proc = subprocess.run([str(binary)], input=json.dumps(jobs, ensure_ascii=False).encode(), capture_output=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"render_template failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return [(r["ok"], r["output"] if r["ok"] else r["error"]) for r in json.loads(proc.stdout)]


def compare(binary, source):
    """List of mismatch descriptions (empty: every case agrees)."""
    problems = []
    realm = render_realm_batch(binary, source, CASES)
    for (conv, agp), (rl_ok, rl_out) in zip(CASES, realm):
        py_ok, py_out = render_python(source, conv, agp)
        label = f"{conv}/agp={agp}"
        if py_ok != rl_ok:
            problems.append(f"{label}: python {'renders' if py_ok else 'raises (' + py_out + ')'}, "
                            f"realm {'renders' if rl_ok else 'raises (' + rl_out + ')'}")
        elif py_ok and py_out != rl_out:
            k = next((i for i, (a, b) in enumerate(zip(py_out, rl_out)) if a != b), min(len(py_out), len(rl_out)))
            problems.append(f"{label}: output differs at char {k}: python {py_out[max(0, k - 40):k + 60]!r} "
                            f"realm {rl_out[max(0, k - 40):k + 60]!r}")
    return problems


if __name__ == "__main__":
    binary = sys.argv[1]
    shared = Path(__file__).resolve().parents[3] / "shared" / "templates"
    paths = [Path(p) for p in sys.argv[2:]] or sorted(shared.glob("*.jinja"))
    good = 0
    for p in paths:
        probs = compare(binary, p.read_text(encoding="utf-8"))
        good += not probs
        print(("OK   " if not probs else "FAIL ") + p.name)
        for pr in probs[:3]:
            print("     " + pr)
    print(f"{good} of {len(paths)} templates fully matching")
