/* The body of csrc/gemm.c for one scalar type: gemm.c includes it once per type with SCALAR (the
   element type) and NAME(f) (the exported name) defined. See gemm.c. */

/* Fortran BLAS GEMM (column-major), as MKL exports it */
typedef void (*NAME(blas_gemm_fn))(const char *, const char *, const int *, const int *,
                                   const int *, const SCALAR *, const SCALAR *, const int *,
                                   const SCALAR *, const int *, const SCALAR *, SCALAR *,
                                   const int *);

typedef SCALAR NAME(gemm_vec) __attribute__((vector_size(32)));
#define GEMM_LANES ((int)(sizeof(NAME(gemm_vec)) / sizeof(SCALAR)))
#define GEMM_COLUMNS 4 /* of B and C per tile */
#define GEMM_VECTORS 3 /* of A and C per tile: 12 accumulators and 3 loads in 16 AVX2 registers */
/* Bytes of A a block of rows takes: it stays in a core's cache while every column of B passes */
#define GEMM_BLOCK_BYTES (192 << 10)
/* A's columns and B's rows per pass over C */
#define GEMM_DEPTH 128
/* A is packed where its columns are further apart than this, or a multiple of 2 KiB apart (they
   would all fall in a few sets of the L1 cache) */
#define GEMM_PACK_STRIDE_BYTES 4096
#define GEMM_OWN_MAX_A_BYTES (2L << 20)

/* The BLAS's GEMM for the calls this one does not cover; set once by set_fallback_gemm. */
static NAME(blas_gemm_fn) NAME(fallback_gemm);

void NAME(set_fallback_gemm)(void *gemm) { NAME(fallback_gemm) = (NAME(blas_gemm_fn))gemm; }

static inline __attribute__((always_inline)) NAME(gemm_vec) NAME(gemm_load)(const SCALAR *p) {
    NAME(gemm_vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void NAME(gemm_store)(SCALAR *p, NAME(gemm_vec) v,
                                                                   int accumulate) {
    if (accumulate) v += NAME(gemm_load)(p);
    memcpy(p, &v, sizeof v);
}

/* C[0 .. vectors lanes, 0 .. columns) = (C +) sum_l A[:, l] B[l, :], A column-major (lda), B by
   element strides (b_row per l, b_col per column). Always inlined with constant vectors (1-3) and
   columns (1-4), so each use is a kernel of its own with only its accumulators, all named: gcc
   keeps an array of vectors in memory. */
static inline __attribute__((always_inline)) void NAME(gemm_tile)(
    const int vectors, const int columns, int k, const SCALAR *a, long lda, const SCALAR *b,
    long b_row, long b_col, SCALAR *c, long ldc, int accumulate) {
    NAME(gemm_vec) c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0},
                   c13 = {0}, c20 = {0}, c21 = {0}, c22 = {0}, c23 = {0}, a1 = {0}, a2 = {0};
    for (int l = 0; l < k; l++) {
        const SCALAR *column = a + l * lda, *row = b + l * b_row;
        const NAME(gemm_vec) a0 = NAME(gemm_load)(column);
        if (vectors > 1) a1 = NAME(gemm_load)(column + GEMM_LANES);
        if (vectors > 2) a2 = NAME(gemm_load)(column + 2 * GEMM_LANES);
        const SCALAR b0 = row[0];
        c00 += a0 * b0;
        if (vectors > 1) c10 += a1 * b0;
        if (vectors > 2) c20 += a2 * b0;
        if (columns > 1) {
            const SCALAR b1 = row[b_col];
            c01 += a0 * b1;
            if (vectors > 1) c11 += a1 * b1;
            if (vectors > 2) c21 += a2 * b1;
        }
        if (columns > 2) {
            const SCALAR b2 = row[2 * b_col];
            c02 += a0 * b2;
            if (vectors > 1) c12 += a1 * b2;
            if (vectors > 2) c22 += a2 * b2;
        }
        if (columns > 3) {
            const SCALAR b3 = row[3 * b_col];
            c03 += a0 * b3;
            if (vectors > 1) c13 += a1 * b3;
            if (vectors > 2) c23 += a2 * b3;
        }
    }
    const NAME(gemm_vec) tile[GEMM_COLUMNS][GEMM_VECTORS] = {
        {c00, c10, c20}, {c01, c11, c21}, {c02, c12, c22}, {c03, c13, c23}};
    for (int j = 0; j < columns; j++)
        for (int v = 0; v < vectors; v++)
            NAME(gemm_store)(c + j * ldc + v * GEMM_LANES, tile[j][v], accumulate);
}

/* C[i, j] = (C +) sum_l A[i, l] B[l, j] for fewer rows than a vector. */
static void NAME(gemm_edge)(int rows, int cols, int k, const SCALAR *a, long lda, const SCALAR *b,
                            long b_row, long b_col, SCALAR *c, long ldc, int accumulate) {
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++) {
            SCALAR sum = 0;
            for (int l = 0; l < k; l++) sum += a[i + l * lda] * b[l * b_row + j * b_col];
            c[i + j * ldc] = accumulate ? c[i + j * ldc] + sum : sum;
        }
}

/* Rows i0 .. i1 - 1 of the columns column .. column + columns - 1 of C (op(B)'s tile at b_tile,
   by row_stride and column_stride): whole tiles, then tiles of fewer vectors, then the rest. */
#define GEMM_COLUMN_TILES(columns)                                                                 \
    do {                                                                                           \
        int i = i0;                                                                                \
        for (; i + GEMM_VECTORS * GEMM_LANES <= i1; i += GEMM_VECTORS * GEMM_LANES)                \
            NAME(gemm_tile)(3, columns, k, a + i, lda, b_tile, row_stride, column_stride,          \
                            c + i + column * ldc, ldc, accumulate);                                \
        if (i + 2 * GEMM_LANES <= i1) {                                                            \
            NAME(gemm_tile)(2, columns, k, a + i, lda, b_tile, row_stride, column_stride,          \
                            c + i + column * ldc, ldc, accumulate);                                \
            i += 2 * GEMM_LANES;                                                                   \
        }                                                                                          \
        if (i + GEMM_LANES <= i1) {                                                                \
            NAME(gemm_tile)(1, columns, k, a + i, lda, b_tile, row_stride, column_stride,          \
                            c + i + column * ldc, ldc, accumulate);                                \
            i += GEMM_LANES;                                                                       \
        }                                                                                          \
        NAME(gemm_edge)(i1 - i, columns, k, a + i, lda, b_tile, row_stride, column_stride,         \
                        c + i + column * ldc, ldc, accumulate);                                    \
    } while (0)

/* Rows row_begin .. row_end - 1 of C, a block of A's rows at a time with every column of B over
   it. */
static inline __attribute__((always_inline)) void NAME(gemm_rows)(
    int row_begin, int row_end, int n, int k, const SCALAR *a, long lda, const SCALAR *b,
    long b_row, long b_col, SCALAR *c, long ldc, int accumulate) {
    const int tile_rows = GEMM_VECTORS * GEMM_LANES;
    long block_rows = GEMM_BLOCK_BYTES / ((long)(k > 0 ? k : 1) * sizeof(SCALAR));
    block_rows = block_rows < tile_rows ? tile_rows : block_rows - block_rows % tile_rows;
    for (int i0 = row_begin; i0 < row_end; i0 += (int)block_rows) {
        const int i1 = row_end - i0 < block_rows ? row_end : i0 + (int)block_rows;
        for (int column = 0; column < n; column += GEMM_COLUMNS) {
            const int columns = n - column < GEMM_COLUMNS ? n - column : GEMM_COLUMNS;
            /* B's rows far apart (an NCHW input, a plane per channel): its tile is copied together
               first, as A's columns in gemm_cover */
            SCALAR packed[GEMM_DEPTH * GEMM_COLUMNS];
            const SCALAR *b_tile = b + column * b_col;
            long row_stride = b_row, column_stride = b_col;
            if (b_row * (long)sizeof(SCALAR) > GEMM_PACK_STRIDE_BYTES && k <= GEMM_DEPTH) {
                for (int l = 0; l < k; l++)
                    for (int j = 0; j < columns; j++)
                        packed[l * GEMM_COLUMNS + j] = b_tile[l * b_row + j * b_col];
                b_tile = packed, row_stride = GEMM_COLUMNS, column_stride = 1;
            }
            switch (columns) {
                case 4: GEMM_COLUMN_TILES(4); break;
                case 3: GEMM_COLUMN_TILES(3); break;
                case 2: GEMM_COLUMN_TILES(2); break;
                case 1: GEMM_COLUMN_TILES(1); break;
            }
        }
    }
}

static VECTOR_CLONES void NAME(gemm_cover)(int m, int n, int k, const SCALAR *a, long lda,
                                          const SCALAR *b, long b_row, long b_col, SCALAR *c,
                                          long ldc, int accumulate) {
    const int tile_rows = GEMM_VECTORS * GEMM_LANES;
    int packed_rows = 0;
    /* A's columns far apart (the planar maps of a block of pixels: a tile would read each of its
       k columns from another page) or a multiple of 2 KiB apart: whole tiles of rows are first
       copied together */
    const long column_bytes = lda * (long)sizeof(SCALAR);
    if (column_bytes > GEMM_PACK_STRIDE_BYTES ||
        (column_bytes >= 2048 && column_bytes % 2048 == 0)) {
        SCALAR packed[GEMM_DEPTH * GEMM_VECTORS * 32 / sizeof(SCALAR)];
        packed_rows = m - m % tile_rows;
        for (int i = 0; i < packed_rows; i += tile_rows) {
            for (int l = 0; l < k; l++) memcpy(packed + l * tile_rows, a + i + l * lda,
                                               sizeof(SCALAR) * tile_rows);
            int j = 0;
            for (; j + GEMM_COLUMNS <= n; j += GEMM_COLUMNS)
                NAME(gemm_tile)(3, 4, k, packed, tile_rows, b + j * b_col, b_row, b_col,
                                c + i + j * ldc, ldc, accumulate);
            for (; j < n; j++)
                NAME(gemm_tile)(3, 1, k, packed, tile_rows, b + j * b_col, b_row, b_col,
                                c + i + j * ldc, ldc, accumulate);
        }
    }
    NAME(gemm_rows)(packed_rows, m, n, k, a, lda, b, b_row, b_col, c, ldc, accumulate);
}
#undef GEMM_COLUMN_TILES

/* The BLAS GEMM's signature and meaning, C = alpha op(A) op(B) + beta C, column-major. */
void NAME(gemm)(const char *transa, const char *transb, const int *m, const int *n, const int *k,
                const SCALAR *alpha, const SCALAR *a, const int *lda, const SCALAR *b,
                const int *ldb, const SCALAR *beta, SCALAR *c, const int *ldc) {
    const int b_transposed = *transb == 'T' || *transb == 't';
    /* tall and deep products (hundreds of output taps over megabytes of weights, as in a converted
       512-channel layer) stay MKL's, whose packing is faster there (BENCHMARKS.md, run 14) */
    const int tall_and_deep =
        *m >= 512 && (long)*m * *k * (long)sizeof(SCALAR) > GEMM_OWN_MAX_A_BYTES;
    if ((*transa != 'N' && *transa != 'n') || *alpha != 1 || (*beta != 0 && *beta != 1) ||
        (!b_transposed && *transb != 'N' && *transb != 'n') || tall_and_deep) {
        NAME(fallback_gemm)(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (*m <= 0 || *n <= 0) return;
    /* op(B)[l, j] = B[l + j*ldb], or B[j + l*ldb] transposed */
    const long b_row = b_transposed ? *ldb : 1, b_col = b_transposed ? 1 : *ldb;
    /* at most GEMM_DEPTH of A's columns and B's rows at a time, in equal parts: a tile's A and B
       stay in the L1 cache */
    const int parts = (*k + GEMM_DEPTH - 1) / GEMM_DEPTH;
    const int step = parts > 1 ? (*k + parts - 1) / parts : *k;
    for (int l = 0; l < *k || l == 0; l += step > 0 ? step : 1) {
        const int depth = *k - l < step ? *k - l : step;
        NAME(gemm_cover)(*m, *n, depth, a + (long)l * *lda, *lda, b + l * b_row, b_row, b_col, c,
                         *ldc, *beta != 0 || l > 0);
    }
}
#undef GEMM_LANES
#undef GEMM_COLUMNS
#undef GEMM_VECTORS
#undef GEMM_BLOCK_BYTES
#undef GEMM_PACK_STRIDE_BYTES
#undef GEMM_OWN_MAX_A_BYTES
#undef GEMM_DEPTH
