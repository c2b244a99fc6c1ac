/* The body of csrc/push_pull_taps.c for one scalar type: push_pull_taps.c includes it once per
   type with SCALAR (the element type) and NAME(f) (the exported name) defined. */

/* Fortran BLAS GEMM (column-major), as MKL exports it */
typedef void (*NAME(taps_gemm_fn))(const char *, const char *, const int *, const int *,
                                   const int *, const SCALAR *, const SCALAR *, const int *,
                                   const SCALAR *, const int *, const SCALAR *, SCALAR *,
                                   const int *);

#ifdef TAPS_VECTORS
typedef SCALAR NAME(vector) __attribute__((vector_size(TAPS_VECTOR_BYTES)));
#define LANES ((long)(TAPS_VECTOR_BYTES / sizeof(SCALAR)))
#define LOAD(var, ptr) memcpy(&(var), (ptr), sizeof(var))
#endif

#ifdef TAPS_VECTORS
/* Four vectors of a push sum and of a pull sum at once: dst[0 .. 2 LANES) and
   dst[dst_far .. dst_far + 2 LANES) of each from src[offsets[e] + k] and
   src[offsets[e] + far + k]: four contiguous vectors (the far ones 2 LANES on) or two of each of
   two columns. Entries [0, push_end) are the push's (weight 1), [pull_start, entries) the pull's
   (weights), so the entries between (products both read) are loaded once for both. With init (its
   far vectors init_far on) push starts at init and pull at pull_sign * init. Without push_dst only
   the pull's sum (a weighted sum: push_end = pull_start = 0). Push sums in p0 .. p3, the pull's
   even and odd entries in s0 .. s3 and d0 .. d3: 12 chains and 4 loaded vectors, within
   AVX-512's 32 registers (AVX2's 16 hold all but the broadcast weight), named variables (as
   arrays, gcc kept them on the stack), each entry's offset and weight loaded once per four
   vectors. */
TAPS_INLINE void NAME(four_vectors)(SCALAR *push_dst, SCALAR *pull_dst, long dst_far,
                                    const SCALAR *src, long far, const long *offsets,
                                    const SCALAR *weights, int push_end, int pull_start,
                                    int entries, const SCALAR *init, long init_far,
                                    SCALAR pull_sign) {
    NAME(vector) p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0};
    NAME(vector) s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, d0 = {0}, d1 = {0}, d2 = {0}, d3 = {0};
    NAME(vector) v0, v1, v2, v3;
    if (init != NULL) {
        LOAD(p0, init);
        LOAD(p1, init + LANES);
        LOAD(p2, init + init_far);
        LOAD(p3, init + init_far + LANES);
        s0 = pull_sign * p0;
        s1 = pull_sign * p1;
        s2 = pull_sign * p2;
        s3 = pull_sign * p3;
    }
#define LOAD_ENTRY(e)                      \
    do {                                   \
        const SCALAR *at = src + offsets[e]; \
        LOAD(v0, at);                      \
        LOAD(v1, at + LANES);              \
        LOAD(v2, at + far);                \
        LOAD(v3, at + far + LANES);        \
    } while (0)
#define ADD_PUSH() \
    do {           \
        p0 += v0;  \
        p1 += v1;  \
        p2 += v2;  \
        p3 += v3;  \
    } while (0)
#define ADD_PULL(a0, a1, a2, a3, e) \
    do {                            \
        const SCALAR w = weights[e]; \
        a0 += w * v0;               \
        a1 += w * v1;               \
        a2 += w * v2;               \
        a3 += w * v3;               \
    } while (0)
    int e = 0;
    for (; e < pull_start; e++) {
        LOAD_ENTRY(e);
        ADD_PUSH();
    }
    for (; e + 1 < push_end; e += 2) {
        LOAD_ENTRY(e);
        ADD_PUSH();
        ADD_PULL(s0, s1, s2, s3, e);
        LOAD_ENTRY(e + 1);
        ADD_PUSH();
        ADD_PULL(d0, d1, d2, d3, e + 1);
    }
    if (e < push_end) {
        LOAD_ENTRY(e);
        ADD_PUSH();
        ADD_PULL(s0, s1, s2, s3, e);
        e++;
    }
    for (; e + 1 < entries; e += 2) {
        LOAD_ENTRY(e);
        ADD_PULL(s0, s1, s2, s3, e);
        LOAD_ENTRY(e + 1);
        ADD_PULL(d0, d1, d2, d3, e + 1);
    }
    if (e < entries) {
        LOAD_ENTRY(e);
        ADD_PULL(s0, s1, s2, s3, e);
    }
#undef LOAD_ENTRY
#undef ADD_PUSH
#undef ADD_PULL
    s0 += d0;
    s1 += d1;
    s2 += d2;
    s3 += d3;
    if (push_dst != NULL) {
        memcpy(push_dst, &p0, sizeof p0);
        memcpy(push_dst + LANES, &p1, sizeof p1);
        memcpy(push_dst + dst_far, &p2, sizeof p2);
        memcpy(push_dst + dst_far + LANES, &p3, sizeof p3);
    }
    memcpy(pull_dst, &s0, sizeof s0);
    memcpy(pull_dst + LANES, &s1, sizeof s1);
    memcpy(pull_dst + dst_far, &s2, sizeof s2);
    memcpy(pull_dst + dst_far + LANES, &s3, sizeof s3);
}
#endif

/* dst[0 .. count) = init_sign * init[0 .. count) (0 without init)
                     + sum_e weights[e] * src[offsets[e] + k] for k < count;
   dst may be init (a sum accumulated in place). Four vectors of outputs at a time (then two, then
   one), even and odd entries apart. */
TAPS_INLINE void NAME(weighted_sum)(SCALAR *dst, const SCALAR *src, const long *offsets,
                                    const SCALAR *weights, int entries, const SCALAR *init,
                                    SCALAR init_sign, long count) {
    long k0 = 0;
#ifdef TAPS_VECTORS
    for (; k0 + 4 * LANES <= count; k0 += 4 * LANES)
        NAME(four_vectors)(NULL, dst + k0, 2 * LANES, src + k0, 2 * LANES, offsets, weights, 0, 0,
                           entries, init == NULL ? NULL : init + k0, 2 * LANES, init_sign);
    for (; k0 + 2 * LANES <= count; k0 += 2 * LANES) {
        NAME(vector) sum0 = {0}, sum1 = {0}, odd0 = {0}, odd1 = {0}, value0, value1;
        if (init != NULL) {
            LOAD(sum0, init + k0);
            LOAD(sum1, init + k0 + LANES);
            sum0 *= init_sign;
            sum1 *= init_sign;
        }
        const SCALAR *base = src + k0;
        int e = 0;
        for (; e + 1 < entries; e += 2) {
            LOAD(value0, base + offsets[e]);
            LOAD(value1, base + offsets[e] + LANES);
            sum0 += weights[e] * value0;
            sum1 += weights[e] * value1;
            LOAD(value0, base + offsets[e + 1]);
            LOAD(value1, base + offsets[e + 1] + LANES);
            odd0 += weights[e + 1] * value0;
            odd1 += weights[e + 1] * value1;
        }
        if (e < entries) {
            LOAD(value0, base + offsets[e]);
            LOAD(value1, base + offsets[e] + LANES);
            sum0 += weights[e] * value0;
            sum1 += weights[e] * value1;
        }
        sum0 += odd0;
        sum1 += odd1;
        memcpy(dst + k0, &sum0, sizeof sum0);
        memcpy(dst + k0 + LANES, &sum1, sizeof sum1);
    }
    for (; k0 + LANES <= count; k0 += LANES) {
        NAME(vector) sum = {0}, value;
        if (init != NULL) {
            LOAD(sum, init + k0);
            sum *= init_sign;
        }
        for (int e = 0; e < entries; e++) {
            LOAD(value, src + offsets[e] + k0);
            sum += weights[e] * value;
        }
        memcpy(dst + k0, &sum, sizeof sum);
    }
#endif
    for (long k = k0; k < count; k++) {
        SCALAR sum = init == NULL ? 0 : init_sign * init[k];
        for (int e = 0; e < entries; e++) sum += weights[e] * src[offsets[e] + k];
        dst[k] = sum;
    }
}

/* weighted_sum of two columns at once, the second one step (src), dst_step (dst) and init_step
   (init) further on, two vectors of each: for sums that end in two vectors (16 channels: an output
   row's 16 values, a row sum's 48), where one column's entry loop would feed only two vectors per
   offset and weight loaded. */
TAPS_INLINE void NAME(weighted_sum_pair)(SCALAR *dst, long dst_step, const SCALAR *src, long step,
                                         const long *offsets, const SCALAR *weights, int entries,
                                         const SCALAR *init, long init_step, SCALAR init_sign,
                                         long count) {
    long k0 = 0;
#ifdef TAPS_VECTORS
    for (; k0 + 2 * LANES <= count; k0 += 2 * LANES)
        NAME(four_vectors)(NULL, dst + k0, dst_step, src + k0, step, offsets, weights, 0, 0,
                           entries, init == NULL ? NULL : init + k0, init_step, init_sign);
#endif
    for (int column = 0; column < 2 && k0 < count; column++)
        NAME(weighted_sum)(dst + column * dst_step + k0, src + column * step + k0, offsets,
                           weights, entries,
                           init == NULL ? NULL : init + column * init_step + k0, init_sign,
                           count - k0);
}

/* A sum over taps along the row: entries at columns j + shift[e] (offsets[e] relative to column 0
   of the source), one output of count values per column j < out_width, source row width wide, each
   column step apart. Columns whose taps all fall inside the row share one list; near the edges the
   taps outside are dropped. */
typedef struct {
    long offsets[MAX_TAPS * MAX_TAPS];
    SCALAR weights[MAX_TAPS * MAX_TAPS];
    int shifts[MAX_TAPS * MAX_TAPS], entries;
} NAME(tap_list);

TAPS_INLINE void NAME(sum_along_row)(const NAME(tap_list) *taps, const SCALAR *src, long step,
                                    int width, SCALAR *dst, long dst_step, int out_width,
                                    long count, const SCALAR *init, long init_step,
                                    SCALAR init_sign) {
    int low = 0, high = 0; /* the columns' reach */
    for (int e = 0; e < taps->entries; e++) {
        if (taps->shifts[e] < low) low = taps->shifts[e];
        if (taps->shifts[e] > high) high = taps->shifts[e];
    }
    long offsets[MAX_TAPS * MAX_TAPS];
    SCALAR weights[MAX_TAPS * MAX_TAPS];
    for (int j = 0; j < out_width; j++) {
        const SCALAR *start = init == NULL ? NULL : init + j * init_step;
        if (j + low >= 0 && j + high < width) {
#ifdef TAPS_VECTORS
            if (count % (4 * LANES) >= 2 * LANES && j + 1 < out_width && j + 1 + high < width) {
                NAME(weighted_sum_pair)(dst + j * dst_step, dst_step, src + j * step, step,
                                        taps->offsets, taps->weights, taps->entries, start,
                                        init_step, init_sign, count);
                j++;
                continue;
            }
#endif
            NAME(weighted_sum)(dst + j * dst_step, src + j * step, taps->offsets, taps->weights,
                               taps->entries, start, init_sign, count);
            continue;
        }
        int entries = 0;
        for (int e = 0; e < taps->entries; e++) {
            const int col = j + taps->shifts[e];
            if (col < 0 || col >= width) continue;
            offsets[entries] = taps->offsets[e];
            weights[entries++] = taps->weights[e];
        }
        NAME(weighted_sum)(dst + j * dst_step, src + j * step, offsets, weights, entries, start,
                           init_sign, count);
    }
}

/* A column's push and pull sums (four_vectors' entries; push starts at bias, pull at -bias),
   count values each, and with pair the next column's too (step further on in src, dst_step in the
   outputs); what four vectors at a time leave, each branch by weighted_sum. */
TAPS_INLINE void NAME(weighted_sums_both)(SCALAR *push_dst, SCALAR *pull_dst, long dst_step,
                                          const SCALAR *src, long step, const long *offsets,
                                          const SCALAR *push_weights, const SCALAR *weights,
                                          int push_end, int pull_start, int entries, long count,
                                          int pair, const SCALAR *bias) {
    long k0 = 0;
#ifdef TAPS_VECTORS
    if (pair)
        for (; k0 + 2 * LANES <= count; k0 += 2 * LANES)
            NAME(four_vectors)(push_dst + k0, pull_dst + k0, dst_step, src + k0, step, offsets,
                               weights, push_end, pull_start, entries,
                               bias == NULL ? NULL : bias + k0, 0, -1);
    else
        for (; k0 + 4 * LANES <= count; k0 += 4 * LANES)
            NAME(four_vectors)(push_dst + k0, pull_dst + k0, 2 * LANES, src + k0, 2 * LANES,
                               offsets, weights, push_end, pull_start, entries,
                               bias == NULL ? NULL : bias + k0, 2 * LANES, -1);
#endif
    const SCALAR *init = bias == NULL ? NULL : bias + k0;
    for (int column = 0; column < 1 + pair && k0 < count; column++) {
        const long at = column * dst_step + k0, from = column * step + k0;
        NAME(weighted_sum)(push_dst + at, src + from, offsets, push_weights, push_end, init, 1,
                           count - k0);
        NAME(weighted_sum)(pull_dst + at, src + from, offsets + pull_start, weights + pull_start,
                           entries - pull_start, init, -1, count - k0);
    }
}

/* Row r of the products, z_row [in_width][sw][sh][O] (input columns c0 ..), summed along the row
   for the output columns j0 .. j0 + cols - 1 into h_row: the push's
   push_h[j][a] = sum_b z[j + b - push_left][b][a], [cols][sh][O], then the pull's
   pull_h[j][a] = -sum_{b, v} taps_h[b, v] z[j + v - pull_left][b][a], [cols][sh][O] (negated:
   the pull kernel is minus the resized push kernel). Each row of products is read here once,
   while the cache holds it; the output rows then sum these down the columns (taps_out_row). The
   products' taps are ordered b, then a, so that one sum runs over sh * O contiguous values, and
   the push's taps that the pull reads too (tap b at v = b + pull_left - push_left) are loaded once
   for both. */
static VECTOR_CLONES void NAME(taps_along_row)(const geometry *geo, const SCALAR *z_row, int j0,
                                               int cols, int c0, int in_width, SCALAR *h_row) {
    const int shift0 = j0 - c0, sw = geo->sw, pw = geo->pw;
    const long h_col = (long)geo->sh * geo->out_channels, pixel = sw * h_col;
    /* the entries in three runs: the push's alone, both branches' (the pull's weight), the
       pull's alone */
    long offsets[MAX_TAPS * MAX_TAPS];
    SCALAR push_weights[MAX_TAPS * MAX_TAPS], weights[MAX_TAPS * MAX_TAPS];
    int shifts[MAX_TAPS * MAX_TAPS], entries = 0, push_end, pull_start;
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1) pull_start = entries;
        if (pass == 2) push_end = entries;
        for (int b = 0; b < sw; b++)
            for (int v = 0; v < pw; v++) {
                const int push = v + geo->push_left - geo->pull_left == b;
                const int pull = geo->taps_h[b * pw + v] != 0;
                if (pass == 0 ? !(push && !pull) : pass == 1 ? !(push && pull) : !(pull && !push))
                    continue;
                const int shift = shift0 + v - geo->pull_left;
                offsets[entries] = shift * pixel + b * h_col;
                shifts[entries] = shift;
                push_weights[entries] = 1;
                weights[entries++] = (SCALAR)-geo->taps_h[b * pw + v];
            }
    }
    /* a push tap outside the pull's window (pw < sw: h < 1) */
    for (int b = 0; b < sw; b++) {
        const int v = b + geo->pull_left - geo->push_left;
        if (v >= 0 && v < pw) continue;
        for (int e = entries; e > 0; e--) {
            offsets[e] = offsets[e - 1];
            shifts[e] = shifts[e - 1];
            push_weights[e] = push_weights[e - 1];
            weights[e] = weights[e - 1];
        }
        const int shift = shift0 + b - geo->push_left;
        offsets[0] = shift * pixel + b * h_col;
        shifts[0] = shift;
        push_weights[0] = 1;
        weights[0] = 0;
        entries++;
        push_end++;
        pull_start++;
    }
    int low = 0, high = 0; /* the columns' reach */
    for (int e = 0; e < entries; e++) {
        if (shifts[e] < low) low = shifts[e];
        if (shifts[e] > high) high = shifts[e];
    }
    SCALAR *pull_row = h_row + cols * h_col;
    long edge_offsets[MAX_TAPS * MAX_TAPS];
    SCALAR edge_push_weights[MAX_TAPS * MAX_TAPS], edge_weights[MAX_TAPS * MAX_TAPS];
    for (int j = 0; j < cols; j++) {
        const SCALAR *src = z_row + j * pixel;
        if (j + low >= 0 && j + high < in_width) {
#ifdef TAPS_VECTORS
            const int pair = h_col % (4 * LANES) >= 2 * LANES && j + 1 < cols &&
                             j + 1 + high < in_width;
#else
            const int pair = 0;
#endif
            NAME(weighted_sums_both)(h_row + j * h_col, pull_row + j * h_col, h_col, src, pixel,
                                     offsets, push_weights, weights, push_end, pull_start,
                                     entries, h_col, pair, NULL);
            j += pair;
            continue;
        }
        /* near the edges: the taps inside the row, in the same three runs */
        int kept = 0, kept_push_end = 0, kept_pull_start = 0;
        for (int e = 0; e < entries; e++) {
            if (e == pull_start) kept_pull_start = kept;
            if (e == push_end) kept_push_end = kept;
            const int col = j + shifts[e];
            if (col < 0 || col >= in_width) continue;
            edge_offsets[kept] = offsets[e];
            edge_push_weights[kept] = push_weights[e];
            edge_weights[kept++] = weights[e];
        }
        if (push_end == entries) kept_push_end = kept;
        if (pull_start == entries) kept_pull_start = kept;
        NAME(weighted_sums_both)(h_row + j * h_col, pull_row + j * h_col, h_col, src, pixel,
                                 edge_offsets, edge_push_weights, edge_weights, kept_push_end,
                                 kept_pull_start, kept, h_col, 0, NULL);
    }
}

/* Output row i, cols columns, from the ring of rows summed along (taps_along_row; row r in slot
   r % ring_rows, h_size apart): push (with bias) into push_row and the pull (with the negated
   bias) into pull_row, both [cols][O]:
   push[i][j] = bias + sum_a push_h[i + a - push_top][j][a],
   pull[i][j] = -bias + sum_{a, u} taps_v[a, u] pull_h[i + u - pull_top][j][a],
   both in one pass over the columns (weighted_sums_both, no entry shared). */
static VECTOR_CLONES void NAME(taps_out_row)(const geometry *geo, const SCALAR *h_ring,
                                             long h_size, int i, int cols, const SCALAR *bias,
                                             SCALAR *push_row, SCALAR *pull_row) {
    const int o = geo->out_channels, sh = geo->sh;
    const long h_col = (long)sh * o;
    long offsets[MAX_TAPS * MAX_TAPS + MAX_TAPS];
    SCALAR push_weights[MAX_TAPS * MAX_TAPS + MAX_TAPS], weights[MAX_TAPS * MAX_TAPS + MAX_TAPS];
    int entries = 0;
    for (int a = 0; a < sh; a++) {
        const int r = i + a - geo->push_top;
        if (r < 0 || r >= geo->height) continue;
        offsets[entries] = (r % geo->ring_rows) * h_size + (long)a * o;
        push_weights[entries] = 1;
        weights[entries++] = 0;
    }
    const int push_end = entries;
    for (int u = 0; u < geo->ph; u++) {
        const int r = i + u - geo->pull_top;
        if (r < 0 || r >= geo->height) continue;
        for (int a = 0; a < sh; a++)
            if (geo->taps_v[a * geo->ph + u] != 0) {
                offsets[entries] = (r % geo->ring_rows) * h_size + cols * h_col + (long)a * o;
                push_weights[entries] = 0;
                weights[entries++] = (SCALAR)geo->taps_v[a * geo->ph + u];
            }
    }
    for (int j = 0; j < cols; j++) {
#ifdef TAPS_VECTORS
        const int pair = o % (4 * LANES) >= 2 * LANES && j + 1 < cols;
#else
        const int pair = 0;
#endif
        NAME(weighted_sums_both)(push_row + (long)j * o, pull_row + (long)j * o, o,
                                 h_ring + j * h_col, h_col, offsets, push_weights, weights,
                                 push_end, push_end, entries, o, pair, bias);
        j += pair;
    }
}

/* relu(push) - alpha * relu(pull) into response_row (which may be push_row), alpha rectified
   here where rectify_alpha; the ReLUs keep NaN, as torch.relu */
static VECTOR_CLONES void NAME(taps_inhibit)(SCALAR *response_row, const SCALAR *push_row,
                                             const SCALAR *pull_row, const SCALAR *alpha,
                                             int alpha_count, int rectify_alpha, long pixels,
                                             int o) {
    for (long p = 0; p < pixels; p++)
        for (int c = 0; c < o; c++) {
            const SCALAR push = push_row[p * o + c], pull = pull_row[p * o + c];
            const SCALAR given = alpha[alpha_count == 1 ? 0 : c];
            const SCALAR strength = rectify_alpha && given < 0 ? 0 : given;
            const SCALAR inhibition = strength * (pull < 0 ? 0 : pull);
            response_row[p * o + c] = (push < 0 ? 0 : push) - inhibition;
        }
}

/* push[n, i, j, o] = bias[o] + sum_{a, b} z[n, i + a - push_top, j + b - push_left, b, a, o]
   pull[n, i, j, o] = -bias[o] - sum_{a, b, u, v} taps_v[a, u] taps_h[b, v]
                                 * z[n, i + u - pull_top, j + v - pull_left, b, a, o]
   with z[n, r, col, b, a, o] = sum_c x[n, r, col, c] weights[c, (b*sh + a)*O + o] (zero outside
   the image): x [N, H, W, C] and both outputs [N, Ho, Wo, O] channels-last, or all NCHW
   (planar), stride 1, no dilation, one group. With alpha (one value or one per channel,
   rectified here where rectify_alpha, else already) push receives relu(push) -
   relu(alpha) * relu(pull); where mask is given (training),
   mask [N, Ho, Wo, O] the branches whose ReLU passes a gradient (bit 0 push, bit 1 pull: a
   pre-activation > 0 or NaN, as torch's threshold_backward) and pull, unless NULL, the pull's
   pre-activation (for a learned alpha's gradient), both channels-last whatever the layout of x;
   else pull is not written. Tasks are
   (image, band of output rows, tile of tile_cols output columns); each thread's scratch holds
   gemm_rows rows of z, [gemm_rows][ring_width][sw*sh*O] (taps_ring_width), then the ring of rows
   summed along (taps_along_row), [ring_rows][2][tile][sh][O], and two output rows [tile][O]
   (tile: tile_cols, at most the output's width). Returns 1 on bad arguments, 2 when a result is
   not finite (the factored sums differ from the convolution's there: the caller recomputes).

   With one thread there is no parallel region: MKL's GEMM called in a region of one thread
   starts a nested team of its own on every call. */
typedef struct {
    const geometry *geo;
    const SCALAR *x, *weights, *bias, *alpha;
    SCALAR *push, *pull;
    unsigned char *mask;
    int alpha_count, rectify_alpha, bands, planar;
    NAME(taps_gemm_fn) mix;
} NAME(taps_call);

/* which ReLUs pass a gradient, bit 0 push, bit 1 pull: not <= 0 (NaN passes, as in torch) */
static VECTOR_CLONES void NAME(taps_mask)(unsigned char *restrict mask,
                                          const SCALAR *restrict push_row,
                                          const SCALAR *restrict pull_row, long count) {
    for (long k = 0; k < count; k++)
        mask[k] = (unsigned char)(!(push_row[k] <= 0) | (!(pull_row[k] <= 0) << 1));
}

#ifdef TAPS_VECTORS
/* block[k] = column k of the LANES x LANES block whose rows are rows[0 .. LANES): a transposition
   in shuffles (unpack, then pairs, then halves), as the row-major loop's strided loads and
   stores were the dearest part of an NCHW output */
TAPS_INLINE void NAME(transpose_block)(NAME(vector) *block) {
#if TAPS_LANES == 8
    typedef int mask __attribute__((vector_size(32)));
    NAME(vector) pairs[8], quads[8];
    for (int k = 0; k < 8; k += 2) {
        pairs[k] = __builtin_shuffle(block[k], block[k + 1], (mask){0, 8, 1, 9, 4, 12, 5, 13});
        pairs[k + 1] =
            __builtin_shuffle(block[k], block[k + 1], (mask){2, 10, 3, 11, 6, 14, 7, 15});
    }
    for (int k = 0; k < 8; k += 4)
        for (int h = 0; h < 2; h++) {
            quads[k + 2 * h] =
                __builtin_shuffle(pairs[k + h], pairs[k + h + 2], (mask){0, 1, 8, 9, 4, 5, 12, 13});
            quads[k + 2 * h + 1] = __builtin_shuffle(pairs[k + h], pairs[k + h + 2],
                                                     (mask){2, 3, 10, 11, 6, 7, 14, 15});
        }
    for (int k = 0; k < 4; k++) {
        block[k] = __builtin_shuffle(quads[k], quads[k + 4], (mask){0, 1, 2, 3, 8, 9, 10, 11});
        block[k + 4] =
            __builtin_shuffle(quads[k], quads[k + 4], (mask){4, 5, 6, 7, 12, 13, 14, 15});
    }
#elif TAPS_LANES == 4
    typedef long long mask __attribute__((vector_size(32)));
    NAME(vector) pairs[4];
    for (int k = 0; k < 4; k += 2) {
        pairs[k] = __builtin_shuffle(block[k], block[k + 1], (mask){0, 4, 2, 6});
        pairs[k + 1] = __builtin_shuffle(block[k], block[k + 1], (mask){1, 5, 3, 7});
    }
    for (int k = 0; k < 2; k++) {
        block[k] = __builtin_shuffle(pairs[k], pairs[k + 2], (mask){0, 1, 4, 5});
        block[k + 2] = __builtin_shuffle(pairs[k], pairs[k + 2], (mask){2, 3, 6, 7});
    }
#else
#error "TAPS_LANES: 8 (float) or 4 (double)"
#endif
}
#endif

/* columns j0 .. j0 + cols - 1 of row [cols][O] into output row i of image n of an NCHW tensor,
   in blocks of LANES columns by LANES channels */
static VECTOR_CLONES void NAME(scatter_row)(const geometry *geo, const SCALAR *row, SCALAR *out,
                                            long n, int i, int j0, int cols) {
    const long plane = (long)geo->out_height * geo->out_width;
    const int o = geo->out_channels;
    SCALAR *dst = out + n * o * plane + (long)i * geo->out_width + j0;
    int j = 0;
#ifdef TAPS_VECTORS
    for (; j + LANES <= cols; j += LANES) {
        int c = 0;
        for (; c + LANES <= o; c += LANES) {
            NAME(vector) block[TAPS_LANES];
            for (int k = 0; k < LANES; k++) LOAD(block[k], row + (long)(j + k) * o + c);
            NAME(transpose_block)(block);
            for (int k = 0; k < LANES; k++)
                memcpy(dst + (c + k) * plane + j, &block[k], sizeof block[k]);
        }
        for (; c < o; c++)
            for (int k = 0; k < LANES; k++) dst[c * plane + j + k] = row[(long)(j + k) * o + c];
    }
#endif
    for (; j < cols; j++)
        for (int c = 0; c < o; c++) dst[c * plane + j] = row[(long)j * o + c];
}

/* The input columns c0 .. c1 - 1 that output columns j0 .. j0 + cols - 1 read (all columns when
   one tile covers the row, so that a GEMM spans whole rows). */
static void NAME(tile_inputs)(const geometry *geo, int j0, int cols, int *c0, int *c1) {
    if (cols >= geo->out_width) {
        *c0 = 0;
        *c1 = geo->width;
        return;
    }
    *c0 = j0 + geo->col_lo > 0 ? j0 + geo->col_lo : 0;
    *c1 = j0 + cols + geo->col_hi < geo->width ? j0 + cols + geo->col_hi : geo->width;
}

/* Tasks first .. end - 1, with this thread's scratch. Returns 2 when a result is not finite. */
static int NAME(taps_tasks)(const NAME(taps_call) *call, long first_task, long end_task,
                            SCALAR *scratch) {
    const geometry *geo = call->geo;
    const int height = geo->height, width = geo->width, out_height = geo->out_height;
    const int gemm_rows = geo->gemm_rows, ring_rows = geo->ring_rows, o = geo->out_channels;
    const long pixel = (long)geo->sh * geo->sw * o, row_size = geo->ring_width * pixel;
    const long out_row = (long)geo->out_width * o, plane = (long)height * width;
    const long tiles = (geo->out_width + geo->tile_cols - 1) / geo->tile_cols;
    const int tile = geo->tile_cols < geo->out_width ? geo->tile_cols : geo->out_width;
    const long h_size = 2L * tile * geo->sh * o; /* a row of the ring, summed along */
    SCALAR *z = scratch, *h_ring = z + gemm_rows * row_size;
    SCALAR *spare_push = h_ring + ring_rows * h_size;
    SCALAR *spare_pull = spare_push + (long)tile * o;
    const long band_rows = (out_height + call->bands - 1) / call->bands;
    for (long task = first_task; task < end_task; task++) {
        const long n = task / (call->bands * tiles);
        const int first = (int)((task / tiles % call->bands) * band_rows);
        const int last = first + band_rows < out_height ? first + (int)band_rows : out_height;
        const int j0 = (int)(task % tiles) * geo->tile_cols;
        const int cols = geo->out_width - j0 < geo->tile_cols ? geo->out_width - j0 : geo->tile_cols;
        int c0, c1;
        NAME(tile_inputs)(geo, j0, cols, &c0, &c1);
        const int in_width = c1 - c0, k = geo->channels, taps_out = (int)pixel;
        /* z rows are computed gemm_rows at a time into z (from chunk on; a tile narrower than the
           image takes one GEMM per row) and each is summed along into the ring as an output row
           first needs it */
        long next = first + geo->row_lo > 0 ? first + geo->row_lo : 0;
        long chunk = next, chunk_end = next;
        for (int i = first; i < last; i++) {
            const long needed = i + geo->row_hi + 1 < height ? i + geo->row_hi + 1 : height;
            for (; next < needed; next++) {
                if (next >= chunk_end) {
                    chunk = next;
                    const int rows = height - chunk < gemm_rows ? (int)(height - chunk) : gemm_rows;
                    chunk_end = chunk + rows;
                    const int x_stride = call->planar ? (int)plane : k;
                    const SCALAR one = 1, zero = 0;
                    for (int r = 0; r < rows; r += in_width == width ? rows : 1) {
                        /* row-major z[P, taps_out] = x[P, C] @ weights[C, taps_out]; NCHW x is the
                           transposed matrix, one plane per channel */
                        const long row = chunk + r;
                        const int pixels = (in_width == width ? rows : 1) * in_width;
                        const SCALAR *x = call->planar
                                              ? call->x + n * k * plane + row * width + c0
                                              : call->x + ((n * height + row) * width + c0) * k;
                        call->mix("N", call->planar ? "T" : "N", &taps_out, &pixels, &k, &one,
                                  call->weights, &taps_out, x, &x_stride, &zero, z + r * row_size,
                                  &taps_out);
                    }
                }
                NAME(taps_along_row)(geo, z + (next - chunk) * row_size, j0, cols, c0, in_width,
                                     h_ring + (next % ring_rows) * h_size);
            }
            const long out_offset = (n * out_height + i) * out_row + (long)j0 * o;
            /* rows of the pre-activations: the outputs' own (channels-last), else spare rows; in
               training the pull's where it is kept */
            const int inhibit = call->alpha != NULL, masked = call->mask != NULL;
            const int spare = call->planar || inhibit;
            SCALAR *push_row = spare ? spare_push : call->push + out_offset;
            SCALAR *pull_row =
                spare && !(masked && call->pull != NULL) ? spare_pull : call->pull + out_offset;
            NAME(taps_out_row)(geo, h_ring, h_size, i, cols, call->bias, push_row, pull_row);
            if ((!inhibit || masked) && (!NAME(all_finite)(push_row, (long)cols * o) ||
                                         !NAME(all_finite)(pull_row, (long)cols * o)))
                return 2;
            if (masked) NAME(taps_mask)(call->mask + out_offset, push_row, pull_row, (long)cols * o);
            SCALAR *out_row_start = push_row; /* the row scattered into an NCHW push */
            if (inhibit) {
                out_row_start = call->planar ? spare_push : call->push + out_offset;
                NAME(taps_inhibit)(out_row_start, push_row, pull_row, call->alpha,
                                   call->alpha_count, call->rectify_alpha, cols, o);
                if (!masked && !NAME(all_finite)(out_row_start, (long)cols * o)) return 2;
            }
            if (call->planar) {
                NAME(scatter_row)(geo, out_row_start, call->push, n, i, j0, cols);
                if (!inhibit) NAME(scatter_row)(geo, pull_row, call->pull, n, i, j0, cols);
            }
        }
    }
    return 0;
}

/* The GEMM's weights from the push kernel k ([O][C][sh][sw] at the given strides, in elements):
   weights[c][(b*sh + a)*O + o] = k[o][c][a][b], z in tap-major order, columns of taps first
   (taps_along_row). Here rather than as PyTorch's permutation: three operators a call took a
   share of a small layer's time (BENCHMARKS.md, run 17). */
static void NAME(gemm_weights)(const geometry *geo, const SCALAR *kernel, long stride_o,
                               long stride_c, long stride_a, long stride_b, SCALAR *weights) {
    const int o_count = geo->out_channels, sh = geo->sh, sw = geo->sw;
    for (int c = 0; c < geo->channels; c++)
        for (int b = 0; b < sw; b++)
            for (int a = 0; a < sh; a++) {
                SCALAR *dst = weights + ((long)c * sw * sh + (long)b * sh + a) * o_count;
                const SCALAR *src = kernel + c * stride_c + a * stride_a + b * stride_b;
                for (int o = 0; o < o_count; o++) dst[o] = src[o * stride_o];
            }
}

/* weights: C * sh * sw * O elements for the GEMM's weights, which this fills from kernel */
int NAME(push_pull_taps)(const SCALAR *x, SCALAR *push, SCALAR *pull, unsigned char *mask,
                         long batch, int channels,
                         int height, int width, int out_height, int out_width, int sh, int sw,
                         int push_top, int push_left, int ph, int pw, const double *taps_v,
                         const double *taps_h, int pull_top, int pull_left, const SCALAR *kernel,
                         long stride_o, long stride_c, long stride_a, long stride_b,
                         SCALAR *weights, const SCALAR *bias, int out_channels,
                         const SCALAR *alpha, int alpha_count, int rectify_alpha,
                         int ring_rows, int gemm_rows,
                         int tile_cols, int bands, int planar, SCALAR *scratch,
                         long scratch_per_thread, void *gemm, int num_threads) {
    geometry geo = {channels, height, width, out_height, out_width, sh, sw, push_top, push_left,
                    ph, pw, pull_top, pull_left, out_channels, ring_rows, gemm_rows, tile_cols};
    geo.taps_v = taps_v;
    geo.taps_h = taps_h;
    if (gemm == NULL || bands < 1 || check_geometry(&geo) || check_ring(&geo)) return 1;
    geo.ring_width = taps_ring_width(&geo);
    if (scratch_per_thread < taps_scratch(&geo)) return 1;
    if (mask != NULL && alpha == NULL) return 1;
    NAME(gemm_weights)(&geo, kernel, stride_o, stride_c, stride_a, stride_b, weights);
    const NAME(taps_call) call = {&geo,        x,           weights,       bias,  alpha,
                                  push,        pull,        mask,          alpha_count,
                                  rectify_alpha, bands,     planar,        (NAME(taps_gemm_fn))gemm};
    const long tasks = batch * bands * ((out_width + tile_cols - 1) / tile_cols);
    int status = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads <= 1) return NAME(taps_tasks)(&call, 0, tasks, scratch);
#pragma omp parallel num_threads(num_threads) reduction(| : status)
    {
        const long team = TEAM_SIZE, thread = THREAD_ID;
        /* static split, as schedule(static) */
        const long first = tasks * thread / team, end = tasks * (thread + 1) / team;
        status |= NAME(taps_tasks)(&call, first, end, scratch + thread * scratch_per_thread);
    }
    return status;
}

/* The rows of an output gradient that the backward pass reads: the gradient itself ([Ho][Wo][O]
   of image n), or, for an NCHW gradient, a ring of its rows transposed to [cols][O] (columns
   first_col ..), ring_rows of them from row first_row on. */
typedef struct {
    const SCALAR *data;
    long row_size, first_row;
    int ring_rows, first_col;
} NAME(grad_rows);

static inline long NAME(row_at)(const NAME(grad_rows) *rows, int i) {
    return ((i - rows->first_row) % rows->ring_rows) * rows->row_size;
}

/* The gradient of z for input row r, columns c0 .. c0 + in_width - 1, [in_width][sh][sw][O], from
   the outputs' gradients (either NULL for zero): z feeds push[i, j] at (i, j) = (r - a +
   push_top, col - b + push_left) and the pull through the transposed smoothing, with minus signs.
   vertical is [in_width + pw - 1][sh][O] scratch. */
static VECTOR_CLONES void NAME(grad_z_row)(const geometry *geo, const NAME(grad_rows) *push,
                                           const NAME(grad_rows) *pull, int r, int c0,
                                           int in_width, SCALAR *grad_z, SCALAR *vertical) {
    const int o = geo->out_channels, sh = geo->sh, sw = geo->sw;
    const int out_width = geo->out_width;
    const long pixel = (long)sh * sw * o;
    NAME(tap_list) taps;
    if (pull == NULL) {
        for (long k = 0; k < in_width * pixel; k++) grad_z[k] = 0;
    } else {
        /* the output columns jv0 .. jv1 - 1 whose pull reads these input columns */
        const int reach = c0 + geo->pull_left - (geo->pw - 1);
        const int jv0 = reach > 0 ? reach : 0;
        const int jv1 = c0 + in_width + geo->pull_left < out_width ? c0 + in_width + geo->pull_left
                                                                    : out_width;
        /* vertical[j][a] = sum_u taps_v[a, u] grad_pull[r - u + pull_top][j] */
        for (int a = 0; a < sh; a++) {
            taps.entries = 0;
            for (int u = 0; u < geo->ph; u++) {
                const int i = r - u + geo->pull_top;
                const SCALAR t = (SCALAR)geo->taps_v[a * geo->ph + u];
                if (t == 0 || i < 0 || i >= geo->out_height) continue;
                taps.offsets[taps.entries] = NAME(row_at)(pull, i) + (long)(jv0 - pull->first_col) * o;
                taps.shifts[taps.entries] = jv0;
                taps.weights[taps.entries++] = t;
            }
            NAME(sum_along_row)(&taps, pull->data, o, out_width, vertical + (long)a * o,
                                (long)sh * o, jv1 > jv0 ? jv1 - jv0 : 0, o, NULL, 0, 0);
        }
        /* grad_z[col][a][b] = -sum_v taps_h[b, v] vertical[col - v + pull_left][a] */
        for (int b = 0; b < sw; b++) {
            taps.entries = 0;
            for (int v = 0; v < geo->pw; v++) {
                const SCALAR t = (SCALAR)geo->taps_h[b * geo->pw + v];
                if (t == 0) continue;
                const int shift = c0 - jv0 + geo->pull_left - v;
                taps.offsets[taps.entries] = shift * (long)sh * o;
                taps.shifts[taps.entries] = shift;
                taps.weights[taps.entries++] = -t;
            }
            for (int a = 0; a < sh; a++)
                NAME(sum_along_row)(&taps, vertical + (long)a * o, (long)sh * o,
                                    jv1 > jv0 ? jv1 - jv0 : 0, grad_z + ((long)a * sw + b) * o,
                                    pixel, in_width, o, NULL, 0, 0);
        }
    }
    if (push == NULL) return;
    /* + grad_push[r - a + push_top][col - b + push_left] */
    for (int a = 0; a < sh; a++) {
        const int i = r - a + geo->push_top;
        if (i < 0 || i >= geo->out_height) continue;
        for (int b = 0; b < sw; b++) {
            const int shift = c0 + geo->push_left - b;
            SCALAR *dst = grad_z + ((long)a * sw + b) * o;
            taps.offsets[0] = NAME(row_at)(push, i) + (long)(shift - push->first_col) * o;
            taps.shifts[0] = shift;
            taps.weights[0] = 1;
            taps.entries = 1;
            NAME(sum_along_row)(&taps, push->data, o, out_width, dst, pixel, in_width, o, dst,
                                pixel, 1);
        }
    }
}

typedef struct {
    const geometry *geo;
    const SCALAR *x, *grad_push, *grad_pull, *weights;
    const SCALAR *grad, *alpha; /* the response's gradient (or NULL) */
    const unsigned char *mask;
    SCALAR *grad_x, *grad_weights;
    int alpha_count, bands, planar;
    NAME(taps_gemm_fn) mix;
} NAME(taps_backward_call);

/* Output row i, columns first_col .. first_col + cols - 1, of the NCHW gradient of image n into
   its slot of the ring, channels-last. */
static void NAME(transpose_row)(const geometry *geo, const SCALAR *grad, NAME(grad_rows) *rows,
                                SCALAR *ring, int i, int cols) {
    const long plane = (long)geo->out_height * geo->out_width;
    const int o = geo->out_channels;
    SCALAR *dst = ring + NAME(row_at)(rows, i);
    const SCALAR *src = grad + (long)i * geo->out_width + rows->first_col;
    for (int c = 0; c < o; c++)
        for (int j = 0; j < cols; j++) dst[(long)j * o + c] = src[c * plane + j];
}

/* dst[k] = src[k] where bit is set in mask[k], else 0 */
static VECTOR_CLONES void NAME(masked_copy)(SCALAR *restrict dst, const SCALAR *restrict src,
                                            const unsigned char *restrict mask, int bit,
                                            long count) {
    for (long k = 0; k < count; k++) dst[k] = mask[k] & bit ? src[k] : 0;
}

/* data[k] = 0 where bit is not set in mask[k] */
static VECTOR_CLONES void NAME(masked_keep)(SCALAR *restrict data,
                                            const unsigned char *restrict mask, int bit,
                                            long count) {
    for (long k = 0; k < count; k++) data[k] = mask[k] & bit ? data[k] : 0;
}

/* dst[p][c] = -(alpha[c] * src[p][c]) */
static VECTOR_CLONES void NAME(inhibition_rows)(SCALAR *restrict dst, const SCALAR *restrict src,
                                                const SCALAR *restrict alpha, int cols, int o) {
    for (long k0 = 0; k0 < (long)cols * o; k0 += o)
        for (int c = 0; c < o; c++) dst[k0 + c] = -(alpha[c] * src[k0 + c]);
}

/* Output row i, columns first_col .. first_col + cols - 1, of the gradients of push and pull of
   image n into their rings, channels-last, from the gradient of the response relu(push) - alpha *
   relu(pull) (NCHW if planar, else channels-last) and the mask of the forward pass (taps_mask,
   channels-last): grad_push = grad where bit 0 is set, else 0; grad_pull = -alpha * grad where
   bit 1 is, as PyTorch's ReLU and multiplication give them. An NCHW gradient is transposed into
   the push ring first, so that the masking runs over contiguous channels. */
static void NAME(response_rows)(const NAME(taps_backward_call) *call, long n,
                                const NAME(grad_rows) *rows, SCALAR *push_ring, SCALAR *pull_ring,
                                int i, int cols) {
    const geometry *geo = call->geo;
    const int o = geo->out_channels, width = geo->out_width;
    const long plane = (long)geo->out_height * width, pixel0 = (long)i * width + rows->first_col;
    const long saved0 = (n * plane + pixel0) * o, ring0 = NAME(row_at)(rows, i);
    const unsigned char *mask = call->mask + saved0;
    SCALAR *push_dst = push_ring + ring0, *pull_dst = pull_ring + ring0;
    if (!call->planar) {
        NAME(inhibition_rows)(pull_dst, call->grad + saved0, call->alpha, cols, o);
        NAME(masked_keep)(pull_dst, mask, 2, (long)cols * o);
        NAME(masked_copy)(push_dst, call->grad + saved0, mask, 1, (long)cols * o);
        return;
    }
    const SCALAR *src = call->grad + n * o * plane + pixel0;
    for (int c = 0; c < o; c++)
        for (int j = 0; j < cols; j++) push_dst[(long)j * o + c] = src[c * plane + j];
    NAME(inhibition_rows)(pull_dst, push_dst, call->alpha, cols, o);
    NAME(masked_keep)(pull_dst, mask, 2, (long)cols * o);
    NAME(masked_keep)(push_dst, mask, 1, (long)cols * o);
}

/* Backward tasks first .. end - 1, with this thread's scratch and sum of weight gradients.
   Returns 2 when an input gradient is not finite. */
static int NAME(taps_backward_tasks)(const NAME(taps_backward_call) *call, long first_task,
                                     long end_task, SCALAR *scratch, SCALAR *grad_weights) {
    const geometry *geo = call->geo;
    const int height = geo->height, width = geo->width, gemm_rows = geo->gemm_rows;
    const int o = geo->out_channels, out_height = geo->out_height;
    const long pixel = (long)geo->sh * geo->sw * o;
    const long row_size = geo->ring_width * pixel;
    const long band_rows = (height + call->bands - 1) / call->bands;
    const long out_image = (long)out_height * geo->out_width * o;
    const long tiles = (width + geo->tile_cols - 1) / geo->tile_cols;
    const int span_rows = geo->row_hi - geo->row_lo + 1;
    const long ring_row = (long)taps_grad_ring_width(geo) * o;
    SCALAR *grad_z = scratch, *vertical = scratch + gemm_rows * row_size;
    SCALAR *push_ring = vertical + (long)(geo->ring_width + geo->pw - 1) * geo->sh * o;
    SCALAR *pull_ring = push_ring + span_rows * ring_row;
    for (long task = first_task; task < end_task; task++) {
        const long n = task / (call->bands * tiles);
        const long first = (task / tiles % call->bands) * band_rows;
        const long last = first + band_rows < height ? first + band_rows : height;
        const int c0 = (int)(task % tiles) * geo->tile_cols;
        const int in_width = width - c0 < geo->tile_cols ? width - c0 : geo->tile_cols;
        const SCALAR *grad_push = call->grad_push == NULL ? NULL : call->grad_push + n * out_image;
        const SCALAR *grad_pull = call->grad_pull == NULL ? NULL : call->grad_pull + n * out_image;
        NAME(grad_rows) push = {grad_push, (long)geo->out_width * o, 0, out_height, 0};
        NAME(grad_rows) pull = {grad_pull, (long)geo->out_width * o, 0, out_height, 0};
        /* NCHW gradients or the response's: the output rows and columns these input pixels read,
           channels-last */
        const int rings = call->planar || call->grad != NULL;
        int next = 0, cols = 0;
        if (rings) {
            const int j0 = c0 - geo->col_hi > 0 ? c0 - geo->col_hi : 0;
            const int j1 = c0 + in_width - geo->col_lo < geo->out_width
                               ? c0 + in_width - geo->col_lo
                               : geo->out_width;
            next = first - geo->row_hi > 0 ? (int)first - geo->row_hi : 0;
            cols = j1 - j0;
            push = (NAME(grad_rows)){push_ring, ring_row, next, span_rows, j0};
            pull = (NAME(grad_rows)){pull_ring, ring_row, next, span_rows, j0};
        }
        const NAME(grad_rows) *push_rows =
            call->grad_push == NULL && call->grad == NULL ? NULL : &push;
        const NAME(grad_rows) *pull_rows =
            call->grad_pull == NULL && call->grad == NULL ? NULL : &pull;
        for (long r0 = first; r0 < last; r0 += gemm_rows) {
            const int rows = last - r0 < gemm_rows ? (int)(last - r0) : gemm_rows;
            for (int k = 0; k < rows; k++) {
                const int r = (int)(r0 + k);
                for (; rings && next <= r - geo->row_lo && next < out_height; next++) {
                    if (call->grad != NULL)
                        NAME(response_rows)(call, n, &push, push_ring, pull_ring, next, cols);
                    if (grad_push != NULL)
                        NAME(transpose_row)(geo, grad_push, &push, push_ring, next, cols);
                    if (grad_pull != NULL)
                        NAME(transpose_row)(geo, grad_pull, &pull, pull_ring, next, cols);
                }
                NAME(grad_z_row)(geo, push_rows, pull_rows, r, c0, in_width,
                                 grad_z + k * row_size, vertical);
            }
            const int c = geo->channels, taps_out = (int)pixel;
            const SCALAR one = 1, zero = 0;
            /* one GEMM over whole rows, or one per row of a tile (ring rows row_size apart); an
               NCHW x and grad_x hold the pixels of each channel contiguously, [P, C] with the
               plane as its stride */
            const int x_stride = call->planar ? height * width : c;
            for (int k = 0; k < rows; k += in_width == width ? rows : 1) {
                const int pixels = (in_width == width ? rows : 1) * in_width;
                const long row = (r0 + k) * (long)width + c0;
                const long x_offset = call->planar ? n * c * (long)x_stride + row
                                                   : (n * height * (long)width + row) * c;
                const SCALAR *g = grad_z + k * row_size;
                if (call->grad_x != NULL) { /* row-major grad_x[P, C] = g[P, N] @ weights[C, N]^T */
                    SCALAR *dst = call->grad_x + x_offset;
                    if (call->planar)
                        call->mix("T", "N", &pixels, &c, &taps_out, &one, g, &taps_out,
                                  call->weights, &taps_out, &zero, dst, &x_stride);
                    else
                        call->mix("T", "N", &c, &pixels, &taps_out, &one, call->weights,
                                  &taps_out, g, &taps_out, &zero, dst, &c);
                    for (int j = 0; j < (call->planar ? c : 1); j++)
                        if (!NAME(all_finite)(dst + (long)j * x_stride,
                                              call->planar ? pixels : (long)pixels * c))
                            return 2;
                }
                if (grad_weights != NULL) /* row-major grad_weights[C, N] += x[P, C]^T @ g[P, N] */
                    call->mix("N", call->planar ? "N" : "T", &taps_out, &c, &pixels, &one, g,
                              &taps_out, call->x + x_offset, &x_stride, &one, grad_weights,
                              &taps_out);
            }
        }
    }
    return 0;
}

/* Gradients of push_pull_taps for x and its weights: with g = d(loss)/dz (grad_z_row), grad_x =
   g @ weights^T and grad_weights = x^T @ g, two GEMMs per block of gemm_rows input rows (or per
   row of a tile of tile_cols input columns), g built in this thread's scratch
   ([gemm_rows][ring_width][sh*sw*O], then [ring_width + pw - 1][sh][O], and for NCHW gradients
   two rings of their rows, channels-last: taps_backward_scratch).
   Tasks are (image, band of input rows, tile). grad_push, grad_pull: [N, Ho, Wo, O] or NULL
   (zero); or, in their place, grad (the gradient of relu(push) - alpha * relu(pull), alpha
   rectified, one value per channel: alpha_count = O) with the forward pass's mask ([N, Ho, Wo, O]
   whatever the layout: response_rows; grad_push and grad_pull NULL). x and grad_x (or NULL, else
   overwritten) [N, H, W, C], or all three [N, C, ...] (planar), grad too; grad_weights (or NULL)
   holds one [C, sh*sw*O] sum per thread, accumulated into (zero it first). Returns 1 on bad
   arguments, 2 when an input gradient is not finite (the caller recomputes). */
int NAME(push_pull_taps_backward)(const SCALAR *x, const SCALAR *grad_push,
                                  const SCALAR *grad_pull, const SCALAR *grad,
                                  const unsigned char *mask, const SCALAR *alpha,
                                  int alpha_count, SCALAR *grad_x,
                                  SCALAR *grad_weights,
                                  long batch, int channels, int height, int width, int out_height,
                                  int out_width, int sh, int sw, int push_top, int push_left,
                                  int ph, int pw, const double *taps_v, const double *taps_h,
                                  int pull_top, int pull_left, const SCALAR *weights,
                                  int out_channels, int gemm_rows, int tile_cols, int bands,
                                  int planar, SCALAR *scratch, long scratch_per_thread,
                                  void *gemm, int num_threads) {
    geometry geo = {channels, height, width, out_height, out_width, sh, sw, push_top, push_left,
                    ph, pw, pull_top, pull_left, out_channels, 0, gemm_rows, tile_cols};
    geo.taps_v = taps_v;
    geo.taps_h = taps_h;
    if (gemm == NULL || bands < 1 || check_geometry(&geo) ||
        (gemm_rows > 1 && tile_cols < width))
        return 1;
    geo.ring_width = tile_cols < width ? tile_cols : width;
    const int response = grad != NULL;
    if (response && (grad_push != NULL || grad_pull != NULL || mask == NULL || alpha == NULL ||
                     alpha_count != out_channels))
        return 1;
    if (scratch_per_thread < taps_backward_scratch(&geo, planar || response)) return 1;
    const NAME(taps_backward_call) call = {
        &geo,   x,      grad_push,    grad_pull,   weights, grad,  alpha,
        mask,   grad_x, grad_weights, alpha_count, bands,   planar, (NAME(taps_gemm_fn))gemm};
    const long tasks = batch * bands * ((width + tile_cols - 1) / tile_cols);
    const long weights_size = (long)channels * sh * sw * out_channels;
    int status = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads <= 1) /* no parallel region: see push_pull_taps */
        return NAME(taps_backward_tasks)(&call, 0, tasks, scratch, grad_weights);
#pragma omp parallel num_threads(num_threads) reduction(| : status)
    {
        const long team = TEAM_SIZE, thread = THREAD_ID;
        status |= NAME(taps_backward_tasks)(
            &call, tasks * thread / team, tasks * (thread + 1) / team,
            scratch + thread * scratch_per_thread,
            grad_weights == NULL ? NULL : grad_weights + thread * weights_size);
    }
    return status;
}
