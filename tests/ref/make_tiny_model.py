#!/usr/bin/env python3
"""Build a BiomedCLIP-shaped model with open_clip itself and write it, with
inputs and the outputs open_clip computes for them, as test fixtures.

    python3 tests/ref/make_tiny_model.py tiny OUT_DIR     # the committed fixture
    python3 tests/ref/make_tiny_model.py full OUT_DIR     # full size (make parity-full)

Needs torch, timm, transformers, open_clip and msgpack (the pyenv python, not
CI's). The model is open_clip's CustomTextCLIP with the hub config's towers:
timm's vit_base_patch16_224 (made tiny by passing sizes through to
timm.create_model) with a linear head, and a HuggingFace BertModel built from
a local config.json (no network) with the MLP projection and the
cls_last_hidden_state pooler. Weights are random, drawn at scales that keep
the activations non-trivial (default init leaves attention nearly uniform),
and saved with torch.save like the published open_clip_pytorch_model.bin,
including its int64 position_ids buffer.

OUT_DIR/model/        open_clip_config.json, open_clip_pytorch_model.bin, vocab.txt
OUT_DIR/images.bmr    records with "image" (u8) and records without
OUT_DIR/images-ref.bmr  "id", "img_emb" f32 [E], "img_tokens" f32 [T,W]
OUT_DIR/texts.bmr     records with "text" and records without
OUT_DIR/texts-ref.bmr   "id", "ids" i32 [L], "txt_emb" f32 [E], "txt_tokens" f32 [L,W]
OUT_DIR/classes.txt, templates.txt, classes-ref.bmr (open_clip's zero-shot recipe)
"""
import json
import os
import shutil
import sys
import tempfile

import msgpack
import numpy as np
import timm
import torch
import open_clip
import open_clip.timm_model
from open_clip.model import CustomTextCLIP

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

SIZES = {
    # width 64 and 2 heads of 32: the configs name heads, so that path is tested
    "tiny": dict(image=48, patch=16, vwidth=64, vdepth=2, vheads=2, vmlp_ratio=2.0,
                 twidth=64, tdepth=2, theads=2, tmlp=128, maxpos=300, context=256,
                 embed=32, vocab="small", nimg=5, batch=5),
    "full": dict(image=224, patch=16, vwidth=768, vdepth=12, vheads=12, vmlp_ratio=4.0,
                 twidth=768, tdepth=12, theads=12, tmlp=3072, maxpos=512, context=256,
                 embed=512, vocab=30522, nimg=4, batch=4),
}

WORDS = ("the a an of in on with and or no is are was were this that image photo scan chest x ray "
         "lung heart left right lower upper lobe opacity effusion pleural nodule mass normal "
         "tissue cell cells tumor lesion skin mole melanoma benign malignant presented shows "
         "there small large mild severe acute chronic patient findings consistent pneumonia "
         "edema fracture bone").split()


def make_vocab(kind, rng):
    toks = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    punct = [chr(c) for c in range(33, 127) if not chr(c).isalnum()]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    toks += punct + letters + ["##" + c for c in letters] + WORDS
    toks += ["##s", "##ed", "##ing", "##ion", "##al", "##ly", "##er", "é"]
    toks = list(dict.fromkeys(toks))  # no duplicates: the id of a token is its one line
    if kind != "small":
        seen = set(toks)
        while len(toks) < kind:
            n = int(rng.integers(2, 9))
            w = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), n))
            if rng.random() < 0.4:
                w = "##" + w
            if w not in seen:
                seen.add(w)
                toks.append(w)
    return toks


def build(cfg, hf_dir, vocab_len):
    from transformers import BertConfig
    BertConfig(vocab_size=vocab_len, hidden_size=cfg["twidth"], num_hidden_layers=cfg["tdepth"],
               num_attention_heads=cfg["theads"], intermediate_size=cfg["tmlp"],
               max_position_embeddings=cfg["maxpos"], hidden_act="gelu", pad_token_id=0,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).save_pretrained(hf_dir)
    # open_clip asks timm for vit_base_patch16_224; pass our sizes through
    real_create = timm.create_model

    def create(name, **kw):
        kw.update(img_size=cfg["image"], patch_size=cfg["patch"], embed_dim=cfg["vwidth"],
                  depth=cfg["vdepth"], num_heads=cfg["vheads"], mlp_ratio=cfg["vmlp_ratio"])
        return real_create(name, **kw)

    open_clip.timm_model.timm.create_model = create
    try:
        model = CustomTextCLIP(
            embed_dim=cfg["embed"],
            vision_cfg=dict(timm_model_name="vit_base_patch16_224", timm_model_pretrained=False,
                            timm_pool="", timm_proj="linear", image_size=cfg["image"]),
            text_cfg=dict(hf_model_name=hf_dir, hf_tokenizer_name=hf_dir, hf_model_pretrained=False,
                          hf_proj_type="mlp", hf_pooler_type="cls_last_hidden_state_pooler",
                          context_length=cfg["context"]))
    finally:
        open_clip.timm_model.timm.create_model = real_create
    return model.eval()


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(float(np.log(1 / 0.07)))
            elif "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "embed" not in name and "token" not in name:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) * (1.3 / np.sqrt(fan_in)))
            else:  # cls token, position and word embeddings
                p.copy_(0.7 * torch.randn(p.shape, generator=gen))


def tensor(a):
    a = np.ascontiguousarray(a)
    dt = {np.dtype("uint8"): "u8", np.dtype("int32"): "i32", np.dtype("float32"): "f32"}[a.dtype]
    return {"dtype": dt, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def write(path, header, records):
    with open(path, "wb") as f:
        if header is not None:
            f.write(msgpack.packb({"header": header}, use_bin_type=True))
        for r in records:
            f.write(msgpack.packb(r, use_bin_type=True))


TEXTS = [
    "this is an image of lung tissue",
    "Chest X-ray: left lower lobe opacity, mild effusion.",
    "  Caf\u00e9 na\u00efve r\u00e9sum\u00e9  \t\nnon\u00a0breaking\u3000space  ",
    "\u80ba\u764c presented in image \U0001F600 \u00bfque? \u2014 dashes\u2026 (brackets) [x] {y}",
    "control\x07chars\x1b here and a " + "verylongword" * 10 + " end",
    "",
    " ".join(["pleural effusion with nodule"] * 90),   # far past the context
    "Malignant melanoma, benign mole; skin lesion #42 @ 3.5cm & 10% growth!!!",
]


def main():
    kind, out = sys.argv[1], sys.argv[2]
    cfg = SIZES[kind]
    rng = np.random.default_rng(20261122)
    gen = torch.Generator().manual_seed(20261122)
    torch.manual_seed(20261122)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    vocab = make_vocab(cfg["vocab"], rng)
    with open(os.path.join(mdir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    with tempfile.TemporaryDirectory() as hf_dir:  # the BERT config.json open_clip reads
        model = build(cfg, hf_dir, len(vocab))
    randomize(model, gen)
    sd = model.state_dict()
    # the published checkpoint carries this buffer (transformers no longer saves it)
    sd["text.transformer.embeddings.position_ids"] = torch.arange(cfg["maxpos"]).unsqueeze(0)
    torch.save(sd, os.path.join(mdir, "open_clip_pytorch_model.bin"))
    vision_cfg = {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False,
                  "timm_pool": "", "timm_proj": "linear", "image_size": cfg["image"]}
    text_cfg = {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": cfg["context"]}
    if kind == "tiny":  # non-default heads: read from the config (open_clip's own field names)
        vision_cfg["head_width"] = cfg["vwidth"] // cfg["vheads"]
        text_cfg["heads"] = cfg["theads"]
    with open(os.path.join(mdir, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": {"embed_dim": cfg["embed"], "vision_cfg": vision_cfg, "text_cfg": text_cfg},
                   "preprocess_cfg": {"mean": list(MEAN), "std": list(STD)}}, f, indent=2)

    # ---- images ----
    S, n = cfg["image"], cfg["nimg"]
    imgs = rng.integers(0, 256, size=(n, 3, S, S), dtype=np.uint8)
    x = torch.from_numpy(imgs).float().div(255)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        emb = model.encode_image(x, normalize=True).numpy()
        toks = model.visual.trunk.forward_features(x).numpy()
    recs, refs = [], []
    for i in range(n):
        recs.append({"id": f"img{i}", "image": tensor(imgs[i]), "keep": {"n": i, "s": "passthrough"}})
        refs.append({"id": f"img{i}", "img_emb": tensor(emb[i]), "img_tokens": tensor(toks[i])})
        if i == 1:
            recs.append({"id": "noimage", "text": "a record without an image"})
    write(os.path.join(out, "images.bmr"), {"task": "test", "source": "make_tiny_model.py"}, recs)
    write(os.path.join(out, "images-ref.bmr"), None, refs)

    # ---- texts ----
    # open_clip's own HFTokenizer (clean, pad and truncate to the context) over
    # a local folder with the vocab, as AutoTokenizer finds it on the hub
    tk_dir = tempfile.mkdtemp()
    shutil.copy(os.path.join(mdir, "vocab.txt"), tk_dir)
    with open(os.path.join(tk_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True}, f)
    tokenizer = open_clip.tokenizer.HFTokenizer(tk_dir, context_length=cfg["context"])
    shutil.rmtree(tk_dir)

    def ids_of(texts):
        return tokenizer(texts)

    def encode(texts):
        ids = ids_of(texts)
        with torch.no_grad():
            e = model.encode_text(ids, normalize=True)
            mask = (ids != 0).long()
            h = model.text.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        return ids.numpy(), e.numpy(), h.numpy()

    texts = TEXTS if kind == "tiny" else TEXTS[:4]
    ids, temb, th = encode(texts)
    recs, refs = [], []
    for i, t in enumerate(texts):
        L = int((ids[i] != 0).sum())
        recs.append({"id": f"txt{i}", "text": t, "keep": [1, 2, {"x": None}]})
        refs.append({"id": f"txt{i}", "ids": tensor(ids[i, :L].astype(np.int32)), "txt_emb": tensor(temb[i]),
                     "txt_tokens": tensor(th[i, :L])})
        if i == 2:
            recs.append({"id": "notext", "caption": "no text key here"})
    write(os.path.join(out, "texts.bmr"), {"task": "test"}, recs)
    write(os.path.join(out, "texts-ref.bmr"), None, refs)

    # ---- zero-shot class embeddings ----
    classes = [("normal lung", "normal lung tissue"), ("pneumonia", None), ("melanoma", "malignant melanoma of the skin")]
    templates = ["this is an image of {}", "{} presented in image", "a photo of {}."]
    with open(os.path.join(out, "classes.txt"), "w") as f:
        for name, prompt in classes:
            f.write(f"{name}\t{prompt}\n" if prompt else f"{name}\n")
    with open(os.path.join(out, "templates.txt"), "w") as f:
        f.write("\n".join(templates) + "\n")
    refs = []
    for default in (False, True):
        tl = templates if not default else ["this is an image of {}", "{} presented in image"]
        for name, prompt in classes:
            _, e, _ = encode([t.format(prompt or name) for t in tl])
            e = torch.from_numpy(e)
            e = torch.nn.functional.normalize(e, dim=-1).mean(dim=0)
            e = (e / e.norm()).numpy()
            refs.append({"class": name, "templates": "default" if default else "file", "txt_emb": tensor(e)})
    write(os.path.join(out, "classes-ref.bmr"), None, refs)
    print(f"{kind}: wrote {out}: vocab {len(vocab)}, params "
          f"{sum(p.numel() for p in model.parameters())}", file=sys.stderr)


if __name__ == "__main__":
    main()
