#!/usr/bin/env python3
"""A full-size BiomedCLIP-shaped checkpoint with random weights (never commit it).

    python3 tests/ref/make_full_checkpoint.py OUT.bin [OUT.safetensors]

Real key names and shapes (REFERENCE.md section 1): ViT-B/16 at 224 (197
positions), PubMedBERT base with V=30522 and P=512 (the sizes of
microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract's config), text proj
768->640->512, the int64 position_ids [1,512]: 196M float32 values, ~784 MB,
saved with torch.save like the hub's open_clip_pytorch_model.bin.
"""
import collections
import sys

import torch

W, F, E, V, P, L = 768, 3072, 512, 30522, 512, 12


def state_dict():
    g = torch.Generator().manual_seed(1)
    sd = collections.OrderedDict()

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    sd["logit_scale"] = torch.tensor(4.4292)
    t = "visual.trunk."
    sd[t + "cls_token"], sd[t + "pos_embed"] = r(1, 1, W), r(1, 197, W)
    sd[t + "patch_embed.proj.weight"], sd[t + "patch_embed.proj.bias"] = r(W, 3, 16, 16), r(W)
    for i in range(L):
        b = f"{t}blocks.{i}."
        sd[b + "norm1.weight"], sd[b + "norm1.bias"] = r(W), r(W)
        sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"] = r(3 * W, W), r(3 * W)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = r(W, W), r(W)
        sd[b + "norm2.weight"], sd[b + "norm2.bias"] = r(W), r(W)
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = r(F, W), r(F)
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = r(W, F), r(W)
    sd[t + "norm.weight"], sd[t + "norm.bias"] = r(W), r(W)
    sd["visual.head.proj.weight"] = r(E, W)
    e = "text.transformer.embeddings."
    sd[e + "position_ids"] = torch.arange(P).unsqueeze(0)
    sd[e + "word_embeddings.weight"] = r(V, W)
    sd[e + "position_embeddings.weight"] = r(P, W)
    sd[e + "token_type_embeddings.weight"] = r(2, W)
    sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"] = r(W), r(W)
    for i in range(L):
        l = f"text.transformer.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            sd[l + f"attention.self.{n}.weight"], sd[l + f"attention.self.{n}.bias"] = r(W, W), r(W)
        sd[l + "attention.output.dense.weight"], sd[l + "attention.output.dense.bias"] = r(W, W), r(W)
        sd[l + "attention.output.LayerNorm.weight"], sd[l + "attention.output.LayerNorm.bias"] = r(W), r(W)
        sd[l + "intermediate.dense.weight"], sd[l + "intermediate.dense.bias"] = r(F, W), r(F)
        sd[l + "output.dense.weight"], sd[l + "output.dense.bias"] = r(W, F), r(W)
        sd[l + "output.LayerNorm.weight"], sd[l + "output.LayerNorm.bias"] = r(W), r(W)
    sd["text.proj.0.weight"], sd["text.proj.2.weight"] = r(640, W), r(E, 640)
    return sd


if __name__ == "__main__":
    sd = state_dict()
    torch.save(sd, sys.argv[1])
    if len(sys.argv) > 2:
        from safetensors.torch import save_file
        save_file(sd, sys.argv[2], metadata={"config": "{}"})
    n = sum(v.numel() for v in sd.values())
    print(f"{len(sd)} tensors, {n} values, {sum(v.numel() * v.element_size() for v in sd.values())} bytes")
