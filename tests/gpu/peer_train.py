#!/usr/bin/env python3
"""peer_train.py - PyTorch's fine-tuning step on the same model as
tests/gpu/bench_train.c, for the speed comparison: timm vit_base_patch16_224
(num_classes=0) + Linear(768, 512, bias=False) + L2 normalize + Linear(512, C),
softmax cross-entropy, AdamW (two lrs as bm-train: encoder 1e-5, head 1e-3,
weight decay 0.1), clip_grad_norm_(1.0), autocast bf16, random weights.
Each step copies the batch from host memory to the GPU, as bm_cuda_ft_grad
does. Prints "key value" lines (also the bf16 GEMM peak on this GPU).

  python3 peer_train.py --batch 128 --steps 20 [--compile]
"""
import argparse
import time

import torch
import torch.nn.functional as F
import timm


def gemm_peak(n=8192, reps=20):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    times = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        a @ b
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    times.sort()
    return 2 * n ** 3 / (times[len(times) // 2] * 1e-3) / 1e12


class Model(torch.nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.trunk = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        self.proj = torch.nn.Linear(768, 512, bias=False)
        self.head = torch.nn.Linear(512, classes)

    def forward(self, x):
        return self.head(F.normalize(self.proj(self.trunk(x)), dim=-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--classes", type=int, default=14)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"device {torch.cuda.get_device_name()}")
    print(f"bf16_gemm_tflops {gemm_peak():.1f}")
    model = Model(a.classes).cuda()
    enc = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.AdamW([{"params": enc, "lr": 1e-5}, {"params": model.head.parameters(), "lr": 1e-3}],
                            weight_decay=0.1)
    step_model = torch.compile(model) if a.compile else model
    img = torch.randn(a.batch, 3, 224, 224) * 2
    y = torch.arange(a.batch) % a.classes

    def step():
        x, t = img.cuda(), y.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(step_model(x).float(), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(3 if not a.compile else 5):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss = loss.item()
    dt = time.perf_counter() - t0
    mode = "compile" if a.compile else "eager"
    print(f"mode {mode}\nbatch {a.batch}\nms_per_step {1e3 * dt / a.steps:.1f}")
    print(f"samples_per_s {a.batch * a.steps / dt:.1f}\nmodel_tflops {3 * 35.1e9 * a.batch * a.steps / dt / 1e12:.1f}")
    print(f"loss {loss:.4f}")


if __name__ == "__main__":
    main()
