// render_template: reads a JSON job on stdin and prints the chat template's rendering.
//   {"template": "path.jinja" | "template_source": "...", "messages": [...],
//    "add_generation_prompt": bool, "bos_token": "...", "eos_token": "...",
//    "extra": {...}            (more template variables, e.g. tools),
//    "now": [Y, M, D, h, m, s] (what strftime_now formats)}
// Exit 0 with the rendering on stdout; exit 1 with the error on stderr.
// Batch mode (used by tests/py/test_templates.py): a JSON array of jobs on stdin gives a JSON
// array on stdout, one {"ok": true, "output": "..."} or {"ok": false, "error": "..."} per job.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "text/chat_template.hpp"

using nlohmann::ordered_json;

namespace {

struct Outcome {
    int status;  // 0 rendered, 1 template error, 2 bad job
    std::string text;
};

Outcome run_job(const ordered_json& job) {
    if (!job.is_object()) return {2, "render_template: the job must be a JSON object"};
    std::string source;
    if (job.contains("template_source") && job["template_source"].is_string()) {
        source = job["template_source"].get<std::string>();
    } else if (job.contains("template") && job["template"].is_string()) {
        std::ifstream f(job["template"].get<std::string>(), std::ios::binary);
        if (!f) return {2, "render_template: cannot open " + job["template"].get<std::string>()};
        std::stringstream ss;
        ss << f.rdbuf();
        source = ss.str();
    } else {
        return {2, "render_template: the job needs \"template\" (a path) or \"template_source\""};
    }
    auto tmpl = realm::text::ChatTemplate::parse(source);
    if (!tmpl) return {1, tmpl.error().message};
    ordered_json extra = job.value("extra", ordered_json::object());
    if (!extra.is_object()) extra = ordered_json::object();
    for (const char* key : {"bos_token", "eos_token"})
        if (job.contains(key)) extra[key] = job[key];
    realm::text::jinja::RenderOptions opt;
    if (job.contains("now") && job["now"].is_array() && job["now"].size() == 6) {
        std::tm tm{};
        const auto& n = job["now"];
        tm.tm_year = n[0].get<int>() - 1900;
        tm.tm_mon = n[1].get<int>() - 1;
        tm.tm_mday = n[2].get<int>();
        tm.tm_hour = n[3].get<int>();
        tm.tm_min = n[4].get<int>();
        tm.tm_sec = n[5].get<int>();
        std::time_t t = timegm(&tm);  // normalises tm_wday / tm_yday
        gmtime_r(&t, &tm);
        opt.now = tm;
    }
    auto out = tmpl->render_ordered(job.value("messages", ordered_json::array()), job.value("add_generation_prompt", false),
                                    extra, opt);
    if (!out) return {1, out.error().message};
    return {0, std::move(out).value()};
}

}  // namespace

int main() {
    std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    ordered_json job;
    try {
        job = ordered_json::parse(input);
    } catch (const std::exception& e) {
        std::cerr << "render_template: bad job JSON: " << e.what() << "\n";
        return 2;
    }
    try {
        if (job.is_array()) {
            ordered_json results = ordered_json::array();
            for (const auto& j : job) {
                Outcome o = run_job(j);
                if (o.status == 2) {
                    std::cerr << o.text << "\n";
                    return 2;
                }
                if (o.status == 0) results.push_back({{"ok", true}, {"output", o.text}});
                else results.push_back({{"ok", false}, {"error", o.text}});
            }
            // Rendered text may hold invalid UTF-8 (byte slicing by a template): keep it visible.
            std::cout << results.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
            return 0;
        }
        Outcome o = run_job(job);
        if (o.status != 0) {
            std::cerr << o.text << "\n";
            return o.status;
        }
        std::fwrite(o.text.data(), 1, o.text.size(), stdout);
        return 0;
    } catch (const std::exception& e) {  // e.g. a job field of the wrong JSON type
        std::cerr << "render_template: bad job: " << e.what() << "\n";
        return 2;
    }
}
