/* Push and exact pull of a stride-1 push-pull layer from one matrix product.

   A convolution is a sum over its taps: x * k = sum_ab shift_ab(z_ab), z_ab = sum_c k[:, c, a, b] x_c,
   one 1x1 product per tap. The exact pull kernel is the push kernel resized (align_corners=True),
   resize(k) = U_v k U_h^T, so x * resize(k) = sum_ab (u_a u_b^T) * z_ab: the same per-tap
   products, smoothed instead of shifted (layers/push_and_pull.py). One GEMM therefore feeds both
   branches, and the pull costs only the smoothing of z, about (taps_v * s_w + taps_h) multiply-adds
   per output value, e.g. 44 for 3x3 -> 7x7 against the push's 9 * C_in.

   Each thread takes whole images (or bands of rows of one image, and tiles of columns where whole
   rows would outgrow its scratch), computes z a few input rows at a time with a GEMM
   (csrc/gemm.c, or MKL's) into its scratch, sums each row of z along the row once, for the push
   and the pull, into a ring of such rows (a third of z's size), and sums those down the columns
   into every output row of push and pull (or the rectified response, in training with a one-byte
   mask of the ReLUs that pass a gradient), written once. Reading each row of z once, while the
   cache holds it, is what the order buys (BENCHMARKS.md, "Issue 25 ... run 15").
   The inner loops run over contiguous output channels; an NCHW
   input and output are read and written through the GEMM's strides and a transposition of each
   finished row. Threads: OpenMP, torch's runtime (blur_pool.c). */
#include <stdlib.h>
#include <string.h>
#include "finite.h"
#include "threads.h"
#include "vector_clones.h"

#define MAX_TAPS 64
#if defined(__GNUC__) || defined(__clang__)
#define TAPS_VECTORS /* gcc/clang vector extensions, one AVX2 register */
#define TAPS_VECTOR_BYTES 32
#endif
/* The vector helpers get the vector clone's code only where they are inlined into it; gcc's own
   choice left some calls to the default (SSE2) copy, 3-4x slower (BENCHMARKS.md, run 15). */
#if defined(__GNUC__) || defined(__clang__)
#define TAPS_INLINE static inline __attribute__((always_inline))
#else
#define TAPS_INLINE static inline
#endif

/* Everything a call shares. */
typedef struct {
    int channels, height, width, out_height, out_width, sh, sw, push_top, push_left;
    int ph, pw, pull_top, pull_left, out_channels, ring_rows, gemm_rows, tile_cols;
    int ring_width, row_lo, row_hi, col_lo, col_hi;
    const double *taps_v, *taps_h;
} geometry;

static int check_geometry(geometry *geo) {
    if (geo->sh < 1 || geo->sw < 1 || geo->ph < 1 || geo->pw < 1 || geo->sh > MAX_TAPS ||
        geo->sw > MAX_TAPS || geo->ph > MAX_TAPS || geo->pw > MAX_TAPS || geo->gemm_rows < 1 ||
        geo->tile_cols < 1 || geo->out_channels < 1 || geo->channels < 1 || geo->height < 1 ||
        geo->width < 1 || geo->out_height < 1 || geo->out_width < 1)
        return 1;
    /* input rows and columns an output pixel reads, relative to it */
    int lo = -geo->push_top, hi = geo->sh - 1 - geo->push_top;
    if (-geo->pull_top < lo) lo = -geo->pull_top;
    if (geo->ph - 1 - geo->pull_top > hi) hi = geo->ph - 1 - geo->pull_top;
    geo->row_lo = lo;
    geo->row_hi = hi;
    lo = -geo->push_left;
    hi = geo->sw - 1 - geo->push_left;
    if (-geo->pull_left < lo) lo = -geo->pull_left;
    if (geo->pw - 1 - geo->pull_left > hi) hi = geo->pw - 1 - geo->pull_left;
    geo->col_lo = lo;
    geo->col_hi = hi;
    return 0;
}

/* the ring keeps every row an output row reads, summed along; a tile narrower than the output
   takes one row per GEMM */
static int check_ring(const geometry *geo) {
    return geo->ring_rows < geo->row_hi - geo->row_lo + 1 ||
           (geo->gemm_rows > 1 && geo->tile_cols < geo->out_width);
}

/* input columns of a row of products: the whole row, or the columns a tile of outputs reads */
static int taps_ring_width(const geometry *geo) {
    if (geo->tile_cols >= geo->out_width) return geo->width;
    const int reach = geo->tile_cols + geo->col_hi - geo->col_lo;
    return reach < geo->width ? reach : geo->width;
}

/* elements of a thread's scratch: gemm_rows rows of products, the ring of rows summed along (push
   and pull, [tile][sh][O] each) and two output rows */
static long taps_scratch(const geometry *geo) {
    const long pixel = (long)geo->sh * geo->sw * geo->out_channels;
    const long tile = geo->tile_cols < geo->out_width ? geo->tile_cols : geo->out_width;
    return geo->gemm_rows * geo->ring_width * pixel +
           geo->ring_rows * 2 * tile * geo->sh * geo->out_channels + 2 * tile * geo->out_channels;
}

/* output columns the backward pass reads for a tile of ring_width input columns */
static int taps_grad_ring_width(const geometry *geo) {
    const int reach = geo->ring_width + geo->col_hi - geo->col_lo;
    return reach < geo->out_width ? reach : geo->out_width;
}

/* elements of a thread's scratch in the backward pass: the gradient of z of gemm_rows rows of
   ring_width columns, the vertical pass of the output columns they read and, for NCHW output
   gradients or the response's (rings), two rings of the output rows an input row reads,
   channels-last */
static long taps_backward_scratch(const geometry *geo, int rings) {
    const long pixel = (long)geo->sh * geo->sw * geo->out_channels;
    const long ring_elements = 2L * (geo->row_hi - geo->row_lo + 1) * taps_grad_ring_width(geo) *
                       geo->out_channels;
    return geo->gemm_rows * geo->ring_width * pixel +
           (long)(geo->ring_width + geo->pw - 1) * geo->sh * geo->out_channels +
           (rings ? ring_elements : 0);
}

/* 1 where a vector clone serves this CPU (vector_clones.h), else 0: then the layers compute their
   branches apart */
int taps_vector_code(void) { return VECTOR_CODE; }

#define TAPS_LANES 8 /* SCALARs in a vector */
#define SCALAR float
#define NAME(f) f##_float
#include "push_pull_taps.h"
#undef SCALAR
#undef NAME
#undef TAPS_LANES

#define TAPS_LANES 4
#define SCALAR double
#define NAME(f) f##_double
#include "push_pull_taps.h"
#undef SCALAR
#undef NAME
#undef TAPS_LANES
