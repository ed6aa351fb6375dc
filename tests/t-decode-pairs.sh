#!/bin/sh
# bm-decode --format pairs: image-caption pairs from a CSV, a TSV (named or
# sniffed), a folder holding one, and webdataset tars (or a folder of such
# members); every problem named and counted, --strict, pixels equal to
# Pillow's, splits disjoint and complete, shards, threads; then the chain
# decode | embed-img | embed-txt | bm-score --retrieval on the tiny model.
. "$BM_TESTS/lib.sh"
G="$BM_TESTS/gen"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"
$PY "$G/make_pairs.py" "$T/p" "$T/p.json" --seed "$seed" || exit 1
$PY "$G/make_pairs.py" "$T/c" "$T/c.json" --seed "$seed" --clean --n 12 || exit 1
CSV="$T/p/csv/captions.csv" TSV="$T/p/csv/captions.tsv" W0="$T/p/wds/shard-000.tar" W1="$T/p/wds/shard-001.tar"
chk() { $PY "$G/check_pairs.py" "$T/p.json" "$@"; }
D="bm-decode -q --format pairs --size 32"
# ids (or "split id" with idsplit) of a stream, from bm-inspect's JSON lines
# (records start {"id":...,"split":...}; the generated ids hold no quotes)
ids() { bm-inspect "$1" | tail -n +2 | sed -n 's/^{"id":"\([^"]*\)".*/\1/p'; }
idsplit() { bm-inspect "$1" | tail -n +2 | sed -n 's/^{"id":"\([^"]*\)","split":"\([a-z]*\)".*/\2 \1/p'; }
count() { ids "$1" | wc -l | tr -d ' '; }

bm-decode --help >"$T/help"
check "--help names the pairs format and its options" sh -c "grep -q pairs '$T/help' && grep -q -- --image-col '$T/help' && grep -q -- --caption-col '$T/help'"

# ---- CSV and TSV ----
for f in "$CSV" "$TSV"; do
  n=$(basename "$f")
  $D "$f" >"$T/$n.bmr" 2>"$T/$n.err"; check_eq "$n: skippable problems exit 0" "$?" 0
  check "$n: every pair once, in order, captions trimmed (quotes, commas, UTF-8, a newline), pixels = Pillow, each problem named" \
    chk csv "$T/$n.bmr" "$T/$n.err" --size 32
done
check "CSV and TSV give the same records" sh -c "bm-inspect '$T/captions.csv.bmr' | tail -n +2 >'$T/a' && bm-inspect '$T/captions.tsv.bmr' | tail -n +2 >'$T/b' && cmp '$T/a' '$T/b'"
check "the count line counts the three problems" grep -q "records written; problems: 1 corrupt image, 1 metadata row without image, 1 bad metadata row" "$T/captions.csv.err"
cp "$TSV" "$T/p/csv/sniffed.txt"
$D "$T/p/csv/sniffed.txt" >"$T/sniff.bmr" 2>"$T/sniff.err"
check "a table named neither .csv nor .tsv: the tab is sniffed" chk csv "$T/sniff.bmr" "$T/sniff.err" --size 32
check "header: layout tsv and the columns used" sh -c "bm-inspect '$T/sniff.bmr' | head -1 | grep -q '\"layout\":\"tsv\".*\"image_col\":\"image\",\"caption_col\":\"caption\"'"
$D "$T/p/csv" >/dev/null 2>"$T/e"; check_eq "a folder with two tables exits 1" "$?" 1
check "  ... and says so" grep -q "several .csv/.tsv" "$T/e"
rm "$T/p/csv/sniffed.txt" "$TSV"
$D "$T/p/csv" >"$T/dir.bmr" 2>"$T/dir.err"
check "a folder with exactly one .csv reads it" chk csv "$T/dir.bmr" "$T/dir.err" --size 32
sed '1s/filepath/pic/; 1s/title/words/' "$CSV" >"$T/p/csv/renamed.csv"
$D "$T/p/csv/renamed.csv" >"$T/o" 2>"$T/e"; check_eq "a CSV lacking the columns exits 1" "$?" 1
check "  ... names the column wanted" grep -q "no image column: the header names neither 'filepath' nor 'image'" "$T/e"
check_eq "  ... and writes nothing" "$(wc -c <"$T/o")" 0
$D --image-col pic --caption-col words "$T/p/csv/renamed.csv" >"$T/ren.bmr" 2>"$T/ren.err"
check "--image-col/--caption-col name other columns" chk csv "$T/ren.bmr" "$T/ren.err" --size 32
$D --image-col pic --caption-col nope "$T/p/csv/renamed.csv" >/dev/null 2>"$T/e"; check_eq "--caption-col naming no column exits 1" "$?" 1
check "  ... names it" grep -q "no caption column 'nope'" "$T/e"
: >"$T/p/csv/empty.csv"
$D "$T/p/csv/empty.csv" >"$T/o" 2>"$T/e"; check_eq "an empty CSV exits 1" "$?" 1
check "  ... and says it is empty" grep -q "empty.csv: empty file" "$T/e"
printf 'filepath,title\n' >"$T/p/csv/header.csv"
$D "$T/p/csv/header.csv" >"$T/h.bmr" 2>"$T/e"; check_eq "a CSV with a header only exits 0" "$?" 0
check_eq "  ... with no records" "$(count "$T/h.bmr")" 0
printf 'filepath,title\nimg/p000.png,bad \377 byte\nimg/p002.png,fine\n' >"$T/p/csv/latin.csv"
$D "$T/p/csv/latin.csv" >"$T/l.bmr" 2>"$T/e"
check "a caption that is not UTF-8 is a named problem" grep -q "img/p000.png: bad metadata row: line 2: caption is not UTF-8" "$T/e"
check_eq "  ... and the other row is written" "$(ids "$T/l.bmr")" "img/p002.png"
$D --strict "$CSV" >"$T/o" 2>"$T/e"; check_eq "--strict on a CSV with problems exits 1" "$?" 1
check_eq "  ... a row problem stops it before any output" "$(wc -c <"$T/o")" 0
$D --strict "$T/c/csv/captions.csv" >"$T/o" 2>"$T/e"; check_eq "--strict on clean pairs exits 0" "$?" 0

# ---- webdataset ----
$D "$W0" "$W1" >"$T/w.bmr" 2>"$T/w.err"; check_eq "webdataset: skippable problems exit 0" "$?" 0
check "webdataset: every good pair once, in order, pixels = Pillow (PNG, JPEG, WebP), each problem named" \
  chk wds "$T/w.bmr" "$T/w.err" --size 32
check "  ... image without caption, caption without image, corrupt image all counted" \
  grep -q "problems: 1 corrupt image, 2 image without metadata row, 2 metadata row without image" "$T/w.err"
check_eq "  ... (the test's id reader sees them all)" "$(count "$T/w.bmr")" "$($PY -c "import json; print(len(json.load(open('$T/p.json'))['wds']['pairs']))")"
check "  ... other members (KEY.json) pass silently" sh -c "! grep -q json '$T/w.err'"
$D --strict "$W0" "$W1" >"$T/s.bmr" 2>"$T/e"; check_eq "webdataset --strict exits 1 at the first problem" "$?" 1
check_eq "  ... after exactly the pairs before it" "$(ids "$T/s.bmr" | tr '\n' ' ')" "000000 000001 "
$D "$W0" "$W0" >"$T/o" 2>"$T/e"
check "a key met again (the same shard twice) is a duplicate" grep -q "shard-000.tar: 000000.png: duplicate image: key 000000 met again" "$T/e"
mkdir "$T/wdir" && tar -xf "$W0" -C "$T/wdir"
$D "$T/wdir" >"$T/wd.bmr" 2>/dev/null
$D "$W0" >"$T/w0.bmr" 2>/dev/null
check "a folder of webdataset members reads as the tar does" sh -c "bm-inspect '$T/wd.bmr' | tail -n +2 >'$T/a' && bm-inspect '$T/w0.bmr' | tail -n +2 >'$T/b' && cmp '$T/a' '$T/b' && test -s '$T/a'"

# ---- splits, shards, threads ----
for lay in csv wds; do
  if [ $lay = csv ]; then in="$CSV"; else in="$W0 $W1"; fi
  $D --seed 7 $in >"$T/all.bmr" 2>/dev/null
  $D --seed 7 --split all $in >"$T/sall.bmr" 2>/dev/null
  check "$lay --split all: every split" cmp "$T/all.bmr" "$T/sall.bmr"
  : >"$T/union"
  for s in train val test; do
    $D --seed 7 --split $s $in >"$T/$s.bmr" 2>"$T/$s.err"
    check "$lay --split $s: right records, in order" chk $lay "$T/$s.bmr" "$T/$s.err" --size 32 --subset
    ids "$T/$s.bmr" >>"$T/union"
    check_eq "$lay --split $s: the records the unsplit run marks $s" "$(ids "$T/$s.bmr")" "$(idsplit "$T/all.bmr" | sed -n "s/^$s //p")"
  done
  check_eq "$lay splits disjoint and complete" "$(sort "$T/union" | uniq | wc -l | tr -d ' ') $(wc -l <"$T/union" | tr -d ' ')" "$(count "$T/all.bmr") $(count "$T/all.bmr")"
  check "$lay: train is the largest split (0.8 expected)" sh -c "[ $(count "$T/train.bmr") -gt $(count "$T/test.bmr") ] && [ $(count "$T/train.bmr") -gt $(count "$T/val.bmr") ]"
  $D --seed 8 $in >"$T/all8.bmr" 2>/dev/null
  check "$lay: another --seed moves the split" sh -c "bm-inspect '$T/all.bmr' | grep -o '\"split\":\"[a-z]*\"' >'$T/a'; bm-inspect '$T/all8.bmr' | grep -o '\"split\":\"[a-z]*\"' >'$T/b'; ! cmp -s '$T/a' '$T/b'"
  : >"$T/union"
  for k in 1 2 3; do $D --shard $k/3 $in 2>/dev/null >"$T/sh$k.bmr"; ids "$T/sh$k.bmr" >>"$T/union"; done
  check_eq "$lay shards 1..3/3 disjoint and complete" "$(sort "$T/union" | tr '\n' ' ')" "$(ids "$T/all.bmr" | sort | tr '\n' ' ')"
  $D -j 1 $in >"$T/j1.bmr" 2>/dev/null; $D -j 3 $in >"$T/j3.bmr" 2>/dev/null
  check "$lay: the same bytes on 1 and 3 threads" cmp "$T/j1.bmr" "$T/j3.bmr"
done
check "a second caption of an image goes with it (id path#2, same split)" $PY -c "
import sys; sys.path.insert(0, '$G'); from pillow_ref import read_records
r = {x['id']: x for x in read_records('$T/captions.csv.bmr')[1]}
a = r['img/p000.png']; b = r['img/p000.png#2']
assert a['split'] == b['split'] and b['group'] == 'img/p000.png', (a['split'], b['split'])"

mkdir "$T/p/csv/img/adir.png"
printf 'filepath,title\nimg/adir.png,a folder named like an image\n' >"$T/p/csv/dir.csv"
$D "$T/p/csv/dir.csv" >/dev/null 2>"$T/e"
check "an image path that is a folder is named" grep -q "img/adir.png: metadata row without image: line 2: .*not a regular file" "$T/e"
$D -o "$T/o.bmr" "$W0" "$W1" 2>/dev/null
check "-o FILE writes what stdout gets" cmp "$T/o.bmr" "$T/w.bmr"
# 64 x 64: more than a pipe buffer, so the writer must meet the closed pipe
( bm-decode -q --format pairs --size 64 "$W0" "$W1" 2>/dev/null; echo $? >"$T/rc" ) | head -c 10 >/dev/null
check_eq "a reader that goes away: exit 141, quietly" "$(cat "$T/rc")" 141

# ---- usage ----
$D --image-col x "$CSV" --format nih >/dev/null 2>&1; check_eq "--image-col with another format exits 2" "$?" 2
$D --text "$CSV" >/dev/null 2>&1; check_eq "--text with pairs exits 2" "$?" 2
$D "$T/none.csv" >/dev/null 2>"$T/e"; check_eq "a missing CSV exits 1" "$?" 1
check "  ... and is named" grep -q "none.csv" "$T/e"
$D "$T/p/csv/captions.csv" "$W0" >/dev/null 2>"$T/e"; check_eq "a CSV with further inputs exits 1" "$?" 1

# ---- retrieval on the pairs ----
M="$BM_TESTS/fixtures/tiny-model"
bm-decode -q --format pairs --size 48 "$W0" "$W1" 2>/dev/null | bm-embed-img -m "$M" | bm-embed-txt -m "$M" >"$T/emb.bmr"
bm-score --retrieval "$T/emb.bmr" >"$T/table"; check_eq "decode | embed-img | embed-txt | bm-score --retrieval exits 0" "$?" 0
check "  ... prints Recall@k both ways" sh -c "grep -q '^image->text ' '$T/table' && grep -q '^text->image ' '$T/table' && grep -q 'R@1' '$T/table'"
bm-score --json "$T/emb.bmr" >"$T/r.json"
check "  ... without --retrieval too (no targets), over every pair" $PY -c "
import json; r = json.load(open('$T/r.json')); assert r['task'] == 'retrieval' and r['n'] == $(count "$T/w.bmr"), r"
