/* Blur-pool on float32: separable low-pass filter, then subsample, over contiguous 2-D planes.

   One pass over the input instead of PyTorch's padded copy plus depthwise convolution. Per plane,
   the rows each output row needs are first filtered vertically into a buffer (whole contiguous
   rows, which the compiler vectorises), then horizontally with the stride, so the strided pass
   touches only the output rows. Padding never materialises: `row_map` / `col_map` give, for each output index and
   tap, the source index after padding, or -1 for a zero. Planes are split over threads. */
#include <stdlib.h>

#define MAX_TAPS 7

typedef struct {
    const float *in;
    float *out;
    int height, width, out_height, out_width, num_taps, stride;
    const float *taps;
    const int *row_map, *col_map;
} blur_job;

/* Inlined with constant num_taps and stride, the tap loop unrolls and the output loop vectorises. */
static inline __attribute__((always_inline)) void filter_row(float *restrict dst,
                                                             const float *restrict src,
                                                             const float *restrict taps, long first,
                                                             long last, const int num_taps,
                                                             const int stride) {
    for (long j = first; j <= last; j++) {
        float sum = 0.f;
        for (int k = 0; k < num_taps; k++) sum += taps[k] * src[j * stride + k];
        dst[j] = sum;
    }
}

#define FILTER_CASE(TAPS, STRIDE)                                                                  \
    case TAPS:                                                                                     \
        filter_row(dst, src, taps, first, last, TAPS, STRIDE);                                     \
        break;
#define FILTER_CASES(STRIDE)                                                                       \
    switch (num_taps) {                                                                            \
        FILTER_CASE(1, STRIDE)                                                                     \
        FILTER_CASE(2, STRIDE)                                                                     \
        FILTER_CASE(3, STRIDE)                                                                     \
        FILTER_CASE(4, STRIDE)                                                                     \
        FILTER_CASE(5, STRIDE)                                                                     \
        FILTER_CASE(6, STRIDE)                                                                     \
        FILTER_CASE(7, STRIDE)                                                                     \
    }

/* row = sum_k taps[k] * sources[k], one pass (inlined with a constant num_taps). */
static inline __attribute__((always_inline)) void combine_rows(float *restrict row,
                                                               const float *const *sources,
                                                               const float *restrict taps,
                                                               int width, const int num_taps) {
    for (int c = 0; c < width; c++) {
        float sum = 0.f;
        for (int k = 0; k < num_taps; k++) sum += taps[k] * sources[k][c];
        row[c] = sum;
    }
}

#define COMBINE_CASE(TAPS)                                                                         \
    case TAPS:                                                                                     \
        combine_rows(row, sources, taps, width, TAPS);                                             \
        break;

static void combine_rows_any(float *row, const float *const *sources, const float *taps, int width,
                             int num_taps) {
    switch (num_taps) {
        COMBINE_CASE(1)
        COMBINE_CASE(2)
        COMBINE_CASE(3)
        COMBINE_CASE(4)
        COMBINE_CASE(5)
        COMBINE_CASE(6)
        COMBINE_CASE(7)
    }
}

static void filter_row_interior(float *dst, const float *src, const float *taps, long first,
                                long last, int num_taps, int stride) {
    if (stride == 1) {
        FILTER_CASES(1)
    } else if (stride == 2) {
        FILTER_CASES(2)
    } else {
        filter_row(dst, src, taps, first, last, num_taps, stride);
    }
}

static int blur_planes(const blur_job *job, long first_plane, long end_plane) {
    const int width = job->width, out_height = job->out_height, out_width = job->out_width;
    const int num_taps = job->num_taps, stride = job->stride, left = (num_taps - 1) / 2;
    const float *taps = job->taps;
    /* output columns whose taps all fall inside the row: first .. last, filtered without a map */
    const int first = (left + stride - 1) / stride;
    int last = width - num_taps + left < 0 ? -1 : (width - num_taps + left) / stride;
    if (last > out_width - 1) last = out_width - 1;
    /* when width == stride * out_width, output m of the flattened plane reads the flattened
       filtered rows at m * stride + k - left, so one long loop filters every row; the columns it
       gets wrong, which cross a row end, are the border columns that are redone with the map */
    const int flat = width == stride * out_width;
    const long flat_end = ((long)out_height * width - num_taps + left) / stride + 1;
    float *rows = (float *)malloc(sizeof(float) * (size_t)(out_height + 1) * (size_t)width);
    if (rows == NULL) return 1;
    float *zeros = rows + (long)out_height * width; /* the source row of a zero-padded tap */
    for (int c = 0; c < width; c++) zeros[c] = 0.f;
    for (long plane = first_plane; plane < end_plane; plane++) {
        const float *in = job->in + plane * job->height * width;
        float *out = job->out + plane * out_height * out_width;
        for (int i = 0; i < out_height; i++) {
            const float *sources[MAX_TAPS];
            for (int k = 0; k < num_taps; k++) {
                const int r = job->row_map[i * num_taps + k];
                sources[k] = r < 0 ? zeros : in + (long)r * width;
            }
            combine_rows_any(rows + (long)i * width, sources, taps, width, num_taps);
        }
        if (flat && first <= last) {
            filter_row_interior(out, rows - left, taps, first, flat_end - 1, num_taps,
                                stride);
        } else if (first <= last) {
            for (int i = 0; i < out_height; i++)
                filter_row_interior(out + (long)i * out_width, rows + (long)i * width - left, taps,
                                    first, last, num_taps, stride);
        }
        for (int i = 0; i < out_height; i++) {
            const float *row = rows + (long)i * width;
            float *dst = out + (long)i * out_width;
            for (int j = 0; j < out_width; j++) {
                if (j == first && first <= last) j = last + 1; /* the interior is done */
                if (j >= out_width) break;
                float sum = 0.f;
                for (int k = 0; k < num_taps; k++) {
                    const int q = job->col_map[j * num_taps + k];
                    if (q >= 0) sum += taps[k] * row[q];
                }
                dst[j] = sum;
            }
        }
    }
    free(rows);
    return 0;
}

/* Returns 0 on success, 1 on bad sizes or if a buffer could not be allocated. Planes are split
   over OpenMP threads: loaded into a PyTorch process, this library shares PyTorch's OpenMP runtime
   (libgomp.so.1, which torch ships and loads first), so its threads are the ones torch's own CPU ops
   use, rather than threads that would compete with them. */
int blur_pool_float(const float *in, float *out, long planes, int height, int width,
                    int out_height, int out_width, const float *taps, int num_taps, int stride,
                    const int *row_map, const int *col_map, int num_threads) {
    if (num_taps < 1 || num_taps > MAX_TAPS || stride < 1) return 1;
    blur_job job = {in,     out,  height, width,   out_height, out_width, num_taps,
                    stride, taps, row_map, col_map};
    int failed = 0;
    if (num_threads > planes) num_threads = (int)planes;
    if (num_threads < 1) num_threads = 1;
#pragma omp parallel for num_threads(num_threads) schedule(static) reduction(| : failed)
    for (int t = 0; t < num_threads; t++)
        failed |= blur_planes(&job, planes * t / num_threads, planes * (t + 1) / num_threads);
    return failed;
}
