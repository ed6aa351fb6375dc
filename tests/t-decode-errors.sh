# bm-decode on bad input: what stops it at once (exit 1 or 2), what it
# skips and counts (exit 0), --strict, a truncated archive, SIGPIPE.
. "$BM_TESTS/lib.sh"
G="$BM_TESTS/gen"
$PY "$G/make_dataset.py" nih "$T/a" "$T/a.json" --seed 9 || exit 1
valid() { $PY -c "
import sys; sys.path.insert(0, '$G'); from pillow_ref import read_records
h, r = read_records(sys.argv[1]); assert h['version'] == 1; print(len(r))" "$1"; }

bm-decode --help >"$T/help" 2>&1
check_eq "--help exits 0" "$?" 0
check "--help prints the usage" grep -q "^Usage: bm-decode" "$T/help"
bm-decode --format nope "$T/a" >/dev/null 2>"$T/e"; check_eq "unknown --format exits 2" "$?" 2
check "unknown --format names it" grep -q "unknown --format 'nope'" "$T/e"
bm-decode "$T/a" >/dev/null 2>&1; check_eq "no --format exits 2" "$?" 2
bm-decode --format nih --shard 4/3 "$T/a" >/dev/null 2>&1; check_eq "--shard 4/3 exits 2" "$?" 2
bm-decode --format nih --split dev "$T/a" >/dev/null 2>&1; check_eq "--split dev exits 2" "$?" 2
bm-decode --format nih "$T/none" >/dev/null 2>"$T/e"; check_eq "missing folder exits 1" "$?" 1
check "missing folder is named" grep -q "$T/none" "$T/e"

cp -r "$T/a" "$T/nocsv" && rm "$T/nocsv/Data_Entry_2017.csv"
bm-decode --format nih "$T/nocsv" >"$T/o" 2>"$T/e"; check_eq "missing CSV exits 1" "$?" 1
check "missing CSV is named" grep -q "Data_Entry_2017.csv" "$T/e"
check_eq "missing CSV: nothing written" "$(wc -c <"$T/o")" 0
cp -r "$T/a" "$T/nolist" && rm "$T/nolist/test_list.txt"
bm-decode --format nih "$T/nolist" >/dev/null 2>"$T/e"; check_eq "missing test_list.txt exits 1" "$?" 1
cp -r "$T/a" "$T/badcsv" && printf 'x,"unterminated\n' >>"$T/badcsv/Data_Entry_2017.csv"
bm-decode --format nih "$T/badcsv" >/dev/null 2>"$T/e"; check_eq "unreadable CSV (open quote) exits 1" "$?" 1
check "unreadable CSV: says which line" grep -q "unterminated quoted field" "$T/e"
cp -r "$T/a" "$T/badcol" && sed -i '1s/Patient ID/Patient/' "$T/badcol/Data_Entry_2017.csv"
bm-decode --format nih "$T/badcol" >/dev/null 2>"$T/e"; check_eq "CSV without Patient ID column exits 1" "$?" 1
mkdir -p "$T/noimg" && cp "$T/a"/*.csv "$T/a"/*.txt "$T/noimg/"
bm-decode --format nih "$T/noimg" >/dev/null 2>"$T/e"; check_eq "no images* in the folder exits 1" "$?" 1

# --strict: the first problem is fatal; what was written is whole records
bm-decode -q --strict --format nih --size 16 "$T/a" >"$T/s.bmr" 2>"$T/e"; check_eq "--strict with problems exits 1" "$?" 1
check "--strict says why it stopped" grep -q "strict" "$T/e"
check_eq "--strict: a metadata problem stops it before any output" "$(wc -c <"$T/s.bmr")" 0
$PY "$G/make_dataset.py" nih "$T/c" "$T/c.json" --seed 10 --clean || exit 1
bm-decode -q --strict --format nih --size 16 "$T/c" >"$T/c.bmr" 2>"$T/e"; check_eq "--strict on a clean release exits 0" "$?" 0
check "clean release: summary says no problems" grep -q "records written; no problems" "$T/e"

# a truncated archive: reported, the rest decoded, its lost images counted
cp -r "$T/c" "$T/t"
size=$(wc -c <"$T/t/images_002.tar.gz")
head -c $((size / 2)) "$T/c/images_002.tar.gz" >"$T/t/images_002.tar.gz"
bm-decode -q --format nih --size 16 "$T/t" >"$T/t.bmr" 2>"$T/e"; check_eq "truncated archive: exit 0" "$?" 0
check "truncated archive: one line names the archive" grep -q "images_002.tar.gz: .*archive error" "$T/e"
check "truncated archive: summary counts it" grep -q "1 archive error" "$T/e"
n1=$(tar tzf "$T/c/images_001.tar.gz" | wc -l)
nt=$(valid "$T/t.bmr")
check "truncated archive: the other archive's $n1 images are all there ($nt records)" test "$nt" -ge "$n1"
nlost=$(sed -n 's/.* \([0-9]*\) metadata row without image.*/\1/p' "$T/e")
ntotal=$($PY -c "import json; print(len(json.load(open('$T/c.json'))['records']))")
check_eq "truncated archive: records + rows without image = all rows" "$((nt + nlost))" "$ntotal"
bm-decode -q --strict --format nih --size 16 "$T/t" >"$T/ts.bmr" 2>/dev/null; check_eq "truncated archive with --strict exits 1" "$?" 1
ns=$(valid "$T/ts.bmr")
check_eq "--strict: the records before the broken archive are written, whole" "$ns" "$n1"

# --max-warnings: lines capped, counts complete
mkdir -p "$T/noimg/images"
bm-decode -q --format nih --size 8 --max-warnings 2 "$T/noimg" >/dev/null 2>"$T/e"
check_eq "--max-warnings 2: two lines of a kind, then one note" "$(grep -c 'metadata row without image: line' "$T/e")" 2
# every row but the one with an unknown label (the CSV has no final newline)
nrows=$(($(wc -l <"$T/noimg/Data_Entry_2017.csv") - 1))
check "--max-warnings: the summary still counts all $nrows" grep -q "problems: $nrows metadata row without image" "$T/e"

# SIGPIPE: a closed pipe ends it quietly
(bm-decode -q --format nih --size 64 "$T/c" 2>"$T/e"; echo $? >"$T/rc") | head -c 100 >/dev/null
check_eq "closed pipe: exit 141" "$(cat "$T/rc")" 141
check_eq "closed pipe: no message" "$(grep -v 'records written' "$T/e")" ""

# the same archive twice (a re-download under another name): each image once
cp -r "$T/c" "$T/dup" && cp "$T/c/images_001.tar.gz" "$T/dup/images_003.tar.gz"
bm-decode -q --format nih --size 8 "$T/dup" >"$T/dup.bmr" 2>"$T/e"; check_eq "duplicate archive: exit 0" "$?" 0
check_eq "duplicate archive: each image once" "$(valid "$T/dup.bmr")" "$ntotal"
check "duplicate archive: every second copy reported" grep -q "problems: $n1 duplicate image$" "$T/e"
