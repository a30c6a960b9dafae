"""Text → token ids for the F5-TTS-class transformer: characters, or IPA phonemes from espeak-ng.

The vocabulary is F5-TTS' `vocab.txt`: one token per line, the line number is the id, and the space is id 0
(F5-TTS asserts it). Ids are padded with -1 (`list_str_to_idx`); the transformer shifts them by one and uses 0
as filler. Unlike F5-TTS, which maps unknown characters to 0 (a space) without a word, an unknown character is
an error here, after a small documented normalisation (:data:`UNKNOWN_CHARACTER_MAP`).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Literal

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizer
from transformers.utils import logging

from .alignment import align_with_model, cepstral_features, weighted_durations

logger = logging.get_logger(__name__)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.txt"}

# Applied to a character only when it is missing from the vocabulary (a vocabulary that has "’" keeps it).
# Typography that speech does not distinguish is folded onto the ASCII form F5-TTS vocabularies hold; ";" becomes
# "," (F5-TTS' own substitution); whitespace other than the space (which vocab.txt cannot store) becomes a space.
UNKNOWN_CHARACTER_MAP = {
    "\u2018": "'",  # ‘
    "\u2019": "'",  # ’
    "\u201a": "'",  # ‚
    "\u201b": "'",  # ‛
    "\u2032": "'",  # ′
    "\u201c": '"',  # “
    "\u201d": '"',  # ”
    "\u201e": '"',  # „
    "\u201f": '"',  # ‟
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # …
    ";": ",",
    "\u00a0": " ",  # no-break space
    "\u2007": " ",  # figure space
    "\u2009": " ",  # thin space
    "\u202f": " ",  # narrow no-break space
    "\u3000": " ",  # ideographic space
    "\t": " ",
    "\n": " ",
    "\r": " ",
    "\f": " ",
    "\v": " ",
}

# Punctuation kept in phoneme mode: espeak-ng drops it, but it carries the phrasing (pauses, question
# intonation) the acoustic model should hear.
PHONEME_PUNCTUATION = ",.?!"

# A run of kept punctuation, except "." and "," between two digits ("3.5", "1,000"), which espeak-ng reads.
_PUNCTUATION_RUN = re.compile(r"((?:[?!]|[.,](?!\d)|(?<!\d)[.,])+)")
# espeak-ng marks words it reads with another language's rules, e.g. "(en)wˈɜːld(fr)".
_LANGUAGE_SWITCH_FLAG = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")


def _normalize_unconditionally(text: str) -> str:
    return "".join(UNKNOWN_CHARACTER_MAP.get(char, char) for char in text)


def _espeak_ipa(text: str, language: str) -> str:
    """One espeak-ng call: IPA words separated by single spaces (its clause lines joined)."""
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise FileNotFoundError(
            "tokenizer_mode='phoneme' needs the espeak-ng program, which is not on PATH: install the Debian/Ubuntu "
            "package `espeak-ng` (apt-get install espeak-ng) or use tokenizer_mode='char'."
        )
    # --stdin reads the text as a whole (otherwise each line is read on its own) and keeps text starting with
    # "-" from being parsed as an option.
    result = subprocess.run(
        [executable, "-q", "--ipa", "-b", "1", "-v", language, "--stdin"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
        raise ValueError(
            f"espeak-ng failed on {text!r} with phoneme_language={language!r} ({message}); pass a voice listed by "
            "`espeak-ng --voices`, e.g. 'en-us'."
        )
    ipa = _LANGUAGE_SWITCH_FLAG.sub("", result.stdout.decode("utf-8"))
    return " ".join(ipa.split())


@functools.lru_cache(maxsize=1 << 16)
def phonemize(text: str, language: str = "en-us") -> str:
    r"""
    Text → IPA with espeak-ng, keeping word boundaries (spaces) and the punctuation in `PHONEME_PUNCTUATION`.

    The text is first folded with :data:`UNKNOWN_CHARACTER_MAP` (so "…" becomes "..." and ";" becomes ","), then
    split at runs of `, . ? !`; each piece in between is phonemised and the punctuation is put back after it.
    Numbers such as "3.5" and "1,000" are left to espeak-ng, which reads them out. Results are cached (one
    espeak-ng process per piece is the slow part of tokenising a training batch).

    Args:
        text (`str`):
            Text in `language`.
        language (`str`, *optional*, defaults to `"en-us"`):
            An espeak-ng voice (`espeak-ng --voices`).

    Example:

    ```py
    >>> from deepdubber_hf.text import phonemize

    >>> phonemize("Where did you put the map?")
    'wˌɛɹ dˈɪd juː pˌʊt ðə mˈæp?'
    ```
    """
    pieces = _PUNCTUATION_RUN.split(_normalize_unconditionally(text))
    phonemes = ""
    for index, piece in enumerate(pieces):
        if index % 2:  # a punctuation run, attached to what precedes it
            phonemes += piece
        elif piece.strip():
            ipa = _espeak_ipa(piece.strip(), language)
            if ipa:
                phonemes += (" " if phonemes else "") + ipa
    return phonemes


def _read_vocab(vocab_file: str) -> list[str]:
    # Line iteration in text mode, as F5-TTS' get_tokenizer reads it, so ids agree with F5-TTS checkpoints.
    with open(vocab_file, encoding="utf-8") as handle:
        return [line.removesuffix("\n") for line in handle]


class DeepDubberTokenizer(PreTrainedTokenizer):
    r"""
    Character or phoneme tokenizer over an F5-TTS `vocab.txt`, usable as a diffusers pipeline component
    (`save_pretrained` / `from_pretrained`).

    Every character (in `"char"` mode) or every IPA character from espeak-ng (in `"phoneme"` mode) is one token;
    the space is a token (id 0) and is never stripped. A character missing from the vocabulary is first looked up
    in :data:`UNKNOWN_CHARACTER_MAP`, then tried in the other letter case; if neither is in the vocabulary, a
    `ValueError` names it. Nothing is dropped or mapped to a filler id.

    Args:
        vocab_file (`str`):
            Path to `vocab.txt`: one token per line, line number = id, `" "` on the first line.
        tokenizer_mode (`str`, *optional*, defaults to `"char"`):
            `"char"` tokenizes the text's characters (F5-TTS' English setting); `"phoneme"` converts the text to
            IPA with espeak-ng first (see :func:`phonemize`) and tokenizes the IPA characters.
        phoneme_language (`str`, *optional*, defaults to `"en-us"`):
            espeak-ng voice used in `"phoneme"` mode.
        frame_weights (`list[float]`, *optional*):
            One weight per token id: the mean mel frames the token lasts in the training speech (measured by
            forced alignment, see `examples/train_tts.py --text_alignment`). [`~DeepDubberTokenizer.durations`]
            spreads frames over tokens in proportion to them; without them every token weighs the same.
        edge_frames (`list[float]`, *optional*):
            `[first, last]`: frames added to the weight of a text's first and last token (the silence at either
            end of an utterance).
        aligner (`dict`, *optional*):
            The forced-alignment HMM that measured `frame_weights` (`deepdubber_hf.alignment.align_utterances`);
            [`~DeepDubberTokenizer.align`] uses it to find the tokens of recorded speech (a reference voice) the
            way the generator was trained.
        kwargs (*optional*):
            Passed to [`~transformers.PreTrainedTokenizer`].

    Example:

    ```py
    >>> import tempfile
    >>> from deepdubber_hf.text import DeepDubberTokenizer

    >>> tokenizer = DeepDubberTokenizer.from_texts(["Where did you put the map?"], tempfile.mkdtemp())
    >>> tokenizer.text_to_ids(["the map", "put"])
    tensor([[12,  6,  5,  0,  8,  3, 10],
            [10, 13, 12, -1, -1, -1, -1]])
    ```
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names: ClassVar[list[str]] = ["input_ids"]  # F5-TTS pads with -1 instead of a mask

    def __init__(
        self,
        vocab_file: str,
        tokenizer_mode: Literal["char", "phoneme"] = "char",
        phoneme_language: str = "en-us",
        frame_weights: list[float] | None = None,
        edge_frames: list[float] | None = None,
        aligner: dict | None = None,
        **kwargs,
    ):
        if tokenizer_mode not in ("char", "phoneme"):
            raise ValueError(f"tokenizer_mode must be 'char' or 'phoneme', got {tokenizer_mode!r}.")
        vocab_file = os.fspath(vocab_file)
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(
                f"vocab file {vocab_file!r} does not exist: pass an F5-TTS vocab.txt or build one with "
                "DeepDubberTokenizer.from_texts(texts, save_dir)."
            )
        self.vocab_file = vocab_file
        self.tokenizer_mode = tokenizer_mode
        self.phoneme_language = phoneme_language
        self._id_to_token = _read_vocab(vocab_file)
        self.vocab = {token: index for index, token in enumerate(self._id_to_token)}
        if len(self.vocab) != len(self._id_to_token):
            duplicates = sorted({token for token in self._id_to_token if self._id_to_token.count(token) > 1})
            raise ValueError(f"{vocab_file!r} lists the tokens {duplicates} more than once: keep one line each.")
        if self.vocab.get(" ") != 0:
            raise ValueError(
                f"{vocab_file!r} must have the space ' ' on its first line (id 0), as F5-TTS requires; "
                f"it has {self._id_to_token[:1]!r} there."
            )
        if frame_weights is not None and (
            len(frame_weights) != len(self._id_to_token) or any(not w >= 0 for w in frame_weights)
        ):
            raise ValueError(
                f"frame_weights must hold one non-negative number per token ({len(self._id_to_token)} in "
                f"{vocab_file!r}), got {len(frame_weights)}: measure them again for this vocabulary."
            )
        if edge_frames is not None and (len(edge_frames) != 2 or any(not e >= 0 for e in edge_frames)):
            raise ValueError(f"edge_frames must be two non-negative numbers [first, last], got {edge_frames!r}.")
        if aligner is not None and (
            not isinstance(aligner, dict) or len(aligner.get("means", ())) != len(self._id_to_token) + 1
        ):
            raise ValueError(
                f"aligner must be the dict align_utterances returns for this vocabulary ({len(self._id_to_token)} "
                f"tokens + silence): measure it again for {vocab_file!r}."
            )
        self.frame_weights = list(frame_weights) if frame_weights is not None else None
        self.edge_frames = list(edge_frames) if edge_frames is not None else [0.0, 0.0]
        self.aligner = aligner
        super().__init__(tokenizer_mode=tokenizer_mode, phoneme_language=phoneme_language,
                         frame_weights=self.frame_weights, edge_frames=edge_frames, aligner=aligner,
                         **kwargs)  # fmt: skip

    @property
    def vocab_size(self) -> int:
        """Number of lines of `vocab.txt` (F5-TTS' `vocab_size`, the transformer's `text_num_embeds`)."""
        return len(self._id_to_token)

    def get_vocab(self) -> dict[str, int]:
        return {**self.vocab, **self.added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        if self.tokenizer_mode == "phoneme":
            return self._vocab_characters(phonemize(text, self.phoneme_language), source=text)
        return self._vocab_characters(text)

    def _vocab_characters(self, text: str, source: str | None = None) -> list[str]:
        """Split into vocabulary characters, normalising only the characters missing from the vocabulary."""
        tokens, unknown = [], []
        for char in text:
            if char in self.vocab:
                tokens.append(char)
                continue
            replacement = UNKNOWN_CHARACTER_MAP.get(char)
            if replacement is not None and all(part in self.vocab for part in replacement):
                tokens.extend(replacement)
                continue
            other_case = char.lower() if char.isupper() else char.upper()
            if len(other_case) == 1 and other_case != char and other_case in self.vocab:
                tokens.append(other_case)
                continue
            if char not in unknown:
                unknown.append(char)
        if unknown:
            described = ", ".join(f"{char!r} (U+{ord(char):04X})" for char in unknown)
            where = f"{text!r}" if source is None else f"{text!r} (espeak-ng's IPA for {source!r})"
            raise ValueError(
                f"the characters {described} of {where} are not in the vocabulary {self.vocab_file!r}: add them "
                "to vocab.txt (and train their embeddings) or rewrite the text without them."
            )
        return tokens

    def _convert_token_to_id(self, token: str) -> int:
        if token not in self.vocab:
            raise ValueError(f"token {token!r} is not in the vocabulary {self.vocab_file!r}: add it to vocab.txt.")
        return self.vocab[token]

    def _convert_id_to_token(self, index: int) -> str:
        if not 0 <= index < len(self._id_to_token):
            raise ValueError(
                f"token id {index} is outside the vocabulary (0 to {len(self._id_to_token) - 1}); "
                "remove the -1 padding of text_to_ids before decoding."
            )
        return self._id_to_token[index]

    # Overridden because the base class joins tokens with spaces; here the space is itself a token.
    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        if not os.path.isdir(save_directory):
            raise FileNotFoundError(f"{save_directory!r} is not a directory: create it first.")
        path = os.path.join(save_directory, (f"{filename_prefix}-" if filename_prefix else "") + "vocab.txt")
        _write_vocab(path, self._id_to_token)
        return (path,)

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text (IPA characters in `"phoneme"` mode), each in the vocabulary."""
        return self.tokenize(text)

    def durations(self, token_ids: list[int] | torch.Tensor, num_frames: int) -> torch.LongTensor:
        """
        Frames per token when `num_frames` mel frames of speech say these tokens: in proportion to
        `frame_weights` (plus `edge_frames` at the ends), or evenly without them (F5-TTS's average upsampling).

        Args:
            token_ids (`list[int]` or `torch.LongTensor` of shape `(num_tokens,)`):
                One text's ids; -1 padding is left out.
            num_frames (`int`):
                Frames to share.

        Returns:
            `torch.LongTensor` of shape `(num_tokens,)` (without the padding), summing to `num_frames`.
        """
        ids = [int(i) for i in token_ids if int(i) >= 0]
        if self.frame_weights is None:
            weights = [1.0] * len(ids)
        else:
            weights = [self.frame_weights[i] for i in ids]
            if weights:
                weights[0] += self.edge_frames[0]
                weights[-1] += self.edge_frames[1]
        return weighted_durations(weights, num_frames)

    def align(self, token_ids: list[int] | torch.Tensor, log_mel: torch.Tensor) -> torch.LongTensor:
        """
        Frames per token of recorded speech, by forced alignment with the tokenizer's `aligner`; without one, or
        when the speech is too short for its tokens, by [`~DeepDubberTokenizer.durations`].

        Args:
            token_ids (`list[int]` or `torch.LongTensor` of shape `(num_tokens,)`):
                The speech's transcript as ids; -1 padding is left out.
            log_mel (`torch.Tensor` of shape `(num_frames, n_mels)`):
                Its log-mel spectrogram.

        Returns:
            `torch.LongTensor` of shape `(num_tokens,)`, summing to `num_frames`.
        """
        ids = [int(i) for i in token_ids if int(i) >= 0]
        num_frames = int(log_mel.shape[0])
        if self.aligner is None or not ids:
            return self.durations(ids, num_frames)
        marks = set(self.aligner["mark_ids"])
        sounded = sum(1 for i in ids if i not in marks)
        if sounded == 0 or num_frames < sounded + 2:
            return self.durations(ids, num_frames)
        (frames,) = align_with_model(self.aligner, [cepstral_features(log_mel)], [ids])
        return torch.from_numpy(frames)

    def text_to_ids(self, texts: list[str] | str) -> torch.LongTensor:
        """
        Token ids of a batch of texts, right-padded with -1 (F5-TTS' `list_str_to_idx` convention).

        Args:
            texts (`list[str]` or `str`):
                The texts; a single string is a batch of one.

        Returns:
            `torch.LongTensor` of shape `(batch_size, max_num_tokens)`.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(text, str) for text in texts):
            raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}.")
        if not texts:
            raise ValueError("texts is empty: pass at least one string.")
        ids = [torch.tensor(self.convert_tokens_to_ids(self.tokenize(text)), dtype=torch.long) for text in texts]
        return pad_sequence(ids, batch_first=True, padding_value=-1)

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        save_dir: str | os.PathLike,
        tokenizer_mode: Literal["char", "phoneme"] = "char",
        phoneme_language: str = "en-us",
    ) -> DeepDubberTokenizer:
        r"""
        Build a vocabulary from a corpus: the space (id 0), then every other symbol in code-point order.

        Whitespace other than the space is left out (vocab.txt cannot hold line breaks, and
        :data:`UNKNOWN_CHARACTER_MAP` maps it to a space). In `"phoneme"` mode the symbols are those of the
        texts' IPA (:func:`phonemize`).

        Args:
            texts (`Iterable[str]`):
                The transcripts the model will be trained on.
            save_dir (`str` or `os.PathLike`):
                Folder to write `vocab.txt` and `tokenizer_config.json` into (created if needed); reload it with
                `DeepDubberTokenizer.from_pretrained(save_dir)`.
            tokenizer_mode (`str`, *optional*, defaults to `"char"`):
                `"char"` or `"phoneme"`.
            phoneme_language (`str`, *optional*, defaults to `"en-us"`):
                espeak-ng voice used in `"phoneme"` mode.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string: wrap it in a list.")
        if tokenizer_mode not in ("char", "phoneme"):
            raise ValueError(f"tokenizer_mode must be 'char' or 'phoneme', got {tokenizer_mode!r}.")
        symbols = set()
        if tokenizer_mode == "phoneme":
            # One espeak-ng process per text piece: run several at once (they wait on process start-up, not CPU).
            with ThreadPoolExecutor(max_workers=8) as pool:
                texts = list(pool.map(lambda text: phonemize(text, phoneme_language), set(texts)))
        for text in texts:
            symbols.update(text)
        symbols = sorted(symbol for symbol in symbols if not symbol.isspace())
        save_dir = os.fspath(save_dir)
        os.makedirs(save_dir, exist_ok=True)
        vocab_file = os.path.join(save_dir, VOCAB_FILES_NAMES["vocab_file"])
        _write_vocab(vocab_file, [" ", *symbols])
        tokenizer = cls(vocab_file, tokenizer_mode=tokenizer_mode, phoneme_language=phoneme_language)
        tokenizer.save_pretrained(save_dir)
        return tokenizer


def _write_vocab(path: str, tokens: list[str]) -> None:
    unstorable = [token for token in tokens if "\n" in token or "\r" in token]
    if unstorable:
        raise ValueError(f"tokens {unstorable} contain a line break, which vocab.txt cannot store: remove them.")
    # newline="" writes "\n" as is on every platform; every line ends with one, as F5-TTS' reader expects.
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("".join(f"{token}\n" for token in tokens))


__all__ = ["PHONEME_PUNCTUATION", "UNKNOWN_CHARACTER_MAP", "DeepDubberTokenizer", "phonemize"]
