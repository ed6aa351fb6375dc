# bm-decode --format nih on generated releases in both layouts (tar.gz and
# the extracted images/ folder, both CSV header variants) with the edge
# cases: every key of every record, pixels against Pillow, splits, shards,
# determinism across thread counts.
. "$BM_TESTS/lib.sh"
G="$BM_TESTS/gen"
$PY "$G/make_dataset.py" nih "$T/a" "$T/a.json" --header 11 --seed 3 || exit 1
$PY "$G/make_dataset.py" nih "$T/f/nih" "$T/f.json" --header 12 --layout folder --seed 4 || exit 1

bm-decode -q --format nih --size 32 --text "$T/a" >"$T/a.bmr" 2>"$T/a.err"
check_eq "nih tar.gz layout: exit 0 with skippable problems" "$?" 0
$PY "$G/check_records.py" "$T/a.bmr" "$T/a.json" "$T/a.err" --size 32 --text --problems --tag "nih tar.gz"
bm-decode -q --format nih --size 32 "$T/f/nih" >"$T/f.bmr" 2>"$T/f.err"
check_eq "nih folder layout, 12-field header: exit 0" "$?" 0
$PY "$G/check_records.py" "$T/f.bmr" "$T/f.json" "$T/f.err" --size 32 --problems --tag "nih folder"

# the whole resized image, and the default 224 crop (upscaling these)
bm-decode -q --format nih --size 40 --no-crop "$T/a" >"$T/nc.bmr" 2>"$T/nc.err"
$PY "$G/check_records.py" "$T/nc.bmr" "$T/a.json" "$T/nc.err" --size 40 --no-crop --tag "nih --no-crop"
bm-decode -q --format nih --split test "$T/a" >"$T/t.bmr" 2>"$T/t.err"
$PY "$G/check_records.py" "$T/t.bmr" "$T/a.json" "$T/t.err" --size 224 --split test --tag "nih --split test 224"

# same bytes whatever the thread count
bm-decode -q --format nih --size 32 --text -j 1 "$T/a" >"$T/j1.bmr" 2>/dev/null
bm-decode -q --format nih --size 32 --text -j 5 "$T/a" >"$T/j5.bmr" 2>/dev/null
check "output identical with 1 and 5 threads" cmp "$T/j1.bmr" "$T/a.bmr"
check "output identical with 5 threads" cmp "$T/j5.bmr" "$T/a.bmr"

# splits: train + val + test = all, and the seed moves val (by patient)
for s in train val test; do bm-decode -q --format nih --size 8 --split $s "$T/a" 2>/dev/null; done >"$T/parts.bmr"
ids() { $PY -c "
import sys; sys.path.insert(0, '$G'); from pillow_ref import read_records
for f in sys.argv[1:]:
    for r in read_records(f)[1]:
        if 'header' not in r: print(r['id'], r['split'], r['group'])" "$@" | sort; }
bm-decode -q --format nih --size 8 "$T/a" >"$T/all8.bmr" 2>/dev/null
check_eq "train, val and test runs together are the whole" "$(ids "$T/parts.bmr" | grep -v '^$' | sort)" "$(ids "$T/all8.bmr")"
bm-decode -q --format nih --metadata-only --seed 1 --val-fraction 0.5 "$T/a" >"$T/s1.bmr" 2>/dev/null
bm-decode -q --format nih --metadata-only --seed 2 --val-fraction 0.5 "$T/a" >"$T/s2.bmr" 2>/dev/null
bm-decode -q --format nih --metadata-only --seed 2 --val-fraction 0.5 "$T/a" >"$T/s2b.bmr" 2>/dev/null
check "same seed, same split" cmp "$T/s2.bmr" "$T/s2b.bmr"
check_fails "another seed, another split" cmp -s "$T/s1.bmr" "$T/s2.bmr"

# shards: disjoint, together the whole, and Slurm's variables pick one
for k in 1 2 3; do bm-decode -q --format nih --size 8 --shard $k/3 "$T/a" >"$T/sh$k.bmr" 2>"$T/sh$k.err"; done
n1=$(ids "$T/sh1.bmr" | wc -l); n2=$(ids "$T/sh2.bmr" | wc -l); n3=$(ids "$T/sh3.bmr" | wc -l)
check_eq "shards together are the whole" "$(ids "$T/sh1.bmr" "$T/sh2.bmr" "$T/sh3.bmr")" "$(ids "$T/all8.bmr")"
check_eq "shards are disjoint" "$(ids "$T/sh1.bmr" "$T/sh2.bmr" "$T/sh3.bmr" | uniq -d)" ""
check "no shard is empty ($n1, $n2, $n3)" test "$n1" -gt 0 -a "$n2" -gt 0 -a "$n3" -gt 0
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3 bm-decode -q --format nih --size 8 "$T/a" >"$T/slurm.bmr" 2>/dev/null
check "SLURM_ARRAY_TASK_ID=1 of 3 is --shard 2/3" cmp "$T/slurm.bmr" "$T/sh2.bmr"
probs() { sed -n 's/.*records written; //p' "$@" | tr ',' '\n' | sed 's/^ *problems: //; s/^ *//' | awk '{n=$1; $1=""; s[$0]+=n} END {for (k in s) print s[k] k}' | sort; }
check_eq "the shards' problem counts add up to the whole run's" "$(probs "$T/sh1.err" "$T/sh2.err" "$T/sh3.err")" "$(probs "$T/a.err")"

# --size 0: the original pixels, only converted to RGB
bm-decode -q --format nih --size 0 "$T/a" >"$T/s0.bmr" 2>"$T/s0.err"
$PY "$G/check_records.py" "$T/s0.bmr" "$T/a.json" "$T/s0.err" --size 0 --tag "nih --size 0"
