#!/usr/bin/env python3
"""Small fixtures for the weights loader (tests/unit/test_weights.c).

Needs PyTorch, safetensors and tokenizers (the pyenv python3, not CI's):
    python3 tests/ref/make_loader_fixtures.py [OUTDIR]   (default tests/fixtures/loader)

Writes
  model.bin          torch.save of an OrderedDict (with torch's _metadata) holding
                     BiomedCLIP's key names in miniature (f32), the int64
                     position_ids buffer, f16/bf16/i32/u8 tensors, a transposed
                     (non-contiguous) tensor, views sharing one storage at offsets,
                     a strided slice, a scalar and an empty tensor
  model.safetensors  the same tensors with safetensors, config and vocab in the
                     metadata keys "config" and "vocab"
  model_deflate.bin  model.bin with its members deflated (libarchive must cope)
  expected.txt       one line per tensor: name dtype shape(d0,d1|-) hex-of-bytes
  open_clip_config.json, vocab.txt, tokenizer.json   the hub folder's side files
  bad_*.bin          hand-made torch zips for the error tests (see BAD below)
  legacy.bin         torch.save(..., _use_new_zipfile_serialization=False)
Nothing in here is ever unpickled by Python: the bad pickles are written as bytes.
"""
import collections
import io
import json
import os
import pickle
import sys
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "loader")
os.makedirs(OUT, exist_ok=True)
g = torch.Generator().manual_seed(20261122)


def rnd(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g).to(dtype)


def miniature():
    """BiomedCLIP's state-dict keys at width 16, one block/layer each."""
    W, F, E, V, P, G = 16, 64, 8, 20, 12, 2
    sd = collections.OrderedDict()
    sd["logit_scale"] = torch.tensor(4.6052)
    t = "visual.trunk."
    sd[t + "cls_token"] = rnd(1, 1, W)
    sd[t + "pos_embed"] = rnd(1, G * G + 1, W)
    sd[t + "patch_embed.proj.weight"] = rnd(W, 3, 4, 4)
    sd[t + "patch_embed.proj.bias"] = rnd(W)
    b = t + "blocks.0."
    for n in ("norm1", "norm2"):
        sd[b + n + ".weight"], sd[b + n + ".bias"] = rnd(W), rnd(W)
    sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"] = rnd(3 * W, W), rnd(3 * W)
    sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = rnd(W, W), rnd(W)
    sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = rnd(F, W), rnd(F)
    sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = rnd(W, F), rnd(W)
    sd[t + "norm.weight"], sd[t + "norm.bias"] = rnd(W), rnd(W)
    sd["visual.head.proj.weight"] = rnd(E, W)
    e = "text.transformer.embeddings."
    sd[e + "word_embeddings.weight"] = rnd(V, W)
    sd[e + "position_embeddings.weight"] = rnd(P, W)
    sd[e + "token_type_embeddings.weight"] = rnd(2, W)
    sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"] = rnd(W), rnd(W)
    sd[e + "position_ids"] = torch.arange(P).unsqueeze(0)
    l = "text.transformer.encoder.layer.0."
    for n in ("query", "key", "value"):
        sd[l + "attention.self." + n + ".weight"] = rnd(W, W)
        sd[l + "attention.self." + n + ".bias"] = rnd(W)
    sd[l + "attention.output.dense.weight"], sd[l + "attention.output.dense.bias"] = rnd(W, W), rnd(W)
    sd[l + "attention.output.LayerNorm.weight"], sd[l + "attention.output.LayerNorm.bias"] = rnd(W), rnd(W)
    sd[l + "intermediate.dense.weight"], sd[l + "intermediate.dense.bias"] = rnd(F, W), rnd(F)
    sd[l + "output.dense.weight"], sd[l + "output.dense.bias"] = rnd(W, F), rnd(W)
    sd[l + "output.LayerNorm.weight"], sd[l + "output.LayerNorm.bias"] = rnd(W), rnd(W)
    sd["text.proj.0.weight"] = rnd(12, W)
    sd["text.proj.2.weight"] = rnd(E, 12)
    # storage layouts the loader must untangle
    sd["extra.f16"] = rnd(3, 5, dtype=torch.float16)
    sd["extra.bf16"] = rnd(4, 3, dtype=torch.bfloat16)
    sd["extra.i32"] = torch.randint(-2**31, 2**31 - 1, (5,), generator=g, dtype=torch.int32)
    sd["extra.u8"] = torch.randint(0, 256, (2, 3), generator=g, dtype=torch.uint8)
    sd["extra.transposed"] = rnd(5, 7).t()
    base = rnd(40)
    sd["extra.view_a"] = base[3:15].view(3, 4)
    sd["extra.view_b"] = base[20:32].view(4, 3)
    sd["extra.slice"] = rnd(6, 8)[1:5, 2:7]
    sd["extra.slice_t"] = rnd(6, 8)[1:6:2, ::3].t()
    sd["extra.empty"] = torch.empty(0, 4)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])  # as module.state_dict() does
    assert not sd["extra.transposed"].is_contiguous() and not sd["extra.slice"].is_contiguous()
    assert sd["extra.view_a"].untyped_storage().data_ptr() == sd["extra.view_b"].untyped_storage().data_ptr()
    return sd


def raw_hex(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes().hex()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes().hex()


DT = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.int64: "i64",
      torch.int32: "i32", torch.uint8: "u8"}

VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "chest", "x", "##ray",
         "of", "a", "lung", "##s", "mass", "with", ".", ",", "effusion", "normal"]

CONFIG = {"model_cfg": {"embed_dim": 8,
                        "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False,
                                       "timm_pool": "", "timm_proj": "linear", "image_size": 8},
                        "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                                     "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                                     "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                                     "context_length": 12}},
          "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                             "std": [0.26862954, 0.26130258, 0.27577711]}}


# ---- hand-made torch zips for the error tests -------------------------------------------
class Stor:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class View:
    def __init__(self, stor, off, size, stride):
        self.a = (stor, off, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.a)


class Pick(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", obj.cls, obj.key, "cpu", obj.numel) if isinstance(obj, Stor) else None


def pkl(obj):
    f = io.BytesIO()
    Pick(f, protocol=2).dump(obj)
    return f.getvalue()


def torch_zip(path, pickle_bytes, members, byteorder=b"little", compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as z:
        z.writestr("crafted/data.pkl", pickle_bytes)
        z.writestr("crafted/byteorder", byteorder)
        for k, v in members.items():
            z.writestr("crafted/data/" + k, v)
        z.writestr("crafted/version", b"3\n")


def bad_fixtures():
    f12 = np.arange(1, 13, dtype="<f4").tobytes()
    ok = lambda size, stride, off=0, numel=12: collections.OrderedDict(
        [("w", View(Stor(torch.FloatStorage, "0", numel), off, size, stride))])
    # GLOBAL 'os system' called with ('true',): written as bytes, never loaded
    evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    torch_zip(f"{OUT}/bad_global.bin", evil, {})
    torch_zip(f"{OUT}/bad_stride.bin", pkl(ok((3, 4), (5, 1))), {"0": f12})
    torch_zip(f"{OUT}/bad_offset.bin", pkl(ok((2, 4), (4, 1), off=5)), {"0": f12})
    torch_zip(f"{OUT}/bad_short.bin", pkl(ok((3, 4), (4, 1))), {"0": f12[:40]})
    torch_zip(f"{OUT}/bad_missing.bin", pkl(ok((3, 4), (4, 1))), {})
    torch_zip(f"{OUT}/bad_bigendian.bin", pkl(ok((3, 4), (4, 1))), {"0": f12}, byteorder=b"big")
    torch_zip(f"{OUT}/bad_double.bin", pkl(collections.OrderedDict(
        [("d", View(Stor(torch.DoubleStorage, "0", 2), 0, (2,), (1,)))])), {"0": bytes(16)})
    torch_zip(f"{OUT}/bad_notensor.bin", pkl(collections.OrderedDict([("w", 3)])), {})
    torch_zip(f"{OUT}/bad_list.bin", pkl([1, 2]), {})
    with open(f"{OUT}/model.bin", "rb") as f:
        whole = f.read()
    with open(f"{OUT}/bad_truncated.bin", "wb") as f:
        f.write(whole[: len(whole) // 2])
    with open(f"{OUT}/bad_notzip.bin", "wb") as f:
        f.write(b"this is not a checkpoint, only some text\n")


def main():
    sd = miniature()
    torch.save(sd, f"{OUT}/model.bin")
    torch.save(collections.OrderedDict([("a", rnd(3))]), f"{OUT}/legacy.bin",
               _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(f"{OUT}/model.bin") as zin, \
            zipfile.ZipFile(f"{OUT}/model_deflate.bin", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    vocab = "".join(v + "\n" for v in VOCAB)
    config = json.dumps(CONFIG, indent=2) + "\n"
    with open(f"{OUT}/vocab.txt", "w") as f:
        f.write(vocab)
    with open(f"{OUT}/open_clip_config.json", "w") as f:
        f.write(config)
    from tokenizers import BertWordPieceTokenizer
    BertWordPieceTokenizer(f"{OUT}/vocab.txt", lowercase=True).save(f"{OUT}/tokenizer.json")
    save_file({k: v.contiguous().clone() for k, v in sd.items()}, f"{OUT}/model.safetensors",
              metadata={"config": config, "vocab": vocab})
    with open(f"{OUT}/expected.txt", "w") as f:
        for k, v in sd.items():
            shape = ",".join(str(d) for d in v.shape) or "-"
            f.write(f"{k} {DT[v.dtype]} {shape} {raw_hex(v) or '-'}\n")
    bad_fixtures()


if __name__ == "__main__":
    main()
