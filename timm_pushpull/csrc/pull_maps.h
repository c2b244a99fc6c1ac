/* The body of csrc/pull_maps.c for one scalar type: pull_maps.c includes it once per type with
   SCALAR (the element type) and NAME(f) (the exported name) defined. See pull_maps.c. */

/* dst[0 .. count) += t * src[0 .. count), vectorised over channels. */
static inline void NAME(scale_add)(SCALAR *restrict dst, const SCALAR *restrict src, SCALAR t,
                                   long count) {
    for (long k = 0; k < count; k++) dst[k] += t * src[k];
}

/* dst[0 .. count) = sum_t taps[t] * sources[t][0 .. count), the taps in the order given: the same
   sums as a scale_add pass per tap over a zeroed dst, but each block of dst is summed in vector
   registers and stored once, where a pass per tap loads and stores all of dst every time. GCC's
   vector extension (clang has it too) says which loop is the vector one: left to itself, gcc
   vectorises the loop over taps instead. */
typedef SCALAR NAME(lanes) __attribute__((vector_size(32)));
static inline void NAME(tap_sum)(SCALAR *restrict dst, const SCALAR *const *sources,
                                 const SCALAR *taps, int tap_count, long count) {
    const long lanes = (long)(sizeof(NAME(lanes)) / sizeof(SCALAR));
    long k = 0;
    for (; k + 2 * lanes <= count; k += 2 * lanes) {
        NAME(lanes) low = {0}, high = {0}, source;
        for (int t = 0; t < tap_count; t++) {
            memcpy(&source, sources[t] + k, sizeof source);
            low += taps[t] * source;
            memcpy(&source, sources[t] + k + lanes, sizeof source);
            high += taps[t] * source;
        }
        memcpy(dst + k, &low, sizeof low);
        memcpy(dst + k + lanes, &high, sizeof high);
    }
    for (; k + lanes <= count; k += lanes) {
        NAME(lanes) sum = {0}, source;
        for (int t = 0; t < tap_count; t++) {
            memcpy(&source, sources[t] + k, sizeof source);
            sum += taps[t] * source;
        }
        memcpy(dst + k, &sum, sizeof sum);
    }
    for (; k < count; k++) {
        SCALAR sum = 0;
        for (int t = 0; t < tap_count; t++) sum += taps[t] * sources[t][k];
        dst[k] = sum;
    }
}

/* The vertically filtered input rows of output row i of image n into smooth, [sh][padded
   width][C]; its padding stays zero. */
static VECTOR_CLONES void NAME(vertical_rows)(const geometry *geo, const SCALAR *x, SCALAR *smooth,
                                              long n, int i) {
    const int channels = geo->channels;
    const long row_size = (long)geo->width * channels, smooth_size = geo->cols.padded * channels;
    for (int a = 0; a < geo->sh; a++) {
        SCALAR *row = smooth + a * smooth_size + geo->cols.before * channels;
        for (long k = 0; k < row_size; k++) row[k] = 0;
        for (int u = geo->rows.first[a]; u <= geo->rows.last[a]; u++) {
            const int r = i * geo->stride_h + u * geo->dil_h - geo->pad_top;
            if (r >= 0 && r < geo->height)
                NAME(scale_add)(row, x + (n * geo->height + r) * row_size,
                                (SCALAR)geo->taps_v[a * geo->ph + u], row_size);
        }
    }
}

/* The maps of output pixels j0 .. j1 - 1 of the row whose vertical_rows are in smooth, written
   contiguously to out. */
static VECTOR_CLONES void NAME(horizontal_maps)(const geometry *geo, const SCALAR *smooth,
                                                SCALAR *out, int j0, int j1) {
    const int channels = geo->channels, group_channels = channels / geo->groups;
    const long smooth_size = geo->cols.padded * channels;
    const long pixel_stride = (long)channels * geo->sh * geo->sw;
    for (int j = j0; j < j1; j++) {
        SCALAR *pixel = out + (j - j0) * pixel_stride;
        for (int g = 0; g < geo->groups; g++) {
            for (int a = 0; a < geo->sh; a++) {
                const SCALAR *row = smooth + a * smooth_size + (long)g * group_channels;
                for (int b = 0; b < geo->sw; b++) {
                    SCALAR *dst = pixel + ((long)(g * geo->sh + a) * geo->sw + b) * group_channels;
                    for (int k = 0; k < group_channels; k++) dst[k] = 0;
                    for (int v = geo->cols.first[b]; v <= geo->cols.last[b]; v++)
                        NAME(scale_add)(dst,
                                        row + (long)(j * geo->stride_w + v * geo->dil_w) * channels,
                                        (SCALAR)geo->taps_h[b * geo->pw + v], group_channels);
                }
            }
        }
    }
}

/* Whether output rows first .. first + rows - 1 and columns first_col .. first_col + cols - 1 lie
   in the output (a block of whole rows, or columns of one row). */
static int NAME(bad_block)(const geometry *geo, int first_row, int rows, int first_col, int cols) {
    return first_row < 0 || rows < 0 || first_row + rows > geo->out_height || first_col < 0 ||
           cols < 1 || first_col + cols > geo->out_width ||
           (rows > 1 && cols < geo->out_width);
}

/* maps[n, i, j, ((g*sh + a)*sw + b)*cg + cc] = sum_{u, v} taps_v[a, u] taps_h[b, v]
       * x[n, i*stride_h + u*dil_h - pad_top, j*stride_w + v*dil_w - pad_left, g*cg + cc]
   for x [N, H, W, C] (channels-last, zero outside), cg = C / groups, output rows i = first_row ..
   first_row + row_count - 1 and columns j = first_col .. first_col + col_count - 1 only (whole
   rows, or one row), maps [N, rows, cols, C*sh*sw]. Tasks are output rows (n, i): each writes one
   contiguous block of maps, and every inner loop runs over contiguous channels. */
int NAME(pull_maps)(const SCALAR *x, SCALAR *maps, long batch, int channels, int groups,
                    int height, int width, int out_height, int out_width, int sh, int ph, int sw,
                    int pw, const double *taps_v, const double *taps_h, int stride_h, int stride_w,
                    int pad_top, int pad_left, int dil_h, int dil_w, int first_row, int row_count,
                    int first_col, int col_count, int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (make_geometry(&geo) || NAME(bad_block)(&geo, first_row, row_count, first_col, col_count))
        return 1;
    const long pixel_stride = (long)channels * sh * sw, tasks = batch * row_count;
    int failed = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads < 1) num_threads = 1;
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        SCALAR *smooth = (SCALAR *)calloc((size_t)sh * geo.cols.padded * channels, sizeof(SCALAR));
        if (smooth == NULL) failed = 1;
#pragma omp for schedule(static)
        for (long task = 0; task < tasks; task++)
            if (smooth != NULL) {
                NAME(vertical_rows)(&geo, x, smooth, task / row_count,
                                    first_row + (int)(task % row_count));
                NAME(horizontal_maps)(&geo, smooth, maps + task * col_count * pixel_stride,
                                      first_col, first_col + col_count);
            }
        free(smooth);
    }
    return failed;
}

/* Output pixels j0 .. j1 - 1 of row i of image n in the planar layout, for one group: x is
   [N, C, H, W] (channels-first), and map m = (a*sw + b)*C + c of those pixels goes to
   maps[m * pixels + column + j - j0]. plane holds one zero-padded, vertically filtered input row,
   phases the same row split by the horizontal stride, so that every loop, vertical and
   horizontal, runs over contiguous pixels. */
static VECTOR_CLONES void NAME(planar_row)(const geometry *geo, const SCALAR *x, SCALAR *maps,
                                           long pixels, long column, SCALAR *plane,
                                           SCALAR *phases, long n, int i, int j0, int j1) {
    const int channels = geo->channels, stride = geo->stride_w;
    const long width = geo->width, padded = geo->cols.padded, before = geo->cols.before;
    const long phase_size = (padded + stride - 1) / stride;
    const SCALAR *sources[MAX_TAPS];
    SCALAR taps[MAX_TAPS];
    for (long w = 0; w < before; w++) plane[w] = 0;
    for (long w = before + width; w < padded; w++) plane[w] = 0;
    for (int c = 0; c < channels; c++) {
        const SCALAR *image = x + (n * channels + c) * geo->height * width;
        for (int a = 0; a < geo->sh; a++) {
            int count = 0;
            for (int u = geo->rows.first[a]; u <= geo->rows.last[a]; u++) {
                const int r = i * geo->stride_h + u * geo->dil_h - geo->pad_top;
                if (r >= 0 && r < geo->height) {
                    sources[count] = image + r * width;
                    taps[count++] = (SCALAR)geo->taps_v[a * geo->ph + u];
                }
            }
            NAME(tap_sum)(plane + before, sources, taps, count, width);
            const SCALAR *source = plane;
            if (stride > 1) {
                for (int phase = 0; phase < stride; phase++)
                    for (long w = phase, q = phase * phase_size; w < padded; w += stride, q++)
                        phases[q] = plane[w];
                source = phases;
            }
            for (int b = 0; b < geo->sw; b++) {
                count = 0;
                for (int v = geo->cols.first[b]; v <= geo->cols.last[b]; v++) {
                    const long offset = (long)v * geo->dil_w; /* padded column j*stride + offset */
                    sources[count] = source + (offset % stride) * phase_size + offset / stride + j0;
                    taps[count++] = (SCALAR)geo->taps_h[b * geo->pw + v];
                }
                NAME(tap_sum)(maps + ((long)(a * geo->sw + b) * channels + c) * pixels + column,
                              sources, taps, count, j1 - j0);
            }
        }
    }
}

/* The maps of pull_maps in the planar layout, for one group and an [N, C, H, W] input:
   maps[m, p] for m = (a*sw + b)*C + c and the pixels p of the block of every image (as in
   pull_maps), [C*sh*sw, batch*row_count*col_count]. For layers with few input channels (the
   image-facing one), where the channels-last kernel's inner loops run over 1-4 channels and cost
   more than the mixing; the GEMM reads these maps transposed. */
int NAME(pull_maps_planar)(const SCALAR *x, SCALAR *maps, long batch, int channels, int groups,
                           int height, int width, int out_height, int out_width, int sh, int ph,
                           int sw, int pw, const double *taps_v, const double *taps_h,
                           int stride_h, int stride_w, int pad_top, int pad_left, int dil_h,
                           int dil_w, int first_row, int row_count, int first_col, int col_count,
                           int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (groups != 1 || make_geometry(&geo) ||
        NAME(bad_block)(&geo, first_row, row_count, first_col, col_count))
        return 1;
    const long tasks = batch * row_count, pixels = tasks * col_count;
    const long padded = geo.cols.padded, phases_size = padded + stride_w;
    int failed = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads < 1) num_threads = 1;
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        SCALAR *plane = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)(padded + phases_size));
        if (plane == NULL) failed = 1;
#pragma omp for schedule(static)
        for (long task = 0; task < tasks; task++)
            if (plane != NULL)
                NAME(planar_row)(&geo, x, maps, pixels, task * col_count, plane, plane + padded,
                                 task / row_count, first_row + (int)(task % row_count), first_col,
                                 first_col + col_count);
        free(plane);
    }
    return failed;
}

/* The BLAS's Fortran GEMM for this type (sgemm_ / dgemm_): column-major, arguments by address. */
typedef void (*NAME(gemm_fn))(const char *, const char *, const int *, const int *, const int *,
                              const SCALAR *, const SCALAR *, const int *, const SCALAR *,
                              const int *, const SCALAR *, SCALAR *, const int *);

/* What one call of pull_mixed shares with its threads. */
typedef struct {
    const geometry *geo;
    const SCALAR *x, *weights, *bias;
    SCALAR *out;
    int out_channels, block_rows, tile_cols, planar, planar_out;
    NAME(gemm_fn) mix;
} NAME(mixed_call);

/* One thread's tasks of pull_mixed (blocks first .. end - 1), with its own maps. Returns 1 when
   out of memory, 2 when a result is not finite. */
static int NAME(mixed_tasks)(const NAME(mixed_call) *call, SCALAR *maps, long first_task,
                             long end_task) {
    const geometry *geo = call->geo;
    const int maps_per_pixel = geo->channels * geo->sh * geo->sw, o = call->out_channels;
    const int out_height = geo->out_height, out_width = geo->out_width;
    const int block_rows = call->block_rows, tile_cols = call->tile_cols;
    const long row_blocks = (out_height + block_rows - 1) / block_rows;
    const long tiles = (out_width + tile_cols - 1) / tile_cols, padded = geo->cols.padded;
    const long work_size =
        call->planar ? padded + padded + geo->stride_w : (long)geo->sh * padded * geo->channels;
    SCALAR *work = (SCALAR *)calloc((size_t)work_size, sizeof(SCALAR));
    if (work == NULL) return 1;
    int status = 0;
    long filtered = -1; /* the output row (n * out_height + i) whose vertical rows are in work */
    for (long task = first_task; task < end_task && status == 0; task++) {
        const long n = task / (row_blocks * tiles);
        const int first = (int)(task / tiles % row_blocks) * block_rows;
        const int j0 = (int)(task % tiles) * tile_cols;
        const int j1 = j0 + tile_cols < out_width ? j0 + tile_cols : out_width;
        const int rows = out_height - first < block_rows ? out_height - first : block_rows;
        const int cols = j1 - j0, pixels = rows * cols, k = maps_per_pixel;
        for (int r = 0; r < rows; r++) {
            if (call->planar) {
                NAME(planar_row)(geo, call->x, maps, pixels, (long)r * cols, work, work + padded,
                                 n, first + r, j0, j1);
                continue;
            }
            if (filtered != n * out_height + first + r) {
                NAME(vertical_rows)(geo, call->x, work, n, first + r);
                filtered = n * out_height + first + r;
            }
            NAME(horizontal_maps)(geo, work, maps + (long)r * cols * k, j0, j1);
        }
        /* row-major out[P, O] = maps[P, K] @ weights[K, O], i.e. column-major
           out^T = weights^T maps^T; planar maps are [K, P], i.e. maps^T already. An NCHW out
           holds the block's pixels contiguously in each channel's plane: column-major [P, O],
           the product transposed. */
        const SCALAR one = 1, zero = 0;
        const int *maps_stride = call->planar ? &pixels : &k;
        if (call->planar_out) {
            const int plane = out_height * out_width;
            SCALAR *dst = call->out + n * o * (long)plane + (long)first * out_width + j0;
            call->mix(call->planar ? "N" : "T", "T", &pixels, &o, &k, &one, maps, maps_stride,
                      call->weights, &o, &zero, dst, &plane);
            for (int c = 0; c < o && status == 0; c++) {
                if (call->bias != NULL)
                    for (long p = 0; p < pixels; p++) dst[c * (long)plane + p] += call->bias[c];
                if (!NAME(all_finite)(dst + c * (long)plane, pixels)) status = 2;
            }
            continue;
        }
        SCALAR *dst = call->out + ((n * out_height + first) * (long)out_width + j0) * o;
        call->mix("N", call->planar ? "T" : "N", &o, &pixels, &k, &one, call->weights, &o, maps,
                  maps_stride, &zero, dst, &o);
        if (call->bias != NULL)
            for (long p = 0; p < pixels; p++)
                for (int c = 0; c < o; c++) dst[p * o + c] += call->bias[c];
        if (!NAME(all_finite)(dst, (long)pixels * o)) status = 2;
    }
    free(work);
    return status;
}

/* The whole exact pull of one group in one parallel region: each thread builds the maps of a
   block of output pixels (block_rows whole rows, or tile_cols columns of one row) into its own
   part of scratch (block_rows * tile_cols * C * sh * sw elements per thread, sized to stay in its
   cache) and mixes them at once with gemm (csrc/gemm.c, or the BLAS PyTorch uses), which runs on
   the calling thread inside a parallel region. So the maps never go to memory and the threads never wait for each
   other between building and mixing (two parallel regions per chunk otherwise). x is [N, C, H, W]
   (planar) or [N, H, W, C]; out [N, Ho, Wo, O], or [N, O, Ho, Wo] (planar_out); weights [C*sh*sw, O] in the maps' order,
   row-major; bias [O] or NULL. With one thread there is no parallel region: MKL's GEMM called in
   a region of one thread starts a nested team of its own on every call. Returns 1 on bad
   arguments or no memory, 2 when a result is not finite (the caller recomputes). */
int NAME(pull_mixed)(const SCALAR *x, SCALAR *out, long batch, int channels, int groups,
                     int height, int width, int out_height, int out_width, int sh, int ph, int sw,
                     int pw, const double *taps_v, const double *taps_h, int stride_h,
                     int stride_w, int pad_top, int pad_left, int dil_h, int dil_w,
                     const SCALAR *weights, const SCALAR *bias, int out_channels, int block_rows,
                     int tile_cols, int planar, int planar_out, SCALAR *scratch, void *gemm,
                     int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (groups != 1 || block_rows < 1 || tile_cols < 1 || gemm == NULL || make_geometry(&geo) ||
        (block_rows > 1 && tile_cols < out_width))
        return 1;
    if (tile_cols > out_width) tile_cols = out_width;
    const NAME(mixed_call) call = {&geo,      x,         weights, bias,       out,
                                   out_channels, block_rows, tile_cols, planar, planar_out,
                                   (NAME(gemm_fn))gemm};
    const long tiles = (out_width + tile_cols - 1) / tile_cols;
    const long tasks = batch * ((out_height + block_rows - 1) / block_rows) * tiles;
    const long block_size = (long)block_rows * tile_cols * channels * sh * sw;
    int status = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads <= 1) return NAME(mixed_tasks)(&call, scratch, 0, tasks);
#pragma omp parallel num_threads(num_threads) reduction(| : status)
    {
        const long team = TEAM_SIZE, thread = THREAD_ID;
        /* static split, as schedule(static) */
        status |= NAME(mixed_tasks)(&call, scratch + thread * block_size, tasks * thread / team,
                                    tasks * (thread + 1) / team);
    }
    return status & 1 ? 1 : status;
}

/* Channels first .. first + count - 1 of group g of image n: grad_x (image [H, W, C]) plus the
   transposed filtering of grad, the map gradient of output rows first_row .. first_row +
   row_count - 1 and columns first_col .. first_col + col_count - 1 of image n (by element strides
   from that block's first pixel); overwritten first unless accumulate. smooth holds [sh][padded
   width][count], gathered [count]. */
static VECTOR_CLONES void NAME(backward_block)(const geometry *geo, const SCALAR *grad,
                                               SCALAR *image, SCALAR *smooth, SCALAR *gathered,
                                               int g, int first, int count, const long *strides,
                                               int first_row, int row_count, int first_col,
                                               int col_count, int accumulate) {
    const int channels = geo->channels, group_channels = channels / geo->groups;
    const int maps_per_channel = geo->sh * geo->sw;
    const long padded = geo->cols.padded;
    /* the padded columns the block's maps read, and the image columns among them */
    const long low = (long)first_col * geo->stride_w;
    const long high = (long)(first_col + col_count - 1) * geo->stride_w + (long)(geo->pw - 1) * geo->dil_w + 1;
    const long w0 = low - geo->cols.before > 0 ? low - geo->cols.before : 0;
    const long w1 = high - geo->cols.before < geo->width ? high - geo->cols.before : geo->width;
    if (!accumulate)
        for (long p = 0; p < (long)geo->height * geo->width; p++)
            for (int k = 0; k < count; k++) image[p * channels + k] = 0;
    for (int i = first_row; i < first_row + row_count; i++) {
        const SCALAR *grad_row = grad + (i - first_row) * strides[2];
        for (int a = 0; a < geo->sh; a++) {
            SCALAR *acc = smooth + (long)a * padded * count;
            for (long k = low * count; k < high * count; k++) acc[k] = 0;
            for (int b = 0; b < geo->sw; b++) {
                const long map = ((long)g * maps_per_channel + a * geo->sw + b) * group_channels +
                                 first;
                for (int j = first_col; j < first_col + col_count; j++) {
                    const SCALAR *src = grad_row + (j - first_col) * strides[3] + map * strides[1];
                    if (strides[1] != 1) {
                        for (int k = 0; k < count; k++) gathered[k] = src[k * strides[1]];
                        src = gathered;
                    }
                    for (int v = geo->cols.first[b]; v <= geo->cols.last[b]; v++)
                        NAME(scale_add)(acc + (long)(j * geo->stride_w + v * geo->dil_w) * count,
                                        src, (SCALAR)geo->taps_h[b * geo->pw + v], count);
                }
            }
        }
        for (int a = 0; a < geo->sh; a++) {
            const SCALAR *acc = smooth + ((long)a * padded + geo->cols.before) * count;
            for (int u = geo->rows.first[a]; u <= geo->rows.last[a]; u++) {
                const int r = i * geo->stride_h + u * geo->dil_h - geo->pad_top;
                if (r < 0 || r >= geo->height) continue;
                const SCALAR t = (SCALAR)geo->taps_v[a * geo->ph + u];
                SCALAR *dst = image + (long)r * geo->width * channels;
                for (long w = w0; w < w1; w++)
                    NAME(scale_add)(dst + w * channels, acc + w * count, t, count);
            }
        }
    }
}

/* The transpose: grad_x += the map gradient grad of a block of output pixels (whole rows of
   batch images, or columns of one row, as pull_maps) spread back through the same taps, for grad
   given by its element strides (fastest channels-last) and grad_x [N, H, W, C], overwritten first
   unless accumulate. The vertical scatter of successive output rows overlaps, so a task owns a
   block of channels of one image: (n, block), with blocks inside one group. */
int NAME(pull_maps_backward)(const SCALAR *grad, SCALAR *grad_x, long batch, int channels,
                             int groups, int height, int width, int out_height, int out_width,
                             int sh, int ph, int sw, int pw, const double *taps_v,
                             const double *taps_h, int stride_h, int stride_w, int pad_top,
                             int pad_left, int dil_h, int dil_w, long grad_stride_n,
                             long grad_stride_c, long grad_stride_h, long grad_stride_w,
                             int first_row, int row_count, int first_col, int col_count,
                             int accumulate, int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (make_geometry(&geo) || NAME(bad_block)(&geo, first_row, row_count, first_col, col_count))
        return 1;
    const long strides[4] = {grad_stride_n, grad_stride_c, grad_stride_h, grad_stride_w};
    const int group_channels = channels / groups;
    const int blocks_per_group = (group_channels + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
    const long tasks = batch * groups * blocks_per_group;
    int failed = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads < 1) num_threads = 1;
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        SCALAR *smooth = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)sh * geo.cols.padded *
                                          CHANNEL_BLOCK);
        SCALAR *gathered = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)CHANNEL_BLOCK);
        if (smooth == NULL || gathered == NULL) failed = 1;
#pragma omp for schedule(static)
        for (long task = 0; task < tasks; task++) {
            if (smooth == NULL || gathered == NULL) continue;
            const long n = task / (groups * blocks_per_group);
            const int g = (int)(task / blocks_per_group % groups);
            const int first = (int)(task % blocks_per_group) * CHANNEL_BLOCK;
            const int count = group_channels - first < CHANNEL_BLOCK ? group_channels - first
                                                                     : CHANNEL_BLOCK;
            SCALAR *image = grad_x + n * height * (long)width * channels + g * group_channels +
                            first;
            NAME(backward_block)(&geo, grad + n * grad_stride_n, image, smooth, gathered, g, first,
                                 count, strides, first_row, row_count, first_col, col_count,
                                 accumulate);
        }
        free(smooth);
        free(gathered);
    }
    return failed;
}
