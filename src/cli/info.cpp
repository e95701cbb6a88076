// `realm info`: what a GGUF model file holds, for people (default) or tools (--json).
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.hpp"
#include "gguf/reader.hpp"

namespace realm::cli {
namespace {

using nlohmann::json;

json to_json(const gguf::Value& v) {
    return v.visit([](const auto& x) -> json {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, gguf::Array>) {
            return json(std::to_string(x.size()) + " items");  // arrays are summarized, not dumped
        } else {
            return json(x);
        }
    });
}

const char* const kSpecialTokens[] = {"bos", "eos", "eot", "eom", "unknown", "padding", "sep", "cls", "mask"};

json describe(const gguf::File& f, const std::string& path) {
    const auto& md = f.metadata();
    json j;
    j["file"] = path;
    uint64_t size = 0;
    for (const auto& s : f.shards()) size += s.size;
    j["file_size"] = size;
    j["shards"] = f.shards().size();
    j["gguf_version"] = f.version();
    const std::string arch(md.get_string("general.architecture", "").value());
    j["architecture"] = arch;
    if (auto name = md.get_string("general.name"); name.ok()) j["name"] = std::string(*name);
    if (auto ft = md.get_u32("general.file_type"); ft.ok()) j["file_type"] = *ft;

    json hp = json::object();
    const std::string prefix = arch + ".";
    for (const auto& kv : md) {
        if (!arch.empty() && kv.key.starts_with(prefix)) hp[kv.key.substr(prefix.size())] = to_json(kv.value);
    }
    j["hyperparameters"] = hp;

    json tok = json::object();
    tok["model"] = std::string(md.get_string("tokenizer.ggml.model", "none").value());
    if (auto pre = md.get_string("tokenizer.ggml.pre"); pre.ok()) tok["pre"] = std::string(*pre);
    const std::vector<std::string>* tokens = nullptr;
    if (auto arr = md.get_array("tokenizer.ggml.tokens"); arr.ok()) tokens = (*arr)->get_if<std::string>();
    tok["vocab_size"] = tokens ? tokens->size() : 0;
    json special = json::object();
    for (const char* kind : kSpecialTokens) {
        auto id = md.get_u32(std::string("tokenizer.ggml.") + kind + "_token_id");
        if (!id.ok()) continue;
        json t{{"id", *id}};
        t["text"] = tokens && *id < tokens->size() ? json((*tokens)[*id]) : json(nullptr);
        special[kind] = t;
    }
    tok["special"] = special;
    for (const char* flag : {"add_bos_token", "add_eos_token", "add_space_prefix"}) {
        if (auto b = md.get_bool(std::string("tokenizer.ggml.") + flag); b.ok()) tok[flag] = *b;
    }
    j["tokenizer"] = tok;
    j["chat_template"] = md.contains("tokenizer.chat_template");

    std::map<std::string, uint64_t> by_type;
    uint64_t params = 0, tensor_bytes = 0;
    for (const auto& t : f.tensors()) {
        by_type[std::string(type_name(t.type))]++;
        params += t.n_elements;
        tensor_bytes += t.n_bytes;
    }
    j["tensor_count"] = f.tensors().size();
    j["tensor_types"] = by_type;
    j["parameter_count"] = params;
    j["tensor_bytes"] = tensor_bytes;
    return j;
}

void print_human(const json& j) {
    auto line = [](const char* k, const std::string& v) { std::printf("%-22s %s\n", k, v.c_str()); };
    line("file", j["file"].get<std::string>());
    line("file size", std::to_string(j["file_size"].get<uint64_t>()) + " bytes");
    line("gguf version", std::to_string(j["gguf_version"].get<uint32_t>()));
    line("architecture", j["architecture"].get<std::string>());
    if (j.contains("name")) line("name", j["name"].get<std::string>());
    std::printf("hyper-parameters\n");
    for (const auto& [k, v] : j["hyperparameters"].items()) std::printf("  %-32s %s\n", k.c_str(), v.dump().c_str());
    const auto& tok = j["tokenizer"];
    line("tokenizer", tok["model"].get<std::string>() + (tok.contains("pre") ? " (pre: " + tok["pre"].get<std::string>() + ")" : "") +
                          ", " + std::to_string(tok["vocab_size"].get<uint64_t>()) + " tokens");
    for (const auto& [k, v] : tok["special"].items()) {
        std::printf("  %-10s token      %s %s\n", k.c_str(), v["id"].dump().c_str(), v["text"].dump().c_str());
    }
    line("chat template", j["chat_template"].get<bool>() ? "present" : "absent");
    line("tensors", std::to_string(j["tensor_count"].get<uint64_t>()));
    for (const auto& [k, v] : j["tensor_types"].items()) std::printf("  %-10s %s\n", k.c_str(), v.dump().c_str());
    const double p = static_cast<double>(j["parameter_count"].get<uint64_t>());
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f (%.1f M)", p, p / 1e6);
    line("parameters", buf);
}

}  // namespace

int info(const std::string& path, bool as_json) {
    auto f = gguf::File::open(path);
    if (!f) {
        std::fprintf(stderr, "realm info: %s\n", f.error().message.c_str());
        return 1;
    }
    const json j = describe(*f, path);
    if (as_json) {
        std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
    } else {
        print_human(j);
    }
    return 0;
}

}  // namespace realm::cli
