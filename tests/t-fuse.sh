# t-fuse.sh - bm-fuse zero-shot scores against numpy, and every error.
. "$BM_TESTS/lib.sh"
R="$PY $BM_TESTS/fuse_ref.py"
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "# seed $seed"
E=24
HAM='{"version":1,"task":"multiclass","classes":["akiec","bcc","bkl","df","mel","nv","vasc"],"source":"ham"}'

# happy path: data classes in another order than the prompts, f16 and f32 inputs
$R classes "$T/cls.bmr" "$seed" $E "vasc,nv,mel,df,bkl,bcc,akiec,extra class"
$R data "$T/in.bmr" "$((seed + 1))" $E 40 "$HAM" --f16
check "scores and prob for the data's classes in the data's order" \
  sh -c "bm-fuse --classes '$T/cls.bmr' '$T/in.bmr' >'$T/out.bmr' 2>'$T/err' && $R check '$T/cls.bmr' '$T/in.bmr' '$T/out.bmr' 100"
check "the summary counts scored and passed-through records" grep -q "34 records scored against 7 classes, 6 without img_emb passed through" "$T/err"
check "an unused prompt class is named in a warning" grep -q 'prompt class "extra class" .* left out' "$T/err"
check "reads stdin like a file" sh -c "bm-fuse -q -c '$T/cls.bmr' <'$T/in.bmr' | cmp - '$T/out.bmr'"
check "--scale 37.5" \
  sh -c "bm-fuse -q -c '$T/cls.bmr' --scale 37.5 '$T/in.bmr' >'$T/o2.bmr' && $R check '$T/cls.bmr' '$T/in.bmr' '$T/o2.bmr' 37.5"

$R classes "$T/c16.bmr" "$((seed + 9))" $E "vasc,nv,mel,df,bkl,bcc,akiec" --f16
check "f16 class embeddings" \
  sh -c "bm-fuse -q -c '$T/c16.bmr' '$T/in.bmr' >'$T/o16.bmr' && $R check '$T/c16.bmr' '$T/in.bmr' '$T/o16.bmr' 100"

# --map: the data's names to prompt class names
$R classes "$T/ham.bmr" "$((seed + 2))" $E "actinic keratosis,basal cell carcinoma,benign keratosis,dermatofibroma,melanoma,nevus,vasc"
MAP='{"akiec":"actinic keratosis","bcc":"basal cell carcinoma","bkl":"benign keratosis","df":"dermatofibroma","mel":"melanoma","nv":"nevus"}'
check "--map NAME=CLASS, unmapped classes matched by name" \
  sh -c "bm-fuse -q -c '$T/ham.bmr' --map 'akiec=actinic keratosis' --map 'bcc=basal cell carcinoma' --map 'bkl=benign keratosis' --map df=dermatofibroma --map mel=melanoma --map nv=nevus '$T/in.bmr' >'$T/o3.bmr' && $R check '$T/ham.bmr' '$T/in.bmr' '$T/o3.bmr' 100 '$MAP'"
check_fails "a data class without a prompt class" sh -c "bm-fuse -q -c '$T/ham.bmr' --map mel=melanoma '$T/in.bmr' >/dev/null 2>'$T/err'"
check "  ... names the classes and what the file has" grep -q '5 of the input.s 7 classes have no prompt class.*"melanoma"' "$T/err"
check "  ... and each missing one" grep -q 'class "akiec" has no prompt class "akiec"' "$T/err"
check_fails "two data classes on one prompt class" sh -c "bm-fuse -q -c '$T/cls.bmr' --map akiec=vasc '$T/in.bmr' >/dev/null 2>'$T/err'"
check "  ... says which" grep -q 'classes "akiec" and "vasc" both map to prompt class "vasc"' "$T/err"

# no classes in the data's header (or no header): the prompts' order
$R data "$T/nohdr.bmr" "$((seed + 3))" $E 9 none
check "no input header: the prompt classes in file order" \
  sh -c "bm-fuse -q -c '$T/cls.bmr' '$T/nohdr.bmr' >'$T/o4.bmr' && $R check '$T/cls.bmr' '$T/nohdr.bmr' '$T/o4.bmr' 100"
$R data "$T/hdr0.bmr" "$((seed + 4))" $E 9 '{"version":1,"source":"x"}'
check "a header without classes keeps its keys and gets the prompt classes" \
  sh -c "bm-fuse -q -c '$T/cls.bmr' '$T/hdr0.bmr' >'$T/o5.bmr' && $R check '$T/cls.bmr' '$T/hdr0.bmr' '$T/o5.bmr' 100"
check_fails "--map without classes in the input is a usage error" sh -c "bm-fuse -q -c '$T/cls.bmr' --map a=b '$T/nohdr.bmr' >/dev/null 2>&1; test \$? = 2 && exit 1"

# multilabel: positive/negative prompt pairs, or refuse, or --softmax
ML='{"version":1,"task":"multilabel","classes":["Effusion","Edema","Mass"]}'
$R data "$T/ml.bmr" "$((seed + 5))" $E 20 "$ML"
$R classes "$T/pn.bmr" "$((seed + 6))" $E "Mass,Effusion,Edema" --neg
check "multilabel: per-class softmax over positive and negative prompt" \
  sh -c "bm-fuse -q -c '$T/pn.bmr' '$T/ml.bmr' >'$T/o6.bmr' && $R check '$T/pn.bmr' '$T/ml.bmr' '$T/o6.bmr' 100 --pairwise"
$R classes "$T/pos.bmr" "$((seed + 7))" $E "Mass,Effusion,Edema"
check_fails "multilabel without negative prompts is refused" sh -c "bm-fuse -q -c '$T/pos.bmr' '$T/ml.bmr' >/dev/null 2>'$T/err'"
check "  ... saying what would do" grep -q 'needs a negative prompt per class.*--softmax' "$T/err"
check "multilabel --softmax: softmax across classes, task stays multilabel" \
  sh -c "bm-fuse -q --softmax -c '$T/pos.bmr' '$T/ml.bmr' >'$T/o7.bmr' && $R check '$T/pos.bmr' '$T/ml.bmr' '$T/o7.bmr' 100"
check "negative prompts are ignored for multiclass data" \
  sh -c "bm-fuse -q -c '$T/pn.bmr' '$T/nohdr.bmr' >'$T/o8.bmr' && $R check '$T/pn.bmr' '$T/nohdr.bmr' '$T/o8.bmr' 100"

# bad embeddings in the data
$R data "$T/e25.bmr" "$seed" 25 3 "$HAM"
check_fails "img_emb of another size" sh -c "bm-fuse -q -c '$T/cls.bmr' '$T/e25.bmr' >/dev/null 2>'$T/err'"
check "  ... names the record and both sizes" grep -q 'record 1 (byte [0-9]*): "img_emb" has 25 values but the class embeddings of .* have 24' "$T/err"
$R data "$T/nu.bmr" "$seed" $E 3 "$HAM" --not-unit
check "img_emb off unit length is scored, with a warning" \
  sh -c "bm-fuse -q -c '$T/cls.bmr' '$T/nu.bmr' 2>'$T/err' >'$T/o9.bmr' && grep -q '1 img_emb were not of unit length' '$T/err' && $R check '$T/cls.bmr' '$T/nu.bmr' '$T/o9.bmr' 100"
head -c 700 "$T/in.bmr" >"$T/trunc.bmr"
check_fails "truncated input fails" sh -c "bm-fuse -q -c '$T/cls.bmr' '$T/trunc.bmr' >/dev/null 2>'$T/err'"
check "  ... naming it" grep -q 'trunc.bmr' "$T/err"
check "empty input: a header and nothing else" sh -c "bm-fuse -q -c '$T/cls.bmr' </dev/null >'$T/o10.bmr' && bm-inspect '$T/o10.bmr' | wc -l | grep -qx 1"
$PY -c "
import msgpack,sys; sys.stdout.buffer.write(msgpack.packb({'header':{'version':1,'classes':['a','b']}}) + msgpack.packb({'id':'x','img_emb':{'dtype':'i32','shape':[24],'data':bytes(96)}}))" >"$T/int.bmr"
check_fails "integer img_emb refused" sh -c "bm-fuse -q -c '$T/cls.bmr' --map a=vasc --map b=nv '$T/int.bmr' >/dev/null 2>'$T/err'"
check "  ... naming record and dtype" grep -q 'record 1 .*"img_emb" is i32' "$T/err"

# bad class files
for bad in dims-off:"has 25 values, the earlier class embeddings 24" dup:'class "vasc" appears twice' \
           no-emb:'no "txt_emb"' bad-task:'not "class-embeddings"' header-mismatch:'do not match the class records' \
           bad-dim:"header embed_dim 27" no-header:"no header" int-emb:'"txt_emb" is i32' \
           neg-some:'"txt_emb_neg" absent, unlike the classes before'; do
  flag=${bad%%:*}; msg=${bad#*:}
  $R classes "$T/bad.bmr" "$seed" $E "vasc,nv,mel" --$flag
  check_fails "class file --$flag refused" sh -c "bm-fuse -q -c '$T/bad.bmr' '$T/nohdr.bmr' >/dev/null 2>'$T/err'"
  check "  ... saying: $msg" grep -qF -- "$msg" "$T/err"
done
$PY -c "import msgpack,sys; sys.stdout.buffer.write(msgpack.packb({'header':{'version':1,'task':'class-embeddings'}}))" >"$T/none.bmr"
check_fails "class file without classes refused" sh -c "bm-fuse -q -c '$T/none.bmr' '$T/nohdr.bmr' >/dev/null 2>'$T/err'"
check "  ... saying so" grep -q 'no class records' "$T/err"
check_fails "missing class file" sh -c "bm-fuse -q -c '$T/nope.bmr' '$T/nohdr.bmr' >/dev/null 2>'$T/err'"
check "  ... names it" grep -q 'nope.bmr' "$T/err"

# usage errors exit 2
for args in "" "-c $T/cls.bmr --scale logit" "-c $T/cls.bmr --scale -1" "-c $T/cls.bmr --scale abc" \
            "-c $T/cls.bmr -m model" "-c $T/cls.bmr --map novalue" "-c $T/cls.bmr --map =x" \
            "-c $T/cls.bmr --map a=b --map a=c" "-c $T/cls.bmr --bogus" "-c $T/cls.bmr $T/in.bmr $T/in.bmr" \
            "-c $T/cls.bmr --map nosuch=vasc $T/in.bmr"; do
  bm-fuse $args </dev/null >/dev/null 2>"$T/err"
  check_eq "usage error, status 2: bm-fuse $(echo "$args" | sed "s|$T/||g")" "$?" 2
done
check "--help on stdout, status 0" sh -c "bm-fuse --help | grep -q '^Usage: bm-fuse'"
check "--scale logit says not yet" sh -c "bm-fuse -c x --scale logit 2>&1 | grep -q 'not yet'"

# SIGPIPE: a reader that stops early ends us quietly
$R data "$T/big.bmr" "$seed" $E 3000 "$HAM"
check "a closed pipe ends bm-fuse quietly" sh -c "bm-fuse -q -c '$T/cls.bmr' '$T/big.bmr' 2>'$T/err' | head -c 100 >/dev/null; ! grep -v 'left out' '$T/err'"
