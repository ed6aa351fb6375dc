# bm-decode's pixels equal Pillow's (torchvision's Resize(bicubic) +
# CenterCrop + convert("RGB")) on generated images of several sizes and modes,
# 8-bit grey/RGB/RGBA/LA, PNG and JPEG, down- and upscaled; the documented
# differences (16-bit grey, palette) are reported by the script, not asserted.
. "$BM_TESTS/lib.sh"
check "pixels equal Pillow's at 224 (tests/bench/pillow_compare.py)" \
  $PY "$BM_TESTS/bench/pillow_compare.py" --bin "$BM_BIN" --size 224 --assert-exact --seed 1
check "pixels equal Pillow's at 97 (odd size, half-to-even crops)" \
  $PY "$BM_TESTS/bench/pillow_compare.py" --bin "$BM_BIN" --size 97 --assert-exact --seed 2
