/* The smoothed maps of the exact separable pull, and their transpose (the backward pass).

   The pull kernel is the push kernel k resized with align_corners=True, resize(k) = U_v k U_h^T,
   so x * resize(k) = sum_ab k[:, :, a, b] * (x * u_a u_b^T) (layers/pull.py). This kernel builds
   the s_h*s_w maps x * u_a u_b^T of every input channel in one pass, channels-last so that the
   channel mixing that follows is one GEMM: per output row it filters the input rows vertically
   once per a (only the taps where u_a is non-zero: a tent of about 2 (p-1)/(s-1) + 1 taps), then
   each of those rows horizontally once per b, and writes the s_h*s_w values of every pixel
   together. PyTorch has no op for this: its depthwise convolutions make one pass per map and
   write channels-first. Planes or rows are split over OpenMP threads (torch's runtime, see
   blur_pool.c). */
#include <stdlib.h>
#include <string.h>
#include "finite.h"
#include "threads.h"
#include "vector_clones.h"

#define MAX_TAPS 64
#define CHANNEL_BLOCK 32

/* One axis of the filtering: the non-zero range of each row of its taps [s][p]. */
typedef struct {
    int first[MAX_TAPS], last[MAX_TAPS];
    long before, padded; /* zeros before the data in a padded row, and the padded length */
} filter_axis;

/* Everything a call shares; make_geometry fills rows and cols. */
typedef struct {
    int channels, groups, height, width, out_height, out_width, sh, ph, sw, pw;
    const double *taps_v, *taps_h;
    int stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    filter_axis rows, cols;
} geometry;

static int make_axis(filter_axis *axis, const double *taps, int s, int p, int stride, int dil,
                     int pad, int size, int out_size) {
    if (s < 1 || p < 1 || s > MAX_TAPS || p > MAX_TAPS || stride < 1 || dil < 1 || pad < 0)
        return 1;
    for (int a = 0; a < s; a++) {
        axis->first[a] = p;
        axis->last[a] = -1;
        for (int u = 0; u < p; u++)
            if (taps[a * p + u] != 0.0) {
                if (axis->first[a] == p) axis->first[a] = u;
                axis->last[a] = u;
            }
    }
    long reach = (long)(out_size - 1) * stride + (long)(p - 1) * dil + 1; /* padded extent read */
    axis->before = pad;
    axis->padded = reach > pad + size ? reach : pad + size;
    return 0;
}

static int make_geometry(geometry *geo) {
    if (geo->groups < 1 || geo->channels % geo->groups) return 1;
    return make_axis(&geo->rows, geo->taps_v, geo->sh, geo->ph, geo->stride_h, geo->dil_h,
                     geo->pad_top, geo->height, geo->out_height) ||
           make_axis(&geo->cols, geo->taps_h, geo->sw, geo->pw, geo->stride_w, geo->dil_w,
                     geo->pad_left, geo->width, geo->out_width);
}

#define SCALAR float
#define NAME(f) f##_float
#include "pull_maps.h"
#undef SCALAR
#undef NAME

#define SCALAR double
#define NAME(f) f##_double
#include "pull_maps.h"
#undef SCALAR
#undef NAME
