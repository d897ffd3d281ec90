"""Text corpora (vaekit.data.text) and their tokens (vaekit.data.tokens): what is read, how lines become ids
and back, and that the tokenizer is learned from the training lines alone and saved as JSON."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaekit.config import DataConfig
from vaekit.data.codec import codec_from_dict
from vaekit.data.loading import detect_format, load_data
from vaekit.data.text import read_text
from vaekit.data.tokens import EOS, PAD, UNK, TokenCodec
from vaekit.errors import UserError


def test_a_file_a_gzip_and_a_folder_are_read_alike_without_blank_lines(tmp_path: Path):
    text = "\ufeffThe cat sat.\n\n  A dog ran!  \n"
    (tmp_path / "one.txt").write_text(text)
    with gzip.open(tmp_path / "two.txt.gz", "wt") as file:
        file.write(text)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text(text)
    (folder / "b.txt").write_text("Third line\n")
    assert list(read_text(DataConfig(source=str(tmp_path / "one.txt"))).x) == ["The cat sat.", "A dog ran!"]
    assert list(read_text(DataConfig(source=str(tmp_path / "two.txt.gz"))).x) == ["The cat sat.", "A dog ran!"]
    assert list(read_text(DataConfig(source=str(folder))).x) == ["The cat sat.", "A dog ran!", "Third line"]
    assert detect_format(DataConfig(source=str(folder))) == "text"


def test_another_encoding_is_read_when_named(tmp_path: Path):
    (tmp_path / "latin.txt").write_bytes("café noir\n".encode("latin-1"))
    assert list(read_text(DataConfig(source=str(tmp_path / "latin.txt"), encoding="latin-1")).x) == ["café noir"]


def test_an_image_folder_with_a_readme_stays_images(tmp_path: Path):
    from PIL import Image

    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "README.txt").write_text("about these pictures\n")
    assert detect_format(DataConfig(source=str(tmp_path))) == "images"


def test_words_are_lower_cased_split_from_punctuation_and_capped_by_frequency():
    lines = ["The cat, the dog.", "the cat sat", "THE END"]
    codec = TokenCodec.fit(lines, "word", vocab_size=3, max_length=10, where="test")
    assert codec.vocab_size == 4 + 3  # the specials, then the 3 most frequent: the, cat, ...
    ids, lengths, cut = codec.encode(["The cat, the zebra"])
    assert cut == 0 and lengths.tolist() == [6]  # the cat , the zebra </s>
    assert codec.decode(ids) == ["the cat, the <unk>"]  # words joined, punctuation back against them
    assert ids[0][4] == UNK and ids[0][5] == EOS and (ids[0][6:] == PAD).all()


@pytest.mark.parametrize("tokens", ["char", "bpe"])
def test_characters_and_subwords_give_the_line_back(tokens: str):
    lines = ["Hello there, general Kenobi!", "hello again, there", "general knowledge is general"] * 5
    codec = TokenCodec.fit(lines, tokens, vocab_size=60, max_length=60, where="test")
    ids, _, _ = codec.encode(lines[:3])
    assert codec.decode(ids) == lines[:3]


def test_word_tokens_are_joined_as_text_is_written():
    codec = TokenCodec.fit(["I'm sure it (really) works, doesn't it? Yes: 50% off $5; the dogs' bones."], "word",
                           100, 40, "test")
    ids, _, _ = codec.encode(["I'm sure it (really) works, doesn't it? Yes: 50% off $5; the dogs' bones."])
    assert codec.decode(ids) == ["i'm sure it (really) works, doesn't it? yes: 50% off $5; the dogs ' bones."]


def test_a_line_longer_than_max_length_is_cut_and_counted():
    codec = TokenCodec.fit(["a b c d e f", "a b"], "word", 100, max_length=3, where="test")
    ids, lengths, cut = codec.encode(["a b c d e f", "a b"])
    assert cut == 1 and lengths.tolist() == [4, 3] and ids.shape == (2, 4)
    assert codec.decode(ids) == ["a b c", "a b"]


def test_the_vocabulary_is_the_training_splits_and_the_splits_are_ids(tmp_path: Path):
    lines = [f"common words line {i % 7}" for i in range(60)]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n")
    splits = load_data(DataConfig(source=str(path), max_length=8))
    train_words = {word for line in splits.train.x for word in splits.codec.decode(line[None])[0].split()}
    vocabulary = set(splits.codec.tokenizer.get_vocab()) - {"<pad>", "<unk>", "<s>", "</s>"}
    assert vocabulary == train_words
    for split in (splits.train, splits.validation, splits.test):
        assert split.x.dtype == np.int64 and split.x.shape[1] == 9
        assert ((split.x != PAD).sum(1) == split.lengths).all()
    assert splits.event_shape == (9,)


def test_the_codec_is_json_and_comes_back_equal():
    codec = TokenCodec.fit(["one two three", "two three four"], "bpe", 30, 12, "test")
    saved = json.loads(json.dumps(codec.to_dict()))
    again = codec_from_dict(saved, (13,))
    assert again.encode(["one four"])[0].tolist() == codec.encode(["one four"])[0].tolist()
    with pytest.raises(ValueError, match="max_length"):
        codec_from_dict(saved, (20,))
    with pytest.raises(ValueError, match="unreadable"):
        codec_from_dict({**saved, "tokenizer": {"model": "nonsense"}})


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=40),
       tokens=st.sampled_from(["word", "char", "bpe"]))
def test_any_text_trains_a_tokenizer_or_is_refused_in_one_line(tmp_path_factory, lines, tokens):
    """Whatever the lines hold (any Unicode, control characters, lone marks), the corpus is split and tokenized,
    or refused with a UserError; the ids decode to lines again."""
    path = tmp_path_factory.mktemp("fuzz") / "c.txt"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        splits = load_data(DataConfig(source=str(path), tokens=tokens, validation_fraction=0, test_fraction=0))
    except UserError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    assert splits.train.x.dtype == np.int64 and (splits.train.x[:, 0] != PAD).all()
    assert len(splits.codec.decode(splits.train.x)) == len(splits.train)
