// The `realm` command-line tool.
#include <CLI/CLI.hpp>
#include <string>

#include "cli/commands.hpp"

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

    CLI11_PARSE(app, argc, argv);

    if (info->parsed()) return realm::cli::info(model, json);
    if (quant->parsed()) return realm::cli::quantize(in, out, type);
    if (synth->parsed()) return realm::cli::synth(so);
    return 1;
}
