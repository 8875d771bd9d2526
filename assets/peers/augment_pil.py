"""The S5 authors' FixMatch augmentation recipe in PIL + numpy, the way their PyTorch data
pipeline composes it (torchvision-style transforms on PIL images), timed on one process.

It is what `s5 bench data --peer` runs between its own single-thread rounds, so that s5's
speed-up over the recipe as the authors run it is measured on the same machine, in one run.
Per image: the weak view (long side scaled by U(0.5, 2.0), bilinear for the image and nearest
for the mask; padding to the crop, image 0 and mask 255; a random crop; horizontal and
vertical flips with p 0.5), the strong view of it (colour jitter with brightness, contrast and
saturation 0.5 and hue 0.25 in random order, p 0.8; grayscale p 0.2; Gaussian blur with sigma
U(0.1, 2.0), p 0.5), CutMix of a box (p 0.5, area U(0.02, 0.4), aspect U(0.3, 1/0.3)) from
another image's strong view, and ImageNet normalisation of both views.

Needs numpy and pillow (`pip install numpy pillow`). Prints `<rate> images/s`.
"""

import argparse
import math
import random
import time

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def weak_view(image, mask, crop):
    """Random scale of the long side, pad, random crop, flips."""
    width, height = image.size
    long_side = random.randint(int(max(width, height) * 0.5), int(max(width, height) * 2.0))
    if height > width:
        new_h, new_w = long_side, int(width * long_side / height + 0.5)
    else:
        new_w, new_h = long_side, int(height * long_side / width + 0.5)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    mask = mask.resize((new_w, new_h), Image.NEAREST)
    pad_w, pad_h = max(crop - new_w, 0), max(crop - new_h, 0)
    if pad_w or pad_h:
        image = ImageOps.expand(image, border=(0, 0, pad_w, pad_h), fill=0)
        mask = ImageOps.expand(mask, border=(0, 0, pad_w, pad_h), fill=255)
    width, height = image.size
    x, y = random.randint(0, width - crop), random.randint(0, height - crop)
    box = (x, y, x + crop, y + crop)
    image, mask = image.crop(box), mask.crop(box)
    for flip in (Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM):
        if random.random() < 0.5:
            image, mask = image.transpose(flip), mask.transpose(flip)
    return image, mask


def shift_hue(image, factor):
    """torchvision's adjust_hue: rotate the hue channel by factor of a turn."""
    hue, saturation, value = image.convert("HSV").split()
    shift = np.uint8(int(round(factor * 255)) % 256)
    hue = Image.fromarray(np.asarray(hue, dtype=np.uint8) + shift, "L")
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def strong_view(image):
    """Colour jitter in random order, grayscale, Gaussian blur."""
    if random.random() < 0.8:
        jitters = [
            lambda im: ImageEnhance.Brightness(im).enhance(random.uniform(0.5, 1.5)),
            lambda im: ImageEnhance.Contrast(im).enhance(random.uniform(0.5, 1.5)),
            lambda im: ImageEnhance.Color(im).enhance(random.uniform(0.5, 1.5)),
            lambda im: shift_hue(im, random.uniform(-0.25, 0.25)),
        ]
        random.shuffle(jitters)
        for jitter in jitters:
            image = jitter(image)
    if random.random() < 0.2:
        image = image.convert("L").convert("RGB")
    if random.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))
    return image


def cutmix_box(crop):
    """A box of area U(0.02, 0.4) of the crop and aspect U(0.3, 1/0.3), or None (p 0.5)."""
    if random.random() >= 0.5:
        return None
    while True:
        area = random.uniform(0.02, 0.4) * crop * crop
        aspect = random.uniform(0.3, 1 / 0.3)
        w, h = int(math.sqrt(area / aspect)), int(math.sqrt(area * aspect))
        if 0 < w <= crop and 0 < h <= crop:
            x, y = random.randint(0, crop - w), random.randint(0, crop - h)
            return x, y, w, h


def normalise(image):
    return (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD


def one_image(source, mask, crop, partner):
    """One sample's weak and strong views, the box pasted from `partner` (the previous
    sample's strong view, as a batch pairs each image with another one's)."""
    weak, weak_mask = weak_view(source, mask, crop)
    strong = np.asarray(strong_view(weak.copy()))
    mixed = strong
    box = cutmix_box(crop)
    if box is not None and partner is not None:
        x, y, w, h = box
        mixed = strong.copy()
        mixed[y : y + h, x : x + w] = partner[y : y + h, x : x + w]
    normalise(weak), normalise(mixed), np.asarray(weak_mask)
    return strong


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--crop-px", type=int, default=512)
    parser.add_argument("--source-px", type=int, default=512)
    args = parser.parse_args()
    random.seed(0)
    rng = np.random.default_rng(0)
    side = args.source_px
    source = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB")
    mask = Image.fromarray(rng.integers(0, 6, (side, side), dtype=np.uint8), "L")
    partner = one_image(source, mask, args.crop_px, None)  # warm-up
    start = time.perf_counter()
    for _ in range(args.images):
        partner = one_image(source, mask, args.crop_px, partner)
    seconds = time.perf_counter() - start
    print(f"{args.images / seconds:.1f} images/s (PIL + numpy, one process, {args.crop_px} px)")


if __name__ == "__main__":
    main()
