/* VECTOR_CLONES: AVX2 and FMA where the CPU has them, chosen when the library loads (gcc's function
   clones), so the build stays generic (BENCHMARKS.md, "Where the time goes (64->64 3x3 h=2 ...)"),
   and fused multiply-adds (-std=c99 turns contraction off). A function called from a clone gets
   its vector code only where it is inlined into it. */
#ifndef TIMM_PUSHPULL_VECTOR_CLONES_H
#define TIMM_PUSHPULL_VECTOR_CLONES_H
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && \
    defined(__linux__)
#define VECTOR_CLONES \
    __attribute__((target_clones("arch=x86-64-v3", "default"), optimize("fp-contract=fast")))
#else
#define VECTOR_CLONES
#endif
#endif
