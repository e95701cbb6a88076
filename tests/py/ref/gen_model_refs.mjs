// Generates the llama.cpp reference data for the model-layer tests (tests/data/model_refs/*.json).
//
//   node gen_model_refs.mjs OUT_DIR NAME=MODEL.gguf [NAME=MODEL.gguf ...]
//
// For each model and each of its prompts (see PROMPTS) it records, with llama.cpp as shipped by
// node-llama-cpp (prebuilt CPU libraries, no GPU):
//   - the prompt as token ids (node-llama-cpp's tokenizer, BOS prepended when the GGUF asks for it),
//   - the first N_GEN tokens of greedy generation (temperature 0, no penalties; stops early only
//     at an end-of-generation token, which is then the last entry),
//   - for every generated token, the two most likely tokens and their log-probabilities at that
//     step (gen_top2), so that tests can tell near-ties from real disagreements,
//   - the top TOP_K next-token log-probabilities at the last prompt position. node-llama-cpp only
//     exposes probabilities (softmax of the raw logits over the whole vocabulary when sampling
//     greedily), so log(p) = logit - logsumexp(logits): the logits up to one constant shift.
// llama.cpp runs with one thread (results do not depend on the thread count; it keeps the
// generator fast on a loaded machine) and flash attention off: its non-flash path (F16 K·Q dot
// products, softmax weights rounded to F16 for the V product) is what src/model reproduces.
// Note: the Gemma 3 270M file looks like the base model (no chat template, no finetune tag), so
// its chat-formatted prompt yields odd text;
// it is still a valid reference (the tests check agreement, not quality).
// The node-llama-cpp install is found through $REALM_NODE_REF (scripts/lib.sh ensure_node_ref) or
// /tmp/nodetest. $REALM_GGML_CPU_VARIANT names the ggml CPU library that install loads (set by
// scripts/gen_model_refs, which pins the baseline "x64" variant by default: see there); it is
// recorded in the output's "reference" field.
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const N_GEN = 48;
const TOP_K = 20;

// Prompts per model name. `chat: true` means the text contains special tokens to be parsed.
const PROMPTS = {
    stories260K: [
        {name: "once_upon", text: "Once upon a time"},
        {name: "lily", text: "Lily wanted to play with her ball"},
    ],
    smollm2: [
        {name: "chat_capital", chat: true,
         text: "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"},
        {name: "plain", text: "The quick brown fox jumps over the lazy dog. Then it"},
        {name: "chat_poem", chat: true,
         text: "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n"},
        {name: "chat_code", chat: true,
         text: "<|im_start|>user\nWrite a Python function that reverses a string.<|im_end|>\n<|im_start|>assistant\n"},
    ],
    gemma3: [
        {name: "chat_sky", chat: true,
         text: "<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n<start_of_turn>model\n"},
        {name: "plain", text: "The capital of France is"},
        {name: "plain_story", text: "Once upon a time, in a small village by the sea,"},
    ],
};

const [outDir, ...specs] = process.argv.slice(2);
if (!outDir || specs.length === 0) {
    console.error("usage: node gen_model_refs.mjs OUT_DIR NAME=MODEL.gguf ...");
    process.exit(2);
}
const refDir = process.env.REALM_NODE_REF || "/tmp/nodetest";
const {getLlama} = await import(pathToFileURL(path.join(refDir, "node_modules/node-llama-cpp/dist/index.js")).href);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const nlcVersion = JSON.parse(fs.readFileSync(path.join(refDir, "node_modules/node-llama-cpp/package.json"), "utf8")).version;

for (const spec of specs) {
    const eq = spec.indexOf("=");
    const name = spec.slice(0, eq);
    const modelPath = spec.slice(eq + 1);
    const prompts = PROMPTS[name];
    if (!prompts) throw new Error(`no prompts for model ${name}`);
    const model = await llama.loadModel({modelPath});
    const meta = model.fileInfo.metadata;
    const addBos = meta?.tokenizer?.ggml?.add_bos_token ?? true;
    const bos = model.tokens.bos;
    const out = {
        model: path.basename(modelPath),
        generator: "tests/py/ref/gen_model_refs.mjs",
        reference: `llama.cpp ${llama.llamaCppRelease?.release ?? ""} via node-llama-cpp ${nlcVersion} (CPU variant ${process.env.REALM_GGML_CPU_VARIANT || "best"}, F16 KV cache, flash attention off)`,
        n_gen: N_GEN,
        top_k: TOP_K,
        prompts: [],
    };
    for (const p of prompts) {
        const context = await model.createContext({contextSize: 256, batchSize: 256, flashAttention: false, threads: 1});
        const sequence = context.getSequence();
        let tokens = Array.from(model.tokenize(p.text, p.chat === true));
        if (addBos && bos != null && tokens[0] !== bos) tokens = [bos, ...tokens];
        const generated = [];
        const genTop2 = [];
        let top = null;
        for await (const r of sequence.evaluateWithMetadata(tokens, {probabilities: true},
                                                            {temperature: 0, yieldEogToken: true})) {
            if (top === null) {
                top = [];
                for (const [id, prob] of r.probabilities) {
                    top.push([id, Math.log(prob)]);
                    if (top.length >= TOP_K) break;
                }
            }
            const two = [];
            for (const [id, prob] of r.probabilities) {
                two.push([id, Math.log(prob)]);
                if (two.length >= 2) break;
            }
            genTop2.push(two);
            generated.push(r.token);
            if (generated.length >= N_GEN || model.isEogToken(r.token)) break;
        }
        out.prompts.push({
            name: p.name,
            text: p.text,
            tokens,
            generated,
            generated_text: model.detokenize(generated),
            top_logprobs: top,
            gen_top2: genTop2,
        });
        console.error(`${name}/${p.name}: ${tokens.length} prompt tokens, ${generated.length} generated: ${JSON.stringify(model.detokenize(generated))}`);
        await context.dispose();
    }
    fs.mkdirSync(outDir, {recursive: true});
    // One line per number array keeps the files short and diffable.
    const text = JSON.stringify(out, null, 1).replace(/\[[-0-9.e,\s\[\]]*\]/g, (m) => m.replace(/\s+/g, ""));
    fs.writeFileSync(path.join(outDir, `${name}.json`), text + "\n");
    await model.dispose();
}
