"""A text corpus: one sentence or short document per line, in a .txt or .txt.gz file or a folder of them.

The reader keeps the lines as strings (blank lines skipped); `tokenized` turns a split of lines into token
ids by the run's `TokenCodec` (vaekit.data.tokens), which `split_source` fits on the training lines only.
Bad input is refused in one line naming the file and the line: binary data, text that is not in the
`encoding` given, a file without a line of text.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from vaekit.config import DataConfig
from vaekit.data.images import visible_files
from vaekit.data.source import TEXT, RawData, Split, Splits
from vaekit.data.tokens import TokenCodec
from vaekit.errors import UserError

logger = logging.getLogger(__name__)
TEXT_SUFFIXES = (".txt", ".txt.gz")
LARGEST_TEXT_BYTES = 2 << 30  # decoded: a corpus a sentence VAE trains on in memory
READ_BLOCK_BYTES = 1 << 20


def is_text(path: Path) -> bool:
    return path.name.lower().endswith(TEXT_SUFFIXES)


def text_files(source: Path) -> list[Path]:
    """The .txt and .txt.gz files of a folder (or the one file)."""
    if source.is_file():
        return [source]
    files = visible_files(source)
    texts = [path for path in files if is_text(path)]
    if not texts:
        raise UserError(f"{source}: holds no .txt or .txt.gz files; point --data at a text file or a folder of them")
    others = len(files) - len(texts)
    if others:
        logger.warning("%s: skipped %d file(s) that are not .txt or .txt.gz", source, others)
    return texts


def read_text(config: DataConfig) -> RawData:
    source = Path(config.source)
    lines: list[str] = []
    for path in text_files(source):
        lines.extend(read_lines(path, config.encoding))
    if not lines:
        raise UserError(f"{source}: holds no lines of text; give it one sentence or short document per line")
    x = np.empty(len(lines), dtype=object)
    x[:] = lines
    return RawData(x, None, TEXT, f"{source} ({len(lines)} lines)")


def read_lines(path: Path, encoding: str) -> list[str]:
    """The non-blank lines of one file, decoded from `encoding`, each run of whitespace one space."""
    data = _file_bytes(path)
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise UserError(f"{path}: holds binary data (a NUL byte on line {line}), not text; "
                        "pass a text file of one sentence per line")
    try:
        text = data.decode(encoding)
    except LookupError as error:
        raise UserError(f"--encoding {encoding}: not an encoding Python knows; use utf-8, latin-1, cp1252, ...") \
            from error
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line} is not {encoding} (byte 0x{data[error.start]:02x}); pass the file's "
                        "encoding with --encoding (such as latin-1 or cp1252), or convert it to UTF-8") from error
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]  # runs of whitespace: one space


def _file_bytes(path: Path) -> bytes:
    too_large = UserError(f"{path}: holds more than {LARGEST_TEXT_BYTES >> 30} GiB of text; split it or use a part")
    try:
        if not path.name.lower().endswith(".gz"):
            if path.stat().st_size > LARGEST_TEXT_BYTES:
                raise too_large
            data = path.read_bytes()
        else:  # block by block: a few bytes of gzip can claim gigabytes, and read(n) would allocate all n at once
            blocks, size = [], 0
            with gzip.open(path, "rb") as file:
                while block := file.read(READ_BLOCK_BYTES):
                    size += len(block)
                    if size > LARGEST_TEXT_BYTES:
                        raise too_large
                    blocks.append(block)
            data = b"".join(blocks)
    except (OSError, EOFError, zlib.error) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise UserError(f"{path}: cannot be read ({reason}); pass a readable .txt or .txt.gz file") from error
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark is no character of the first line
    return data


def fit_tokens(lines: np.ndarray, config: DataConfig, where: str) -> TokenCodec:
    """The run's tokenizer, learned on its training lines."""
    return TokenCodec.fit(list(lines), config.tokens, config.vocab_size, config.max_length, where)


def tokenized(split: Split, codec: TokenCodec) -> tuple[Split, int]:
    """A split of lines as token ids (N, max_length + 1) with each line's token count, and how many were cut."""
    if not len(split):
        empty = np.zeros((0, codec.max_length + 1), dtype=np.int64)
        return replace(split, x=empty, lengths=np.zeros(0, dtype=np.int64)), 0
    ids, lengths, cut = codec.encode(list(split.x))
    return replace(split, x=ids, lengths=lengths), cut


def report_cut(cut: int, total: int, config: DataConfig, where: str) -> None:
    """Say how many training lines `--max-length` cut; refuse when it cut every one."""
    if cut == total and total:
        raise UserError(f"{where}: every training line is longer than --max-length {config.max_length} "
                        f"{config.tokens} tokens; raise --max-length")
    if cut:
        logger.warning("%s: %d of %d training lines are longer than --max-length %d tokens and were cut",
                       where, cut, total, config.max_length)


def text_splits(raw: RawData, config: DataConfig, splits: tuple[Split, Split, Split],
                codec: TokenCodec | None = None) -> Splits:
    """Train, validation and test lines as token ids, by `codec` or one learned on the training lines."""
    if config.binarize != "none":
        raise UserError(f"{raw.description}: binarize = {config.binarize!r} is for pixels; drop --binarize for text")
    fitted = codec is None
    codec = codec or fit_tokens(splits[0].x, config, raw.description)
    (train, cut), (validation, _), (test, _) = (tokenized(split, codec) for split in splits)
    if fitted:
        report_cut(cut, len(train), config, raw.description)
    ids_only = replace(raw, x=np.zeros((0, codec.max_length + 1), dtype=np.int64), names=None)
    return Splits(train, validation, test, codec, ids_only)
