/* A GEMM for the products the exact pull's kernels make inside their parallel regions, with the
   Fortran BLAS's signature (column-major, arguments by address), so that pull_maps.c and
   push_pull_taps.c call it where they would call MKL's, by the address Python passes them.

   Why not only the BLAS PyTorch ships: on an AMD CPU MKL's sgemm runs code that is slower on the
   kernels' products (a few hundred pixels by 3-576 input maps by the taps' outputs) than this one
   (BENCHMARKS.md, run 14, "The kernels' products alone"), and the oneDNN GEMM that PyTorch's
   convolutions use is not exported. This one covers C = A B and C += A B with A not transposed,
   where the vector dimension is contiguous in A and C (all the forward passes' products, some of
   the backward passes'):
   register tiles of 3 vectors by 4 columns, blocks of A's rows that stay in the cache, passes of
   at most GEMM_DEPTH over the inner dimension, and tiles of A or B copied together where their
   rows lie on different pages. Every other call goes to the fallback, MKL's. Each call runs on
   the calling thread.

   Its own library, not a header of the kernels: in their translation units gcc's inlining budget
   ran out and left their vector helpers un-inlined, which made the shared kernel several times
   slower (BENCHMARKS.md, run 14). */
#include <string.h>
#include "vector_clones.h"

/* 1 where a vector clone serves this CPU (vector_clones.h), else 0: then the kernels mix with MKL's */
int gemm_vector_code(void) { return VECTOR_CODE; }

#define SCALAR float
#define NAME(f) f##_float
#include "gemm.h"
#undef SCALAR
#undef NAME

#define SCALAR double
#define NAME(f) f##_double
#include "gemm.h"
#undef SCALAR
#undef NAME
