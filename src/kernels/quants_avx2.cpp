// AVX2 + FMA + F16C kernels (compiled with those flags only; see CMakeLists.txt).
#define REALM_SIMD_LIST avx2_kernels
#include "kernels/quants_simd.inc"
