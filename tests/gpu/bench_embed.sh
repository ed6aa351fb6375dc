#!/bin/sh
# Full-size image (and text) embedding throughput on the GPU: ours
# (.gpu/bin/bench_embed, random BiomedCLIP-shaped weights) next to PyTorch
# (peer_embed.py: timm ViT-B/16 + head, autocast bf16, eager and
# torch.compile), same GPU, one run. MFU = 35 GFLOP per image forward x
# images/s / the bf16 GEMM peak measured in the same run.
#   sh tests/gpu/bench_embed.sh [BATCH [REPS]]     (from the repository root)
# Writes the raw lines to ${OUT:-.}/bench_embed.txt and prints a table.
set -u
B=${1:-256} R=${2:-20}
out=${OUT:-.}/bench_embed.txt
bin=${BM_GPU:-.gpu}/bin/bench_embed
PYT=${TORCH_PY:-python3}
: > "$out"
"$bin" --batch "$B" --reps "$R" >> "$out" 2>&1 || echo "bench_embed failed: $?" >> "$out"
"$PYT" tests/gpu/peer_embed.py --batch "$B" --reps "$R" >> "$out" 2>&1 || echo "peer_embed failed: $?" >> "$out"
awk '
  { v[$1] = $2 }
  END {
    peak = v["peak_bf16_tflops"] + 0; if (v["torch_peak_bf16_tflops"] + 0 > peak) peak = v["torch_peak_bf16_tflops"] + 0;
    printf "%-34s %12s %8s %8s\n", "image tower, batch '"$B"', bf16", "images/s", "vs eager", "MFU";
    e = v["torch_eager_images_per_s"];
    n = split("vit_images_per_s vit_images_per_s_batched_attention torch_eager_images_per_s torch_compile_images_per_s", k, " ");
    split("biomedclip-c (fused attention)|biomedclip-c (cuBLAS-batched attn)|PyTorch eager|PyTorch torch.compile", name, "|");
    for (i = 1; i <= n; i++) if (v[k[i]] != "") {
      mfu = (peak > 0 ? 35e9 * v[k[i]] / (peak * 1e12) * 100 : 0);
      printf "%-34s %12.1f %7.2fx %7.1f%%\n", name[i], v[k[i]], (e > 0 ? v[k[i]] / e : 0), mfu;
    }
    printf "bf16 GEMM peak (8192^3): cuBLAS via us %s TFLOP/s, torch %s TFLOP/s; MFU uses %.1f\n", v["peak_bf16_tflops"], v["torch_peak_bf16_tflops"], peak;
    if (v["text_texts_per_s"] != "") printf "text tower, %s tokens/text: %s texts/s\n", v["text_len"], v["text_texts_per_s"];
    if (v["vit_batch_ms"] != "") printf "one image batch alone (no overlap): %s ms\n", v["vit_batch_ms"];
  }' "$out"
grep -E "failed|error" "$out" | head -5
