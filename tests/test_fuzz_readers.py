"""Every reader fuzzed for the CI budget: data files, hostile headers, TOML, and a trained run's config.json,
model.safetensors and checkpoint.safetensors. Each input loads, or ends in one UserError line naming its
file; never another exception, a warning, a hang or (for data and TOML) memory beyond tests/fuzzing.py's
MEMORY_BOUND. The targets live in tests/fuzzing.py; tools/fuzz.py (`make fuzz`) runs them for longer.

Also by hand: IDX, .npy and .npz headers claiming 10^12 elements over a few bytes are refused without
allocating them, and an .npz member of a compression without a size bound is read without trusting its size.
"""

from __future__ import annotations

import gzip
import io
import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import fuzzing
from vaekit.config import DataConfig
from vaekit.data import read_source
from vaekit.data.idx import read_idx
from vaekit.errors import UserError

TRILLION = 10**12


@pytest.mark.parametrize("name", list(fuzzing.TARGETS))
def test_inputs_the_fuzzer_once_found_load_or_are_refused(name):
    target = fuzzing.TARGETS[name]
    for value in target.found():
        target.read(value)


@pytest.mark.parametrize("name", list(fuzzing.TARGETS))
def test_any_input_loads_or_is_refused_in_one_line(name):
    target = fuzzing.TARGETS[name]
    before = sum(fuzzing.TALLY[name].values())
    fuzzing.property_of(target)()
    assert sum(fuzzing.TALLY[name].values()) - before >= target.ci_examples
    assert fuzzing.TALLY[name]["refused"] > 0


# ----- headers that claim 10^12 elements --------------------------------------------------------------


def refused_within_bound(path: Path, read) -> str:
    with fuzzing.memory_bound(fuzzing.MEMORY_BOUND), pytest.raises(UserError) as refused:
        read(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    return str(refused.value)


def read_file(path: Path):
    return read_source(DataConfig(source=str(path)))


@pytest.mark.parametrize("compressed", [False, True])
def test_an_idx_header_claiming_a_trillion_pixels_is_refused_without_allocating_them(tmp_path, compressed):
    blob = fuzzing.idx_bytes((TRILLION // 10**6, 1000, 1000), bytes(100))
    path = tmp_path / ("x-idx3-ubyte.gz" if compressed else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(blob) if compressed else blob)
    assert "1000000000000" in refused_within_bound(path, read_idx)


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_a_npy_header_claiming_a_trillion_values_is_refused_without_allocating_them(tmp_path, version):
    path = tmp_path / "x.npy"
    path.write_bytes(fuzzing.npy_header((TRILLION,), "<f8", version) + bytes(100))
    assert "8000000000000 bytes" in refused_within_bound(path, read_file)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("count", [10**8, TRILLION])  # 10^12 takes zip64's sizes
def test_a_npz_member_claiming_more_than_its_bytes_hold_is_refused_without_allocating_it(tmp_path, method, count):
    """The zip headers agree with the .npy header inside, so only the compressed size gives the lie away."""
    header = fuzzing.npy_header((count,), "|u1")
    member = header + bytes(64)
    payload = member if method == zipfile.ZIP_STORED else zlib.compress(member)[2:-4]
    path = tmp_path / "x.npz"
    path.write_bytes(fuzzing.zip_of("x.npy", payload, method, len(header) + count, len(payload), zlib.crc32(member)))
    assert "cannot hold them" in refused_within_bound(path, read_file)


def claiming(blob: bytes, file_size: int) -> bytes:
    """A one-member zip archive of zipfile's with the member's uncompressed size changed in both its headers."""
    patched = bytearray(blob)
    struct.pack_into("<I", patched, 22, file_size)  # the local header
    struct.pack_into("<I", patched, patched.rindex(b"PK\x01\x02") + 24, file_size)  # the central directory
    return bytes(patched)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_a_npz_member_of_a_compression_without_a_bound_is_read_without_trusting_its_size(tmp_path, method):
    """bzip2 and LZMA can expand far more than deflate, so their members' data is read as it arrives."""
    x = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asfortranarray(x))
    with zipfile.ZipFile(tmp_path / "x.npz", "w", method) as archive:
        archive.writestr("x.npy", buffer.getvalue())
    assert np.array_equal(read_file(tmp_path / "x.npz").x, x)

    header = fuzzing.npy_header((10**9,), "|u1")
    with zipfile.ZipFile(tmp_path / "short.npz", "w", method) as archive:
        archive.writestr("x.npy", header + bytes(64))
    (tmp_path / "claimed.npz").write_bytes(claiming((tmp_path / "short.npz").read_bytes(), len(header) + 10**9))
    assert "cannot be read" in refused_within_bound(tmp_path / "claimed.npz", read_file)


def test_the_claiming_headers_are_what_the_readers_see():
    """The hand-made files above are read as their claims: the zip writer's sizes reach zipfile as given."""
    member = fuzzing.npy_header((3,), "|u1") + bytes(3)
    archive = zipfile.ZipFile(io.BytesIO(fuzzing.zip_of("x.npy", member, zipfile.ZIP_STORED, 5 * TRILLION, len(member),
                                                        zlib.crc32(member))))
    info = archive.getinfo("x.npy")
    assert (info.file_size, info.compress_size) == (5 * TRILLION, len(member))
    assert struct.unpack(">HBB", fuzzing.idx_bytes((2, 3), b"")[:4]) == (0, 8, 2)


def test_the_bounds_fail_a_hang_and_an_allocation():
    """The watchdog ends what the deadline alone never would (an input that does not return), and
    tracemalloc sees NumPy's allocations."""
    with pytest.raises(fuzzing.Hang), fuzzing.watchdog(0.1):
        time.sleep(10)
    with pytest.raises(AssertionError, match="over the bound"), fuzzing.memory_bound(1 << 20):
        np.ones(2 << 20, np.uint8)
    assert fuzzing.DEADLINE.total_seconds() == 5


def test_a_recording_that_decodes_to_much_more_than_its_size_is_decoded_only_as_far_as_a_clip_goes(tmp_path):
    """20 minutes of silence at 8 kHz are a FLAC of 30 KB, which decoded whole took 74 MiB (an hour of it, 87 KB,
    took 220 MiB): only what a clip can use, 30 s by default, is decoded now."""
    import soundfile

    soundfile.write(tmp_path / "silence.flac", np.zeros(8000 * 60 * 20, np.float32), 8000, "PCM_16")
    assert (tmp_path / "silence.flac").stat().st_size < 64 << 10
    message = refused_within_bound(tmp_path / "silence.flac", read_file)
    assert "is over 30 s long" in message
    with fuzzing.memory_bound(fuzzing.MEMORY_BOUND):
        clip = read_source(DataConfig(source=str(tmp_path / "silence.flac"), clip_seconds=2.0))
    assert clip.x.shape[0] == 1
