// Loads each GGUF given on the command line in llama.cpp (node-llama-cpp's prebuilt CPU build),
// evaluates a short prompt greedily and prints one JSON line per model.
// Run with NODE_PATH pointing at the node_modules of the reference install.
import {getLlama} from "node-llama-cpp";

const [prompt, nTokens, ...paths] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
for (const modelPath of paths) {
    try {
        const model = await llama.loadModel({modelPath});
        const context = await model.createContext({contextSize: 128});
        const sequence = context.getSequence();
        const tokens = model.tokenize(prompt);
        const generated = [];
        for await (const t of sequence.evaluate(tokens, {temperature: 0})) {
            generated.push(t);
            if (generated.length >= Number(nTokens)) break;
        }
        console.log(JSON.stringify({path: modelPath, ok: true, prompt_tokens: tokens, generated}));
        await context.dispose();
        await model.dispose();
    } catch (e) {
        console.log(JSON.stringify({path: modelPath, ok: false, error: String(e)}));
    }
}
