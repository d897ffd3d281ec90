"""Text as tokens: the tokenizer a text run learns on its training lines, and the map between lines and ids.

`TokenCodec` is a text run's codec (vaekit.data.codec): fitted on the training split, saved in the run's
config.json as the Hugging Face `tokenizers` JSON (no pickle), so `sample`, `reconstruct` and `encode`
read and write text. Three tokenizations: words (lower-cased, punctuation split off, the `vocab_size` most
frequent), characters, and subwords by byte-pair encoding (BPE, trained here, nothing downloaded).

A line becomes `max_length` token ids at most, then </s>; shorter lines are padded with <pad> = 0, so a
split is an (N, max_length + 1) array and a model finds each line's tokens where the ids are not 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vaekit.errors import UserError

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")  # in the order of their ids
# Words are put back together with spaces, then these spaces taken out again: before closing punctuation, after
# opening brackets, and around the apostrophe of a contraction ("don ' t" -> "don't"), as a detokenizer does
WORD_SPACING = ((re.compile(r" ([.,!?;:%)\]}])"), r"\1"), (re.compile(r"([(\[{$]) "), r"\1"),
                (re.compile(r"(?<=[\w>]) ' (?=(?:t|s|m|d|re|ve|ll)\b)"), "'"))


def new_tokenizer(tokens: str) -> Tokenizer:
    """An untrained tokenizer of the kind `tokens` names (word, char or bpe)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    if tokens == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()  # words keep their leading space as ▁
        tokenizer.decoder = decoders.Metaspace()
        return tokenizer
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    if tokens == "word":
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    else:  # char: every character, spaces included, is a token
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return tokenizer


def joined_words(words: Sequence[str]) -> str:
    """Word tokens as a line of text: "i ' m not a <unk> ." -> "i'm not a <unk>."."""
    line = " ".join(words)
    for pattern, replacement in WORD_SPACING:
        line = pattern.sub(replacement, line)
    return line


@dataclass(frozen=True)
class TokenCodec:
    """Lines of text <-> (N, max_length + 1) token ids, by a tokenizer learned on the training split."""

    tokens: str  # word, char or bpe
    max_length: int  # tokens per line before </s>
    tokenizer: Tokenizer

    @classmethod
    def fit(cls, lines: Sequence[str], tokens: str, vocab_size: int, max_length: int, where: str) -> TokenCodec:
        """Learn the vocabulary (or BPE's merges) from the training `lines`; `where` names the source in errors."""
        from tokenizers import trainers

        tokenizer = new_tokenizer(tokens)
        size = vocab_size + len(SPECIAL_TOKENS)  # --vocab-size counts the tokens of the text, not the specials
        if tokens == "bpe":
            # A merge seen once is noise: BPE merges pairs that occur twice or more
            trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(SPECIAL_TOKENS), min_frequency=2,
                                          show_progress=False)
        else:
            trainer = trainers.WordLevelTrainer(vocab_size=size, special_tokens=list(SPECIAL_TOKENS),
                                                show_progress=False)
        tokenizer.train_from_iterator(lines, trainer)
        codec = cls(tokens, max_length, tokenizer)
        codec._check_learned(where)
        return codec

    def _check_learned(self, where: str) -> None:
        text_tokens = self.vocab_size - len(SPECIAL_TOKENS)
        if text_tokens < 2:
            only = self.tokenizer.id_to_token(len(SPECIAL_TOKENS)) if text_tokens == 1 else None
            held = f"one distinct token ({only!r})" if only is not None else "no tokens"
            raise UserError(f"{where}: the training lines hold {held}; a model of text needs a vocabulary of two "
                            "or more: give it more varied text" + (", or --tokens char" if self.tokens == "word"
                                                                   else ""))
        if self.tokens == "bpe" and not json.loads(self.tokenizer.to_str())["model"]["merges"]:
            raise UserError(f"{where}: too little text to learn subwords from (--tokens bpe found no pair of "
                            "characters that occurs twice); give it more text, or use --tokens word or --tokens char")

    @property
    def vocab_size(self) -> int:
        """Token ids there are, the four special ones included."""
        return self.tokenizer.get_vocab_size()

    def encode(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """Token ids (N, max_length + 1) int64, each line's count of tokens with its </s> (N,), and how
        many lines were longer than `max_length` and cut."""
        ids = np.zeros((len(lines), self.max_length + 1), dtype=np.int64)
        lengths = np.zeros(len(lines), dtype=np.int64)
        cut = 0
        for row, encoding in enumerate(self.tokenizer.encode_batch(list(lines), add_special_tokens=False)):
            tokens = encoding.ids
            cut += len(tokens) > self.max_length
            tokens = tokens[: self.max_length] + [EOS]
            ids[row, : len(tokens)] = tokens
            lengths[row] = len(tokens)
        return ids, lengths, cut

    def decode(self, ids: np.ndarray | Sequence[Sequence[int]]) -> list[str]:
        """Each row of ids back to a line: up to its first </s>, without <pad> and <s>."""
        lines = []
        for row in ids.tolist() if isinstance(ids, np.ndarray) else ids:
            row = list(row)
            row = row[: row.index(EOS)] if EOS in row else row
            pieces = [self.tokenizer.id_to_token(int(i)) or "<unk>" for i in row if i not in (PAD, BOS)]
            if self.tokens == "bpe":
                lines.append(self.tokenizer.decoder.decode(pieces).strip())
            elif self.tokens == "char":
                lines.append("".join(pieces))
            else:
                lines.append(joined_words(pieces))
        return lines

    def to_model(self, stored: torch.Tensor) -> torch.Tensor:
        import torch

        return stored.to(torch.long)

    def from_model(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def to_dict(self) -> dict[str, Any]:
        return {"type": "tokens", "tokens": self.tokens, "max_length": self.max_length,
                "tokenizer": json.loads(self.tokenizer.to_str())}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], event_shape: tuple[int, ...] | None = None) -> TokenCodec:
        """The codec `to_dict` wrote; a ValueError saying what for anything else (a damaged config.json)."""
        from tokenizers import Tokenizer

        tokens, max_length = raw.get("tokens"), raw.get("max_length")
        if tokens not in ("word", "char", "bpe") or type(max_length) is not int or max_length < 1:
            raise ValueError("the token codec's tokens or max_length is missing or wrong")
        if event_shape is not None and tuple(event_shape) != (max_length + 1,):
            raise ValueError(f"the token codec's max_length {max_length} does not fit the data's shape {event_shape}")
        try:
            tokenizer = Tokenizer.from_str(json.dumps(raw["tokenizer"]))
        except Exception as error:  # tokenizers raises a bare Exception for a malformed tokenizer
            raise ValueError(f"the token codec's tokenizer is unreadable ({error})") from error
        if [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
            raise ValueError("the token codec's tokenizer lacks <pad>, <unk>, <s> and </s> as its first ids")
        return cls(tokens, max_length, tokenizer)
