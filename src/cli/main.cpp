// The `realm` command-line tool.
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/admin.hpp"
#include "cli/bench.hpp"
#include "cli/generate.hpp"
#include "cli/guest_cmd.hpp"
#include "cli/serve.hpp"

namespace {

// Where the weight matrices are read from (model::Weights); `--no-repack` as llama.cpp's tools name it.
void add_weights_flags(CLI::App* app, realm::model::Weights& w) {
    using realm::model::Weights;
    static constexpr Weights kAll[] = {Weights::Rows16, Weights::Copy, Weights::File};
    std::vector<std::string> names;
    for (Weights c : kAll) names.emplace_back(realm::model::weights_name(c));
    app->add_option_function<std::string>(
           "--weights",
           [&w](const std::string& name) {
               for (Weights c : kAll) {
                   if (name == realm::model::weights_name(c)) w = c;
               }
           },
           "Where weight matrices are read from: rows16 (interleaved copies where the format has that layout, the "
           "rest from the file's mapping; the default), copy (a private copy of each on 2 MiB pages), file (the "
           "mapping)")
        ->check(CLI::IsMember(names));
    app->add_flag_callback("--no-repack", [&w] { w = Weights::File; }, "Same as --weights file");
}

// Flags shared by `run` and `chat`, named as llama.cpp's tools name them.
void add_generation_flags(CLI::App* app, realm::cli::GenerateOptions& o, std::optional<uint64_t>& seed,
                          std::optional<int32_t>& n_predict) {
    auto& s = o.sampling;
    app->add_option("-m,--model", o.model, "GGUF model file")->required();
    app->add_option("--system", o.system, "System message for the chat template");
    app->add_option("--chat-template", o.chat_template, "Jinja chat template file (overrides the model's)");
    app->add_option("-c,--ctx-size", o.n_ctx, "Context size in tokens (default: min(training context, 4096))");
    app->add_option("-t,--threads", o.n_threads, "Threads (default: all cores)");
    app->add_option("-n,--max-tokens", n_predict, "Maximum tokens to generate (default: until end or context full)");
    app->add_option("--temp", s.temperature, "Temperature; 0 = greedy")->capture_default_str();
    app->add_option("--top-k", s.top_k, "Top-k; 0 = off")->capture_default_str();
    app->add_option("--top-p", s.top_p, "Top-p; 1 = off")->capture_default_str();
    app->add_option("--min-p", s.min_p, "Min-p; 0 = off")->capture_default_str();
    app->add_option("--typical-p", s.typical_p, "Typical-p; 1 = off")->capture_default_str();
    app->add_option("--repeat-penalty", s.repeat_penalty)->capture_default_str();
    app->add_option("--repeat-last-n", s.penalty_last_n, "Penalty window; -1 = all")->capture_default_str();
    app->add_option("--frequency-penalty", s.frequency_penalty)->capture_default_str();
    app->add_option("--presence-penalty", s.presence_penalty)->capture_default_str();
    app->add_option("--seed", seed, "RNG seed (default: random)");
    app->add_option("--stop", s.stop, "Stop string (repeatable)");
    app->add_flag("--ignore-eos", s.ignore_eos, "Keep generating past end-of-generation tokens");
    app->add_flag("--verbose-prompt", o.verbose_prompt, "Print the prompt as the model sees it");
    add_weights_flags(app, o.weights);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Realm: multi-tenant LLM inference runtime"};
    app.require_subcommand(1);

    std::string model;
    bool json = false;
    auto* info = app.add_subcommand("info", "Describe a GGUF model file");
    info->add_option("MODEL", model, "GGUF file (any shard of a split model)")->required();
    info->add_flag("--json", json, "Machine-readable output");

    std::string in, out, type;
    auto* quant = app.add_subcommand("quantize", "Rewrite a GGUF with its weight matrices in another type");
    quant->add_option("IN", in, "Source GGUF")->required();
    quant->add_option("OUT", out, "Destination GGUF")->required();
    quant->add_option("TYPE", type,
                      "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, q2_K, q3_K, q4_K, q5_K, q6_K, q8_K, "
                      "iq4_nl, iq4_xs, or the llama.cpp-style mix q4_K_M")
        ->required();

    realm::cli::SynthOptions so;
    std::string preset;
    auto* synth = app.add_subcommand("synth", "Write a random-weight llama-architecture model (for benchmarks)");
    synth->add_option("OUT", so.out, "Destination GGUF")->required();
    synth->add_option("--vocab-from", so.vocab_from, "GGUF whose vocabulary (tokenizer.* metadata) to use")->required();
    synth->add_option("--preset", preset, "tinyllama (TinyLlama-1.1B shape) or 768x12; explicit flags override");
    synth->add_option("--type", so.type, "Weight type (as for quantize)");
    synth->add_option("--n-embd", so.n_embd);
    synth->add_option("--n-ff", so.n_ff);
    synth->add_option("--n-layer", so.n_layer);
    synth->add_option("--n-head", so.n_head);
    synth->add_option("--n-head-kv", so.n_head_kv);
    synth->add_option("--n-ctx", so.n_ctx);
    synth->add_option("--seed", so.seed);
    synth->add_flag("--tied-embeddings", so.tied_embeddings, "Share token_embd as the output matrix");

    // Presets fill the shape first; flags given explicitly then win.
    app.parse_complete_callback([&] {
        if (!synth->parsed() || preset.empty()) return;
        realm::cli::SynthOptions p = so;
        if (preset == "tinyllama") {
            p.n_embd = 2048, p.n_ff = 5632, p.n_layer = 22, p.n_head = 32, p.n_head_kv = 4, p.n_ctx = 2048;
        } else if (preset == "768x12") {
            p.n_embd = 768, p.n_ff = 2048, p.n_layer = 12, p.n_head = 12, p.n_head_kv = 12, p.n_ctx = 2048;
        } else {
            throw CLI::ValidationError("--preset", "unknown preset '" + preset + "' (tinyllama, 768x12)");
        }
        auto keep = [&](const char* flag, uint32_t& dst, uint32_t src) {
            if (synth->count(flag) == 0) dst = src;
        };
        keep("--n-embd", so.n_embd, p.n_embd);
        keep("--n-ff", so.n_ff, p.n_ff);
        keep("--n-layer", so.n_layer, p.n_layer);
        keep("--n-head", so.n_head, p.n_head);
        keep("--n-head-kv", so.n_head_kv, p.n_head_kv);
        keep("--n-ctx", so.n_ctx, p.n_ctx);
    });

    realm::cli::GenerateOptions run_opts, chat_opts;
    std::optional<uint64_t> run_seed, chat_seed;
    std::optional<int32_t> run_n, chat_n;
    auto* run = app.add_subcommand("run", "Generate text from a prompt, streaming it to stdout");
    add_generation_flags(run, run_opts, run_seed, run_n);
    run->add_option("-p,--prompt", run_opts.prompt, "The prompt")->required();
    run->add_flag("--chat", run_opts.chat, "Apply the chat template with the prompt as a user turn");
    auto* chat = app.add_subcommand("chat", "Interactive chat with a model");
    add_generation_flags(chat, chat_opts, chat_seed, chat_n);
    chat_opts.sampling.temperature = 0.8F;

    realm::cli::TokenizeOptions tok_opts;
    bool no_parse_special = false;
    auto* tok = app.add_subcommand("tokenize", "Print the token ids of a text");
    tok->add_option("-m,--model", tok_opts.model, "GGUF model file")->required();
    tok->add_option("TEXT", tok_opts.text, "Text to tokenize")->required();
    tok->add_flag("--pieces", tok_opts.pieces, "Print each token's id and text");
    tok->add_flag("--no-bos", tok_opts.no_bos, "Do not add BOS/EOS tokens");
    tok->add_flag("--no-parse-special", no_parse_special, "Treat special-token text as plain text");

    realm::cli::GuestRunOptions guest_opts;
    auto* guest = app.add_subcommand("guest", "WebAssembly guests");
    guest->require_subcommand(1);
    auto* guest_run = guest->add_subcommand("run", "Run one request through a guest on a model; emitted chunks "
                                                   "stream to stdout, then the response JSON on its own line");
    guest_run->add_option("GUEST", guest_opts.guest, "Guest module (.wasm or .wat)")->required();
    guest_run->add_option("-m,--model", guest_opts.model, "GGUF model file")->required();
    guest_run->add_option("--request", guest_opts.request, "Request JSON, or @FILE")->required();
    guest_run->add_option("--name", guest_opts.name, "Model name the guest sees (default: the request's \"model\", else the file stem)");
    guest_run->add_option("--chat-template", guest_opts.chat_template, "Jinja chat template file (overrides the model's)");
    guest_run->add_option("-c,--ctx-size", guest_opts.n_ctx, "Context size in tokens (default: min(training context, 4096))");
    guest_run->add_option("-t,--threads", guest_opts.n_threads, "Threads (default: all cores)");
    guest_run->add_option("--timeout-ms", guest_opts.timeout_ms, "Time budget of the request")->capture_default_str();
    add_weights_flags(guest_run, guest_opts.weights);

    // tenant / key / usage, and `guest register`: admin commands over the server's database.
    realm::cli::AdminCommands admin(app, *guest);

    realm::cli::BenchOptions bench_opts;
    auto* bench = app.add_subcommand("bench", "Prompt-processing (pp) and generation (tg) speed, as llama-bench measures it");
    bench->add_option("-m,--model", bench_opts.models, "GGUF model file (repeatable)")->required();
    bench->add_option("-p,--n-prompt", bench_opts.n_prompt, "Prompt sizes for pp tests (repeatable; 0 skips)")->capture_default_str();
    bench->add_option("-n,--n-gen", bench_opts.n_gen, "Generation lengths for tg tests (repeatable; 0 skips)")->capture_default_str();
    bench->add_option("-r,--repetitions", bench_opts.repetitions, "Repetitions of each test")->capture_default_str();
    bench->add_option("-t,--threads", bench_opts.n_threads, "Threads (default: all cores)");
    bench->add_option("-o,--output", bench_opts.output, "md or json")->check(CLI::IsMember({"md", "json"}))->capture_default_str();
    add_weights_flags(bench, bench_opts.weights);

    realm::cli::ServeOptions serve_opts;
    auto* serve = app.add_subcommand("serve", "The OpenAI-compatible HTTP server (tenants and keys in <data-dir>/realm.db)");
    serve->add_option("--host", serve_opts.host, "Address to listen on")->capture_default_str();
    serve->add_option("--port", serve_opts.port, "Port (0: any free port)")->capture_default_str();
    serve->add_option("--data-dir", serve_opts.data_dir, "Data directory (default: $REALM_DATA_DIR, else ~/.local/share/realm)");
    serve->add_option("--model", serve_opts.models, "NAME=PATH of a GGUF model (repeatable; default: smollm2=SmolLM2-135M-Instruct)");
    serve->add_option("-t,--threads", serve_opts.n_threads, "Engine threads per model (default: all cores)");
    add_weights_flags(serve, serve_opts.weights);
    serve->add_option("-c,--ctx", serve_opts.n_ctx, "Context per sequence in tokens")->capture_default_str();
    serve->add_option("--admin-key", serve_opts.admin_key, "Admin API key (default: $REALM_ADMIN_KEY)");
    serve->add_option("--max-body-bytes", serve_opts.max_body_bytes, "Largest request body (413 beyond)")->capture_default_str();
    serve->add_option("--max-concurrent", serve_opts.max_concurrent, "Requests running at once")->capture_default_str()->check(CLI::Range(1, 1024));
    serve->add_option("--max-queue", serve_opts.max_queue, "Requests waiting for a slot (503 beyond)")->capture_default_str();
    serve->add_option("--shutdown-grace", serve_opts.shutdown_grace_s, "Seconds in-flight requests get on SIGINT/SIGTERM")->capture_default_str();

    CLI11_PARSE(app, argc, argv);

    if (serve->parsed()) return realm::cli::serve(serve_opts);

    if (bench->parsed()) return realm::cli::bench(bench_opts);

    if (guest_run->parsed()) return realm::cli::guest_run(guest_opts);
    if (admin.parsed()) return admin.run();

    if (run->parsed()) {
        run_opts.sampling.seed = run_seed;
        run_opts.sampling.max_tokens = run_n;
        return realm::cli::run(std::move(run_opts));
    }
    if (chat->parsed()) {
        chat_opts.sampling.seed = chat_seed;
        chat_opts.sampling.max_tokens = chat_n;
        return realm::cli::chat(std::move(chat_opts));
    }
    if (tok->parsed()) {
        tok_opts.parse_special = !no_parse_special;
        return realm::cli::tokenize(tok_opts);
    }

    if (info->parsed()) return realm::cli::info(model, json);
    if (quant->parsed()) return realm::cli::quantize(in, out, type);
    if (synth->parsed()) return realm::cli::synth(so);
    return 1;
}
