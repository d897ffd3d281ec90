"""What every reader returns, and how a source becomes train/validation/test splits."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vaekit.config import DataConfig
from vaekit.data.codec import Codec, IdentityCodec, PixelCodec, StandardizeCodec
from vaekit.errors import UserError

IMAGE, TABLE, ARRAY, AUDIO, TEXT = "image", "table", "array", "audio", "text"


@dataclass
class RawData:
    """A source as read from disk, before splitting.

    `x` is (N, C, H, W) uint8 for images, (N, columns) float32 for tables, (N, ...) for arrays, and
    (N, 1, bins, frames) float32 log-magnitude spectrograms for audio, and (N,) strings for text, one per line
    (`split_source` turns them into token ids by a tokenizer it fits on the training lines).
    """

    x: np.ndarray
    y: np.ndarray | None
    kind: str  # IMAGE, TABLE or ARRAY: decides the output form of sample/reconstruct
    description: str  # for messages and config.json, e.g. "fashion-mnist (/usr/share/...)"
    test_x: np.ndarray | None = None  # a source's own test split (IDX files have one)
    test_y: np.ndarray | None = None
    columns: tuple[str, ...] | None = None  # table column names, in order
    class_names: tuple[str, ...] | None = None  # label index -> name
    names: tuple[str, ...] | None = None  # an image folder's files, relative to it, in the order of `x`
    audio: dict[str, int] | None = None  # the clips' rate, length and STFT (vaekit.data.spectrogram.AudioFormat)
    lengths: np.ndarray | None = None  # (N,) samples of each clip before it was padded

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


@dataclass
class Split:
    x: np.ndarray  # stored form (uint8 pixels or float32)
    y: np.ndarray | None
    # (N,) each example's row in the source, so outputs can be traced back to their inputs; a source's own
    # test rows are numbered after its training rows (the order of `--split all`)
    rows: np.ndarray | None = None
    names: tuple[str, ...] | None = None  # the source's names of those rows (an image folder's files)
    lengths: np.ndarray | None = None  # (N,) of recordings: samples of each clip before padding

    def __len__(self) -> int:
        return len(self.x)

    def spread(self, count: int, seed: int) -> Split:
        """`count` examples spread evenly over the classes, chosen by `seed` and grouped by class (the first
        `count` without labels; all when there are no more): a sorted folder's first N are one class."""
        if count >= len(self):
            return self
        if self.y is None:
            return self.take(np.arange(count))
        order = np.random.default_rng(seed).permutation(len(self))
        labels = np.asarray(self.y)[order]
        rank = np.empty(len(order), dtype=np.int64)  # each example's place among its class in `order`
        for label in np.unique(labels):
            members = labels == label
            rank[members] = np.arange(members.sum())
        first = np.lexsort((np.arange(len(order)), rank))[:count]  # rank 0 of every class, then rank 1, ...
        return self.take(order[first[np.lexsort((rank[first], labels[first]))]])

    def take(self, index: np.ndarray) -> Split:
        """The examples at `index`, with their labels, rows and names."""
        return Split(
            self.x[index], None if self.y is None else self.y[index],
            rows=None if self.rows is None else self.rows[index],
            names=None if self.names is None else tuple(self.names[i] for i in index),
            lengths=None if self.lengths is None else self.lengths[index],
        )


@dataclass
class Splits:
    train: Split
    validation: Split
    test: Split
    codec: Codec
    raw: RawData  # metadata of the source (kind, columns, class names)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.raw.event_shape


def _take(raw: RawData, index: np.ndarray) -> Split:
    names = None if raw.names is None else tuple(raw.names[i] for i in index)
    lengths = None if raw.lengths is None else raw.lengths[index]
    return Split(raw.x[index], None if raw.y is None else raw.y[index], rows=index, names=names, lengths=lengths)


def whole_source(raw: RawData) -> Split:
    """Every example of the source in its own order, a source's own test examples after the others."""
    if raw.test_x is None:
        return Split(np.asarray(raw.x), raw.y, rows=np.arange(len(raw.x)), names=raw.names,  # decodes a stream
                     lengths=raw.lengths)
    y = None if raw.y is None or raw.test_y is None else np.concatenate([raw.y, raw.test_y])
    return Split(np.concatenate([raw.x, raw.test_x]), y, rows=np.arange(len(raw.x) + len(raw.test_x)))


def split_source(raw: RawData, config: DataConfig, codec: Codec | None = None) -> Splits:
    """Carve validation (and, for sources without one, test) examples out of the data by `split_seed`.
    Text is tokenized, by the given `codec` (a trained run's) or by one fitted on the training lines."""
    count = len(raw.x)
    if count == 0:
        raise UserError(f"{raw.description}: holds no examples; point --data at a non-empty source")
    order = np.random.default_rng(config.split_seed).permutation(count)
    if raw.test_x is not None:
        test = Split(raw.test_x, raw.test_y, rows=np.arange(count, count + len(raw.test_x)))
        n_test = 0
    else:
        n_test = int(round(count * config.test_fraction))
        test = _take(raw, order[:n_test])
    n_val = int(round(count * config.validation_fraction))
    if config.validation_fraction > 0 and n_val == 0:
        raise UserError(
            f"{raw.description}: {count} examples are too few for a validation split of "
            f"{config.validation_fraction:.3g}; add data or pass --validation-fraction 0"
        )
    validation = _take(raw, order[n_test : n_test + n_val])
    train = _take(raw, order[n_test + n_val :])
    if len(train) == 0:
        raise UserError(f"{raw.description}: no examples are left for training after the validation and test splits")
    if len(test) == 0:
        test = validation  # tiny sources: report on validation rather than on nothing
    if raw.kind == TEXT:
        from vaekit.data.text import text_splits  # which imports this module

        return text_splits(raw, config, (train, validation, test), codec)
    codec = fit_codec(raw, train.x)
    splits = Splits(train, validation, test, codec, _without_examples(raw))
    if config.binarize == "static":
        splits = _binarize(splits, config, ("train", "validation", "test"))
    elif config.binarize == "dynamic":
        # Training batches are drawn afresh; evaluation splits are binarized once, fixed by split_seed.
        splits = _binarize(splits, config, ("validation", "test"))
    return splits


def _without_examples(raw: RawData) -> RawData:
    """The source's metadata, with an empty `x` of its shape and dtype: the splits hold shuffled copies
    of the examples, and keeping the originals too would double the data's memory (Fashion-MNIST: 47 MB)."""
    if not isinstance(raw.x, np.ndarray):
        return replace(raw, names=None)  # a streamed folder: file names, no pixels
    return replace(raw, x=np.empty((0, *raw.x.shape[1:]), dtype=raw.x.dtype), names=None)


def fit_codec(raw: RawData, train_x: np.ndarray) -> Codec:
    if raw.x.dtype == np.uint8:
        return PixelCodec()
    if raw.kind != TABLE and train_x.size and train_x.min() >= 0 and train_x.max() <= 1:
        return IdentityCodec()
    return StandardizeCodec.fit(train_x)


def _binarize(splits: Splits, config: DataConfig, names: tuple[str, ...]) -> Splits:
    """Draw each pixel's 0 or 1 from its grey level, once, for the named splits (fixed by split_seed)."""
    if not isinstance(splits.codec, (PixelCodec, IdentityCodec)) or not in_unit_interval(splits.train.x):
        raise UserError(
            f"{splits.raw.description}: binarize = {config.binarize!r} needs pixels or values in [0, 1]; "
            "set binarize = 'none' for real-valued data"
        )
    streamed = not isinstance(splits.train.x, np.ndarray)  # a folder on disk (vaekit.data.streaming.ImageFiles)
    if streamed and "train" in names:
        raise UserError(
            f"{config.source}: binarize = 'static' draws every image once, in memory, and cannot stream; "
            "use --binarize dynamic, or --no-stream if the decoded images fit in memory"
        )
    rng = np.random.default_rng(config.split_seed + 1)
    for name in names:
        split = getattr(splits, name)
        if streamed:  # each image by a draw of its own, seeded by split_seed and its place in the folder
            setattr(splits, name, replace(split, x=split.x.binarized(config.split_seed + 1)))
            continue
        probability = split.x.astype(np.float32) / (255.0 if split.x.dtype == np.uint8 else 1.0)
        drawn = rng.random(probability.shape, dtype=np.float32) < probability
        stored = (drawn * 255).astype(np.uint8) if split.x.dtype == np.uint8 else drawn.astype(np.float32)
        setattr(splits, name, replace(split, x=stored))
    return splits


def in_unit_interval(x: np.ndarray) -> bool:
    return x.dtype == np.uint8 or (x.size > 0 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0)


def resolve_likelihood(requested: str, splits: Splits) -> str:
    """auto: Bernoulli for pixels or values in [0, 1], Gaussian for anything else (and for tables); text's is the
    categorical over its tokens."""
    if splits.raw.kind == TEXT:
        if requested != "auto":
            raise UserError(f"--likelihood {requested}: is for images, sounds and tables; a text model's p(x|z) is "
                            "a categorical over its tokens: drop --likelihood")
        return "categorical"
    unit = in_unit_interval(splits.train.x) and splits.raw.kind != TABLE
    if requested == "auto":
        return "bernoulli" if unit else "gaussian"
    every_split = [splits.train.x, splits.validation.x, splits.test.x]
    if requested == "bernoulli" and not all(in_unit_interval(x) for x in every_split if len(x)):
        low = min(float(x.min()) for x in every_split if len(x))
        high = max(float(x.max()) for x in every_split if len(x))
        raise UserError(
            f"{splits.raw.description}: likelihood = 'bernoulli' needs values in [0, 1], but the data spans "
            f"[{low:.3g}, {high:.3g}]; use --likelihood gaussian"
        )
    if requested == "bernoulli" and isinstance(splits.codec, StandardizeCodec):
        # A table of values in [0, 1] is standardized for a Gaussian; Bernoulli needs it unscaled.
        splits.codec = IdentityCodec()
    return requested
