/* VECTOR_CLONES: AVX-512 (x86-64-v4) or AVX2 and FMA (x86-64-v3) where the CPU has them, chosen
   when the library loads (gcc's function clones), so the build stays generic (BENCHMARKS.md,
   "Where the time goes (64->64 3x3 h=2 ...)" and run 15: AVX-512's 32 registers, broadcasts
   inside the multiply-adds and two-source shuffles), and fused multiply-adds (-std=c99 turns
   contraction off). A function called from a clone gets its vector code only where it is inlined
   into it. TIMM_PUSHPULL_CLONES, set by native.py from $TIMM_PUSHPULL_NATIVE_ARCH, narrows the
   clones; TIMM_PUSHPULL_NO_CLONES builds the generic code alone. */
#ifndef TIMM_PUSHPULL_VECTOR_CLONES_H
#define TIMM_PUSHPULL_VECTOR_CLONES_H
#ifndef TIMM_PUSHPULL_CLONES
#define TIMM_PUSHPULL_CLONES "arch=x86-64-v4", "arch=x86-64-v3", "default"
#endif
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && \
    defined(__linux__)
#ifdef TIMM_PUSHPULL_NO_CLONES
#define VECTOR_CLONES __attribute__((optimize("fp-contract=fast")))
#define VECTOR_CODE 0
#else
#define VECTOR_CLONES \
    __attribute__((target_clones(TIMM_PUSHPULL_CLONES), optimize("fp-contract=fast")))
#if defined(TIMM_PUSHPULL_LOWEST_V4) && __GNUC__ >= 12 /* the clones start at x86-64-v4 */
#define VECTOR_CODE __builtin_cpu_supports("x86-64-v4")
#elif defined(TIMM_PUSHPULL_LOWEST_V4)
#define VECTOR_CODE \
    (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && \
     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
#elif __GNUC__ >= 12
#define VECTOR_CODE __builtin_cpu_supports("x86-64-v3")
#else
#define VECTOR_CODE (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
#endif
#endif
#else
#define VECTOR_CLONES
#define VECTOR_CODE 0
#endif
/* VECTOR_CODE: whether a vector clone serves this CPU (it has the lowest level built). The generic
   code splits the kernels' 32-byte vectors into SSE2 halves and spills their register tiles: the
   shared layer with the own GEMM took 38x a conv (BENCHMARKS.md, run 15), so the libraries export
   it and Python passes the products to MKL and leaves the shared form where it is 0. */
#endif
