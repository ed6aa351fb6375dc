/* augment.h - training-time image augmentation for bm-train --mode finetune:
 * torchvision's RandomResizedCrop (as open_clip's training transform uses it,
 * Pillow bicubic) and a horizontal flip, drawn from a seed so that a run is
 * reproducible. */
#ifndef BM_AUGMENT_H
#define BM_AUGMENT_H

#include <stdint.h>

/* src u8 [3,H,W] (planar) -> dst u8 [3,S,S]: a crop of area fraction
 * uniform in [smin, 1] of the image and aspect ratio log-uniform in
 * [3/4, 4/3] at a uniform position (10 tries, then the largest centred
 * crop of ratio within bounds, as torchvision), resized bicubic to S x S,
 * flipped left-right with probability 1/2. All draws come from seed.
 * Returns 0, or -1 when out of memory. */
int bm_random_resized_crop(const uint8_t *src, int H, int W, int S, double smin, uint64_t seed, uint8_t *dst);

#endif
