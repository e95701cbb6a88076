// Instruction-set selection for the SIMD kernels.
//
// The scalar kernels (quants.hpp) are the bit-exact ggml reference; the SIMD variants compute the
// same sums in a different float order and agree within a rounding tolerance. The active ISA is
// chosen once from the CPU's features (the best supported one) unless REALM_KERNELS=scalar|avx2|avx512
// overrides it; a value the CPU cannot run falls back to the best supported ISA with a warning.
#pragma once

#include <optional>
#include <string_view>

namespace realm::kernels {

enum class Isa {
    Scalar,  // ggml's generic C code, bit-exact
    Avx2,    // AVX2 + FMA + F16C
    Avx512,  // AVX-512 F/BW/VL + VNNI (+ F16C); 256-bit VNNI dot products, 32 registers for tiles
};

std::string_view isa_name(Isa isa);
std::optional<Isa> isa_from_name(std::string_view name);

// Whether this CPU can run `isa` (Scalar always).
bool isa_supported(Isa isa);
// The fastest ISA this CPU supports.
Isa best_isa();
// The ISA the model and matmul use; read on first use from REALM_KERNELS / the CPU.
Isa active_isa();
// Switches the active ISA (tests, benchmarks). Returns false and changes nothing when the CPU
// lacks it. Not synchronised with running kernels: call between forward passes.
bool set_active_isa(Isa isa);

}  // namespace realm::kernels
