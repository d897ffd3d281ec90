"""Fuzzing every reader: any bytes vaekit is given load, or end in one `UserError` line naming the file.

The properties live here, once, for two budgets: tests/test_fuzz_readers.py runs each target for a few
hundred inputs in CI, and tools/fuzz.py runs the same targets for as long as asked (`make fuzz`). Each
target is a hypothesis strategy of inputs and a check that reads one input; `property_of` makes the
@given test of a target, which hypothesis feeds new random inputs on every call.

    data         IDX (plain and .gz), .npy, .npz, CSV (.csv, .csv.gz), image and sound (WAV, FLAC, OGG) files:
                 a valid file truncated or with bytes overwritten, or random bytes (vaekit.data.read_source)
    headers      IDX, .npy and .npz headers claiming any shape (up to 2^32 per dimension, 10^12 elements) over
                 a few bytes of data, .npz members with forged sizes (read_idx, read_source)
    toml         --config files: random bytes, TOML-ish text, deep nesting, valid TOML of wrong types and
                 unknown keys (vaekit.config.load_toml)
    config.json  a trained run's config.json damaged, deeply nested, or valid JSON with a value of the wrong
                 type, a key missing or one unknown (read_config, then TrainedVAE and a sample)
    model        its model.safetensors damaged in the header, in the data, truncated, random, with its JSON
                 header edited, or well-formed (a right checksum) with one tensor removed, added, reshaped,
                 of another dtype or full of NaN (TrainedVAE, then a sample)
    checkpoint   its checkpoint.safetensors damaged alike, or well-formed with its training state's JSON
                 edited (a resume through vaekit.api.train, stopped before it trains or writes results)

Bounds, besides "loads or one line": each input within DEADLINE (hypothesis fails a slower one) and
HANG_SECONDS (a watchdog ends a hang, which a deadline alone cannot); the readers of data files (the data
and headers targets) within MEMORY_BOUND of Python and NumPy allocations (tracemalloc sees both, not
Pillow's or torch's; a header claiming 10^12 elements must not allocate them), and without a warning that
Python would print. Pillow bounds its own decoding (Image.MAX_IMAGE_PIXELS: an image of over 179 million
pixels is refused; see IMAGE_PIXELS). The run-file targets use torch, so they are bounded in time only;
TOML in time only, as tracemalloc slows tomllib's recursion 25 times.
"""

from __future__ import annotations

import atexit
import copy
import functools
import gzip
import io
import json
import math
import shutil
import signal
import struct
import tempfile
import threading
import tracemalloc
import warnings
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaekit.errors import UserError

DEADLINE = timedelta(seconds=5)  # per input; the slowest (a resume) takes ~10 ms
HANG_SECONDS = 30  # the watchdog's limit per input, for a hang that would never reach the deadline
MEMORY_BOUND = 64 << 20  # bytes: tracemalloc's peak while one data file (of at most 3 KB) is read
# Pillow's limit on decoded pixels while the data target runs (89 million by default, 2 x that refused): a few
# damaged bytes make a TIFF's size 5.6 million rows or a GIF's canvas 60,000 x 1,000, and Pillow decodes them
# (zeros where the file has no data), so an image's memory is Pillow's to bound; lowered, the refusal of a
# larger image (a "decompression bomb") is tested, and MEMORY_BOUND bounds what vaekit itself allocates.
IMAGE_PIXELS = 1 << 20
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# ----- outcomes --------------------------------------------------------------------------------------

TALLY: dict[str, Counter] = defaultdict(Counter)  # target -> {"loaded": n, "refused": n}


class Hang(BaseException):
    """Raised by the watchdog: a BaseException, so that no reader's `except Exception` takes it for a bad file."""


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise `Hang` in the main thread after `seconds` (elsewhere, no watchdog)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hang(signum, frame):
        raise Hang(f"an input took over {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def memory_bound(limit: int) -> Iterator[None]:
    """Fail if Python and NumPy allocate more than `limit` bytes at the peak inside the block."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"allocated {peak / 2**20:.1f} MiB at the peak, over the bound of {limit / 2**20:.0f} MiB"


@contextmanager
def no_warnings() -> Iterator[None]:
    """Fail if the block issues a warning that Python would print (a UserWarning or RuntimeWarning, as Pillow
    and NumPy issue): the user would see lines of it besides vaekit's one. (vaekit's own warnings are logged.)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    shown = [w for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))]
    assert not shown, f"warned: {shown[0].category.__name__}: {shown[0].message} ({shown[0].filename})"


def loads_or_refuses(target: str, read: Callable[[], object], names: str, reader: bool = False) -> str:
    """Run `read`: it may return, or raise a UserError of one line that names `names` (the input's folder);
    anything else propagates and fails the property. A `reader` of data or settings is held to
    MEMORY_BOUND and may not issue warnings. Returns and tallies "loaded" or "refused"."""
    bounds = (memory_bound(MEMORY_BOUND), no_warnings()) if reader else (nullcontext(), nullcontext())
    with watchdog(HANG_SECONDS), bounds[0], bounds[1]:
        try:
            read()
        except UserError as error:
            message = str(error)
            assert message.strip() and "\n" not in message, f"not one line: {message!r}"
            assert names in message, f"does not name the file ({names}): {message}"
            outcome = "refused"
        else:
            outcome = "loaded"
    TALLY[target][outcome] += 1
    return outcome


# ----- damage ----------------------------------------------------------------------------------------


@st.composite
def damaged_blob(draw, valid: bytes, header_end: int | None = None, random_size: int = 300) -> bytes:
    """`valid` truncated, or with 1-8 bytes overwritten in its header (before `header_end`), in its data
    (after it) or anywhere; or random bytes."""
    regions = ["anywhere"] + (["header", "data"] if header_end else [])
    how = draw(st.sampled_from(["random", "truncate", *regions]))
    if how == "random" or not valid:
        return draw(st.binary(max_size=random_size))
    if how == "truncate":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    low, high = {"anywhere": (0, len(valid)), "header": (0, header_end), "data": (header_end, len(valid))}[how]
    if high <= low:
        low, high = 0, len(valid)
    blob = bytearray(valid)
    for _ in range(draw(st.integers(1, 8))):
        blob[draw(st.integers(low, high - 1))] = draw(st.integers(0, 255))
    return bytes(blob)


DIGITS = "@@digits@@"  # a placeholder that `dump_json` writes as a number of 5,000 digits, more than Python parses
huge_numbers = st.sampled_from([2**31, 2**32, 2**63, 2**64, -(2**63) - 1, 10**30, 10**309, -(10**309)])
json_leaves = (st.none() | st.booleans() | st.integers() | huge_numbers | st.floats() | st.just(DIGITS)
               | st.text(max_size=12))


def containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)


json_values = st.recursive(json_leaves, containers, max_leaves=8)


def dump_json(document: Any) -> str:
    return json.dumps(document).replace(f'"{DIGITS}"', "9" * 5000)


@st.composite
def edited_json(draw, document: Any) -> Any:
    """`document` with one value replaced by one of another type, removed, or beside an unknown key: the
    place is found by walking down from the top, going deeper four times in five."""
    document = copy.deepcopy(document)
    parent, key, node = None, None, document
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 4)) > 0:
        parent, key = node, draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        node = node[key]
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    if action == "add" and isinstance(node, dict):
        node[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    elif action == "remove" and parent is not None:
        del parent[key]
    elif parent is None:
        document = draw(json_values)
    else:
        parent[key] = draw(json_values)
    return document


def deeply_nested(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


# ----- data files (and the strategy tests/data/test_properties.py shares) ----------------------------


def _saved(save: Callable[[io.BytesIO], object]) -> bytes:
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def idx_bytes(shape: tuple[int, ...], data: bytes) -> bytes:
    return struct.pack(">HBB", 0, 8, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + data


def valid_files() -> dict[str, bytes]:
    """One small valid file per reader, for the fuzzer to damage."""
    import soundfile

    picture = np.random.default_rng(0).integers(0, 256, (6, 6), dtype=np.uint8)
    tone = (0.5 * np.sin(np.arange(400) * 0.3)).astype(np.float32)  # 50 ms at 8 kHz
    idx = idx_bytes((2, 3, 3), bytes(range(18)))
    return {
        **{f"a.{suffix}": _saved(lambda b, form=form: Image.fromarray(picture).save(b, form))
           for suffix, form in (("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("gif", "GIF"), ("tif", "TIFF"))},
        "x.npy": _saved(lambda b: np.save(b, np.arange(12.0).reshape(3, 4))),
        "p.npy": _saved(lambda b: np.save(b, np.arange(36, dtype=np.uint8).reshape(4, 3, 3))),
        "x.npz": _saved(lambda b: np.savez(b, x=np.arange(12.0).reshape(3, 4), y=np.arange(3))),
        "z.npz": _saved(lambda b: np.savez_compressed(b, x=np.arange(12.0).reshape(3, 4))),
        "t.csv": b"a,b,c\n1,2,3\n4,5,6\n",
        "t.csv.gz": gzip.compress(b"a,b\n1,2\n"),
        "c.txt": b"The cat sat.\nA dog ran!\n",
        "c.txt.gz": gzip.compress("Café au lait.\nÜber alles\n".encode()),
        "train-images-idx3-ubyte.gz": gzip.compress(idx),
        "train-images-idx3-ubyte": idx,
        **{f"s.{suffix}": _saved(lambda b, form=form, kind=kind: soundfile.write(b, tone, 8000, kind, format=form))
           for suffix, form, kind in (("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"))},
    }


VALID = valid_files()


@st.composite
def damaged(draw) -> tuple[str, bytes]:
    """A file name and bytes: random, or a valid file truncated and with some bytes overwritten."""
    name = draw(st.sampled_from(sorted(VALID)))
    return name, draw(damaged_blob(VALID[name]))


def place(folder: Path, name: str, blob: bytes) -> Path:
    """Write the file where its reader looks: images in a folder, IDX beside valid label/test files."""
    if name.startswith("a."):
        (folder / "pictures").mkdir()
        (folder / "pictures" / name).write_bytes(blob)
        return folder / "pictures"
    if name.startswith("train-images"):
        for stem, content in (("train-labels-idx1-ubyte", idx_bytes((2,), bytes(2))),
                              ("t10k-images-idx3-ubyte", idx_bytes((1, 3, 3), bytes(9))),
                              ("t10k-labels-idx1-ubyte", idx_bytes((1,), bytes(1)))):
            (folder / f"{stem}.gz").write_bytes(gzip.compress(content))
    (folder / name).write_bytes(blob)
    return folder if name.startswith("train-images") else folder / name


@contextmanager
def pillow_limit(pixels: int) -> Iterator[None]:
    """Pillow's limit on an image's pixels (Image.MAX_IMAGE_PIXELS) lowered for the block: see IMAGE_PIXELS."""
    default, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = default


def read_data_file(file: tuple[str, bytes]) -> str:
    from vaekit.config import DataConfig
    from vaekit.data import read_source

    name, blob = file
    with tempfile.TemporaryDirectory() as folder, pillow_limit(IMAGE_PIXELS):
        source = place(Path(folder), name, blob)
        return loads_or_refuses("data", lambda: read_source(DataConfig(source=str(source))), folder, reader=True)


# ----- headers claiming more than the file holds -----------------------------------------------------

claimed_sizes = st.one_of(st.integers(0, 8), st.integers(0, 2**32 - 1), st.sampled_from([10**6, 10**12]))


def npy_header(shape: tuple[int, ...], descr: str = "<f8", version: tuple[int, int] = (1, 0)) -> bytes:
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    write = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
    return _saved(lambda b: write(b, header))


def zip_of(name: str, payload: bytes, method: int, file_size: int, compress_size: int, crc: int) -> bytes:
    """A one-member zip archive whose headers state `file_size` and `compress_size` (zip64 beyond 32 bits),
    whatever `payload` is."""
    file_size, compress_size = min(file_size, 2**64 - 1), min(compress_size, 2**64 - 1)  # zip64 sizes are 64-bit
    zip64 = file_size >= 0xFFFFFFFF or compress_size >= 0xFFFFFFFF
    extra = struct.pack("<HHQQ", 1, 16, file_size, compress_size) if zip64 else b""
    sizes = (0xFFFFFFFF, 0xFFFFFFFF) if zip64 else (compress_size, file_size)
    encoded = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0, crc, *sizes, len(encoded), len(extra))
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0, crc, *sizes, len(encoded),
                          len(extra), 0, 0, 0, 0, 0)
    body = local + encoded + extra + payload
    directory = central + encoded + extra
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), len(body), 0)
    return body + directory + end


@st.composite
def claiming_headers(draw) -> tuple[str, bytes]:
    """An IDX, .npy or .npz file whose header claims a drawn shape (up to 2^32 - 1 per dimension) over a few
    bytes of data; an .npz member's zip headers may claim sizes of their own."""
    shape = tuple(draw(st.lists(claimed_sizes, min_size=1, max_size=4)))
    data = draw(st.binary(max_size=64))
    kind = draw(st.sampled_from(["idx", "idx.gz", "npy", "npz"]))
    if kind.startswith("idx"):
        blob = idx_bytes(tuple(min(size, 2**32 - 1) for size in shape), data)  # IDX sizes are 32-bit
        return ("x-idx3-ubyte.gz", gzip.compress(blob)) if kind == "idx.gz" else ("x-idx3-ubyte", blob)
    descr = draw(st.sampled_from(["|u1", "<f4", "<f8"]))
    header = npy_header(shape, descr, draw(st.sampled_from([(1, 0), (2, 0)])))
    member = header + data
    if kind == "npy":
        return "x.npy", member
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    payload = member if method == zipfile.ZIP_STORED else zlib.compress(member)[2:-4]  # raw deflate
    claimed = len(header) + math.prod(shape) * np.dtype(descr).itemsize  # what the .npy header promises
    sizes = st.one_of(st.just(len(member)), st.just(len(payload)), st.just(claimed), claimed_sizes)
    return "x.npz", zip_of("x.npy", payload, method, draw(sizes), draw(sizes), zlib.crc32(member))


def read_claiming_header(file: tuple[str, bytes]) -> str:
    from vaekit.config import DataConfig
    from vaekit.data import read_source
    from vaekit.data.idx import read_idx

    name, blob = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(blob)
        read = (lambda: read_idx(path)) if "idx" in name else (lambda: read_source(DataConfig(source=str(path))))
        return loads_or_refuses("headers", read, folder, reader=True)


# ----- TOML ------------------------------------------------------------------------------------------


def _section_fields() -> dict[str, list[str]]:
    from dataclasses import fields

    from vaekit.config import DataConfig, ModelConfig, TrainConfig

    return {name: [f.name for f in fields(cls)] for name, cls in
            (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))}


SECTIONS = _section_fields()
TOML_TOKENS = [
    "[data]", "[model]", "[train]", "[[train]]", "\n", " ", " = ", "=", ".", ",", "[", "]", "{", "}", '"', "'",
    '"""', "'''", "#", "\\", "true", "false", "inf", "-inf", "nan", "1", "-1", "0.5", "1e999", "1_000", "0x1f",
    "0o7", "0b1", "1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", '"x"', "'x'", "\t", "\r\n", "\x00", "é",
    *{name for names in SECTIONS.values() for name in names},
]
toml_leaves = (st.booleans() | st.integers() | huge_numbers | st.floats() | st.just(DIGITS)
               | st.text(st.characters(exclude_categories=("Cs",)), max_size=12))
toml_values = st.recursive(toml_leaves, containers, max_leaves=6)


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _toml_string(key)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    """A value in TOML's words (inline tables and arrays for containers)."""
    if value == DIGITS:
        return "9" * 5000
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else {float("inf"): "inf", float("-inf"): "-inf"}.get(value, repr(value))
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def _choices() -> list[str]:
    import vaekit.config as config

    return sorted({choice for value in vars(config).values() if isinstance(value, tuple)
                   for choice in value if isinstance(choice, str)})


# Values of the right kind for most settings, in and out of their ranges, so that many documents load.
plausible_values = (st.integers(-2, 600) | st.floats(-1, 2) | st.booleans() | st.sampled_from(_choices())
                    | st.lists(st.integers(-1, 40), max_size=3))


@st.composite
def toml_documents(draw) -> str:
    """Valid TOML: the three tables (or others, or a value where a table belongs) holding real setting
    names and unknown ones, each with a plausible value or one of any type."""
    lines = []
    names = draw(st.lists(st.sampled_from([*SECTIONS, "Data", "extra"]), max_size=4, unique=True))
    if draw(st.integers(0, 5)) == 0:
        lines.append(f"{_toml_key(draw(st.sampled_from([*SECTIONS, 'x'])))} = {toml_value(draw(toml_values))}")
    for name in names:
        lines.append(f"[{name}]")
        known = SECTIONS.get(name, ["x"])
        keys = draw(st.lists(st.sampled_from(known) | st.text(min_size=1, max_size=10), max_size=4, unique=True))
        lines += [f"{_toml_key(key)} = {toml_value(draw(plausible_values | toml_values))}" for key in keys]
    return "\n".join(lines) + "\n"


toml_inputs = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(TOML_TOKENS), max_size=40).map("".join),
    toml_documents(),
    st.integers(100, 5_000).map(lambda depth: "[train]\nepochs = " + deeply_nested(depth)),
    st.integers(100, 5_000).map(lambda depth: "[model]\nx = " + deeply_nested(depth, "{a=", "}")),
)


def read_toml(text: str | bytes) -> str:
    from vaekit.config import load_toml

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        return loads_or_refuses("toml", lambda: load_toml(path), folder)  # not traced: see the module's doc


# ----- the files of a trained run --------------------------------------------------------------------

RUN_EXAMPLES = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)  # also given to the resume
RUN_FILES = ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "results.json")


@functools.cache
def trained_run() -> dict[str, bytes]:
    """The files of a tiny run (a 3-8-2 network, one epoch on 64 examples: about 2 s), trained once per process."""
    import vaekit.api
    from vaekit.config import RunConfig

    folder = Path(tempfile.mkdtemp(prefix="vaekit-fuzz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config = RunConfig().with_overrides({"model": {"hidden_sizes": (8,), "latent_dim": 2},
                                         "train": {"epochs": 1, "batch_size": 16, "seed": 0}})
    vaekit.api.train(config, folder / "run", data=RUN_EXAMPLES)
    return {name: (folder / "run" / name).read_bytes() for name in RUN_FILES}


def _header_end(blob: bytes) -> int:
    return 8 + int.from_bytes(blob[:8], "little")


@st.composite
def edited_safetensors(draw, valid: bytes) -> bytes:
    """`valid` with its JSON header edited (a tensor's dtype, shape or offsets, the metadata); the length
    prefix is kept right."""
    end = _header_end(valid)
    text = dump_json(draw(edited_json(json.loads(valid[8:end])))).encode()
    return len(text).to_bytes(8, "little") + text + valid[end:]


def _contents(blob: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors.torch import load

    return load(blob), json.loads(blob[8 : _header_end(blob)]).get("__metadata__") or {}


def _written(tensors: dict[str, Any], metadata: dict[str, str]) -> bytes:
    """A safetensors file as vaekit writes one (with the checksum it writes, if it writes one)."""
    from vaekit.runs.weights import safetensors_bytes

    return safetensors_bytes(tensors, metadata)


@st.composite
def edited_tensors(draw, valid: bytes) -> bytes:
    """`valid` with one tensor removed, added, reshaped, of another dtype, or filled with NaN, infinity or
    a huge value, written well-formed: what a file of another model or a NaN-poisoned run would hold."""
    import torch

    tensors, metadata = _contents(valid)
    name = draw(st.sampled_from(sorted(tensors)))
    how = draw(st.sampled_from(["remove", "add", "reshape", "retype", "fill"]))
    if how == "remove":
        del tensors[name]
    elif how == "add":
        tensors[draw(st.sampled_from(["model.extra", "optimizer.99.exp_avg", "generator.extra", "x"]))] = torch.zeros(2)
    elif how == "reshape":
        shape = draw(st.lists(st.integers(0, 6), max_size=3))
        tensors[name] = torch.zeros(shape, dtype=tensors[name].dtype)
    elif how == "retype":
        dtype = draw(st.sampled_from([torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8,
                                      torch.bool]))
        tensors[name] = tensors[name].to(dtype)
    elif tensors[name].is_floating_point():
        value = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 3e38, 0.0]))
        tensors[name] = tensors[name].clone().fill_(value)
    else:  # a generator's state
        tensors[name] = torch.full_like(tensors[name], draw(st.integers(0, 255)))
    return _written(tensors, metadata)


@st.composite
def edited_state(draw, valid: bytes, state_key: str) -> bytes:
    """A checkpoint whose training state (JSON in its metadata) has one value of another type, removed or
    beside an unknown key, written well-formed with a right checksum: only its parser can refuse it."""
    tensors, metadata = _contents(valid)
    metadata[state_key] = dump_json(draw(edited_json(json.loads(metadata[state_key]))))
    return _written(tensors, metadata)


@st.composite
def damaged_weights(draw, name: str) -> bytes:
    valid = trained_run()[name]
    state = ["state"] if name == "checkpoint.safetensors" else []
    how = draw(st.sampled_from(["bytes", "header", "tensors", *state]))
    if how == "header":
        return draw(edited_safetensors(valid))
    if how == "tensors":
        return draw(edited_tensors(valid))
    if how == "state":
        return draw(edited_state(valid, "vaekit_state"))
    return draw(damaged_blob(valid, _header_end(valid), random_size=600))


@st.composite
def damaged_configs(draw) -> bytes:
    valid = trained_run()["config.json"]
    how = draw(st.integers(0, 5))
    if how == 0:
        return draw(damaged_blob(valid))
    if how == 1:
        return deeply_nested(draw(st.integers(100, 5_000))).encode()
    return dump_json(draw(edited_json(json.loads(valid)))).encode()


@contextmanager
def run_with(name: str, blob: bytes) -> Iterator[Path]:
    """A copy of the trained run in a temporary folder, with the file `name` replaced by `blob`."""
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        run.mkdir()
        for file, content in trained_run().items():
            (run / file).write_bytes(blob if file == name else content)
        yield run


def load_and_sample(run: Path) -> None:
    from vaekit.runs.directory import read_config
    from vaekit.runs.trained import TrainedVAE

    read_config(run)
    TrainedVAE(run).sample(2)


def read_config_file(blob: bytes) -> str:
    with run_with("config.json", blob) as run:
        return loads_or_refuses("config.json", lambda: load_and_sample(run), str(run))


def read_model_file(blob: bytes) -> str:
    with run_with("model.safetensors", blob) as run:
        return loads_or_refuses("model", lambda: load_and_sample(run), str(run))


class Resumed(BaseException):
    """Raised where a resume would train or write its results: the checkpoint was restored."""


def _stop_before_training(name: str, progress: object) -> None:
    if name in ("metrics.jsonl", "results.json"):
        raise Resumed(name)


def resume(run: Path) -> None:
    """`vaekit train --resume RUN`'s path, through vaekit.api.train, stopped once the checkpoint is restored."""
    import vaekit.api
    from vaekit.training.loop import Hooks

    with suppress(Resumed):
        vaekit.api.train(None, run, data=RUN_EXAMPLES, resume=True, hooks=Hooks(before_write=_stop_before_training))


def read_checkpoint_file(blob: bytes) -> str:
    with run_with("checkpoint.safetensors", blob) as run:
        return loads_or_refuses("checkpoint", lambda: resume(run), str(run))


# ----- inputs the fuzzer found, replayed before it draws new ones ------------------------------------


def _config_edited(*path_and_value: Any) -> bytes:
    """The trained run's config.json with the value at `path` (keys) replaced."""
    *path, value = path_and_value
    document = json.loads(trained_run()["config.json"])
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return dump_json(document).encode()


def _state_edited(edit: Callable[[dict], None]) -> bytes:
    tensors, metadata = _contents(trained_run()["checkpoint.safetensors"])
    state = json.loads(metadata["vaekit_state"])
    edit(state)
    metadata["vaekit_state"] = dump_json(state)
    return _written(tensors, metadata)


def _header_edited(name: str) -> bytes:
    """The run's `name` with its first tensor's dtype "\n" in the JSON header."""
    valid = trained_run()[name]
    header = json.loads(valid[8 : _header_end(valid)])
    header[min(key for key in header if key != "__metadata__")]["dtype"] = "\n"
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + valid[_header_end(valid):]


def _deflated_npz_claiming(count: int) -> bytes:
    member = npy_header((count,), "|u1") + bytes(64)
    return zip_of("x.npy", zlib.compress(member)[2:-4], zipfile.ZIP_DEFLATED,
                  len(npy_header((count,), "|u1")) + count, len(member), zlib.crc32(member))


FOUND: dict[str, Callable[[], list[Any]]] = {  # each input here once escaped as something other than a UserError
    "data": lambda: [
        ("a.tif", VALID["a.tif"][:121]),  # Pillow's "Corrupt EXIF data" warning, from the streaming size check
        ("p.npy", VALID["p.npy"][:6] + b"\x02" + VALID["p.npy"][7:]),  # version 2: a 632 MiB header length read
        ("a.png", VALID["a.png"][:33] + b"\x05" + VALID["a.png"][34:]),  # an IDAT claiming 80 MiB, read at once
        ("s.flac", VALID["s.flac"][:22] + b"\x01" + VALID["s.flac"][23:]),  # 16.8 M frames claimed, allocated
        ("a.tif", VALID["a.tif"][:32] + b"U" + VALID["a.tif"][33:]),  # 6 x 5.6 M pixels, decoded: see IMAGE_PIXELS
        ("c.txt.gz", b""),  # gzip's read(2 GiB) allocated the 2 GiB at once, for an empty file
    ],
    "headers": lambda: [("x.npz", _deflated_npz_claiming(10**9))],  # allocated the 954 MiB the zip headers claimed
    "toml": lambda: [
        "[train]\nepochs = " + deeply_nested(2000),  # RecursionError
        "[model]\nx = " + deeply_nested(2000, "{a=", "}"),  # RecursionError
        "[train]\nepochs = " + "9" * 5000,  # ValueError: more digits than Python converts
        "[train]\nlearning_rate = " + "9" * 400,  # OverflowError in math.isfinite
        '[train]\ndevice = "gpu"',  # a UserError that did not name the file
    ],
    "config.json": lambda: [
        b"\x80{}",  # UnicodeDecodeError
        deeply_nested(5000).encode(),  # RecursionError
        _config_edited("config", "train", "epochs", DIGITS),  # ValueError: too many digits
        _config_edited("config", "train", "device", "gpu"),  # a UserError that did not name the file
        _config_edited("data", "codec", {"type": "standardize"}),  # KeyError 'mean'
        _config_edited("data", "codec", None),  # TypeError
        _config_edited("data", "event_shape", [None]),  # TypeError in the network's sizes
        _config_edited("data", "likelihood", None),  # ValueError from the VAE
        _config_edited("config", "model", "latent_dim", 10**9),  # RuntimeError: 32 GB requested of the allocator
        _config_edited("config", "model", "latent_dim", 2**63),  # TypeError: overflow in torch.empty
        _config_edited("config", "model", "architecture", "conv"),  # a UserError that did not name the file
        _config_edited("data", "\n", None),  # a message of two lines: TypeError's, naming the unknown key
    ],
    "model": lambda: [_header_edited("model.safetensors")],  # a message of two lines: safetensors', naming "\n"
    "checkpoint": lambda: [
        _state_edited(lambda state: state.__setitem__("optimizer_scalars", None)),  # AttributeError
        _state_edited(lambda state: state["state"]["progress"].__setitem__("epoch", DIGITS)),  # ValueError
        _state_edited(lambda state: state["state"]["progress"].__setitem__("epoch", None)),  # TypeError
        _state_edited(lambda state: state["state"]["global_random"]["numpy"][1].pop()),  # IndexError in NumPy
        _header_edited("checkpoint.safetensors"),  # a message of two lines, as for the model
    ],
}


# ----- the targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    inputs: Callable[[], st.SearchStrategy]  # built on first use: the run targets train a run for theirs
    read: Callable[[Any], str]
    ci_examples: int  # inputs per target in tests/test_fuzz_readers.py

    def found(self) -> list[Any]:
        return FOUND[self.name]()


TARGETS = {target.name: target for target in (
    Target("data", damaged, read_data_file, 500),
    Target("headers", claiming_headers, read_claiming_header, 500),
    Target("toml", lambda: toml_inputs, read_toml, 600),
    Target("config.json", damaged_configs, read_config_file, 400),
    Target("model", lambda: damaged_weights("model.safetensors"), read_model_file, 400),
    Target("checkpoint", lambda: damaged_weights("checkpoint.safetensors"), read_checkpoint_file, 300),
)}


def property_of(target: Target, **overrides: Any) -> Callable[[], None]:
    """The @given test of `target`: each call tries `max_examples` new inputs (hypothesis draws them at
    random) and raises on the first that neither loads nor gives one line, after shrinking it."""
    chosen = {"max_examples": target.ci_examples, "deadline": DEADLINE, "suppress_health_check": SLOW_OK,
              **overrides}

    def fuzz(value: Any) -> None:
        target.read(value)

    # Named before hypothesis sees it: its example database tells the targets apart by name.
    fuzz.__name__ = fuzz.__qualname__ = f"fuzz_{target.name.replace('.', '_')}"
    return settings(**chosen)(given(value=st.deferred(target.inputs))(fuzz))
