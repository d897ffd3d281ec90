"""Data-parallel training: the sharded loss and bound in-process, then real torchrun launches on CPU.

The launches use gloo over the loopback interface only (127.0.0.1, a free port, GLOO_SOCKET_IFNAME=lo),
a tiny model on the digits (saved as a .npy, which starts faster than the embedded copy) and one
thread per process; each has a timeout, so a hang fails the test instead of blocking it forever.
A one-process run with the same global batch and seed is the reference: N processes draw the same
noise and see the same batches (vaekit.runtime.world), so only the order of floating-point sums differs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit.runtime.world
from helpers import topic_corpus
from vaekit.config import DataConfig, ModelConfig, TrainConfig
from vaekit.data.batch import Batch
from vaekit.data.codec import PixelCodec
from vaekit.data.digits import read_digits
from vaekit.data.source import split_source
from vaekit.errors import UserError
from vaekit.evaluation.bounds import dataset_bound
from vaekit.model.objectives import Elbo, Iwae
from vaekit.model.vae import VAE
from vaekit.runs.weights import read_safetensors
from vaekit.runtime.world import World, launched_by_torchrun
from vaekit.training.loop import Trainer
from vaekit.training.sharded_step import ShardObjective

TORCHRUN = Path(sys.executable).with_name("torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(name, None)
# A last partial batch (1347 training digits = 29 x 45 + 42) split unevenly over two processes, and every
# path that draws noise or reduces over the batch: dynamic binarization, KL warm-up and free bits.
MODEL = ["--hidden-sizes", "32", "--latent-dim", "4"]
TRAINING = ["--batch-size", "45", "--binarize", "dynamic", "--warmup-epochs", "1", "--free-bits", "0.05",
            "--seed", "5", "--quiet"]
TIMING = ("seconds", "images_per_second", "train_seconds")
LAUNCH_TIMEOUT = 240  # seconds; a run takes 10-20 on a busy 2-core machine
# Two processes sum in another order than one: figures agree to ~1e-7 relative and weights to ~1e-7
# after 3 epochs (10 too). Noise given to the wrong examples is off by 1e-2; gradients at half scale,
# which Adam all but forgives, by 2e-6 in the figures and 2e-4 in the weights.
RELATIVE_TOLERANCE = 1e-6
WEIGHT_TOLERANCE = 1e-5


# ----- in-process: the sharded bound and loss -----------------------------------------------------
def _model(likelihood: str = "bernoulli") -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), (1, 8, 8), likelihood)


@pytest.mark.parametrize("objective", [Elbo(), Iwae(5)], ids=["elbo", "iwae"])
def test_the_ranks_shares_of_a_dataset_bound_add_up_to_one_process_figures(objective, monkeypatch):
    """Each rank's `dataset_bound` over its shards (the all-reduce left out) is its share of the figures one
    process computes from the same seed: the ranks draw the same ε and each keeps its slice."""
    model = _model()
    stored = torch.randint(0, 256, (70, 1, 8, 8), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    expected = dataset_bound(model, stored.numpy(), PixelCodec(), objective, seed=4, batch_size=30)
    monkeypatch.setattr(World, "all_reduce_sum", lambda self, tensor: tensor)  # each rank's own share
    shares = [dataset_bound(model, stored.numpy(), PixelCodec(), objective, seed=4, world=World(rank, 3), batch_size=30)
              for rank in range(3)]
    assert expected.keys() == {"elbo", "reconstruction", "kl"} | ({"iwae"} if isinstance(objective, Iwae) else set())
    for key in expected:
        assert sum(share[key] for share in shares) == pytest.approx(expected[key], rel=1e-6)


def test_shards_cover_every_example_once_and_differ_by_at_most_one():
    for size in (1, 2, 3, 7):
        for count in (0, 1, 2, 5, 45, 128):
            parts = [World(rank, size).shard(count) for rank in range(size)]
            assert [i for part in parts for i in range(count)[part]] == list(range(count))
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


@pytest.mark.parametrize("objective", [Elbo(1), Elbo(3), Iwae(5)], ids=["elbo-1", "elbo-3", "iwae-5"])
def test_the_bound_from_given_noise_is_the_bound_from_drawn_noise(objective):
    model, x = _model(), torch.rand(6, 1, 8, 8)
    expected = objective.terms(model, Batch(x), torch.Generator().manual_seed(1))
    eps = torch.randn((objective.samples, 6, 3), generator=torch.Generator().manual_seed(1))
    got = objective.terms(model, Batch(x), noise=eps)
    for name in ("bound", "reconstruction", "kl", "kl_per_dim"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=0)


@pytest.mark.parametrize("objective, free_bits, batch, ranks", [
    ("elbo", 0.0, 7, 2), ("elbo", 0.0, 2, 3), ("elbo", 0.3, 7, 3), ("iwae", 0.0, 5, 2),
])
def test_the_mean_of_the_ranks_losses_and_gradients_is_the_batch_loss_and_gradient(
    monkeypatch, objective, free_bits, batch, ranks,
):
    """What DDP computes, by hand: the ranks' losses on uneven (even empty) shards, averaged."""
    model, x = _model(), torch.rand(batch, 1, 8, 8)
    objective = Iwae(5) if objective == "iwae" else Elbo(free_bits=free_bits)
    eps = torch.randn((objective.samples, batch, 3), generator=torch.Generator().manual_seed(2))
    parameters = list(model.parameters())
    whole = objective.terms(model, Batch(x), noise=eps)
    expected = objective.loss(whole, 0.7)
    expected_gradients = torch.autograd.grad(expected, parameters)
    # Free bits all-reduce the KL per dimension: in one process, the sum over ranks is the batch's.
    monkeypatch.setattr(World, "all_reduce_sum", lambda self, t: whole.kl_per_dim.sum(0).detach().clone())
    losses, gradients = [], []
    for rank in range(ranks):
        world = World(rank, ranks)
        part = world.shard(batch)
        objective_module = ShardObjective(model, world, objective)
        loss, _ = objective_module(x[part], eps[:, part], batch, 0.7)
        losses.append(loss)
        gradients.append(torch.autograd.grad(loss, parameters))  # every parameter: DDP needs them all
    torch.testing.assert_close(torch.stack(losses).mean(), expected)
    for got, want in zip(zip(*gradients), expected_gradients):
        torch.testing.assert_close(torch.stack(got).mean(0), want)


def test_a_plain_run_sets_nothing_up(cli, tmp_path):
    assert not launched_by_torchrun()
    assert cli("train", "--out", tmp_path / "run", *MODEL, "--epochs", "1", "--quiet").code == 0
    assert not torch.distributed.is_initialized()
    assert "launch" not in json.loads((tmp_path / "run" / "config.json").read_text())


def test_a_launch_of_one_process_is_no_distributed_run(monkeypatch):
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("LOCAL_RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_by_torchrun()
    assert vaekit.runtime.world.rank_device(torch.device("cpu"), World(1, 2, 1)) == torch.device("cpu")


def test_a_global_batch_smaller_than_the_processes_is_refused(tmp_path):
    """Checked before DistributedDataParallel is made, so no process group is needed to see it."""
    splits = split_source(read_digits(), DataConfig())
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), splits.event_shape, "bernoulli")
    with pytest.raises(UserError, match="batch_size = 1 is the global batch, shared by 2 processes"):
        Trainer(model, splits, TrainConfig(batch_size=1), tmp_path, torch.device("cpu"), world=World(0, 2))


# ----- real launches ------------------------------------------------------------------------------
needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason=f"{TORCHRUN} is missing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, read_digits().x)  # (1797, 1, 8, 8) uint8
    return path


def vaekit_train(*args: object, timeout: float = LAUNCH_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaekit", "train", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def torchrun(*args: object, nodes: str = "--nproc-per-node=2", env: dict | None = None) -> subprocess.Popen:
    """`torchrun ARGS` in the background; `args` end with the program and its arguments."""
    return subprocess.Popen([str(TORCHRUN), *nodes.split(), *map(str, args)], env={**ENV, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = LAUNCH_TIMEOUT) -> str:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s (a rank hung?):\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    return err


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def assert_same_run(got: Path, expected: Path) -> None:
    """Every figure within `RELATIVE_TOLERANCE`, and the best weights within `WEIGHT_TOLERANCE`."""
    got_lines, expected_lines = metrics(got), metrics(expected)
    assert len(got_lines) == len(expected_lines)
    for line, expected_line in zip(got_lines, expected_lines):
        assert line == pytest.approx(expected_line, rel=RELATIVE_TOLERANCE)
    results = [{k: v for k, v in json.loads((run / "results.json").read_text()).items() if k not in TIMING}
               for run in (got, expected)]
    assert results[0] == pytest.approx(results[1], rel=RELATIVE_TOLERANCE)
    weights = [read_safetensors(run / "model.safetensors")[0] for run in (got, expected)]
    assert weights[0].keys() == weights[1].keys()  # the plain VAE's names, no DDP "module." prefix
    for name in weights[1]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=WEIGHT_TOLERANCE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits) -> Path:
    """One process, three epochs: what every launch below must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = vaekit_train("--data", digits, "--out", out, *MODEL, *TRAINING, "--epochs", "3")
    assert done.returncode == 0, done.stderr
    return out


# Runs vaekit under an audit hook that lists, per rank, every file it opens for writing, renames,
# removes or creates in the watched folder: to show which ranks write the run.
WRITE_AUDIT = '''
import atexit, os, sys
watched = os.path.realpath(os.environ["AUDIT_WATCH"])
written = set()
def _audit(event, args):
    if event == "open" and isinstance(args[0], (str, os.PathLike)):
        mode, flags = args[1], args[2]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & (os.O_WRONLY | os.O_RDWR)
        paths = [args[0]] if writes else []
    elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir"):
        paths = [a for a in args[:2] if isinstance(a, (str, os.PathLike))]
    else:
        return
    written.update(p for p in map(os.fspath, paths) if os.path.realpath(p).startswith(watched))
def _report():
    with open(os.environ["AUDIT_LOG"] + "." + os.environ.get("RANK", "single"), "w") as log:
        log.write("\\n".join(sorted(written)))
atexit.register(_report)
sys.addaudithook(_audit)
from vaekit.cli import main
sys.exit(main(sys.argv[1:]))
'''


@needs_torchrun
def test_two_processes_train_the_run_of_one_and_only_rank_0_writes(tmp_path, digits, reference):
    program = tmp_path / "audited_vaekit.py"
    program.write_text(WRITE_AUDIT)
    out = tmp_path / "runs" / "two"
    audit = {"AUDIT_WATCH": str(tmp_path / "runs"), "AUDIT_LOG": str(tmp_path / "writes")}
    launch = torchrun("--master-addr", "127.0.0.1", "--master-port", free_port(), program, "train",
                      "--data", digits, "--out", out, *MODEL, *TRAINING, "--epochs", "3", env=audit)
    finish(launch)
    assert_same_run(out, reference)
    launch_info = json.loads((out / "config.json").read_text())["launch"]
    assert launch_info == {"processes": 2, "global_batch": 45}
    rank_0, rank_1 = ((tmp_path / f"writes.{rank}").read_text().split() for rank in (0, 1))
    assert {Path(path).name for path in rank_0} >= {"config.json", "metrics.jsonl", "results.json", "samples.png"}
    assert rank_1 == []


@needs_torchrun
def test_two_machines_on_one_host_finish_the_run_and_resume_it_without_sharing_a_folder(tmp_path, digits, reference):
    """Two torchrun agents, --nnodes 2 with node ranks 0 and 1, meeting at 127.0.0.1. The second is
    given another --out that never comes to exist: nothing but rank 0 needs the run directory, even to
    resume (rank 0 sends the config and checkpoint)."""
    out, elsewhere = tmp_path / "run", tmp_path / "not-on-machine-0"

    def two_machines(*args: object) -> None:
        port = free_port()
        machines = [
            torchrun("--master-addr", "127.0.0.1", "--master-port", port, "-m", "vaekit", "train", *args, where,
                     nodes=f"--nnodes=2 --node-rank={node} --nproc-per-node=1")
            for node, where in enumerate((out, elsewhere))
        ]
        for machine in machines:
            finish(machine)

    two_machines("--data", digits, *MODEL, *TRAINING, "--epochs", "2", "--out")
    assert len(metrics(out)) == 2
    two_machines("--epochs", "3", "--quiet", "--resume")
    assert_same_run(out, reference)
    assert not elsewhere.exists()


@needs_torchrun
def test_sigterm_stops_every_rank_with_a_checkpoint_and_the_run_resumes_with_one_process(tmp_path, digits, reference):
    """torchrun passes SIGTERM to its processes, which may see it at different steps: they agree on one,
    rank 0 writes the checkpoint, and all exit with 143 instead of waiting for each other forever.
    ε is drawn for the global batch, so the run continues in any number of processes, here one."""
    out = tmp_path / "run"
    launch = torchrun("--master-addr", "127.0.0.1", "--master-port", free_port(), "-m", "vaekit", "train",
                      "--data", digits, "--out", out, *MODEL, *TRAINING, "--epochs", "3",
                      "--checkpoint-every-steps", "3")
    checkpoint = out / "checkpoint.safetensors"
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not checkpoint.exists() and launch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    launch.send_signal(signal.SIGTERM)
    try:
        _, err = launch.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        launch.kill()
        pytest.fail("the ranks did not stop after SIGTERM")
    if "stopped by SIGTERM" not in err:
        pytest.skip("the run finished before SIGTERM reached it (a very fast machine)")
    assert "vaekit train --resume" in err
    assert (out / "checkpoint.safetensors").exists() and not (out / "results.json").exists()
    assert json.loads((out / "config.json").read_text())["launch"]["processes"] == 2
    done = vaekit_train("--resume", out)
    assert done.returncode == 0, done.stderr
    assert_same_run(out, reference)
    assert "launch" not in json.loads((out / "config.json").read_text())  # it states its latest launch


@needs_torchrun
def test_two_processes_streaming_a_folder_train_the_run_of_one_reading_it_into_memory(tmp_path):
    """Each process decodes only its shard of every batch, in its own worker process."""
    folder = tmp_path / "digits"
    for index, pixels in enumerate(read_digits().x[:400]):
        (folder / str(index % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[0]).save(folder / str(index % 2) / f"{index:04d}.png")
    # Without binarization: a streamed folder binarizes its validation and test images per image.
    common = ["--data", folder, *MODEL, *TRAINING, "--binarize", "none", "--epochs", "2"]
    done = vaekit_train(*common, "--out", tmp_path / "one", "--no-stream")
    assert done.returncode == 0, done.stderr
    finish(torchrun("--master-addr", "127.0.0.1", "--master-port", free_port(), "-m", "vaekit", "train", *common,
                    "--out", tmp_path / "two", "--stream", "--workers", "1"))
    assert_same_run(tmp_path / "two", tmp_path / "one")


@needs_torchrun
def test_evaluate_in_two_processes_gives_the_figures_of_one(reference):
    """All 1,797 digits are two batches of `evaluate`, one per rank; the sums are all-reduced."""
    settings = ["evaluate", reference, "--split", "all", "--importance-samples", "20", "--seed", "3", "--json"]
    one = subprocess.run([sys.executable, "-m", "vaekit", *map(str, settings)], env=ENV, capture_output=True,
                         text=True, timeout=LAUNCH_TIMEOUT)
    assert one.returncode == 0, one.stderr
    launch = torchrun("--master-addr", "127.0.0.1", "--master-port", free_port(), "-m", "vaekit", *settings)
    out, err = launch.communicate(timeout=LAUNCH_TIMEOUT)
    assert launch.returncode == 0, err[-3000:]
    [two] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]  # rank 0 alone prints
    expected = json.loads(one.stdout)
    assert two.pop("seconds") > 0 and expected.pop("seconds") > 0
    assert two.keys() == expected.keys()
    for key, value in expected.items():  # float64 sums in another order: equal to ~1e-15
        assert two[key] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), key


@needs_torchrun
def test_divergence_stops_every_rank_at_the_same_step(tmp_path, digits):
    launch = torchrun("--master-addr", "127.0.0.1", "--master-port", free_port(), "-m", "vaekit", "train",
                      "--data", digits, "--out", tmp_path / "run", *MODEL, "--batch-size", "45",
                      "--learning-rate", "1e6", "--quiet")
    _, err = launch.communicate(timeout=LAUNCH_TIMEOUT)  # a rank left waiting for the other would time out
    assert launch.returncode != 0
    # Both ranks stop at the same step; torchrun may end the second before it prints the same line.
    lines = {line for line in err.splitlines() if "vaekit train: error: training diverged" in line}
    assert len(lines) == 1 and "at epoch 1, step" in lines.pop()


@needs_torchrun
def test_two_processes_train_a_conditional_run_as_one_does(tmp_path):
    conditional = ["--data", "digits", "--conditional", *MODEL, *TRAINING, "--epochs", "2"]
    one = vaekit_train(*conditional, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    finish(torchrun("--master-addr", "127.0.0.1", "--master-port", free_port(), "-m", "vaekit", "train",
                    *conditional, "--out", tmp_path / "two"))
    assert_same_run(tmp_path / "two", tmp_path / "one")


@needs_torchrun
def test_two_processes_train_a_text_run_as_one_does(tmp_path):
    """The sentence VAE under DDP (a GRU, packed sequences, batches bucketed by length). Word dropout is off:
    each rank drops the words of its own shard, from its own generator, so with it on the runs differ."""
    corpus = topic_corpus(tmp_path / "c.txt", 400)
    text = ["--data", corpus, "--latent-dim", "4", "--rnn-size", "16", "--embedding-dim", "8", "--word-dropout", "0",
            "--batch-size", "45", "--warmup-epochs", "1", "--free-bits", "0.05", "--epochs", "2", "--quiet"]
    one = vaekit_train(*text, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    finish(torchrun("--master-addr", "127.0.0.1", "--master-port", free_port(), "-m", "vaekit", "train",
                    *text, "--out", tmp_path / "two"))
    assert_same_run(tmp_path / "two", tmp_path / "one")
