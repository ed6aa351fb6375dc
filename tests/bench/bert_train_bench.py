#!/usr/bin/env python3
"""PyTorch eager counterpart of bert_train_bench.c: HuggingFace BertModel
(BERT-base width, DEPTH layers, random weights) + Linear-GELU-Linear
projection of [CLS], L2-normalized; forward + backward of TEXTS x LEN, plain
and with HF gradient checkpointing. Prints one JSON line.
    python3 tests/bench/bert_train_bench.py TEXTS LEN DEPTH REPS THREADS"""
import json
import sys
import time
import warnings

import torch
from transformers import BertConfig, BertModel
from transformers.utils import logging

warnings.filterwarnings("ignore")
logging.set_verbosity_error()

S, L, D, reps, threads = (int(a) for a in sys.argv[1:6])
torch.set_num_threads(threads)
cfg = BertConfig(vocab_size=1000, hidden_size=768, num_hidden_layers=D, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)
bert = BertModel(cfg, add_pooling_layer=False).train()
proj = torch.nn.Sequential(torch.nn.Linear(768, 640, bias=False), torch.nn.GELU(),
                           torch.nn.Linear(640, 512, bias=False))
ids = torch.randint(0, 1000, (S, L))
demb = torch.randn(S, 512)


def step():
    t0 = time.perf_counter()
    h = bert(input_ids=ids).last_hidden_state
    emb = torch.nn.functional.normalize(proj(h[:, 0]), dim=-1)
    loss = (emb * demb).sum()
    t1 = time.perf_counter()
    loss.backward()
    return t1 - t0, time.perf_counter() - t1


def best():
    f = b = 1e30
    for _ in range(reps):
        x, y = step()
        f, b = min(f, x), min(b, y)
    return f, b


f0, b0 = best()
bert.gradient_checkpointing_enable()
f1, b1 = best()
print(json.dumps({"bench": "bert_train_torch", "texts": S, "len": L, "depth": D, "threads": threads,
                  "fwd_s": round(f0, 4), "bwd_s": round(b0, 4), "step_s": round(f0 + b0, 4),
                  "texts_per_s": round(S / (f0 + b0), 1), "ckpt_step_s": round(f1 + b1, 4),
                  "torch": torch.__version__}))
