/* Whether a block of results is finite, for the kernels that fall back to the definition when not:
   their factored sums can turn an infinite input into NaN where the direct convolution gives an
   infinity, and skip zero taps that would multiply an infinity or NaN. A test of the exponent bits
   (all ones for infinities and NaN), which vectorises, on data still in the cache. */
#ifndef TIMM_PUSHPULL_FINITE_H
#define TIMM_PUSHPULL_FINITE_H
#include <stdint.h>
#include <string.h>

#define DEFINE_ALL_FINITE(name, scalar, bits_type, exponent)       \
    static int name(const scalar *values, long count) {            \
        int infinite = 0;                                          \
        for (long k = 0; k < count; k++) {                         \
            bits_type bits;                                        \
            memcpy(&bits, values + k, sizeof bits);                \
            infinite |= (bits & (exponent)) == (exponent);         \
        }                                                          \
        return !infinite;                                          \
    }

DEFINE_ALL_FINITE(all_finite_float, float, uint32_t, 0x7f800000u)
DEFINE_ALL_FINITE(all_finite_double, double, uint64_t, 0x7ff0000000000000u)
#undef DEFINE_ALL_FINITE
#endif
