#!/usr/bin/env python3
"""PyTorch's peer of bench_embed: timm ViT-B/16 224 (num_classes=0) + a
Linear(768, 512, bias=False) head, eval, torch.autocast bf16, random
weights, inputs already on the GPU; eager and torch.compile; batch 256.
Prints "key value" lines: images/s from the median of timed reps (CUDA
events) after warm-up, and the peak of a large bf16 matmul.

    python3 tests/gpu/peer_embed.py [--batch 256] [--reps 20] [--no-compile]
"""
import argparse
import statistics

import timm
import torch


def timed(fn, reps, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ms.append(a.elapsed_time(b))
    return statistics.median(ms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    print("torch", torch.__version__)
    print("timm", timm.__version__)
    print("gpu", torch.cuda.get_device_name())

    n = 8192
    x = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    ms = timed(lambda: x @ y, 20)
    print("torch_peak_bf16_tflops %.1f" % (2 * n ** 3 / (ms * 1e-3) / 1e12))
    del x, y

    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    head = torch.nn.Linear(768, 512, bias=False)
    model = torch.nn.Sequential(vit, head).to(dev).eval()
    img = torch.randn(a.batch, 3, 224, 224, device=dev)

    def run(m):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return torch.nn.functional.normalize(m(img).float(), dim=-1)

    ms = timed(lambda: run(model), a.reps)
    print("torch_eager_images_per_s %.1f" % (a.batch / (ms * 1e-3)))
    if not a.no_compile:
        cm = torch.compile(model)
        ms = timed(lambda: run(cm), a.reps, warm=5)
        print("torch_compile_images_per_s %.1f" % (a.batch / (ms * 1e-3)))


if __name__ == "__main__":
    main()
