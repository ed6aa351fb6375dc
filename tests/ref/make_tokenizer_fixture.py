#!/usr/bin/env python3
"""Expected BERT uncased token ids for test_tokenizer, from HuggingFace.

Needs `transformers` and `tokenizers` (the pyenv python3 on the dev machine,
not CI). No network: the tokenizers are built from the vocab files in
tests/fixtures/. Re-run after changing the corpus or upgrading tokenizers:

    python3 tests/ref/make_tokenizer_fixture.py            # from the repo root

Writes
  tests/fixtures/tokenizer_cases.txt   the hard corpus
  tests/fixtures/tokenizer_random.txt  random strings from all Unicode planes
    one case a line: MAX_LEN <TAB> HEX(UTF-8 bytes) <TAB> IDS(bert) <TAB> IDS(tiny)
    IDS = space-separated, [CLS] ... [SEP], no padding
  tests/fixtures/tokenizer-tiny.json   vocab-tiny.txt saved as a tokenizer.json
  tests/fixtures/tokenizer_chars.txt   what the normalizer and pre-tokenizer
    do to every code point alone (see write_chars for the format)

The expected ids are what open_clip's HFTokenizer feeds the model, less
ftfy.fix_text and html.unescape (which the C tokenizer does not apply, see
common/tokenizer.c): text -> " ".join(text.split()) -> tokenizer(text,
max_length=MAX_LEN, truncation=True). Bytes that are not UTF-8 are decoded
with errors="replace" first.
"""
import os
import random
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
from tokenizers import normalizers, pre_tokenizers  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")


def load(vocab_path):
    d = tempfile.mkdtemp()
    with open(vocab_path, "rb") as f, open(os.path.join(d, "vocab.txt"), "wb") as g:
        g.write(f.read())
    with open(os.path.join(d, "tokenizer_config.json"), "w") as g:
        g.write('{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}')
    # What open_clip's AutoTokenizer.from_pretrained gives for an uncased BERT
    # vocab (in transformers 5 BertTokenizerFast is BertTokenizer, Rust-backed).
    t = BertTokenizerFast.from_pretrained(d)
    assert t.is_fast, "need the fast (tokenizers) tokenizer"
    return t


def open_clip_whitespace(text):
    return " ".join(text.split()).strip()


def expected(tok, raw, max_len):
    text = raw.decode("utf-8", errors="replace")
    return tok(open_clip_whitespace(text), max_length=max_len, truncation=True)["input_ids"]


def hard_cases():
    """The hard corpus: (bytes, max_len)."""
    s = []
    add = lambda x, n=256: s.append((x.encode("utf-8") if isinstance(x, str) else x, n))
    for x in [
        "", " ", "\t\n\r ", "a", "A", "Hello, world!", "hello world",
        "this is an image of adenocarcinoma histopathology",
        "A chest X-ray showing cardiomegaly and pleural effusion.",
        "Melanoma presented in image", "unaffable", "UNAFFABLE unaffableness",
        "naïve café résumé Ångström Zürich façade São Paulo",
        "CAFÉ NAÏVE RÉSUMÉ", "e\u0301te\u0301 (combining acute)", "\u00e9t\u00e9",
        "Ñandú piñata jalapeño", "Dvořák Łódź Kraków Øresund Æther œuvre",
        "straße STRASSE Maß", "ﬁne ﬂow ﬀ ﬃ (ligatures, NFD keeps them)",
        "½ ² ³ ™ © ® ° µ Å K", "Ǆ ǅ ǆ Ǉ ǈ ǉ (titlecase digraphs)",
        # Greek, Cyrillic, Turkish casing
        "ΣΊΣΥΦΟΣ Σίσυφος ΟΔΥΣΣΕΥΣ", "Ελληνικά: άέήίόύώ ΐΰ", "ς σ Σ final sigma",
        "Москва ПРИВЕТ Ёлка ёж Їжак", "İstanbul ISTANBUL ıi İI Işık", "i̇ I\u0307",
        # CJK, kana, hangul
        "中文字符 mixed with English", "肺炎 chest 胸部X線", "東京タワー とうきょう",
        "한국어 텍스트 한글", "豈 更 車 (compatibility ideographs)", "𠀀𠀁 𪜀 𫝀 𫠠 𬺰 𰀀",
        "Ⅻ ㊤ ㈱ ㎏", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ！？",
        # punctuation of every kind
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "a!b\"c#d$e%f&g'h(i)j*k+l,m-n.o/p:q;r<s=t>u?v@w[x\\y]z^_`{|}~",
        "«quotes» „German“ ‚single‘ “curly” ‘curly’ ‹angle›",
        "em—dash en–dash ‒ ― ‐ ‑ ⁃ hyphen-minus − minus",
        "¡Hola! ¿Qué? … · • ‰ ‱ † ‡ § ¶ ※ ‼ ⁇ ⁈",
        "、。〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟・",
        "§1.2(a) [ref] {set} <tag> 3.14 1,000 50% $5 #1 @user a/b a\\b",
        "dr. smith's patient's x-ray (p.a. view) -- normal; ok?",
        "٪ ؟ ، ؛ ۔ ।  ॥ ። ፣ ၊ ။ ៖ ។ ៕",
        "$ + < = > ^ ` | ~ (ASCII symbols that are punctuation to BERT)",
        "€ £ ¥ ¢ ± × ÷ ¬ ¦ (Unicode symbols that are not)",
        # whitespace of every kind
        "a\u00a0b c\u2002d e\u2003f g\u2009h i\u200aj k\u202fl m\u205fn o\u3000p q\u1680r",
        "a\u2028b\u2029c", "a\x0bb\x0cc", "a\x1cb\x1dc\x1ed\x1ff", "a\x85b",
        "  leading and trailing  ", "many    spaces\t\ttabs\n\nnewlines\r\ncrlf",
        # zero-width and format characters
        "zero\u200bwidth\u200cjoiner\u200dword\u2060joiner\ufeffbom",
        "soft\u00adhyphen", "bidi \u202aembed\u202c \u200eltr\u200f \u2066isolate\u2069",
        "variation\ufe0f selector\ufe0e", "tag\U000e0041\U000e0042 chars",
        # control characters
        "ctrl\x00nul", "ctrl\x01\x02\x03\x04\x05\x06\x07\x08x", "bell\x07 del\x7f esc\x1b[0m",
        "c1\x80\x81\x9f controls", "rep\ufffdlacement", "\ufffd", "\x00",
        "private \ue000\uf8ff \U000f0000 \U0010fffd use", "nonchar \ufdd0 \ufffe \uffff",
        "unassigned \u0378 \U000e0080 \U0003fffd",
        # emoji
        "😀 😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ⭐ 🩺 🧬 🦠", "x-ray🙂ok", "#️⃣ 1️⃣ ©️",
        # combining marks and reordering
        "a\u0316\u0301 a\u0301\u0316", "zalgo: z\u0351\u0316\u0337a\u0361l\u035cg\u0489o",
        "q\u0307\u0323 q\u0323\u0307", "\u0301leading mark", "mark at end\u0301",
        "ḍ̇ ḍ̇ ṩ", "\U0001d15e\U0001d165\U0001d16d", "𝅘𝅥𝅮 𝄞 music",
        "x\u1d165\u0301\U0001d165\U0001d16dy",
        # non-spacing-mark-free combining runs that NFD must reorder
        "q\U0001d16d\U0001d165", "q\U0001d165\U0001d16d", "q\U0001d16d\u0301\U0001d165",
        "q\U0001d16d\u0941\U0001d165", "q\U0001d16d\u302e", "q\u302e\U0001d16d",
        "q\U0001d16d\u200b\U0001d165", "q\U0001d16d \U0001d165", "q" + "\U0001d16d\U0001d165" * 40,
        "q\U0001d16d[SEP]\U0001d165", "q\U0001d16d\xff\U0001d165", "a\U0001d165\u0315\U0001d16d\u0300b",
        "\u0915\u093c\u0940 हिन्दी देवनागरी", "ภาษาไทย", "עִבְרִית", "العَرَبِيَّة",
        "ຄວາມ", "ქართული", "Հայերեն", "ᚠᚢᚦ ᛗ", "ꓐꓑ", "𐌀𐌁 𓀀𓀁",
        # mixed scripts
        "COVID-19 肺炎 pneumonia пневмония πνευμονία 폐렴",
        "Ｘ線 x-ray Х-лучи (Cyrillic Ха)",
        # numbers
        "123 4567890 3.1415926535 1e-10 0x1F ٣٤٥ ३४५ ①②③",
        # special tokens written in the text
        "[CLS] hello [SEP]", "a[SEP]b", "[MASK] is masked", "[cls] lower", "[UNK]",
        "[PAD][PAD]", "[ CLS ]", "[CLS", "[[SEP]]", "x [MASK]y",
        # unknown words
        "qqqqzzzz xyzzyx blorptastic", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        # words at and over 100 characters
        "a" * 99, "a" * 100, "a" * 101, "ab" * 50, "ab" * 50 + "c",
        "é" * 100, "é" * 101, "x" * 500, "word " + "y" * 150 + " word",
        "z" * 100 + "!" + "z" * 100, "ﬁ" * 100, "ﬁ" * 101,
        "\u0301" * 200 + "a", "a" + "\u0301" * 200, "中" * 150,
    ]:
        add(x)
    # texts past 256 tokens, and other context lengths
    long = ("the patient presented with bilateral infiltrates, consistent with "
            "pneumonia; follow-up imaging showed resolution. ") * 20
    add(long)
    add(long, 77)
    add(long, 2)
    add(long, 3)
    add("short text", 2)
    add("short text", 3)
    add(long, 512)
    add("中文" * 300)
    add("a " * 300)
    add("! " * 255)
    add("! " * 254)
    add("! " * 253)
    add("a" * 100 + " " + "b " * 300)
    # invalid UTF-8
    for b in [b"\xff", b"abc\xffdef", b"\xc3", b"caf\xc3", b"\xc3\x28", b"\xe2\x82",
              b"x\xe2\x82y", b"\xed\xa0\x80 surrogate", b"\xc0\xaf overlong",
              b"\xf4\x90\x80\x80 too big", b"\xf0\x9f\x98", b"\x80\x80\x80",
              b"ab\xfe\xfecd", b"\xe4\xbd\xa0\xe5\xa5", b"[SE\xffP]", b"\xff[SEP]\xff",
              b"valid \xe4\xb8\xad then \xe4\xb8", b"a\x00b"]:
        add(b)
    return s


RANGES = [  # (weight, lo, hi): where random code points come from
    (30, 0x20, 0x7e), (6, 0x00, 0x1f), (8, 0x80, 0x24f), (6, 0x300, 0x36f),
    (5, 0x370, 0x52f), (4, 0x590, 0x8ff), (4, 0x900, 0xdff), (3, 0x1e00, 0x1fff),
    (5, 0x2000, 0x206f), (3, 0x2070, 0x2bff), (3, 0x2e00, 0x2e7f), (5, 0x3000, 0x30ff),
    (5, 0x4e00, 0x9fff), (3, 0xac00, 0xd7a3), (3, 0xf900, 0xfaff), (3, 0xfb00, 0xfffd),
    (3, 0x10000, 0x1ffff), (4, 0x1f300, 0x1faff), (3, 0x20000, 0x3134f),
    (2, 0x0, 0x10ffff), (1, 0xe0000, 0xe01ef), (1, 0xf0000, 0x10ffff),
]


def random_cases(vocab_words, n, seed):
    rnd = random.Random(seed)
    weights = [w for w, _, _ in RANGES]
    out = []
    for i in range(n):
        kind = rnd.random()
        if kind < 0.25:  # real words in odd casing with random separators
            parts = []
            for _ in range(rnd.randint(1, 8)):
                w = rnd.choice(vocab_words)
                w = "".join(c.upper() if rnd.random() < 0.3 else c for c in w)
                parts.append(w)
                parts.append(rnd.choice([" ", "", "-", ".", "\u00a0", "\u0301", "\u200b", "  "]))
            out.append(("".join(parts).encode("utf-8"), 256))
            continue
        chars = []
        for _ in range(rnd.randint(1, 16)):
            _, lo, hi = rnd.choices(RANGES, weights)[0]
            cp = rnd.randint(lo, hi)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0xFFFD
            chars.append(chr(cp))
        raw = "".join(chars).encode("utf-8")
        if kind > 0.95:  # break a few byte strings
            b = bytearray(raw)
            for _ in range(rnd.randint(1, 3)):
                b.insert(rnd.randint(0, len(b)), rnd.randint(0x80, 0xff))
            raw = bytes(b)
        out.append((raw, rnd.choice([256] * 9 + [rnd.randint(2, 8)])))
    return out


def write_cases(path, cases, toks):
    """Also counts the cases whose ids open_clip's full clean (ftfy.fix_text,
    html.unescape twice) would change, to document what leaving it out costs."""
    try:
        from open_clip.tokenizer import basic_clean
    except ImportError:
        basic_clean = None
    n_ftfy = 0
    examples = []
    with open(path, "w") as f:
        for raw, n in cases:
            ids = [expected(t, raw, n) for t in toks]
            f.write("%d\t%s\t%s\n" % (n, raw.hex(), "\t".join(" ".join(map(str, x)) for x in ids)))
            if basic_clean:
                text = raw.decode("utf-8", errors="replace")
                full = toks[0](open_clip_whitespace(basic_clean(text)), max_length=n, truncation=True)["input_ids"]
                if full != ids[0]:
                    n_ftfy += 1
                    examples.append(text[:40])
    print("%s: %d cases; with ftfy + html.unescape the ids of %d would differ" % (path, len(cases), n_ftfy))
    for e in examples[:12]:
        print("    %r" % e)


def write_chars(path):
    """Per code point, what tokenizers does to it alone. Lines:
         R lo hi delta class    lo..hi each become cp+delta
         C lo hi delta class    lo..hi each become space, cp+delta, space (CJK)
         E lo hi class          lo..hi vanish
         H lo hi class          Hangul syllables: the algorithmic decomposition
         M cp class x y ...     cp becomes the listed code points
       class: the BertPreTokenizer's view of the code point itself
       (1 other, 2 whitespace, 3 punctuation). Hex numbers; no surrogates."""
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                      strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    recs = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        out = [ord(x) for x in norm.normalize_str(c)]
        cls = len(pre.pre_tokenize_str("a" + c + "a"))
        if 0xAC00 <= cp <= 0xD7A3:
            s = cp - 0xAC00
            alg = [0x1100 + s // 588, 0x1161 + (s % 588) // 28] + ([0x11A7 + s % 28] if s % 28 else [])
            assert out == alg, hex(cp)
            kind = ("H", cls)
        elif not out:
            kind = ("E", cls)
        elif len(out) == 1:
            kind = ("R", out[0] - cp, cls)
        elif len(out) == 3 and out[0] == out[2] == 0x20:
            kind = ("C", out[1] - cp, cls)
        else:
            kind = ("M", cls, tuple(out))
        if recs and kind[0] != "M" and recs[-1][2] == kind and recs[-1][1] == cp - 1:
            recs[-1][1] = cp
        else:
            recs.append([cp, cp, kind])
    with open(path, "w") as f:
        for lo, hi, k in recs:
            if k[0] in "RC":
                f.write("%s %x %x %d %d\n" % (k[0], lo, hi, k[1], k[2]))
            elif k[0] in "EH":
                f.write("%s %x %x %d\n" % (k[0], lo, hi, k[1]))
            else:
                f.write("M %x %d %s\n" % (lo, k[1], " ".join("%x" % x for x in k[2])))
    print("%s: %d lines" % (path, len(recs)))


def main():
    big = os.path.join(FIX, "vocab-bert-uncased.txt")
    tiny = os.path.join(FIX, "vocab-tiny.txt")
    toks = [load(big), load(tiny)]
    assert len(toks[0]) == 30522, len(toks[0])
    words = [w for w in open(big, encoding="utf-8").read().split("\n")[1000:]
             if w and not w.startswith("##")]
    d = tempfile.mkdtemp()  # the tiny vocab as tokenizer.json, for the JSON reader
    toks[1].save_pretrained(d)
    with open(os.path.join(d, "tokenizer.json"), "rb") as f, \
            open(os.path.join(FIX, "tokenizer-tiny.json"), "wb") as g:
        g.write(f.read())
    write_cases(os.path.join(FIX, "tokenizer_cases.txt"), hard_cases(), toks)
    write_cases(os.path.join(FIX, "tokenizer_random.txt"), random_cases(words, 3000, 1), toks)
    if "--no-chars" not in sys.argv:
        write_chars(os.path.join(FIX, "tokenizer_chars.txt"))


if __name__ == "__main__":
    main()
