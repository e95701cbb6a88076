#include "kernels/isa.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace realm::kernels {
namespace {

bool cpu_has(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return true;
        case Isa::Avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   __builtin_cpu_supports("f16c");
        case Isa::Avx512:
            return cpu_has(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    }
    return false;
}

Isa initial_isa() {
    const Isa best = best_isa();
    const char* env = std::getenv("REALM_KERNELS");
    if (env == nullptr || *env == '\0') return best;
    const auto want = isa_from_name(env);
    if (!want) {
        std::fprintf(stderr, "realm: REALM_KERNELS=%s is not one of scalar, avx2, avx512; using %s\n", env,
                     std::string(isa_name(best)).c_str());
        return best;
    }
    if (!cpu_has(*want)) {
        std::fprintf(stderr, "realm: REALM_KERNELS=%s is not supported by this CPU; using %s\n", env,
                     std::string(isa_name(best)).c_str());
        return best;
    }
    return *want;
}

std::atomic<Isa>& active() {
    static std::atomic<Isa> isa{initial_isa()};
    return isa;
}

}  // namespace

std::string_view isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return "scalar";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512: return "avx512";
    }
    return "unknown";
}

std::optional<Isa> isa_from_name(std::string_view name) {
    for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
        if (isa_name(i) == name) return i;
    }
    return std::nullopt;
}

bool isa_supported(Isa isa) { return cpu_has(isa); }

Isa best_isa() {
    if (cpu_has(Isa::Avx512)) return Isa::Avx512;
    if (cpu_has(Isa::Avx2)) return Isa::Avx2;
    return Isa::Scalar;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

bool set_active_isa(Isa isa) {
    if (!cpu_has(isa)) return false;
    active().store(isa, std::memory_order_relaxed);
    return true;
}

}  // namespace realm::kernels
