#!/bin/sh
# bm-score retrieval Recall@1/5/10 both ways against numpy, with exact ties
# (embeddings in quarters: every dot product is exact; and float embeddings
# with duplicated rows, whose copies must tie wherever the tiles put them)
# ranked both ways, tiles that do not divide n.
. "$BM_TESTS/lib.sh"
REF="$BM_TESTS/ref/score_ref.py"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"
: >"$T/checks"
i=0
for kind in quant dup random dupfloat; do
  d=24
  [ $kind = dupfloat ] && d=200
  "$PY" "$REF" gen-pairs "$T/p$kind.bmr" --n 157 --d $d --seed "$seed" --kind $kind
  for ties in pessimistic optimistic; do
    for block in 7 16 1024; do
      echo poison >"$T/r$i.json"
      if bm-score --json --ties $ties --block $block "$T/p$kind.bmr" >"$T/r$i.json" 2>"$T/err"; then
        echo "check-retrieval '$T/p$kind.bmr' '$T/r$i.json' --ties $ties --what 'retrieval $kind, ties $ties, block $block'" >>"$T/checks"
      else
        echo "not ok - retrieval $kind $ties $block: bm-score failed"; sed 's/^/#   /' "$T/err"
      fi
      i=$((i + 1))
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
bm-score --json --block 7 "$T/pdupfloat.bmr" >"$T/df.json"
check "copied float rows tie in both directions across tiles" "$PY" -c "
import json; r = json.load(open('$T/df.json')); assert r['i2t_tied_queries'] >= 40 and r['t2i_tied_queries'] >= 40, r"
