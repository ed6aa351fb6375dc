#!/usr/bin/env python3
"""Reference of the text tower's training forward and backward with learned
prompt vectors, from PyTorch.

    python3 tests/ref/make_bert_train_fixture.py tests/fixtures/bert_train.bmr   # make fixtures

The model is tests/fixtures/tiny-model's text tower (open_clip's
CustomTextCLIP as tests/ref/make_tiny_model.py builds it): HuggingFace's
BertModel and open_clip's projection Linear-GELU-Linear without biases. Four
texts of different lengths; an id < 0 is prompt vector -1-id: row -1-id of
ctx[N_CTX, W] is fed through inputs_embeds in place of the word embedding
(HuggingFace then adds the token-type and position embeddings and applies
the embedding LayerNorm), as CoOp feeds its context vectors. Each text runs
alone (batch of one, no padding), as the C code runs packed texts on their
real lengths.

One record: "ids" i32 [N] packed, "start", "len" i32 [S], "ctx" f32 [N_CTX,W],
"R1" f32 [S,E], "R2" f32 [N,W], "emb" f32 [S,E] (L2-normalized projection of
token 0), "tokens" f32 [N,W] (last hidden state), and for
loss = sum(emb*R1) + sum(tokens*R2) the gradient of every parameter of the
text tower ("d" + open_clip name) and "dctx". tests/unit/test_bert_train.c
compares."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, __file__.rsplit("/tests/", 1)[0] + "/examples")
import make_finetune_fixture as mff  # noqa: E402
import read_records as rr  # noqa: E402

N_CTX = 4
CLS, SEP = 3, 4


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def main():
    torch.manual_seed(11)
    rng = np.random.default_rng(11)
    model = mff.load_model().double().float()  # float32, eval: no dropout
    text = model.text
    bert = text.transformer
    V, W = bert.embeddings.word_embeddings.weight.shape
    # CoOp's layout (prompts after [CLS]), prompts only, no prompt, prompts inside
    layouts = [
        [CLS, -1, -2, -3, -4] + list(rng.integers(6, V, 6)) + [SEP],
        [CLS, -1, -2, -3, -4, SEP],
        [CLS] + list(rng.integers(6, V, 3)) + [SEP],
        [CLS] + list(rng.integers(6, V, 2)) + [-3, -1, -3] + list(rng.integers(6, V, 2)) + [SEP],
    ]
    lens = [len(t) for t in layouts]
    starts = list(np.cumsum([0] + lens[:-1]))
    ids = np.array([int(i) for t in layouts for i in t], dtype=np.int32)
    ctx = torch.tensor(rng.normal(0, 0.7, (N_CTX, W)), dtype=torch.float32, requires_grad=True)
    E = text.proj[2].weight.shape[0]
    R1 = torch.tensor(rng.normal(0, 1, (len(lens), E)), dtype=torch.float32)
    R2 = torch.tensor(rng.normal(0, 1, (len(ids), W)), dtype=torch.float32)

    model.zero_grad()
    toks, embs = [], []
    for t in layouts:
        tid = torch.tensor([max(i, 0) for i in t])
        word = bert.embeddings.word_embeddings(tid)
        rows = [ctx[-1 - i] if i < 0 else word[k] for k, i in enumerate(t)]
        e = torch.stack(rows)[None]
        out = bert(inputs_embeds=e, attention_mask=torch.ones(1, len(t), dtype=torch.long))
        h = out.last_hidden_state[0]
        toks.append(h)
        embs.append(torch.nn.functional.normalize(text.proj(h[0]), dim=-1))
    tokens, emb = torch.cat(toks), torch.stack(embs)
    loss = (emb * R1).sum() + (tokens * R2).sum()
    loss.backward()
    rec = {"case": "prompts", "ids": ids, "start": np.array(starts, dtype=np.int32),
           "len": np.array(lens, dtype=np.int32), "ctx": f32(ctx), "R1": f32(R1), "R2": f32(R2),
           "emb": f32(emb), "tokens": f32(tokens), "loss": float(loss.item()), "dctx": f32(ctx.grad)}
    for n, p in text.named_parameters():
        if p.grad is not None:
            rec["dtext." + n] = f32(p.grad)
    with open(sys.argv[1], "wb") as f:
        rr.write(f, {"version": 1, "task": "reference", "producer": "tests/ref/make_bert_train_fixture.py",
                     "torch": torch.__version__}, [rec])
    print(f"wrote {sys.argv[1]}: loss {loss.item():.6f}, {sum(k.startswith('dtext.') for k in rec)} gradients")


if __name__ == "__main__":
    main()
