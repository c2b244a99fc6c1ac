/* The body of csrc/pull_maps.c for one scalar type: pull_maps.c includes it once per type with
   SCALAR (the element type) and NAME(f) (the exported name) defined. See pull_maps.c. */

/* dst[0 .. count) (+)= t * src[0 .. count), vectorised over channels. */
static inline void NAME(scale_add)(SCALAR *restrict dst, const SCALAR *restrict src, SCALAR t,
                                   long count) {
    for (long k = 0; k < count; k++) dst[k] += t * src[k];
}

/* maps[n, i, j, g*S*cg + (a*sw + b)*cg + cc] = sum_{u, v} taps_v[a, u] taps_h[b, v]
       * x[n, i*stride_h + u*dil_h - pad_top, j*stride_w + v*dil_w - pad_left, g*cg + cc]
   for x [N, H, W, C] (channels-last, zero outside), maps [N, Ho, Wo, C*S] with S = sh*sw and cg
   = C / groups, output rows i = first_row .. first_row + row_count - 1 only (maps holds those rows).
   Tasks are output rows (n, i): each writes one contiguous block of maps, and every inner loop runs
   over contiguous channels. */
int NAME(pull_maps)(const SCALAR *x, SCALAR *maps, long batch, int channels, int groups,
                    int height, int width, int out_height, int out_width, int sh, int ph, int sw,
                    int pw, const double *taps_v, const double *taps_h, int stride_h, int stride_w,
                    int pad_top, int pad_left, int dil_h, int dil_w, int first_row, int row_count,
                    int num_threads) {
    filter_axis rows, cols;
    if (groups < 1 || channels % groups ||
        make_axis(&rows, taps_v, sh, ph, stride_h, dil_h, pad_top, height, out_height) ||
        make_axis(&cols, taps_h, sw, pw, stride_w, dil_w, pad_left, width, out_width))
        return 1;
    const int maps_per_channel = sh * sw, group_channels = channels / groups;
    const long pixel_stride = (long)channels * maps_per_channel;
    const long row_size = (long)width * channels, smooth_size = cols.padded * channels;
    const long tasks = batch * row_count;
    if (first_row < 0 || row_count < 0 || first_row + row_count > out_height) return 1;
    int failed = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads < 1) num_threads = 1;
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        /* the vertically filtered row of each a, [sh][padded width][C], zero in the padding */
        SCALAR *smooth = (SCALAR *)calloc((size_t)sh * smooth_size, sizeof(SCALAR));
        if (smooth == NULL) failed = 1;
#pragma omp for schedule(static)
        for (long task = 0; task < tasks; task++) {
            if (smooth == NULL) continue;
            const long n = task / row_count;
            const int i = first_row + (int)(task % row_count);
            for (int a = 0; a < sh; a++) {
                SCALAR *row = smooth + a * smooth_size + cols.before * channels;
                for (long k = 0; k < row_size; k++) row[k] = 0;
                for (int u = rows.first[a]; u <= rows.last[a]; u++) {
                    const int r = i * stride_h + u * dil_h - pad_top;
                    if (r >= 0 && r < height)
                        NAME(scale_add)(row, x + (n * height + r) * row_size,
                                        (SCALAR)taps_v[a * ph + u], row_size);
                }
            }
            SCALAR *out = maps + task * out_width * pixel_stride;
            for (int j = 0; j < out_width; j++) {
                SCALAR *pixel = out + j * pixel_stride;
                for (int a = 0; a < sh; a++) {
                    const SCALAR *row = smooth + a * smooth_size;
                    for (int b = 0; b < sw; b++) {
                        for (int g = 0; g < groups; g++) {
                            SCALAR *dst = pixel + ((long)g * maps_per_channel + a * sw + b) *
                                                      group_channels;
                            for (int k = 0; k < group_channels; k++) dst[k] = 0;
                            for (int v = cols.first[b]; v <= cols.last[b]; v++)
                                NAME(scale_add)(dst,
                                                row + (long)(j * stride_w + v * dil_w) * channels +
                                                    (long)g * group_channels,
                                                (SCALAR)taps_h[b * pw + v], group_channels);
                        }
                    }
                }
            }
        }
        free(smooth);
    }
    return failed;
}

/* The transpose: grad_x = the sum of grad[n, (map), i, j] spread back through the same taps, for
   grad given by its element strides (fastest when channels-last) and grad_x [N, H, W, C]
   (overwritten). The vertical scatter of successive output rows overlaps, so a task owns a block
   of channels of one image: (n, block), with blocks inside one group. */
int NAME(pull_maps_backward)(const SCALAR *grad, SCALAR *grad_x, long batch, int channels,
                             int groups, int height, int width, int out_height, int out_width,
                             int sh, int ph, int sw, int pw, const double *taps_v,
                             const double *taps_h, int stride_h, int stride_w, int pad_top,
                             int pad_left, int dil_h, int dil_w, long grad_stride_n,
                             long grad_stride_c, long grad_stride_h, long grad_stride_w,
                             int num_threads) {
    filter_axis rows, cols;
    if (groups < 1 || channels % groups ||
        make_axis(&rows, taps_v, sh, ph, stride_h, dil_h, pad_top, height, out_height) ||
        make_axis(&cols, taps_h, sw, pw, stride_w, dil_w, pad_left, width, out_width))
        return 1;
    const int maps_per_channel = sh * sw, group_channels = channels / groups;
    const int blocks_per_group = (group_channels + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
    const long tasks = batch * groups * blocks_per_group;
    int failed = 0;
    if (num_threads > tasks) num_threads = (int)tasks;
    if (num_threads < 1) num_threads = 1;
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        SCALAR *smooth = (SCALAR *)malloc(sizeof(SCALAR) * (size_t)sh * cols.padded * CHANNEL_BLOCK);
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
            const int c0 = g * group_channels + first; /* first channel of the block */
            SCALAR *image = grad_x + n * height * (long)width * channels + c0;
            for (long p = 0; p < (long)height * width; p++)
                for (int k = 0; k < count; k++) image[p * channels + k] = 0;
            for (int i = 0; i < out_height; i++) {
                const SCALAR *grad_row = grad + n * grad_stride_n + i * grad_stride_h;
                for (int a = 0; a < sh; a++) {
                    SCALAR *acc = smooth + (long)a * cols.padded * count;
                    for (long k = 0; k < cols.padded * count; k++) acc[k] = 0;
                    for (int b = 0; b < sw; b++) {
                        const long map = (long)g * maps_per_channel * group_channels +
                                         (long)(a * sw + b) * group_channels + first;
                        for (int j = 0; j < out_width; j++) {
                            const SCALAR *src = grad_row + j * grad_stride_w + map * grad_stride_c;
                            if (grad_stride_c != 1) {
                                for (int k = 0; k < count; k++)
                                    gathered[k] = src[k * grad_stride_c];
                                src = gathered;
                            }
                            for (int v = cols.first[b]; v <= cols.last[b]; v++)
                                NAME(scale_add)(acc + (long)(j * stride_w + v * dil_w) * count, src,
                                                (SCALAR)taps_h[b * pw + v], count);
                        }
                    }
                }
                for (int a = 0; a < sh; a++) {
                    const SCALAR *acc = smooth + ((long)a * cols.padded + cols.before) * count;
                    for (int u = rows.first[a]; u <= rows.last[a]; u++) {
                        const int r = i * stride_h + u * dil_h - pad_top;
                        if (r < 0 || r >= height) continue;
                        const SCALAR t = (SCALAR)taps_v[a * ph + u];
                        SCALAR *dst = image + (long)r * width * channels;
                        for (int w = 0; w < width; w++)
                            NAME(scale_add)(dst + (long)w * channels, acc + (long)w * count, t,
                                            count);
                    }
                }
            }
        }
        free(smooth);
        free(gathered);
    }
    return failed;
}
