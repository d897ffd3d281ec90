"""A corpus of user mistakes: each ends in one line on stderr naming the problem, exit status 2, no
traceback, and nothing on disk created or changed.

Each case builds its inputs in `tmp_path` and returns the command line; the test snapshots every
file under `tmp_path` (and the shared trained run) before the command and checks them after.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_subprocess
from vaekit.runs.lock import LOCK_FILE

# ----- inputs ----------------------------------------------------------------------------------------


def table(path: Path, rows: int = 60, header: str = "a,b,c", cell: Callable[[int, int], str] | None = None) -> Path:
    """A valid CSV of `rows` rows, unless `cell(row, column)` says otherwise."""
    rng = np.random.default_rng(0)
    names = header.split(",")
    lines = [header]
    for r in range(rows):
        lines.append(",".join(cell(r, c) if cell else f"{rng.normal(10, 3):.3f}" for c in range(len(names))))
    path.write_text("\n".join(lines) + "\n")
    return path


def text_file(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=array.dtype.hasobject)
    return path


def npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def empty_folder(path: Path) -> Path:
    path.mkdir()
    return path


def png(path: Path, size: tuple[int, int] = (8, 8), value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def picture_folder(root: Path, count: int = 30) -> Path:
    for i in range(count):
        png(root / f"{i:02d}.png", value=i * 8)
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def idx_folder(root: Path, train: int = 30, train_labels: int = 30) -> Path:
    """The four gzipped IDX files of MNIST's layout, with tiny 4x4 images."""
    root.mkdir()
    arrays = {
        "train-images-idx3-ubyte": np.zeros((train, 4, 4)), "train-labels-idx1-ubyte": np.zeros(train_labels),
        "t10k-images-idx3-ubyte": np.zeros((10, 4, 4)), "t10k-labels-idx1-ubyte": np.zeros(10),
    }
    for name, array in arrays.items():
        (root / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
    return root


# ----- the corpus ------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    build: Callable[[Path, Path], list]  # (tmp_path, trained run) -> command line
    expected: tuple[str, ...]  # all of these must appear in the one error line


def train_on(source: Path | str, out: Path, *flags: str) -> list:
    return ["train", "--data", source, "--out", out, "--epochs", "1", "--batch-size", "16", "--quiet", *flags]


def with_bad_image(t: Path, name: str, blob: Callable[[bytes], bytes]) -> list:
    folder = picture_folder(t / "pics")
    good = (folder / "00.png").read_bytes()
    (folder / name).write_bytes(blob(good))
    return train_on(folder, t / "out")


def idx_with(t: Path, name: str, blob: Callable[[bytes], bytes]) -> list:
    folder = idx_folder(t / "idx")
    path = folder / name
    path.write_bytes(blob(path.read_bytes()))
    return train_on(folder, t / "out")


def toml(t: Path, text: str) -> Path:
    (t / "run.toml").write_text(text)
    return t / "run.toml"


def copy_run(run: Path, t: Path) -> Path:
    shutil.copytree(run, t / "myrun")
    return t / "myrun"


CASES = [
    # --- where the data is
    Case("missing path", lambda t, r: train_on(t / "nope.csv", t / "out"), ("nope.csv", "no such file or folder")),
    Case("unknown file type", lambda t, r: train_on(text_file(t / "data.xyz", "1"), t / "out"),
         ("data.xyz", "--data-format")),
    # --- text (vaekit.data.text, vaekit.data.tokens)
    Case("empty text file", lambda t, r: train_on(text_file(t / "c.txt", "\n \n"), t / "out"),
         ("c.txt", "no lines of text")),
    Case("binary file named .txt", lambda t, r: train_on(text_file(t / "c.txt", b"the cat\n\x00\x01\x02"), t / "out"),
         ("c.txt", "binary data", "line 2")),
    Case("text not in UTF-8", lambda t, r: train_on(text_file(t / "c.txt", "caf\u00e9 noir\n".encode("latin-1") * 40),
                                                    t / "out"), ("c.txt", "line 1", "--encoding")),
    Case("unknown --encoding", lambda t, r: train_on(text_file(t / "c.txt", "a b\n" * 40), t / "out",
                                                     "--encoding", "klingon"), ("--encoding klingon",)),
    Case("every line longer than --max-length",
         lambda t, r: train_on(text_file(t / "c.txt", "one two three four\n" * 40), t / "out", "--max-length", "3"),
         ("c.txt", "--max-length 3")),
    Case("a vocabulary of one token", lambda t, r: train_on(text_file(t / "c.txt", "yes\n" * 40), t / "out"),
         ("c.txt", "one distinct token", "'yes'")),
    Case("bpe of too little text", lambda t, r: train_on(text_file(t / "c.txt", "".join(f"{chr(0x4e00 + i)}\n"
                                                                                     for i in range(40))), t / "out",
                                                         "--tokens", "bpe"), ("c.txt", "--tokens bpe", "too little")),
    Case("--architecture mlp for text", lambda t, r: train_on(text_file(t / "c.txt", "a b\nc d\n" * 20), t / "out",
                                                              "--architecture", "mlp"), ("--architecture mlp", "rnn")),
    Case("--conditional for text", lambda t, r: train_on(text_file(t / "c.txt", "a b\nc d\n" * 20), t / "out",
                                                         "--conditional"), ("--conditional", "no labels")),
    Case("empty folder", lambda t, r: train_on(empty_folder(t / "empty"), t / "out"),
         ("empty", "holds no images")),
    Case("folder without images",
         lambda t, r: train_on(text_file(t / "docs/notes.md", "x").parent, t / "out"),
         ("docs", "holds no images", "notes.md")),
    Case("--out inside the data folder", lambda t, r: train_on(picture_folder(t / "pics"), t / "pics" / "run"),
         ("pics/run", "lies inside the data folder")),
    # --- images
    Case("zero-byte image", lambda t, r: with_bad_image(t, "empty.png", lambda good: b""),
         ("empty.png", "is empty (0 bytes)")),
    Case("truncated image", lambda t, r: with_bad_image(t, "half.png", lambda good: good[: len(good) // 2]),
         ("half.png", "cannot be decoded", "truncated or corrupt")),
    Case("corrupt image", lambda t, r: with_bad_image(t, "noise.jpg", lambda good: b"\xff\xd8\xff" + bytes(range(200))),
         ("noise.jpg", "cannot be decoded")),
    Case("mixed image sizes",
         lambda t, r: train_on(png(picture_folder(t / "pics") / "big.png", (12, 10)).parent, t / "out"),
         ("pics", "30 are 8x8", "1 are 12x10", "--image-size 8x8")),
    # --- IDX
    Case("truncated IDX .gz", lambda t, r: idx_with(t, "train-images-idx3-ubyte.gz", lambda b: b[: len(b) // 2]),
         ("train-images-idx3-ubyte.gz", "truncated or corrupt")),
    Case("wrong IDX magic",
         lambda t, r: idx_with(
             t, "t10k-images-idx3-ubyte.gz", lambda b: gzip.compress(b"\x00\x00\x0d\x03" + b"\0" * 60)
         ),
         ("t10k-images-idx3-ubyte.gz", "wrong IDX magic number")),
    Case("IDX images and labels of different counts", lambda t, r: train_on(idx_folder(t / "idx", 30, 29), t / "out"),
         ("idx", "30 train images but 29 labels")),
    # --- arrays
    Case("NaN in .npy", lambda t, r: train_on(npy(t / "x.npy", np.r_[np.ones(50), np.nan]), t / "out"),
         ("x.npy", "NaN or infinite", "example 50")),
    Case("Inf in .npz",
         lambda t, r: train_on(npz(t / "x.npz", x=np.full((50, 2), np.inf)), t / "out"),
         ("x.npz['x']", "NaN or infinite")),
    Case("pickled objects in .npy",
         lambda t, r: train_on(npy(t / "x.npy", np.array([None] * 3)), t / "out"),
         ("x.npy", "Python objects")),
    Case("random bytes as .npy",
         lambda t, r: train_on(text_file(t / "x.npy", bytes(range(256))), t / "out"),
         ("x.npy", "not a valid .npy array")),
    Case(".npz without the data key",
         lambda t, r: train_on(npz(t / "x.npz", a=np.ones((9, 2)), b=np.ones(9)), t / "out"),
         ("x.npz", "holds no array 'x'", "--array-key")),
    # --- tables
    Case("NaN in a table",
         lambda t, r: train_on(table(t / "t.csv", cell=lambda i, c: "nan" if i == 7 else "1"), t / "out"),
         ("t.csv", "column 'a'", "NaN or infinite", "line 9")),
    Case("non-numeric cell",
         lambda t, r: train_on(table(t / "t.csv", cell=lambda i, c: "n/a" if (i, c) == (4, 1) else "1"), t / "out"),
         ("t.csv", "line 6, column 'b'", "'n/a', not a number")),
    Case("ragged rows", lambda t, r: train_on(text_file(t / "t.csv", "a,b\n1,2\n3,4,5\n"), t / "out"),
         ("t.csv", "line 3 has 3 cells", "2 columns")),
    Case("no numeric column",
         lambda t, r: train_on(text_file(t / "t.csv", "name,city\nann,rome\nbob,oslo\n"), t / "out"),
         ("t.csv", "no column holds numbers")),
    Case("unknown --label-column",
         lambda t, r: train_on(table(t / "t.csv", header="a,b,label"), t / "out", "--label-column", "lable"),
         ("t.csv", "--label-column 'lable'", "did you mean 'label'")),
    Case("unknown --columns", lambda t, r: train_on(table(t / "t.csv"), t / "out", "--columns", "a,d"),
         ("t.csv", "--columns 'd' is not a column")),
    Case("zero rows", lambda t, r: train_on(text_file(t / "t.csv", "a,b\n"), t / "out"),
         ("t.csv", "no rows")),
    Case("not UTF-8", lambda t, r: train_on(text_file(t / "t.csv", b"a,b\n1,\xe9\n"), t / "out"),
         ("t.csv", "not UTF-8")),
    Case("fewer rows than a batch", lambda t, r: train_on(table(t / "t.csv", rows=40), t / "out", "--batch-size", "64"),
         ("t.csv", "fewer than one batch of 64", "--batch-size")),
    Case("too few rows for the validation split", lambda t, r: train_on(table(t / "t.csv", rows=3), t / "out"),
         ("t.csv", "too few for a validation split")),
    # --- settings
    Case("latent dim 0", lambda t, r: train_on(table(t / "t.csv"), t / "out", "--latent-dim", "0"),
         ("latent_dim = 0",)),
    Case("negative learning rate", lambda t, r: train_on(table(t / "t.csv"), t / "out", "--learning-rate", "-0.1"),
         ("learning_rate = -0.1",)),
    Case("batch size 0", lambda t, r: train_on(table(t / "t.csv"), t / "out", "--batch-size", "0"),
         ("batch_size = 0",)),
    Case("epochs -1", lambda t, r: train_on(table(t / "t.csv"), t / "out", "--epochs", "-1"), ("epochs = -1",)),
    Case("unknown likelihood", lambda t, r: train_on(table(t / "t.csv"), t / "out", "--likelihood", "poisson"),
         ("--likelihood", "'poisson'")),
    Case("bernoulli on data outside [0, 1]",
         lambda t, r: train_on(table(t / "t.csv"), t / "out", "--likelihood", "bernoulli"),
         ("t.csv", "likelihood = 'bernoulli' needs values in [0, 1]", "--likelihood gaussian")),
    Case("conv on a table", lambda t, r: train_on(table(t / "t.csv"), t / "out", "--architecture", "conv"),
         ("architecture = 'conv' needs images",)),
    Case("bad --image-size", lambda t, r: train_on(t, t / "out", "--image-size", "0x5"), ("--image-size", "'0x5'")),
    Case("TOML with a typo'd key",
         lambda t, r: train_on(table(t / "t.csv"), t / "out", "--config", toml(t, "[model]\nlatent_dims = 4\n")),
         ("run.toml", "unknown key 'latent_dims'", "did you mean 'latent_dim'")),
    Case("TOML with a typo'd section",
         lambda t, r: train_on(table(t / "t.csv"), t / "out", "--config", toml(t, "[trian]\nepochs = 4\n")),
         ("run.toml", "unknown key 'trian'", "did you mean 'train'")),
    # --- runs
    Case("--out already holds a run", lambda t, r: train_on(table(t / "t.csv"), copy_run(r, t)),
         ("myrun", "already holds a run", "--overwrite", "--resume")),
    Case("--out under a file", lambda t, r: train_on(table(t / "t.csv"), text_file(t / "afile", "keep me") / "run"),
         ("afile is a file, not a folder", "choose another --out")),
    Case("--resume with other data",
         lambda t, r: ["train", "--resume", copy_run(r, t), "--data", table(t / "t.csv", header="x,y")],
         ("myrun", "--resume keeps the run's data")),
    Case("a path that is not a run", lambda t, r: ["encode", t, "--out", t / "codes.npz"],
         ("not a vaekit run (no config.json)",)),
    Case("a run that does not exist", lambda t, r: ["sample", t / "gone", "--out", t / "s.csv"],
         ("gone", "no such run directory")),
    Case("reconstruct with a table of other columns",
         lambda t, r: ["reconstruct", r, "--data", table(t / "t.csv", header="a,b,x"), "--out", t / "r.csv"],
         ("t.csv", "lacks the column(s) c", "a, b, c")),
    Case("encode with data of another shape",
         lambda t, r: ["encode", r, "--data", npy(t / "x.npy", np.ones((5, 7))), "--out", t / "c.npz"],
         ("x.npy", "shape (7,)", "trained on (3,)")),
    Case("sample into an existing file",
         lambda t, r: ["sample", r, "--out", text_file(t / "s.csv", "keep me")],
         ("s.csv", "already exists", "--overwrite")),
    Case("sample into a path under a file",
         lambda t, r: ["sample", r, "--out", text_file(t / "afile", "keep me") / "s.csv"],
         ("afile/s.csv", "afile is a file, not a folder", "choose another --out")),
    Case("sample a table as PNG", lambda t, r: ["sample", r, "--out", t / "s.png"],
         ("s.png", "cannot be drawn as PNG")),
    Case("sample into a missing folder", lambda t, r: ["sample", r, "--out", t / "no/s.csv"],
         ("s.csv", "does not exist")),
    Case("sample zero examples", lambda t, r: ["sample", r, "--n", "0", "--out", t / "s.csv"], ("--n 0",)),
    Case("--text for a run of a table", lambda t, r: ["reconstruct", r, "--text", "hello", "--out", t / "r.csv"],
         ("--text", "pass --data instead")),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny run on a 3-column table, shared by the cases that need a run."""
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("bad_inputs")
    out = root / "run"
    code = main(
        [str(a) for a in train_on(table(root / "train.csv", rows=80), out, "--hidden-sizes", "8", "--latent-dim", "2")]
    )
    assert code == 0
    return out


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under the folders, by path, with a hash of its bytes; a run's lock file only by name (who
    held the lock last is written into it on every try, and it is not output)."""
    return {
        str(path): "lock" if path.name == LOCK_FILE else hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()
    } | {str(path): "folder" for folder in folders for path in folder.rglob("*") if path.is_dir()}


def check_one_line_refusal(code: int, err: str, expected: tuple[str, ...]) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("vaekit: warning")]
    assert len(lines) == 1, err
    assert "error:" in lines[0]
    for words in expected:
        assert words in lines[0], f"{words!r} not in {lines[0]!r}"
    return lines[0]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_input_is_one_line_exit_2_and_writes_nothing(case: Case, tmp_path: Path, trained_run: Path, cli):
    args = case.build(tmp_path, trained_run)
    before = snapshot(tmp_path, trained_run)
    result = cli(*args)
    check_one_line_refusal(result.code, result.err, case.expected)
    assert snapshot(tmp_path, trained_run) == before
    assert not (tmp_path / "out").exists()


SUBPROCESS_CASES = ["missing path", "truncated image", "TOML with a typo'd key", "--out already holds a run",
                    "--out under a file"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_a_real_process_exits_2_without_a_traceback(name: str, tmp_path: Path, trained_run: Path):
    case = next(case for case in CASES if case.name == name)
    args = case.build(tmp_path, trained_run)
    before = snapshot(tmp_path, trained_run)
    result = run_subprocess(*args, timeout=120)
    check_one_line_refusal(result.code, result.err, case.expected)
    assert result.out == ""
    assert snapshot(tmp_path, trained_run) == before


def test_debug_shows_the_traceback(tmp_path, cli):
    result = cli(*train_on(tmp_path / "nope.csv", tmp_path / "out"), "--debug")
    assert result.code == 2 and "Traceback" in result.err and "nope.csv: no such file" in result.err


def test_a_non_image_file_among_images_is_skipped_with_a_warning(tmp_path, cli, caplog):
    folder = picture_folder(tmp_path / "pics")
    (folder / "labels.csv").write_text("a\n1\n")
    result = cli(*train_on(folder, tmp_path / "out", "--hidden-sizes", "8", "--latent-dim", "2"))
    assert result.code == 0, result.err
    assert "skipped 1 file(s) that are not images (such as labels.csv)" in caplog.text
