#!/bin/sh
# bm-score retrieval Recall@1/5/10 both ways against numpy, with exact ties
# (embeddings in quarters: every dot product is exact) ranked both ways,
# tiles that do not divide n, single and double precision.
. "$BM_TESTS/lib.sh"
REF="$BM_TESTS/ref/score_ref.py"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"
: >"$T/checks"
i=0
for kind in quant dup random; do
  "$PY" "$REF" gen-pairs "$T/p$kind.bmr" --n 157 --d 24 --seed "$seed" --kind $kind
  for ties in pessimistic optimistic; do
    for prec in double single; do
      [ $kind = random ] && [ $prec = single ] && continue # float32 sums are not exact
      for block in 16 1024; do
        echo poison >"$T/r$i.json"
        if bm-score --json --ties $ties --precision $prec --block $block "$T/p$kind.bmr" >"$T/r$i.json" 2>"$T/err"; then
          echo "check-retrieval '$T/p$kind.bmr' '$T/r$i.json' --ties $ties --what 'retrieval $kind, ties $ties, $prec, block $block'" >>"$T/checks"
        else
          echo "not ok - retrieval $kind $ties $prec $block: bm-score failed"; sed 's/^/#   /' "$T/err"
        fi
        i=$((i + 1))
      done
    done
  done
done
"$PY" "$REF" batch "$T/checks"

bm-score --json "$T/pdup.bmr" >"$T/pess.json"
bm-score --json --ties optimistic "$T/pdup.bmr" >"$T/opt.json"
check "duplicated captions make the tie rule matter (the test can see it)" "$PY" -c "
import json; p = json.load(open('$T/pess.json')); o = json.load(open('$T/opt.json'))
assert p['i2t_tied_queries'] > 0 and o['i2t_r1'] > p['i2t_r1'], (p, o)"
check "pairs without targets are retrieval whatever the header's task" grep -q '"task": "retrieval"' "$T/pess.json"
bm-score --retrieval <"$T/pquant.bmr" >"$T/table"
check "the table has both directions" sh -c "grep -q '^image->text ' '$T/table' && grep -q '^text->image ' '$T/table'"
check_fails "retrieval refuses --bootstrap" bm-score --bootstrap 10 "$T/pquant.bmr"
"$PY" "$REF" gen-pairs "$T/one.bmr" --n 1 --d 4 --seed 1
bm-score --json "$T/one.bmr" >"$T/one.json"
check "one pair: every recall is 1" "$PY" -c "
import json; r = json.load(open('$T/one.json')); assert all(r[k] == 1 for k in r if '_r' in k), r"
