/* Uniform and standard normal float32 draws for large CPU tensors, the fast path of the op
   timm_pushpull::random_fill (timm_pushpull/robustness/corruptions/random.py).

   Why not torch's or NumPy's samplers: torch's CPU normal_ runs on one thread, and NumPy's
   PCG64/SFC64 normals are slower still (BENCHMARKS.md, "Corruptions: batched torch vs per-image
   NumPy reference", its notes on the draws). Here each fixed chunk of the tensor
   has its own xoshiro256** generator (Blackman & Vigna, "Scrambled linear pseudorandom number
   generators", 2021; the public-domain reference code), seeded through splitmix64 from one 64-bit
   seed per chunk. The chunks are fixed, so the draws do not depend on the thread count. Normals
   come from Marsaglia & Tsang's ziggurat ("The ziggurat method for generating random variables",
   J. Stat. Softw. 2000) with 128 layers; the layer index and the value use separate bits of one
   64-bit draw, which avoids the correlation of the original's shared bits (Doornik 2005). */
#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} xoshiro_state;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next_bits(xoshiro_state *state) {
    uint64_t *s = state->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void seed_state(xoshiro_state *state, uint64_t seed) {
    for (int i = 0; i < 4; i++) { /* splitmix64 */
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        state->s[i] = z ^ (z >> 31);
    }
}

/* the top 24 bits as a float in [0, 1), every value exact */
static inline float uniform_01(uint64_t bits) { return (float)(bits >> 40) * 0x1.0p-24f; }

/* the top 24 bits as a float in (0, 1), for logarithms */
static inline float uniform_open(uint64_t bits) {
    return ((float)(bits >> 40) + 0.5f) * 0x1.0p-24f;
}

#define LAYERS 128
#define TAIL_START 3.442619855899 /* the x where the base layer's tail begins */

typedef struct {
    uint32_t k[LAYERS]; /* |hz| < k[i]: the value lies inside layer i's rectangle */
    float w[LAYERS];    /* value = hz * w[i] */
    float f[LAYERS];    /* the density exp(-x^2 / 2) at layer i's right edge */
} ziggurat_tables;

/* Marsaglia & Tsang's zigset for 128 layers */
static void make_tables(ziggurat_tables *z) {
    const double m1 = 2147483648.0, area = 9.91256303526217e-3;
    double dn = TAIL_START, tn = dn;
    const double q = area / exp(-0.5 * dn * dn);
    z->k[0] = (uint32_t)((dn / q) * m1);
    z->k[1] = 0;
    z->w[0] = (float)(q / m1);
    z->w[LAYERS - 1] = (float)(dn / m1);
    z->f[0] = 1.0f;
    z->f[LAYERS - 1] = (float)exp(-0.5 * dn * dn);
    for (int i = LAYERS - 2; i >= 1; i--) {
        dn = sqrt(-2.0 * log(area / dn + exp(-0.5 * dn * dn)));
        z->k[i + 1] = (uint32_t)((dn / tn) * m1);
        tn = dn;
        z->f[i] = (float)exp(-0.5 * dn * dn);
        z->w[i] = (float)(dn / m1);
    }
}

static inline uint32_t magnitude(int32_t hz) {
    return hz < 0 ? (uint32_t)(-(int64_t)hz) : (uint32_t)hz;
}

/* the rare draws outside a layer's rectangle: the tail beyond TAIL_START, or a wedge */
static float normal_slow(xoshiro_state *state, const ziggurat_tables *z, int32_t hz, int layer) {
    for (;;) {
        float x = (float)hz * z->w[layer];
        if (layer == 0) {
            float y;
            do {
                x = -logf(uniform_open(next_bits(state))) / (float)TAIL_START;
                y = -logf(uniform_open(next_bits(state)));
            } while (y + y < x * x);
            return hz > 0 ? (float)TAIL_START + x : -(float)TAIL_START - x;
        }
        const float u = uniform_01(next_bits(state));
        if (z->f[layer] + u * (z->f[layer - 1] - z->f[layer]) < expf(-0.5f * x * x)) return x;
        const uint64_t bits = next_bits(state);
        hz = (int32_t)(uint32_t)(bits >> 32);
        layer = (int)(bits & (LAYERS - 1));
        if (magnitude(hz) < z->k[layer]) return (float)hz * z->w[layer];
    }
}

static inline float normal(xoshiro_state *state, const ziggurat_tables *z) {
    const uint64_t bits = next_bits(state);
    const int32_t hz = (int32_t)(uint32_t)(bits >> 32);
    const int layer = (int)(bits & (LAYERS - 1));
    if (magnitude(hz) < z->k[layer]) return (float)hz * z->w[layer];
    return normal_slow(state, z, hz, layer);
}

/* Fills out[0:count] in chunks of `chunk` values, chunk c from seeds[c]: standard normals if
   `normal`, else uniforms in [low, high) computed as torch's uniform_ does (in double). */
void fill_random(float *out, long count, long chunk, const int64_t *seeds, int normal_values,
                 double low, double high, int num_threads) {
    ziggurat_tables z;
    make_tables(&z);
    const long num_chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for num_threads(num_threads) schedule(static)
    for (long c = 0; c < num_chunks; c++) {
        xoshiro_state state;
        seed_state(&state, (uint64_t)seeds[c]);
        const long end = (c + 1) * chunk < count ? (c + 1) * chunk : count;
        if (normal_values) {
            for (long i = c * chunk; i < end; i++) out[i] = normal(&state, &z);
        } else {
            const double range = high - low;
            for (long i = c * chunk; i < end; i++)
                out[i] = (float)((double)uniform_01(next_bits(&state)) * range + low);
        }
    }
}
