// Drives `realm serve` with the official npm `openai` client: node openai_client.mjs BASE_URL API_KEY OTHER_KEY
// Prints one JSON object with what it saw; tests/py/test_server_node.py checks it.
import OpenAI from "openai";

const [baseURL, apiKey, otherKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 600_000 });
const messages = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "What is the capital of France?" },
];
const out = {};

const chat = await client.chat.completions.create({ model: "smollm2", messages, temperature: 0, max_tokens: 24 });
out.chat = chat.choices[0].message.content;
out.chat_finish = chat.choices[0].finish_reason;
out.chat_usage = chat.usage;

const stream = await client.chat.completions.create({
  model: "smollm2", messages, temperature: 0, max_tokens: 24, stream: true, stream_options: { include_usage: true },
});
out.stream = "";
out.stream_roles = [];
for await (const chunk of stream) {
  if (chunk.usage) out.stream_usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.role) out.stream_roles.push(c.delta.role);
    out.stream += c.delta.content ?? "";
    if (c.finish_reason) out.stream_finish = c.finish_reason;
  }
}

const completion = await client.completions.create({ model: "smollm2", prompt: "The capital of France is", max_tokens: 6, temperature: 0 });
out.completion = completion.choices[0].text;
const cstream = await client.completions.create({ model: "smollm2", prompt: "The capital of France is", max_tokens: 6, temperature: 0, stream: true });
out.completion_stream = "";
for await (const chunk of cstream) for (const c of chunk.choices) out.completion_stream += c.text;

out.models = (await client.models.list()).data.map((m) => m.id);

async function status(fn) {
  try {
    await fn();
    return 200;
  } catch (e) {
    return e instanceof OpenAI.APIError ? e.status : String(e);
  }
}
out.errors = {
  wrong_key: await status(() => new OpenAI({ baseURL, apiKey: "rlm_bogus", maxRetries: 0 }).models.list()),
  unknown_model: await status(() => client.chat.completions.create({ model: "nope", messages })),
  forbidden_model: await status(() => new OpenAI({ baseURL, apiKey: otherKey, maxRetries: 0 }).chat.completions.create({ model: "smollm2", messages, max_tokens: 2 })),
  bad_temperature: await status(() => client.chat.completions.create({ model: "smollm2", messages, temperature: -3 })),
};
console.log(JSON.stringify(out));
