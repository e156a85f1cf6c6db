"""make_bpe_fixtures.py: writes the byte-level BPE fixtures that
test_tokenizer_bpe.c checks ft's tokenizer against, using Hugging Face
`tokenizers` as the reference (run it with the reference environment of
tests/reference/setup-python.sh; the outputs are committed, so the C test
needs no Python).

  make_bpe_fixtures.py OUT_DIR

For each flavour it trains a small BPE on a deterministic mixed corpus
(English, code, numbers, accents, Cyrillic, CJK, emoji, odd whitespace,
contractions), adds special and plain added tokens, and writes
OUT_DIR/bpe-FLAVOUR/{tokenizer.json, config.json, cases.jsonl}; cases.jsonl
holds {"text", "ids"} with ids from Tokenizer.encode(text,
add_special_tokens=False). Flavours:
  llama3   Split(Llama-3 regex) + ByteLevel, ignore_merges, merges as pairs
  gpt2     ByteLevel (GPT-2 regex), merges as "a b" strings
  sp-norm  SentencePiece style as in Llama 2: normalizer Prepend + Replace,
           byte_fallback with <0xXX> tokens, a restricted alphabet so that
           the fallback is exercised
  sp-meta  the same with the Metaspace pre-tokenizer (prepend_scheme first)
"""
import json
import os
import random
import sys

from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = ("the of and to in is you that it he was for on are as with his they I at be this have "
         "from or one had by word but not what all were we when your can said there use an each "
         "which she do how their if will up other about out many then them these so some her "
         "would make like him into time has look two more write go see number no way could "
         "people my than first water been call who oil its now find long down day did get come "
         "made may part").split()
EXTRA = ["café", "naïve", "Привет", "мир", "日本語", "中文字符", "😀", "👍🏽", "ß", "Ωμέγα",
         "x²", "½", "٣٤٥", "१२३", "e\u0301", "\u00a0", "\u3000", "def", "return", "{", "}",
         "==", "!=", "->", "0x1F", "3.14159", "1,000,000", "2026-11-30", "don't", "I'LL",
         "we've", "she's", "'RE", "O'Neil", "\t", "\r\n", "\n\n", "   ", "<tag>", "&amp;",
         "...", "?!", "\"quoted\"", "snake_case", "CamelCase", "ALLCAPS", "v1.2.3"]


def corpus(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(3, 30)
        parts = []
        for _ in range(k):
            w = rng.choice(WORDS) if rng.random() < 0.7 else rng.choice(EXTRA)
            if rng.random() < 0.1:
                w = w.capitalize()
            parts.append(w)
            parts.append(rng.choice([" ", " ", " ", "  ", "\n", ", ", ". ", "\t", " \n "]))
        out.append("".join(parts))
    return out


def cases(rng):
    fixed = [
        "", "a", " ", "  ", "\n", "\r\n", " \n ", "hello world", "Hello  world", "hello   world  ",
        "trailing space ", " leading space", "tabs\tand\ttabs", "line1\nline2\r\nline3\n\n\nend",
        "don't DON'T we'll WE'LL it's IT'S 're 'Re", "O'Neil's 'twas '", "12345678 1 22 333 4444",
        " 123 abc123 123abc", "3.14159 and 1,000,000", "café naïve Привет мир", "日本語の文章です。",
        "emoji 😀👍🏽 mixed", "x² ½ ٣٤٥ १२३", "e\u0301 combining", "nbsp\u00a0here\u3000wide",
        "def f(x):\n    return x == 1  # comment\n", "{\"json\": [1, 2, 3]}", "<|begin_of_text|>Hi",
        "a<|end_of_text|>b<tool>c<tool>", "<|begin_of_text|><|begin_of_text|>", "<tool",
        "   \n   \n", "!!!???...", "snake_case CamelCase ALLCAPS v1.2.3", "a\u2028b\u0085c",
        "\t\t\tindented\n\t\tless", "wörd wörd wörd", "ends with newline\n",
    ]
    pool = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    pool += [" ", " ", " ", "  ", "\n", "\r", "\t", "'", "'s", "'LL", ".", ",", "!", "-", "_", "(",
             ")", "é", "ß", "Ж", "語", "😀", "٣", "½", "\u00a0", "<tool>", "<|end_of_text|>"]
    rand = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    return fixed + rand


def build(flavour, out_dir, rng):
    if flavour == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(rng, 3000), trainer)
    tok.add_tokens(["<tool>"])
    d = os.path.join(out_dir, "bpe-" + flavour)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    tok.save(path)
    if flavour == "gpt2":
        # the older file form: merges as "a b" strings
        with open(path) as f:
            j = json.load(f)
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                                for m in j["model"]["merges"]]
        with open(path, "w") as f:
            json.dump(j, f, ensure_ascii=False)
        tok = Tokenizer.from_file(path)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    cfg = {"model_type": "llama", "vocab_size": vocab, "hidden_size": 64,
           "num_attention_heads": 4, "num_hidden_layers": 1, "intermediate_size": 128,
           "bos_token_id": tok.token_to_id(specials[0]),
           "eos_token_id": tok.token_to_id(specials[1])}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(d, "cases.jsonl"), "w") as f:
        for t in cases(rng):
            ids = tok.encode(t, add_special_tokens=False).ids
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    print("%s: vocab %d, %d cases" % (d, vocab, len(cases(random.Random(0)))))


def build_sp(flavour, out_dir, rng):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    if flavour == "sp-norm":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                               normalizers.Replace(" ", "\u2581")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                     prepend_scheme="first", split=False)
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False,
                                  limit_alphabet=70)
    tok.train_from_iterator(corpus(rng, 3000), trainer)
    d = os.path.join(out_dir, "bpe-" + flavour)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    tok.save(path)
    # Llama 2 keeps its 256 byte tokens in the vocabulary, not as added tokens
    with open(path) as f:
        j = json.load(f)
    vocab = j["model"]["vocab"]
    nxt = max(vocab.values()) + 1
    for b in range(256):
        vocab["<0x%02X>" % b] = nxt
        nxt += 1
    with open(path, "w") as f:
        json.dump(j, f, ensure_ascii=False)
    tok = Tokenizer.from_file(path)
    tok.add_tokens([AddedToken("<tool>", normalized=False)])
    tok.save(path)
    cfg = {"model_type": "llama", "vocab_size": tok.get_vocab_size(with_added_tokens=True),
           "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
           "intermediate_size": 128, "bos_token_id": 1, "eos_token_id": 2}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    extra = ["<s>Hello", "Hi</s>there", "<s> spaced", "a  <tool>  b", "<unk>", " lead", "  two",
             "<tool>x", "x<tool>", "\u2581already", "\u00e9\U0001f600\u03a9"]
    with open(os.path.join(d, "cases.jsonl"), "w") as f:
        for t in cases(rng) + extra:
            ids = tok.encode(t, add_special_tokens=False).ids
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    print("%s: vocab %d" % (d, cfg["vocab_size"]))


def main():
    out = sys.argv[1]
    for i, flavour in enumerate(["llama3", "gpt2"]):
        build(flavour, out, random.Random(1234 + i))
    for i, flavour in enumerate(["sp-norm", "sp-meta"]):
        build_sp(flavour, out, random.Random(555 + i))


if __name__ == "__main__":
    main()
