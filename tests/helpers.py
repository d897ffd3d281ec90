"""What several test modules share: a tiny run's settings, comparing runs bit for bit, running the CLI as a
real process, and the CPU stand-in for a CUDA graph. Imported as `helpers` (pyproject.toml puts tests/
on the path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file

from vaekit.config import RunConfig

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
TIMING = ("seconds", "images_per_second", "train_seconds")  # what may differ between equal runs
STEPS_PER_EPOCH = 22  # digits: 1347 training images in batches of 64


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_subprocess(*args: str, timeout: float = 300, env: dict | None = None) -> CliResult:
    """Run `python -m vaekit ARGS...` as a separate process (real exit status, real stderr)."""
    completed = subprocess.run(
        [sys.executable, "-m", "vaekit", *[str(a) for a in args]],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def tiny(**train_settings) -> RunConfig:
    """3 epochs of 22 steps; dynamic binarization, KL warm-up and patience make the state worth saving."""
    return RunConfig().with_overrides({
        "data": {"binarize": "dynamic"},
        "model": {"hidden_sizes": (32,), "latent_dim": 4},
        "train": {"epochs": 3, "batch_size": 64, "warmup_epochs": 1, "patience": 2, "seed": 1,
                  "checkpoint_every_steps": 5, **train_settings},
    })


def tensors(path: Path) -> dict[str, bytes]:
    return {key: value.numpy().tobytes() for key, value in load_file(path).items()}


def without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in TIMING}


def assert_same_run(out: Path, reference: Path) -> None:
    """Bit-for-bit weights and training state; metrics and results equal but for timing."""
    for name in ("model.safetensors", "checkpoint.safetensors"):
        assert tensors(out / name) == tensors(reference / name), name
    metrics = [[without_timing(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]
               for run in (out, reference)]
    assert metrics[0] == metrics[1] and len(metrics[0]) > 0
    results = [without_timing(json.loads((run / "results.json").read_text())) for run in (out, reference)]
    assert results[0] == results[1]


class RerunGraph:
    """A CUDA graph's stand-in on a CPU (vaekit.training.cuda_graph.Graph): `replay` runs the captured work
    again. Everything around the graph is the real `CapturedStep` and `GraphedStep`."""

    captures = 0

    def __init__(self, device, generator):
        self.work = None

    def warming_up(self):
        from contextlib import nullcontext

        return nullcontext()

    def capture(self, work):
        self.work = work
        RerunGraph.captures += 1

    def replay(self):
        return self.work()


OTHER_MODELS = [  # what else a graphed step must take as the eager one does
    {"train": {"objective": "iwae"}},
    {"train": {"mc_samples": 2}},
    {"model": {"architecture": "conv", "conv_channels": (8, 16)}},  # launched eagerly on a GPU, for now
    {"model": {"activation": "gated"}},
    {"model": {"likelihood": "gaussian"}},
    {"model": {"conditional": True}},  # labels in a buffer of the graph's beside x
]


TOPICS = (  # a small corpus with a global latent factor: every sentence keeps to one topic's words
    ("the cat", "a kitten", "my dog", "the puppy"), ("sees", "chases", "likes", "bites"),
    ("the ball", "a mouse", "the bone", "its tail"),
), (
    ("the captain", "a sailor", "the crew", "our pilot"), ("steers", "sails", "loads", "leaves"),
    ("the ship", "a boat", "the harbour", "the sea"),
), (
    ("the baker", "a cook", "my aunt", "the chef"), ("bakes", "slices", "serves", "burns"),
    ("the bread", "a cake", "the pie", "some rolls"),
)


def topic_corpus(path: Path, lines: int = 600, seed: int = 0) -> Path:
    """`lines` sentences, each of one topic's subject, verb and object (and a full stop, or not)."""
    import random

    rng = random.Random(seed)
    sentences = []
    for _ in range(lines):
        subjects, verbs, objects = rng.choice(TOPICS)
        end = rng.choice([" .", " !", ""])
        sentences.append(f"{rng.choice(subjects).capitalize()} {rng.choice(verbs)} {rng.choice(objects)}{end}")
    path.write_text("\n".join(sentences) + "\n")
    return path
