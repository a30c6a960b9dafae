"""DeepDubberTokenizer: F5-TTS vocab.txt format and ids, HF save/load, normalisation, espeak-ng phonemes."""

import json
from importlib.resources import files

import pytest
import torch
from f5_tts.model.utils import list_str_to_idx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepdubber_hf.text import DeepDubberTokenizer, phonemize

# The vocabulary shipped with f5-tts (Emilia ZH+EN, pinyin and characters), the one its checkpoints use.
F5_VOCAB = str(files("f5_tts").joinpath("infer/examples/vocab.txt"))
CORPUS = ["Where did you put the map?", "I don't know, it was here - on the table!", "Maybe... Yes."]


def f5_vocab_char_map(path):
    # f5_tts.model.utils.get_tokenizer(path, "custom"), minus its print
    with open(path, encoding="utf-8") as handle:
        return {line[:-1]: index for index, line in enumerate(handle)}


@pytest.fixture(scope="module")
def f5_tokenizer():
    return DeepDubberTokenizer(F5_VOCAB)


@pytest.fixture
def corpus_tokenizer(tmp_path):
    return DeepDubberTokenizer.from_texts(CORPUS, tmp_path / "tokenizer")


def test_from_texts_writes_f5_vocab_format(corpus_tokenizer, tmp_path):
    vocab_path = tmp_path / "tokenizer" / "vocab.txt"
    raw = vocab_path.read_bytes().decode("utf-8")
    assert raw.startswith(" \n") and raw.endswith("\n")
    symbols = sorted(set("".join(CORPUS)) - {" "})
    assert raw == "".join(f"{token}\n" for token in [" ", *symbols])
    vocab_char_map = f5_vocab_char_map(vocab_path)
    assert vocab_char_map[" "] == 0  # F5-TTS' own assertion
    assert corpus_tokenizer.get_vocab() == vocab_char_map
    assert corpus_tokenizer.vocab_size == len(vocab_char_map) == len(symbols) + 1


def test_reads_f5_vocab_and_matches_list_str_to_idx(f5_tokenizer):
    vocab_char_map = f5_vocab_char_map(F5_VOCAB)
    assert f5_tokenizer.vocab_size == len(vocab_char_map) == 2545
    texts = ["Where did you put the map?", "I don't know, it's here!", "Hi"]
    ours = f5_tokenizer.text_to_ids(texts)
    theirs = list_str_to_idx([list(text) for text in texts], vocab_char_map)
    assert ours.dtype == torch.long
    assert torch.equal(ours, theirs)


def test_text_to_ids_pads_with_minus_one(corpus_tokenizer):
    ids = corpus_tokenizer.text_to_ids(["Maybe.", "Yes", ""])
    assert ids.shape == (3, 6)
    assert ids[1, 3:].tolist() == [-1, -1, -1] and ids[2].tolist() == [-1] * 6
    assert (ids[0] >= 0).all()
    assert torch.equal(corpus_tokenizer.text_to_ids("Yes"), ids[1:2, :3])


def test_space_is_a_token_and_never_stripped(corpus_tokenizer):
    text = "  Yes  no "
    assert corpus_tokenizer.tokens(text) == list(text)
    ids = corpus_tokenizer.text_to_ids(text)[0]
    assert ids[0].item() == 0 and ids[1].item() == 0 and ids[-1].item() == 0
    assert corpus_tokenizer.decode(ids.tolist()) == text
    # the HF __call__ path gives the same ids
    assert corpus_tokenizer(text)["input_ids"] == ids.tolist()


def test_save_pretrained_round_trip(corpus_tokenizer, tmp_path):
    corpus_tokenizer.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "DeepDubberTokenizer"
    assert config["tokenizer_mode"] == "char" and config["phoneme_language"] == "en-us"
    assert (tmp_path / "saved" / "vocab.txt").read_bytes() == (tmp_path / "tokenizer" / "vocab.txt").read_bytes()
    reloaded = DeepDubberTokenizer.from_pretrained(tmp_path / "saved")
    assert reloaded.get_vocab() == corpus_tokenizer.get_vocab()
    assert torch.equal(reloaded.text_to_ids(CORPUS), corpus_tokenizer.text_to_ids(CORPUS))


def test_unknown_character_is_an_error(corpus_tokenizer):
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\).*'Where is the zebra\?'.*add them to vocab.txt"):
        corpus_tokenizer.text_to_ids(["Where did you put the map?", "Where is the zebra?"])
    with pytest.raises(ValueError, match=r"'é'"):
        corpus_tokenizer.tokens("café")


def test_normalisation_applies_only_to_missing_characters(corpus_tokenizer, tmp_path):
    # curly apostrophe, ellipsis, em dash, semicolon, no-break space, then case folding: "P", "U", "T" are
    # missing and "p", "u", "t" are not, while "M" is in the vocabulary and stays
    assert corpus_tokenizer.tokens("I don\u2019t") == list("I don't")
    assert corpus_tokenizer.tokens("Maybe\u2026") == list("Maybe...")
    assert corpus_tokenizer.tokens("here \u2014 on") == list("here - on")
    assert corpus_tokenizer.tokens("here; on") == list("here, on")
    assert corpus_tokenizer.tokens("on\u00a0the") == list("on the")
    assert corpus_tokenizer.tokens("Map PUT") == list("Map put")
    # a vocabulary that has the curly quote keeps it
    keeps_curly = DeepDubberTokenizer.from_texts(["don\u2019t don't"], tmp_path / "curly")
    assert keeps_curly.tokens("don\u2019t") == list("don\u2019t")
    assert keeps_curly.tokens("don't") == list("don't")


def test_bad_vocab_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="from_texts"):
        DeepDubberTokenizer(str(tmp_path / "missing.txt"))
    (tmp_path / "no_space.txt").write_text("a\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="first line"):
        DeepDubberTokenizer(str(tmp_path / "no_space.txt"))
    (tmp_path / "duplicate.txt").write_text(" \na\na\n", encoding="utf-8")
    with pytest.raises(ValueError, match="more than once"):
        DeepDubberTokenizer(str(tmp_path / "duplicate.txt"))
    with pytest.raises(ValueError, match="tokenizer_mode"):
        DeepDubberTokenizer(F5_VOCAB, tokenizer_mode="pinyin")


def test_decoding_padding_is_an_error(corpus_tokenizer):
    with pytest.raises(ValueError, match="-1 padding"):
        corpus_tokenizer.decode(corpus_tokenizer.text_to_ids(["Yes", "Maybe"])[0].tolist())


def test_phoneme_mode_with_espeak_ng(tmp_path):
    assert phonemize("Where did you put the map?") == "wˌɛɹ dˈɪd juː pˌʊt ðə mˈæp?"
    # punctuation survives (";" folds to ","), numbers are read out, clause lines are joined
    ipa = phonemize("Hello,world. I paid 3.5 dollars; really!")
    assert ipa.startswith("həlˈoʊ, wˈɜːld. ") and ipa.endswith(", ɹˈiəli!")
    assert "θɹˈiː pɔɪnt fˈaɪv" in ipa

    tokenizer = DeepDubberTokenizer.from_texts(CORPUS, tmp_path / "phonemes", tokenizer_mode="phoneme")
    vocab = tokenizer.get_vocab()
    assert vocab[" "] == 0 and {"ˈ", "ə", "ɪ", "?", ",", "."} <= set(vocab)
    assert not {"W", "y"} & set(vocab)  # letters of the text are not symbols of its IPA
    tokens = tokenizer.tokens("Where did you put the map?")
    assert tokens == list("wˌɛɹ dˈɪd juː pˌʊt ðə mˈæp?")
    assert tokens.count(" ") == 5

    reloaded = DeepDubberTokenizer.from_pretrained(tmp_path / "phonemes")
    assert reloaded.tokenizer_mode == "phoneme"
    assert torch.equal(reloaded.text_to_ids(CORPUS), tokenizer.text_to_ids(CORPUS))
    with pytest.raises(ValueError, match="espeak-ng's IPA"):
        tokenizer.tokens("Zebras jump quickly.")


def test_phoneme_mode_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="espeak-ng --voices"):
        phonemize("hello", language="xx-not-a-voice")
    assert phonemize("hello") == phonemize("hello") and phonemize.cache_info().hits >= 1  # cached
    phonemize.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on PATH
    with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
        phonemize("hello")


SINGLE_CHARACTERS = sorted(token for token in f5_vocab_char_map(F5_VOCAB) if len(token) == 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet=st.sampled_from(SINGLE_CHARACTERS), max_size=30), min_size=1, max_size=4))
def test_any_vocab_text_round_trips(f5_tokenizer, texts):
    ids = f5_tokenizer.text_to_ids(texts)
    assert ids.shape == (len(texts), max(len(text) for text in texts))
    for text, row in zip(texts, ids.tolist()):
        row = [index for index in row if index != -1]
        assert len(row) == len(text)
        assert f5_tokenizer.decode(row) == text
