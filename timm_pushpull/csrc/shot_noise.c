/* Shot noise on images on the 8-bit grid: the CPU kernels of the ops timm_pushpull::quantise_8bit
   and timm_pushpull::poisson_8bit (timm_pushpull/robustness/corruptions/noise.py). They do the
   PyTorch forms' float32 arithmetic in the same order, one pass each instead of about ten tensor
   ops, and give the same numbers. Elements are split over OpenMP threads (torch's runtime, see
   blur_pool.c). */
#include <math.h>

/* levels = round(255 x), half to even like torch.round. Returns 1 if every value is within
   `tolerance` of its level and the level is in 0..255, else 0 (levels then partly written). */
int quantise_8bit(const float *x, unsigned char *levels, long count, double tolerance,
                  int num_threads) {
    /* adding and taking away 1.5 * 2^23 rounds to the nearest integer, half to even, in the
       default rounding mode, for |level| < 2^22: the form the compiler vectorises (larger values
       come out above 255 and are off the grid anyway) */
    const float magic = 12582912.0f;
    /* the largest float <= tolerance, so that comparing floats decides as comparing doubles */
    float tolerance_f = (float)tolerance;
    if ((double)tolerance_f > tolerance) tolerance_f = nextafterf(tolerance_f, 0.0f);
    int off_grid = 0;
#pragma omp parallel for num_threads(num_threads) schedule(static) reduction(| : off_grid)
    for (long i = 0; i < count; i++) {
        const float level = x[i] * 255.0f;
        const float rounded = (level + magic) - magic;
        const float error = level - rounded;
        /* written this way round, a NaN is off the grid too; & rather than && keeps branches
           out of the loop */
        const int on_grid = (error <= tolerance_f) & (-error <= tolerance_f) & (rounded >= 0.0f) &
                            (rounded <= 255.0f);
        off_grid |= !on_grid;
        levels[i] = (unsigned char)(on_grid ? (int)rounded : 0);
    }
    return !off_grid;
}

/* out = k / photons for k = min{k : F_level(k) > u}, u = u_scaled / buckets: the guide entry of
   u's bucket is k, or -1 - j where row j of `bounds` is the k range to bisect. `cdf` holds 256
   rows of `table_size` entries. */
void poisson_8bit(const unsigned char *levels, const float *u_scaled, float *out, long count,
                  const float *cdf, int table_size, const int *guide, const int *bounds,
                  int buckets, float photons, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
    for (long i = 0; i < count; i++) {
        const int level = levels[i];
        const float v = u_scaled[i];
        /* uniform_(0, B) rounds its largest draws up to B itself; and a u outside [0, B] (NaN
           too), which the op's callers never pass, still reads inside the tables */
        int bucket = v < (float)buckets ? (int)v : buckets - 1;
        if (!(v >= 0.0f)) bucket = 0;
        int k = guide[level * buckets + bucket];
        if (k < 0) {
            int lo = bounds[2 * (-1 - k)], hi = bounds[2 * (-1 - k) + 1];
            const float u = v / (float)buckets;
            const float *row = cdf + (long)level * table_size;
            while (lo < hi) {
                const int mid = (lo + hi) / 2;
                if (row[mid] > u)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            k = lo;
        }
        out[i] = (float)k / photons;
    }
}
