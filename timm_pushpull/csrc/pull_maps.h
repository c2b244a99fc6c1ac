/* The body of csrc/pull_maps.c for one scalar type: pull_maps.c includes it once per type with
   SCALAR (the element type) and NAME(f) (the exported name) defined. See pull_maps.c. */

/* dst[0 .. count) += t * src[0 .. count), vectorised over channels. */
static inline void NAME(scale_add)(SCALAR *restrict dst, const SCALAR *restrict src, SCALAR t,
                                   long count) {
    for (long k = 0; k < count; k++) dst[k] += t * src[k];
}

/* One output row i of image n: the maps of all its pixels, written contiguously to out. smooth
   holds the vertically filtered input row of each a, [sh][padded width][C], zero in the padding. */
static VECTOR_CLONES void NAME(forward_row)(const geometry *geo, const SCALAR *x, SCALAR *out,
                                            SCALAR *smooth, long n, int i) {
    const int channels = geo->channels, group_channels = channels / geo->groups;
    const long row_size = (long)geo->width * channels, smooth_size = geo->cols.padded * channels;
    const long pixel_stride = (long)channels * geo->sh * geo->sw;
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
    for (int j = 0; j < geo->out_width; j++) {
        SCALAR *pixel = out + j * pixel_stride;
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

/* maps[n, i, j, ((g*sh + a)*sw + b)*cg + cc] = sum_{u, v} taps_v[a, u] taps_h[b, v]
       * x[n, i*stride_h + u*dil_h - pad_top, j*stride_w + v*dil_w - pad_left, g*cg + cc]
   for x [N, H, W, C] (channels-last, zero outside), maps [N, rows, Wo, C*sh*sw], cg = C / groups,
   output rows i = first_row .. first_row + row_count - 1 only. Tasks are output rows (n, i): each
   writes one contiguous block of maps, and every inner loop runs over contiguous channels. */
int NAME(pull_maps)(const SCALAR *x, SCALAR *maps, long batch, int channels, int groups,
                    int height, int width, int out_height, int out_width, int sh, int ph, int sw,
                    int pw, const double *taps_v, const double *taps_h, int stride_h, int stride_w,
                    int pad_top, int pad_left, int dil_h, int dil_w, int first_row, int row_count,
                    int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (make_geometry(&geo) || first_row < 0 || row_count < 0 || first_row + row_count > out_height)
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
            if (smooth != NULL)
                NAME(forward_row)(&geo, x, maps + task * out_width * pixel_stride, smooth,
                                  task / row_count, first_row + (int)(task % row_count));
        free(smooth);
    }
    return failed;
}

/* One output row i of image n in the planar layout, for one group: x is [N, C, H, W]
   (channels-first), and map m = (a*sw + b)*C + c of this row's pixels goes to
   maps[m * pixels + column + j]. plane holds one zero-padded, vertically filtered input row,
   phases the same row split by the horizontal stride, so that every loop, vertical and
   horizontal, runs over contiguous pixels. */
static VECTOR_CLONES void NAME(planar_row)(const geometry *geo, const SCALAR *x, SCALAR *maps,
                                           long pixels, long column, SCALAR *plane,
                                           SCALAR *phases, long n, int i) {
    const int channels = geo->channels, stride = geo->stride_w;
    const long width = geo->width, padded = geo->cols.padded;
    const long phase_size = (padded + stride - 1) / stride;
    for (int c = 0; c < channels; c++) {
        const SCALAR *image = x + (n * channels + c) * geo->height * width;
        for (int a = 0; a < geo->sh; a++) {
            for (long w = 0; w < padded; w++) plane[w] = 0;
            for (int u = geo->rows.first[a]; u <= geo->rows.last[a]; u++) {
                const int r = i * geo->stride_h + u * geo->dil_h - geo->pad_top;
                if (r >= 0 && r < geo->height)
                    NAME(scale_add)(plane + geo->cols.before, image + r * width,
                                    (SCALAR)geo->taps_v[a * geo->ph + u], width);
            }
            const SCALAR *source = plane;
            if (stride > 1) {
                for (long w = 0; w < padded; w++) phases[(w % stride) * phase_size + w / stride] = plane[w];
                source = phases;
            }
            for (int b = 0; b < geo->sw; b++) {
                SCALAR *dst = maps + ((long)(a * geo->sw + b) * channels + c) * pixels + column;
                for (int j = 0; j < geo->out_width; j++) dst[j] = 0;
                for (int v = geo->cols.first[b]; v <= geo->cols.last[b]; v++) {
                    const long offset = (long)v * geo->dil_w; /* padded column j*stride + offset */
                    NAME(scale_add)(dst, source + (offset % stride) * phase_size + offset / stride,
                                    (SCALAR)geo->taps_h[b * geo->pw + v], geo->out_width);
                }
            }
        }
    }
}

/* The maps of pull_maps in the planar layout, for one group and an [N, C, H, W] input:
   maps[m, p] for m = (a*sw + b)*C + c and the pixels p of output rows first_row ..
   first_row + row_count - 1 of every image, [C*sh*sw, batch*row_count*out_width]. For layers with
   few input channels (the image-facing one), where the channels-last kernel's inner loops run
   over 1-4 channels and cost more than the mixing; the GEMM reads these maps transposed. */
int NAME(pull_maps_planar)(const SCALAR *x, SCALAR *maps, long batch, int channels, int groups,
                           int height, int width, int out_height, int out_width, int sh, int ph,
                           int sw, int pw, const double *taps_v, const double *taps_h,
                           int stride_h, int stride_w, int pad_top, int pad_left, int dil_h,
                           int dil_w, int first_row, int row_count, int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (groups != 1 || make_geometry(&geo) || first_row < 0 || row_count < 0 ||
        first_row + row_count > out_height)
        return 1;
    const long tasks = batch * row_count, pixels = tasks * out_width;
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
                NAME(planar_row)(&geo, x, maps, pixels, task * out_width, plane, plane + padded,
                                 task / row_count, first_row + (int)(task % row_count));
        free(plane);
    }
    return failed;
}

/* The BLAS's Fortran GEMM for this type (sgemm_ / dgemm_): column-major, arguments by address. */
typedef void (*NAME(gemm_fn))(const char *, const char *, const int *, const int *, const int *,
                              const SCALAR *, const SCALAR *, const int *, const SCALAR *,
                              const int *, const SCALAR *, SCALAR *, const int *);

/* One thread's tasks of pull_mixed (output row blocks first .. end - 1), with its own maps. */
static void NAME(mixed_tasks)(const geometry *geo, const SCALAR *x, SCALAR *out,
                              const SCALAR *weights, const SCALAR *bias, int out_channels,
                              int block_rows, int planar, SCALAR *maps, NAME(gemm_fn) mix,
                              long first_task, long end_task, int *failed) {
    const int maps_per_pixel = geo->channels * geo->sh * geo->sw;
    const int out_height = geo->out_height, out_width = geo->out_width;
    const long blocks = (out_height + block_rows - 1) / block_rows, padded = geo->cols.padded;
    const long work_size =
        planar ? padded + padded + geo->stride_w : (long)geo->sh * padded * geo->channels;
    SCALAR *work = (SCALAR *)calloc((size_t)work_size, sizeof(SCALAR));
    if (work == NULL) {
        *failed = 1;
        return;
    }
    for (long task = first_task; task < end_task; task++) {
        const long n = task / blocks;
        const int first = (int)(task % blocks) * block_rows;
        const int rows = out_height - first < block_rows ? out_height - first : block_rows;
        const int pixels = rows * out_width, k = maps_per_pixel, o = out_channels;
        for (int r = 0; r < rows; r++) {
            if (planar)
                NAME(planar_row)(geo, x, maps, pixels, (long)r * out_width, work, work + padded,
                                 n, first + r);
            else
                NAME(forward_row)(geo, x, maps + (long)r * out_width * k, work, n, first + r);
        }
        /* row-major out[P, O] = maps[P, K] @ weights[K, O], i.e. column-major
           out^T = weights^T maps^T; planar maps are [K, P], i.e. maps^T already */
        SCALAR *dst = out + (n * out_height + first) * (long)out_width * o;
        const SCALAR one = 1, zero = 0;
        mix("N", planar ? "T" : "N", &o, &pixels, &k, &one, weights, &o, maps,
            planar ? &pixels : &k, &zero, dst, &o);
        if (bias != NULL)
            for (long p = 0; p < pixels; p++)
                for (int c = 0; c < o; c++) dst[p * o + c] += bias[c];
    }
    free(work);
}

/* The whole exact pull of one group in one parallel region: each thread builds the maps of a
   block of block_rows output rows of one image into its own part of scratch (block_rows * out_width
   * C * sh * sw elements per thread, sized to stay in its cache) and mixes them at once with
   gemm, the BLAS PyTorch uses, which runs on the calling thread inside a parallel region. So the
   maps never go to memory and the threads never wait for each other between building and mixing
   (two parallel regions per chunk otherwise). x is [N, C, H, W] (planar) or [N, H, W, C];
   out [N, Ho, Wo, O]; weights [C*sh*sw, O] in the maps' order, row-major; bias [O] or NULL.
   With one thread there is no parallel region: MKL's GEMM called in a region of one thread starts
   a nested team of its own on every call (csrc/push_pull_taps.h measured 75 us a call). */
int NAME(pull_mixed)(const SCALAR *x, SCALAR *out, long batch, int channels, int groups,
                     int height, int width, int out_height, int out_width, int sh, int ph, int sw,
                     int pw, const double *taps_v, const double *taps_h, int stride_h,
                     int stride_w, int pad_top, int pad_left, int dil_h, int dil_w,
                     const SCALAR *weights, const SCALAR *bias, int out_channels, int block_rows,
                     int planar, SCALAR *scratch, void *gemm, int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (groups != 1 || block_rows < 1 || gemm == NULL || make_geometry(&geo)) return 1;
    const NAME(gemm_fn) mix = (NAME(gemm_fn))gemm;
    const long blocks = (out_height + block_rows - 1) / block_rows, tasks = batch * blocks;
    const long block_size = (long)block_rows * out_width * channels * sh * sw;
    int failed = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads <= 1) {
        NAME(mixed_tasks)(&geo, x, out, weights, bias, out_channels, block_rows, planar, scratch,
                          mix, 0, tasks, &failed);
        return failed;
    }
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        const long team = TEAM_SIZE, thread = THREAD_ID;
        /* static split, as schedule(static) */
        NAME(mixed_tasks)(&geo, x, out, weights, bias, out_channels, block_rows, planar,
                          scratch + thread * block_size, mix, tasks * thread / team,
                          tasks * (thread + 1) / team, &failed);
    }
    return failed;
}

/* Channels first .. first + count - 1 of group g of image n: grad_x (image [H, W, C], those
   channels overwritten) from grad (the map gradient of image n, by element strides). smooth holds
   [sh][padded width][count], gathered [count]. */
static VECTOR_CLONES void NAME(backward_block)(const geometry *geo, const SCALAR *grad,
                                               SCALAR *image, SCALAR *smooth, SCALAR *gathered,
                                               int g, int first, int count, const long *strides) {
    const int channels = geo->channels, group_channels = channels / geo->groups;
    const int maps_per_channel = geo->sh * geo->sw;
    const long padded = geo->cols.padded;
    for (long p = 0; p < (long)geo->height * geo->width; p++)
        for (int k = 0; k < count; k++) image[p * channels + k] = 0;
    for (int i = 0; i < geo->out_height; i++) {
        const SCALAR *grad_row = grad + i * strides[2];
        for (int a = 0; a < geo->sh; a++) {
            SCALAR *acc = smooth + (long)a * padded * count;
            for (long k = 0; k < padded * count; k++) acc[k] = 0;
            for (int b = 0; b < geo->sw; b++) {
                const long map = ((long)g * maps_per_channel + a * geo->sw + b) * group_channels +
                                 first;
                for (int j = 0; j < geo->out_width; j++) {
                    const SCALAR *src = grad_row + j * strides[3] + map * strides[1];
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
                for (int w = 0; w < geo->width; w++)
                    NAME(scale_add)(dst + (long)w * channels, acc + (long)w * count, t, count);
            }
        }
    }
}

/* The transpose: grad_x = the sum of grad[n, map, i, j] spread back through the same taps, for
   grad given by its element strides (fastest channels-last) and grad_x [N, H, W, C] (overwritten).
   The vertical scatter of successive output rows overlaps, so a task owns a block of channels of
   one image: (n, block), with blocks inside one group. */
int NAME(pull_maps_backward)(const SCALAR *grad, SCALAR *grad_x, long batch, int channels,
                             int groups, int height, int width, int out_height, int out_width,
                             int sh, int ph, int sw, int pw, const double *taps_v,
                             const double *taps_h, int stride_h, int stride_w, int pad_top,
                             int pad_left, int dil_h, int dil_w, long grad_stride_n,
                             long grad_stride_c, long grad_stride_h, long grad_stride_w,
                             int num_threads) {
    geometry geo = {channels, groups, height, width, out_height, out_width, sh, ph, sw, pw,
                    taps_v, taps_h, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w};
    if (make_geometry(&geo)) return 1;
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
                                 count, strides);
        }
        free(smooth);
        free(gathered);
    }
    return failed;
}
