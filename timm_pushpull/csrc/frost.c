/* Frost on RGB images: crop each image's frost texture and blend it in one pass, the CPU kernel of
   the op timm_pushpull::frost_blend (timm_pushpull/robustness/corruptions/weather.py), whose torch
   form gathers the crops into a new tensor, then adds and scales it: three passes over memory,
   which bound it on the CPU. Elements are split over OpenMP threads (torch's runtime, see
   blur_pool.c). */
#include <stdint.h>

/* out[b, c, h, w] = (x[b, c, h, w] + frost_ratio * textures[origin[b] + h * texture_width + w, c])
   * image_weight, for x and out [batch, 3, height, width] and textures [*, 3] (rows of RGB
   pixels), origin[b] the row of image b's crop corner. */
void frost_blend(const float *x, const float *textures, const int64_t *origin, float *out,
                 long batch, int height, int width, long texture_width, float frost_ratio,
                 float image_weight, int num_threads) {
    const long plane = (long)height * width;
#pragma omp parallel for num_threads(num_threads) schedule(static)
    for (long b = 0; b < batch; b++) {
        for (int c = 0; c < 3; c++) {
            const float *src = x + (b * 3 + c) * plane;
            float *dst = out + (b * 3 + c) * plane;
            for (int h = 0; h < height; h++) {
                const float *frost = textures + 3 * (origin[b] + h * texture_width) + c;
                for (int w = 0; w < width; w++)
                    dst[h * width + w] =
                        (src[h * width + w] + frost_ratio * frost[3 * w]) * image_weight;
            }
        }
    }
}
