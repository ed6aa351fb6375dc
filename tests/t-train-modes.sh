# t-train-modes.sh - bm-train --mode fusion|regularized|contrastive (fusion
# and regularized before their tasks are plugged in): options and their errors, the data each mode
# needs (image, text, targets; caption pairs for contrastive), the leakage
# check (a text naming a class) and its override. fusion and regularized
# runs that pass every check train (one short epoch here; what they learn:
# t-train-fusion.sh); contrastive: t-train-contrastive.sh.
. "$BM_TESTS/lib.sh"
MODEL="$BM_TESTS/fixtures/tiny-model"
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
echo "# seed $seed"

$PY "$BM_TESTS/../examples/make_demo_data.py" "$T/HAM" --per-class 6 --seed "$seed" >/dev/null
D="bm-decode --format ham10000 --size 48 --test-fraction 0.2 -q --max-warnings 0"
$D --split train --text "$T/HAM" >"$T/tr.bmr" 2>/dev/null
$D --split val --text "$T/HAM" >"$T/va.bmr" 2>/dev/null
$D --split train "$T/HAM" >"$T/notext.bmr" 2>/dev/null
# edit records: python3 edit.py IN OUT 'python on h (header) and rs (records)'
cat >"$T/edit.py" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[4])
import read_records as rr
pairs = list(rr.read(open(sys.argv[1], 'rb')))
h, rs = pairs[0][0], [r for _, r in pairs]
exec(sys.argv[3])
rr.write(open(sys.argv[2], 'wb'), h, rs)
PYEOF
edit() { $PY "$T/edit.py" "$1" "$2" "$3" "$BM_TESTS/../examples"; }
n=$(bm-inspect "$T/tr.bmr" 2>/dev/null | grep -c '"image"')
check "generated $n training records with text" test "$n" -ge 10
k=$(( (seed % (n - 2)) + 2 )) # a record other than the first
edit "$T/tr.bmr" "$T/leak.bmr" "rs[$k - 1]['text'] = rs[$k - 1]['text'] + ', Mel. (biopsy)'"
edit "$T/va.bmr" "$T/vleak.bmr" "rs[0]['text'] = 'bcc on the back'"
edit "$T/tr.bmr" "$T/near.bmr" "rs[0]['text'] = 'melanoma-like, nvx, akiec2, dfx, bccs'"
edit "$T/tr.bmr" "$T/nostr.bmr" "rs[1]['text'] = 3"
edit "$T/tr.bmr" "$T/pairs.bmr" "
h = {k: v for k, v in h.items() if k != 'classes'}; h['task'] = 'pairs'
for r in rs: r.pop('target')"
edit "$T/notext.bmr" "$T/pairs-notext.bmr" "
h = {k: v for k, v in h.items() if k != 'classes'}; h['task'] = 'pairs'
for r in rs: r.pop('target')"

B="bm-train -q -m $MODEL -o $T/bad.safetensors"
# ---- options ----
check "--help documents the modes' options" sh -c "bm-train --help >'$T/h' && for o in 'fusion, regularized or contrastive' \
  '--fusion-layers N' '--fusion-width N' '--fusion-heads N' '--text key|prompt|both' '--n-ctx N' '--allow-label-text' \
  '--freeze-text' '--unlock-text-last N' '--lock-image' '--lock-text' '--patch-dropout P' '--grad-checkpoint'; do
  grep -qF -- \"\$o\" '$T/h' || { echo \"missing \$o\"; exit 1; }; done"
check "the man page too" sh -c "for o in 'fusion\\\\-layers' 'allow\\\\-label\\\\-text' 'lock\\\\-image' 'grad\\\\-checkpoint' 'n\\\\-ctx' 'pairs'; do
  grep -q -- \"\$o\" '$BM_TESTS/../man/man1/bm-train.1' || { echo \"missing \$o\"; exit 1; }; done"
check_refused "--mode other" 2 '--mode other: expected linear, finetune, fusion, regularized or contrastive' \
  $B --mode other "$T/tr.bmr"
check_refused "--mode contrastive without -m" 2 '--mode contrastive needs -m MODEL \(the model whose towers it trains\)$' \
  bm-train --mode contrastive -o "$T/bad.safetensors" "$T/pairs.bmr"
check_refused "--mode fusion without -m" 2 '--mode fusion needs -m MODEL' \
  bm-train --mode fusion -o "$T/bad.safetensors" "$T/tr.bmr"
check_refused "--text with --mode linear" 2 'are for --mode fusion, regularized or contrastive' \
  bm-train --mode linear --text key -o "$T/bad.safetensors" "$T/tr.bmr"
check_refused "--lock-image with --mode finetune" 2 'are for --mode fusion, regularized or contrastive' \
  $B --mode finetune --lock-image "$T/tr.bmr"
check_refused "--lr with fusion" 2 '--mode fusion takes --lr-encoder \(the towers\) and --lr-head' \
  $B --mode fusion --lr 1e-3 "$T/tr.bmr"
check_refused "--lr-head with contrastive" 2 'contrastive takes --lr and --lock-image / --lock-text' \
  $B --mode contrastive --lr-head 1e-3 "$T/pairs.bmr"
check_refused "--fusion-layers with contrastive" 2 'contrastive has no fusion' \
  $B --mode contrastive --fusion-layers 3 "$T/pairs.bmr"
check_refused "--text with contrastive" 2 'contrastive has no fusion and reads the captions' \
  $B --mode contrastive --text prompt "$T/pairs.bmr"
check_refused "--lock-image --lock-text" 2 'nothing would train' \
  $B --mode contrastive --lock-image --lock-text "$T/pairs.bmr"
check_refused "--dropout with contrastive" 2 'contrastive has no head' \
  $B --mode contrastive --dropout 0.1 "$T/pairs.bmr"
check_refused "--allow-label-text with contrastive" 2 'trains on captions, not classes' \
  $B --mode contrastive --allow-label-text "$T/pairs.bmr"
check_refused "--select accuracy with contrastive" 2 'contrastive selects on the validation loss' \
  $B --mode contrastive --select accuracy --val "$T/pairs.bmr" "$T/pairs.bmr"
check_refused "--lock-text with fusion" 2 'are for --mode contrastive' $B --mode fusion --lock-text "$T/tr.bmr"
check_refused "--patch-dropout with regularized" 2 'are for --mode contrastive' \
  $B --mode regularized --patch-dropout 0.5 "$T/tr.bmr"
check_refused "--n-ctx with --text key" 2 '--n-ctx: --text key feeds no prompt vectors' \
  $B --mode fusion --text key --n-ctx 4 "$T/tr.bmr"
check_refused "  ... and with fusion's default (key)" 2 '--n-ctx: --text key feeds no prompt vectors' \
  $B --mode fusion --n-ctx 4 "$T/tr.bmr"
check_refused "--text other" 2 '--text other: expected key, prompt or both' $B --mode fusion --text other "$T/tr.bmr"
check_refused "--freeze-text --unlock-text-last" 2 '--freeze-text and --unlock-text-last: choose one' \
  $B --mode regularized --freeze-text --unlock-text-last 1 "$T/tr.bmr"
check_refused "--freeze-tower --unlock-last" 2 '--freeze-tower and --unlock-last: choose one' \
  $B --mode fusion --freeze-tower --unlock-last 1 "$T/tr.bmr"
check_refused "--patch-dropout 1" 2 '--patch-dropout 1: expected a probability in \[0, 1\)' \
  $B --mode contrastive --patch-dropout 1 "$T/pairs.bmr"
check_refused "--fusion-layers 0" 2 '--fusion-layers 0: expected a whole number from 1 to 1024' \
  $B --mode fusion --fusion-layers 0 "$T/tr.bmr"
check_refused "--n-ctx 0" 2 '--n-ctx 0: expected a whole number from 1 to 1024' \
  $B --mode regularized --n-ctx 0 "$T/tr.bmr"
check_refused "--init with fusion" 2 '--init: --mode fusion starts its head and fusion afresh' \
  $B --mode fusion --init "$T/x.safetensors" "$T/tr.bmr"
check_refused "--features txt with regularized" 2 '--features: --mode regularized trains on images' \
  $B --mode regularized --features txt "$T/tr.bmr"
check_refused "--fusion-width not a multiple of --fusion-heads" 2 '--fusion-width 100 is not a multiple of --fusion-heads 3' \
  $B --mode fusion --fusion-width 100 --fusion-heads 3 "$T/tr.bmr"
check_refused "--n-ctx longer than the text tower's context" 2 '--n-ctx 300: with \[CLS\] and \[SEP\] the prompt is longer than the text tower.s 256 positions' \
  $B --mode regularized --n-ctx 300 "$T/tr.bmr"
check_refused "--unlock-text-last past the tower" 2 '--unlock-text-last 50: the text tower has [0-9]+ layers' \
  $B --mode fusion --unlock-text-last 50 "$T/tr.bmr"

# ---- the data each mode needs; fusion and regularized runs that pass every check train ----
# trains "what" command...: status 0 and a checkpoint at $T/bad.safetensors (stderr in $T/bad.err)
trains() {
  what=$1; shift
  rm -f "$T/bad.safetensors" "$T/bad.last.safetensors"
  "$@" >"$T/bad.out" 2>"$T/bad.err"
  check_eq "$what: status 0" "$?" 0
  check "  ... writes its checkpoint, of its mode" grep -aqF -- "\\\"mode\\\":\\\"$MODE_WANT\\\"" "$T/bad.safetensors"
}
E1="--epochs 1 -j 1"
for m in fusion regularized; do
  MODE_WANT=$m trains "$m: image and text records pass every check and train" \
    $B $E1 --mode $m --fusion-layers 1 --fusion-heads 2 --val "$T/va.bmr" --grad-checkpoint "$T/tr.bmr"
done
# (contrastive is built: its runs are t-train-contrastive.sh's; here only that these options train)
rm -f "$T/ok.safetensors" "$T/ok.last.safetensors"
check "contrastive: caption pairs (no classes, no targets) pass every check and train" sh -c "bm-train -q -j 1 -m '$MODEL' \
  -o '$T/ok.safetensors' --mode contrastive --epochs 1 --batch 8 --patch-dropout 0.5 --lock-text --grad-checkpoint \
  --val '$T/pairs.bmr' '$T/pairs.bmr' && test -s '$T/ok.safetensors' -a -s '$T/ok.last.safetensors'"
check_refused "contrastive: classification records (their targets would go unused) refused" 1 \
  'tr.bmr: a classification set \(header task multiclass\); --mode contrastive trains on image-caption pairs \(bm-decode --format pairs\)' \
  $B --mode contrastive "$T/tr.bmr"
check_refused "contrastive: validation pairs for classification training refused" 1 'pairs.bmr: image-caption pairs, .*tr.bmr: a classification set' \
  $B --mode contrastive --val "$T/pairs.bmr" "$T/tr.bmr"
check_refused "fusion on caption pairs" 1 'pairs.bmr: header "task" is not multiclass or multilabel$' \
  $B --mode fusion "$T/pairs.bmr"
check_refused "fusion on records without text" 1 'notext.bmr: record 1: no "text" \(--mode fusion reads it; bm-decode --text writes it\)' \
  $B --mode fusion "$T/notext.bmr"
check_refused "regularized --text both on records without text" 1 'notext.bmr: record 1: no "text" \(--mode regularized reads it' \
  $B --mode regularized --text both "$T/notext.bmr"
MODE_WANT=regularized trains "regularized (prompts only: reads no text) on records without text" \
  $B $E1 --mode regularized "$T/notext.bmr"
check_refused "contrastive on pairs without captions" 1 'pairs-notext.bmr: record 1: no "text" \(--mode contrastive reads it' \
  $B --mode contrastive "$T/pairs-notext.bmr"
check_refused "a text that is not a string" 1 'nostr.bmr: record 2: "text" is not a string' \
  $B --mode fusion "$T/nostr.bmr"
check_refused "images at another size" 1 'record 1: "image" is u8 \[3,48,48\]; the model takes u8 \[3,32,32\]|record 1: "image" .* decode with bm-decode --size' \
  sh -c "$D --split train --size 20 --text '$T/HAM' 2>/dev/null >'$T/small.bmr' && $B --mode fusion '$T/small.bmr'"

# ---- leakage ----
check_refused "a training text naming a class is refused" 1 \
  "leak.bmr: record $k: \"text\" names the class \"mel\": \".*Mel\\. \\(biopsy\\)\"; .*leakage.* --allow-label-text trains on it anyway" \
  $B --mode fusion "$T/leak.bmr"
check_refused "  ... in the validation set too" 1 'vleak.bmr: record 1: "text" names the class "bcc": "bcc on the back"' \
  $B --mode regularized --text both --val "$T/vleak.bmr" "$T/tr.bmr"
MODE_WANT=fusion trains "--allow-label-text: trained on, with one warning counting them" \
  bm-train $E1 -m "$MODEL" -o "$T/bad.safetensors" --mode fusion --allow-label-text --val "$T/vleak.bmr" "$T/leak.bmr"
check "  ... the warning counts 1 training and 1 validation record" \
  sh -c "test \$(grep -c 'names a class' '$T/bad.err') = 1 && grep -q '1 training and 1 validation records have a \"text\" that names a class' '$T/bad.err'"
MODE_WANT=fusion trains "words that only contain a class name pass" $B $E1 --mode fusion "$T/near.bmr"
MODE_WANT=regularized trains "--text prompt reads no text: no leakage to check" \
  $B $E1 --mode regularized --text prompt "$T/leak.bmr"


# ---- resume: the multimodal options are kept like the others ----
# (a fusion run stopped after its first of 2 epochs)
bm-train -q -m "$MODEL" -j 1 --mode finetune --epochs 2 --stop-after 1 --batch 8 -o "$T/ft.safetensors" "$T/tr.bmr"
bm-train -q -m "$MODEL" -j 1 --mode fusion --epochs 2 --stop-after 1 --batch 8 --fusion-layers 1 --fusion-heads 2 \
  --text key -o "$T/fu.safetensors" "$T/tr.bmr"
R="bm-train -q --mode fusion --resume $T/fu.last.safetensors -o $T/bad.safetensors"
MODE_WANT=fusion trains "resume a fusion run: its options, both towers, fusion and head load, it trains on" $R -j 1 "$T/tr.bmr"
check "  ... to epoch 2 of 2" grep -aqF '\"epoch\":2,\"step\"' "$T/bad.last.safetensors"
check_refused "  ... --fusion-layers 3 differs" 2 "--fusion-layers 3 differs from the checkpoint's 1 .*a resumed run keeps its options" \
  $R --fusion-layers 3 "$T/tr.bmr"
check_refused "  ... --text both differs" 2 "--text both differs from the checkpoint's key" $R --text both "$T/tr.bmr"
check_refused "  ... --freeze-text the run did not use" 2 "--freeze-text: the run of .*fu.last.safetensors did not use it" \
  $R --freeze-text "$T/tr.bmr"
MODE_WANT=fusion trains "  ... the same values given again are fine" $R -j 1 --fusion-layers 1 --fusion-heads 2 --text key "$T/tr.bmr"
check_refused "  ... as another mode" 1 'a checkpoint of mode "fusion", not regularized' \
  bm-train -q --mode regularized --resume "$T/fu.last.safetensors" -o "$T/bad.safetensors" "$T/tr.bmr"
check_refused "a finetune checkpoint resumed as fusion" 1 'a checkpoint of mode "finetune", not fusion' \
  bm-train -q --mode fusion --resume "$T/ft.last.safetensors" -o "$T/bad.safetensors" "$T/tr.bmr"
$PY -c "
import json, struct, sys
b = open('$T/fu.last.safetensors', 'rb').read(); (hl,) = struct.unpack('<Q', b[:8]); head = json.loads(b[8:8 + hl])
cfg = json.loads(head['__metadata__']['config']); del cfg['options']['text']
head['__metadata__']['config'] = json.dumps(cfg); h = json.dumps(head).encode(); h += b' ' * (-len(h) % 8)
open('$T/notext.last.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + b[8 + hl:])"
check_refused "a fusion checkpoint without its --text" 1 'notext.last.safetensors: config option "text" is not key, prompt or both' \
  bm-train -q --mode fusion --resume "$T/notext.last.safetensors" -o "$T/bad.safetensors" "$T/tr.bmr"

# ---- what stays as it was ----
check_refused "--mode finetune without -m says what it said" 2 '--mode finetune needs -m MODEL \(the model whose image tower it trains\)$' \
  bm-train --mode finetune -o "$T/bad.safetensors" "$T/tr.bmr"
