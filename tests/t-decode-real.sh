# bm-decode's metadata side on the real files in ../shared/data: the first
# 40k rows of NIH's Data_Entry_2017.csv (with made-up split lists, as the
# real lists are not there), HAM10000_metadata.csv and the ISIC 2018 test
# ground truth, checked against Python's csv module; the splits by patient
# and by lesion (stratified), shards over the real ids.
. "$BM_TESTS/lib.sh"
G="$BM_TESTS/gen"
DATA="$BM_TESTS/../../shared/data"
[ -f "$DATA/HAM10000_metadata.csv" ] || { echo "not ok - real data missing: $DATA"; exit 1; }

mkdir -p "$T/nih/images"
tr -d '\r' <"$DATA/NIH_Data_Entry_first40k.csv" >"$T/nih/Data_Entry_2017.csv"
awk -F, 'NR > 1 { print $1 > (($4 % 5 == 0) ? T "/nih/test_list.txt" : T "/nih/train_val_list.txt") }' \
  T="$T" "$T/nih/Data_Entry_2017.csv"
bm-decode -q --format nih --metadata-only "$T/nih" >"$T/nih.bmr" 2>"$T/nih.err"
check_eq "real NIH CSV: exit 0" "$?" 0
check "real NIH CSV: no problems" grep -q "no problems" "$T/nih.err"
$PY "$G/check_real.py" nih "$T/nih.bmr" "$T/nih/Data_Entry_2017.csv" --lists "$T/nih" --tag "real NIH"
# the header variant with a trailing comma and a CRLF copy read the same
sed '1s/$/,/' "$T/nih/Data_Entry_2017.csv" | sed 's/$/\r/' >"$T/crlf.csv"
bm-decode -q --format nih --metadata-only --csv "$T/crlf.csv" "$T/nih" >"$T/crlf.bmr" 2>/dev/null
check "real NIH CSV, 12-field header and CRLF: same records" sh -c "bm-inspect '$T/crlf.bmr' | tail -n +2 >'$T/x1'; bm-inspect '$T/nih.bmr' | tail -n +2 >'$T/x2'; cmp '$T/x1' '$T/x2'"

mkdir -p "$T/ham/HAM10000_images_part_1"
cp "$DATA/HAM10000_metadata.csv" "$T/ham/"
bm-decode -q --format ham10000 --metadata-only "$T/ham" >"$T/ham.bmr" 2>"$T/ham.err"
check_eq "real HAM10000 metadata: exit 0" "$?" 0
check "real HAM10000 metadata: the 57 empty ages counted" grep -q "10015 records written; problems: 57 empty age$" "$T/ham.err"
$PY "$G/check_real.py" ham "$T/ham.bmr" "$T/ham/HAM10000_metadata.csv" --tag "real HAM10000"
bm-decode -q --format ham10000 --metadata-only --val-fraction 0.2 --test-fraction 0.15 --seed 7 "$T/ham" >"$T/ham2.bmr" 2>/dev/null
$PY "$G/check_real.py" ham "$T/ham2.bmr" "$T/ham/HAM10000_metadata.csv" --val 0.2 --test 0.15 --tag "real HAM10000 val 0.2 test 0.15"

mkdir -p "$T/isic/ISIC2018_Task3_Test_Images"
cp "$DATA/ISIC2018_Task3_Test_GroundTruth.csv" "$T/isic/"
bm-decode -q --format isic2018-test --metadata-only "$T/isic" >"$T/isic.bmr" 2>/dev/null
$PY "$G/check_real.py" isic "$T/isic.bmr" "$T/isic/ISIC2018_Task3_Test_GroundTruth.csv" --tag "real ISIC 2018"

# shards of the real NIH ids: disjoint, together the whole, balanced
for k in 1 2 3 4; do bm-decode -q --format nih --metadata-only --shard $k/4 "$T/nih" 2>/dev/null; done >"$T/sh.bmr"
$PY - "$T/sh.bmr" "$T/nih.bmr" <<'PY' | sed 's/^/ok - /; s/^ok - FAIL/not ok -/'
import sys, msgpack
def ids(p):
    return [r["id"] for r in msgpack.Unpacker(open(p, "rb"), raw=False) if "header" not in r]
s, w = ids(sys.argv[1]), ids(sys.argv[2])
print(("" if len(s) == len(set(s)) else "FAIL ") + "real NIH: 4 shards are disjoint (%d ids)" % len(s))
print(("" if set(s) == set(w) else "FAIL ") + "real NIH: 4 shards together are the whole (%d)" % len(w))
PY
