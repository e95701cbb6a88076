// AVX-512 (F/BW/VL) + VNNI kernels (compiled with those flags only; see CMakeLists.txt).
#define REALM_SIMD_LIST avx512_kernels
#include "kernels/quants_simd.inc"
