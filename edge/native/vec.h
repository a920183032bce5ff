/* 8-float vectors for the native kernels: GCC/Clang vector types, so one source compiles to AVX2
 * on x86 (-march=native) and to pairs of NEON registers on arm64. */
#ifndef SLEEPEDGE_VEC_H
#define SLEEPEDGE_VEC_H

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4))); /* unaligned loads / stores */
typedef int v8i __attribute__((vector_size(32)));

#define INLINE static inline __attribute__((always_inline))
INLINE v8 ld(const float *p) { return *(const v8u *)p; }
INLINE void st(float *p, v8 v) { *(v8u *)p = v; }
INLINE v8 bc(float s) { return (v8){s, s, s, s, s, s, s, s}; }
INLINE v8 sel(v8i m, v8 a, v8 b) { return (v8)(((v8i)a & m) | ((v8i)b & ~m)); }
INLINE v8 vmax(v8 a, v8 b) { return sel(a > b, a, b); }
INLINE v8 vmin(v8 a, v8 b) { return sel(a < b, a, b); }

#endif
