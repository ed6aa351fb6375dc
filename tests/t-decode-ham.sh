# bm-decode on HAM10000 (zips and extracted folders, metadata with and
# without .csv, image_id with and without .jpg), ISIC 2018 test and the
# generic folder format: every key of every record and the pixels.
. "$BM_TESTS/lib.sh"
G="$BM_TESTS/gen"
$PY "$G/make_dataset.py" ham "$T/z" "$T/z.json" --seed 5 || exit 1
$PY "$G/make_dataset.py" ham "$T/d" "$T/d.json" --seed 6 --layout folder --ext || exit 1
$PY "$G/make_dataset.py" isic "$T/i" "$T/i.json" --seed 7 || exit 1
$PY "$G/make_dataset.py" folder "$T/g" "$T/g.json" --seed 8 || exit 1

bm-decode -q --format ham10000 --size 24 --text "$T/z" >"$T/z.bmr" 2>"$T/z.err"
check_eq "ham10000 zips: exit 0 with skippable problems" "$?" 0
$PY "$G/check_records.py" "$T/z.bmr" "$T/z.json" "$T/z.err" --size 24 --text --problems --tag "ham zips"
bm-decode -q --format ham10000 --size 24 --no-crop "$T/d" >"$T/d.bmr" 2>"$T/d.err"
check_eq "ham10000 folders, metadata.csv with .jpg ids: exit 0" "$?" 0
$PY "$G/check_records.py" "$T/d.bmr" "$T/d.json" "$T/d.err" --size 24 --no-crop --problems --tag "ham folders"
bm-decode -q --format ham10000 --size 16 --split val --val-fraction 0.3 "$T/z" >"$T/v.bmr" 2>"$T/v.err"
$PY "$G/check_records.py" "$T/v.bmr" "$T/z.json" "$T/v.err" --size 16 --split val --tag "ham --split val"
check "ham --split val --val-fraction 0.3 is not empty" test "$(bm-inspect "$T/v.bmr" | wc -l)" -gt 2

bm-decode -q --format isic2018-test --size 24 "$T/i" >"$T/i.bmr" 2>"$T/i.err"
check_eq "isic2018-test zip with macOS junk: exit 0" "$?" 0
$PY "$G/check_records.py" "$T/i.bmr" "$T/i.json" "$T/i.err" --size 24 --problems --tag "isic2018-test"

bm-decode -q --format folder --size 24 --text "$T/g" >"$T/g.bmr" 2>"$T/g.err"
check_eq "folder format: exit 0" "$?" 0
$PY "$G/check_records.py" "$T/g.bmr" "$T/g.json" "$T/g.err" --size 24 --text --problems --tag "folder"
# explicit columns and class order give the same records but for the order of classes
bm-decode -q --format folder --metadata-only --id-column id --label-column label \
  --classes normal,benign,malignant "$T/g" >"$T/gc.bmr" 2>/dev/null
check "folder --classes sets the class order" sh -c "bm-inspect --head 0 '$T/gc.bmr' | grep -q '\"classes\":\[\"normal\",\"benign\",\"malignant\"\]'"
# indicator columns (the ISIC ground truth read as a plain folder)
bm-decode -q --format folder --metadata-only --csv "$T/i/ISIC2018_Task3_Test_GroundTruth.csv" \
  --id-column image --label-columns MEL,NV,BCC,AKIEC,BKL,DF,VASC "$T/i" >"$T/gi.bmr" 2>"$T/gi.err"
check "folder --label-columns: a record per valid row" test "$(bm-inspect --summary "$T/gi.bmr" | sed -n 's/.*"records":\([0-9]*\).*/\1/p')" -eq "$($PY -c "import json; print(len(json.load(open('$T/i.json'))['records']))")"
