/* Whether a block of results is finite, for the kernels that fall back to the definition when not:
   their factored sums can turn an infinite input into NaN where the direct convolution gives an
   infinity, and skip zero taps that would multiply an infinity or NaN. A test of the exponent bits
   (all ones for infinities and NaN), which vectorises, on data still in the cache. */
#ifndef TIMM_PUSHPULL_FINITE_H
#define TIMM_PUSHPULL_FINITE_H
#include <stdint.h>
#include <string.h>

static int all_finite_float(const float *values, long count) {
    int infinite = 0;
    for (long k = 0; k < count; k++) {
        uint32_t bits;
        memcpy(&bits, values + k, sizeof bits);
        infinite |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return !infinite;
}

static int all_finite_double(const double *values, long count) {
    int infinite = 0;
    for (long k = 0; k < count; k++) {
        uint64_t bits;
        memcpy(&bits, values + k, sizeof bits);
        infinite |= (bits & 0x7ff0000000000000u) == 0x7ff0000000000000u;
    }
    return !infinite;
}
#endif
