"""Pickle-free, proven: no path a user reaches unpickles anything.

Run in-process with pickle's loaders, `torch.load` (unless weights_only=True) and `numpy.load` and
`numpy.lib.format.read_array` (when allow_pickle is truthy) patched to fail, every command trains or reads
what a user gives it — train on a .npy, an .npz, a CSV, an image folder (in memory and streamed) and the
digits, resume, sample, reconstruct, encode, evaluate, info, report, interpolate, traverse, manifold,
latents, gradient-variance, and the explorer's request handlers — and must exit 0 without one unsafe load.
(Streamed folders decode with --workers 0: DataLoader workers pickle batches between vaekit's own
processes, which is no user file.) A static check then finds no `import pickle`, no torch.load without
weights_only=True and no allow_pickle=True anywhere in src/vaekit.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import vaekit
from vaekit.cli import main

SOURCE = Path(vaekit.__file__).parent
TINY = ["--epochs", "1", "--hidden-sizes", "8", "--latent-dim", "2", "--quiet", "--workers", "0"]
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}
UNSAFE: list[str] = []  # every unsafe load attempted while the module runs


def refuse(what: str):
    def refused(*args, **kwargs):
        UNSAFE.append(what)
        raise AssertionError(f"{what} called: vaekit must never unpickle")

    return refused


def only_safe(function, what: str, safe):
    """`function`, failing (and recorded) when called in a way that could unpickle."""
    def guarded(*args, **kwargs):
        if not safe(kwargs):
            UNSAFE.append(f"{what}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
            raise AssertionError(f"{what} called without excluding pickles: vaekit must never unpickle")
        return function(*args, **kwargs)

    return guarded


@pytest.fixture(scope="module", autouse=True)
def no_unpickling():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("load", "loads", "Unpickler"):
            patch.setattr(pickle, name, refuse(f"pickle.{name}"))
        weights_only = only_safe(torch.load, "torch.load", lambda kwargs: kwargs.get("weights_only") is True)
        patch.setattr(torch, "load", weights_only)
        patch.setattr(torch.serialization, "load", weights_only)
        patch.setattr(np, "load", only_safe(np.load, "numpy.load", lambda kwargs: not kwargs.get("allow_pickle")))
        patch.setattr(np.lib.format, "read_array", only_safe(np.lib.format.read_array, "numpy.lib.format.read_array",
                                                             lambda kwargs: not kwargs.get("allow_pickle")))
        yield
    assert UNSAFE == []


def vaekit_(capsys, *args) -> str:
    """`vaekit ARGS...` in-process; it must exit 0. Returns its stdout."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, f"vaekit {' '.join(map(str, args))} exited {code}: {captured.err}"
    return captured.out


def write_sources(folder: Path) -> dict[str, Path]:
    """One small source per reader: 60 examples each."""
    rng = np.random.default_rng(0)
    np.save(folder / "values.npy", rng.normal(size=(60, 3)).astype(np.float32))
    np.savez(folder / "labelled.npz", x=rng.normal(size=(60, 4)).astype(np.float32), y=np.arange(60) % 3)
    rows = "\n".join(",".join(f"{v:.3f}" for v in row) for row in rng.normal(10, 3, (60, 3)))
    (folder / "table.csv").write_text("a,b,c\n" + rows + "\n")
    for i in range(24):
        picture = folder / "pictures" / ("dark" if i % 2 else "light") / f"{i:02d}.png"
        picture.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(picture)
    for i in range(12):  # tones of 0.1 s at 8 kHz, in two classes
        clip = folder / "sounds" / ("low" if i % 2 else "high") / f"{i:02d}.wav"
        clip.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(clip, np.sin(np.arange(800) * (0.1 + 0.05 * i)).astype(np.float32) * 0.5, 8000)
    return {"npy": folder / "values.npy", "npz": folder / "labelled.npz", "csv": folder / "table.csv",
            "images": folder / "pictures", "digits": Path("digits"), "sound": folder / "sounds"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A run per source, trained under the patches: the sources by name, and the runs as run:NAME."""
    folder = tmp_path_factory.mktemp("no_pickle")
    sources = write_sources(folder)
    runs = {}
    for name, source in sources.items():
        runs[f"run:{name}"] = folder / f"run-{name}"
        given = ["--data", str(source)]
        if name == "npy":  # its settings from a --config file
            (folder / "npy.toml").write_text(f'[data]\nsource = "{source}"\n[model]\nlatent_dim = 2\n')
            given = ["--config", str(folder / "npy.toml")]
        assert main(["train", *given, "--out", str(runs[f"run:{name}"]), *TINY]) == 0, name
    streamed = folder / "run-streamed"
    assert main(["train", "--data", str(sources["images"]), "--stream", "--out", str(streamed), *TINY]) == 0
    conditional = folder / "run-conditional"
    assert main(["train", "--data", "digits", "--conditional", "--out", str(conditional), *TINY]) == 0
    return {**sources, **runs, "run:streamed": streamed, "run:conditional": conditional, "folder": folder}


def test_the_patches_catch_an_unsafe_load(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{}], dtype=object), allow_pickle=True)
    for load in (lambda: np.load(tmp_path / "objects.npy", allow_pickle=True), lambda: torch.load(tmp_path / "x"),
                 lambda: torch.load(tmp_path / "x", weights_only=False), lambda: pickle.loads(b"."),
                 lambda: pickle.Unpickler(io.BytesIO(b"."))):
        with pytest.raises(AssertionError, match="never unpickle"):
            load()
    assert UNSAFE == ["numpy.load(allow_pickle=True)", "torch.load()", "torch.load(weights_only=False)",
                      "pickle.loads", "pickle.Unpickler"]
    UNSAFE.clear()


@pytest.mark.parametrize("name", ["npy", "npz", "csv", "images", "digits", "sound", "streamed", "conditional"])
def test_training_on_every_kind_of_source_unpickles_nothing(trained, name):
    run = trained[f"run:{name}"]
    assert (run / "model.safetensors").is_file() and (run / "checkpoint.safetensors").is_file()
    assert UNSAFE == []


def test_resume_unpickles_nothing(trained, capsys):
    run = trained["folder"] / "resumed"
    shutil.copytree(trained["run:csv"], run)
    vaekit_(capsys, "train", "--resume", run, "--epochs", "2", "--quiet", "--workers", "0")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert UNSAFE == []


# Every command that reads a run (and data given to it): NAME -> (the runs and sources, an output folder) -> args.
COMMANDS = {
    "sample": lambda t, out: ["sample", t["run:digits"], "--n", "4", "--out", out / "samples.png"],
    "sample a table": lambda t, out: ["sample", t["run:csv"], "--n", "4", "--out", out / "samples.csv"],
    "reconstruct": lambda t, out: ["reconstruct", t["run:digits"], "--n", "4", "--out", out / "r.png"],
    "encode": lambda t, out: ["encode", t["run:digits"], "--out", out / "codes.npz"],
    "evaluate": lambda t, out: ["evaluate", t["run:digits"], "--importance-samples", "4", "--limit", "16", "--quiet"],
    "info": lambda t, out: ["info", t["run:digits"]],
    "convert": lambda t, out: ["convert", t["run:conditional"], "--to-label", "all", "--n", "2",
                               "--out", out / "c.png"],
    "sample --label": lambda t, out: ["sample", t["run:conditional"], "--label", "3", "--n", "2",
                                      "--out", out / "s.png"],
    "sample sound": lambda t, out: ["sample", t["run:sound"], "--n", "2", "--out", out / "clips"],
    "reconstruct sound": lambda t, out: ["reconstruct", t["run:sound"], "--data", t["sound"], "--n", "2", "--out",
                                         out / "r.png"],
    "info --json": lambda t, out: ["info", t["run:digits"], "--json"],
    "report": lambda t, out: ["report", t["run:digits"], "--out", out / "report.html"],
    "interpolate": lambda t, out: ["interpolate", t["run:digits"], "--steps", "3", "--out", out / "path.png"],
    "traverse": lambda t, out: ["traverse", t["run:digits"], "--steps", "3", "--out", out / "traverse.png"],
    "manifold": lambda t, out: ["manifold", t["run:digits"], "--grid", "3", "--out", out / "manifold.png"],
    "latents": lambda t, out: ["latents", t["run:digits"], "--out", out / "latents.png"],
    "gradient-variance": lambda t, out: ["gradient-variance", t["run:digits"], "--draws", "4", "--out", out / "g"],
    # each reader again, its data given to a run of its kind
    **{f"encode --data {name}": lambda t, out, name=name: ["encode", t[f"run:{name}"], "--data", t[name], "--split",
                                                           "all", "--out", out / "codes.npz"]
       for name in ("npy", "npz", "csv", "images")},
    "reconstruct streamed": lambda t, out: ["reconstruct", t["run:streamed"], "--data", t["images"], "--n", "4",
                                            "--out", out / "r.png"],
    "evaluate labelled": lambda t, out: ["evaluate", t["run:npz"], "--importance-samples", "2", "--quiet"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_unpickles_nothing(trained, capsys, tmp_path, name):
    vaekit_(capsys, *COMMANDS[name](trained, tmp_path))
    assert UNSAFE == []


def test_the_explorers_request_handlers_unpickle_nothing(trained):
    """The routes' actions, as the server calls them for each request, without the HTTP around them."""
    from vaekit.reporting.explorer import Explorer
    from vaekit.reporting.explorer_requests import parse_json_object
    from vaekit.reporting.explorer_server import find_route
    from vaekit.runs.trained import TrainedVAE

    for run in ("run:digits", "run:csv"):
        server = SimpleNamespace(explorer=Explorer(TrainedVAE(trained[run])), page=b"<html></html>")
        requests = [("GET", "/", None), ("GET", "/api/info", None), ("GET", "/api/example/0.json", None),
                    ("POST", "/api/decode", {"z": [0.0, 0.5]}), ("POST", "/api/encode", {"index": 0}),
                    ("POST", "/api/interpolate", {"from": 0, "to": 1, "steps": 3})]
        if run == "run:digits":
            requests.append(("GET", "/api/example/1.png", None))
        for method, path, body in requests:
            route, match = find_route(method, path)
            parsed = parse_json_object(json.dumps(body).encode()) if route.takes_body else None
            assert route.action(server, match, parsed).status == 200, (run, method, path)
    assert UNSAFE == []


# ----- static: nothing in src/vaekit could unpickle ---------------------------------------------------


def unsafe_lines(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every import of a pickling module, `from torch import load`, torch.load without
    weights_only=True, and any call whose allow_pickle is not False."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLE_MODULES:
                found.append((node.lineno, f"from {node.module} import ..."))
            if node.module in ("torch", "torch.serialization") and any(a.name == "load" for a in node.names):
                found.append((node.lineno, f"from {node.module} import load"))
        elif isinstance(node, ast.Call):
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            name = ast.unparse(node.func)
            if name in ("torch.load", "torch.serialization.load"):
                weights_only = keywords.get("weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append((node.lineno, f"{name} without weights_only=True"))
            allow = keywords.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append((node.lineno, f"{name}(allow_pickle={ast.unparse(allow)})"))
    return found


def test_the_static_check_finds_what_it_looks_for():
    tree = ast.parse("import pickle\nfrom dill import loads\nfrom torch import load\nimport torch, numpy as np\n"
                     "torch.load(f)\ntorch.load(f, weights_only=False)\ntorch.load(f, weights_only=True)\n"
                     "np.load(f, allow_pickle=True)\nnp.load(f, allow_pickle=flag)\nnp.load(f, allow_pickle=False)\n")
    assert [line for line, _ in unsafe_lines(tree)] == [1, 2, 3, 5, 6, 8, 9]


def test_no_source_file_imports_pickle_or_loads_a_pickle():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 50  # the whole package, not an empty folder
    found = [f"{path.relative_to(SOURCE.parent)}:{line}: {what}" for path in files
             for line, what in unsafe_lines(ast.parse(path.read_text(), str(path)))]
    assert found == []
