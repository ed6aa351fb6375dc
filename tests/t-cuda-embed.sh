#!/bin/sh
# bm-embed-img and bm-embed-txt with --device cuda against the same programs
# on the CPU (tiny model), in fp32, bf16 and fp16. Without a GPU (or built
# without nvcc) only the refusal is tested: a clear message, status 1.
. "$BM_TESTS/lib.sh"
M=$BM_TESTS/fixtures/tiny-model
D=$BM_TESTS/fixtures/tiny-embed

check_fails "--device gpu is a usage error" bm-embed-img -q -m $M --device gpu
check_eq "  ... status 2" "$(bm-embed-img -q -m $M --device gpu < /dev/null >/dev/null 2>&1; echo $?)" 2
check_fails "--precision bf16 on the CPU is a usage error" bm-embed-txt -q -m $M --precision bf16
check_fails "bm-fuse --device tpu is a usage error" bm-fuse -q --device tpu
check_fails "--precision fp64 is a usage error" bm-embed-img -q -m $M --device cuda --precision fp64
# the options both towers share (run_opts.c) say the same for each program
for p in bm-embed-img bm-embed-txt; do
  for bad in "--batch 0:--batch: not a count" "-b 70000:--batch: not a count from 1 to 65536" \
             "--threads many:--threads: not a count" "-d tpu:--device: cpu, cuda or cuda:N, not tpu" \
             "-p fp8:--precision: fp32, bf16 or fp16, not fp8" \
             "--precision fp16:--precision fp16: the CPU computes in fp32"; do
    $p -q -m $M ${bad%%:*} < /dev/null > /dev/null 2> $T/err
    check_eq "$p ${bad%%:*}: status 2" "$?" 2
    check "  ... says \"${bad#*:}\"" grep -qF -- "${bad#*:}" $T/err
  done
done

if ! bm-embed-img -q -m $M --device cuda < $D/images.bmr > $T/probe.bmr 2> $T/probe.err; then
  # no GPU here: the refusal must say so, naming the device, with status 1
  for p in bm-embed-img bm-embed-txt; do
    $p -q -m $M --device cuda:0 < $D/images.bmr > /dev/null 2> $T/err
    check_eq "$p --device cuda:0 without a GPU: status 1" "$?" 1
    check "  ... says why, naming cuda:0: $(head -c 160 $T/err)" \
      grep -Eq "cuda:0: (no GPU|built without CUDA|CUDA driver too old)" $T/err
  done
  bm-fuse -q --device cuda:0 < /dev/null > /dev/null 2> $T/err
  check_eq "bm-fuse --device cuda:0 without a GPU: status 1" "$?" 1
  check "  ... says why, naming cuda:0" grep -Eq "cuda:0: (no GPU|built without CUDA|CUDA driver too old)" $T/err
  echo "# skip: cuda embedding tests: $(sed 's/^[^:]*: //' $T/probe.err | head -1)"
  exit 0
fi

bm-embed-img -q -m $M --tokens < $D/images.bmr > $T/cpu-img.bmr
bm-embed-txt -q -m $M --tokens < $D/texts.bmr > $T/cpu-txt.bmr
for p in fp32 bf16 fp16; do
  case $p in fp32) te=1e-4 tt=1e-3 ;; bf16) te=3e-2 tt=2e-1 ;; fp16) te=5e-3 tt=3e-2 ;; esac
  check "img --device cuda --precision $p equals the CPU (emb $te, tokens $tt)" \
    sh -c "bm-embed-img -q -m $M --device cuda --precision $p --tokens --batch 2 < $D/images.bmr > $T/g-img.bmr &&
      $PY $BM_TESTS/bmr_compare.py $T/g-img.bmr $T/cpu-img.bmr --tensors img_emb --tol $te &&
      $PY $BM_TESTS/bmr_compare.py $T/g-img.bmr $T/cpu-img.bmr --tensors img_tokens --tol $tt"
  check "txt --device cuda --precision $p equals the CPU (emb $te, tokens $tt)" \
    sh -c "bm-embed-txt -q -m $M --device cuda --precision $p --tokens --batch 3 < $D/texts.bmr > $T/g-txt.bmr &&
      $PY $BM_TESTS/bmr_compare.py $T/g-txt.bmr $T/cpu-txt.bmr --tensors txt_emb --tol $te &&
      $PY $BM_TESTS/bmr_compare.py $T/g-txt.bmr $T/cpu-txt.bmr --tensors txt_tokens --tol $tt"
done
check "img --device cuda: open_clip's reference (1e-4, fp32)" \
  sh -c "bm-embed-img -q -m $M --device cuda --precision fp32 < $D/images.bmr | $PY $BM_TESTS/bmr_compare.py /dev/stdin $D/images-ref.bmr --tensors img_emb"
check "img --device cuda: records without images pass through in order" \
  sh -c "bm-embed-img -q -m $M --device cuda --batch 1 < $D/images.bmr > $T/g1.bmr && $PY -c \"
import msgpack
ids = lambda p: [(r.get('id'), 'img_emb' in r) for r in msgpack.Unpacker(open(p, 'rb'), raw=False)]
assert ids('$T/g1.bmr') == ids('$T/cpu-img.bmr'), (ids('$T/g1.bmr'), ids('$T/cpu-img.bmr'))\""
check "txt --classes on cuda equals the CPU (fp32)" \
  sh -c "bm-embed-txt -q -m $M --device cuda --precision fp32 --classes $D/classes.txt > $T/gc.bmr &&
    bm-embed-txt -q -m $M --classes $D/classes.txt > $T/cc.bmr &&
    $PY $BM_TESTS/bmr_compare.py $T/gc.bmr $T/cc.bmr --key class --tensors txt_emb"
: > $T/empty.bmr
check "img --device cuda: empty input" sh -c "bm-embed-img -q -m $M --device cuda < $T/empty.bmr > $T/e.bmr"
check_eq "  ... one header record" "$(bm-inspect $T/e.bmr | wc -l)" 1
check "--device cuda:99: status 1, no such GPU" \
  sh -c "bm-embed-img -q -m $M --device cuda:99 < $D/images.bmr > /dev/null 2> $T/e99; test \$? = 1 && grep -q 'cuda:99: no such GPU' $T/e99"
check "bm-fuse --device cuda: the same bytes as on the CPU (its work stays there)" \
  sh -c "bm-fuse -q --classes $T/cc.bmr --device cuda < $T/cpu-img.bmr > $T/f1.bmr &&
    bm-fuse -q --classes $T/cc.bmr < $T/cpu-img.bmr > $T/f2.bmr && cmp $T/f1.bmr $T/f2.bmr"
