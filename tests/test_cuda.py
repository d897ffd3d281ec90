"""Training, resuming and evaluating on a CUDA GPU. Skipped where torch sees none (CI has none);
run on a GPU machine with `python -m pytest tests/test_cuda.py`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaekit.api
from helpers import OTHER_MODELS, assert_same_run, tensors, tiny
from vaekit.api import train
from vaekit.data.batch import Batch
from vaekit.evaluation.importance import log_likelihood
from vaekit.runs.directory import build_model
from vaekit.runs.trained import TrainedVAE
from vaekit.runtime.device import resolve_device
from vaekit.training.guard import TrainingDiverged
from vaekit.training.loop import Hooks
from vaekit.training.progress import Progress

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_picks_the_gpu():
    assert resolve_device("auto").type == "cuda"


def test_a_run_on_the_gpu_resumes_bit_for_bit(tmp_path: Path):
    """The noise generator lives on the GPU; its state goes through the checkpoint like the CPU's."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(tiny(device="cuda", epochs=4), straight)
    train(tiny(device="cuda"), resumed)
    train(tiny(device="cuda", epochs=4), resumed, resume=True)
    assert_same_run(resumed, straight)


def test_gpu_and_cpu_compute_the_same_numbers_for_the_same_weights(tmp_path: Path):
    train(tiny(device="cuda"), tmp_path / "run")
    on_gpu, on_cpu = TrainedVAE(tmp_path / "run", device="cuda"), TrainedVAE(tmp_path / "run", device="cpu")
    x, _ = on_cpu.load_inputs()
    z = torch.randn(7, len(x), on_cpu.model.latent_dim, generator=torch.Generator().manual_seed(0))
    figures = {}
    with torch.no_grad():
        for trained in (on_gpu, on_cpu):
            inputs = trained._to_model(x)
            loc, log_variance = trained.model.encode(Batch(inputs))
            figures[trained.device.type] = [
                loc, log_variance, log_likelihood(trained.model, z.to(trained.device), Batch(inputs))
            ]
    for gpu_value, cpu_value in zip(figures["cuda"], figures["cpu"]):
        torch.testing.assert_close(gpu_value.cpu(), cpu_value, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_trains_to_about_the_float32_bound(tmp_path: Path):
    train(tiny(device="cuda", epochs=6, warmup_epochs=0), tmp_path / "fp32")
    train(tiny(device="cuda", epochs=6, warmup_epochs=0, precision="bf16"), tmp_path / "bf16")
    bounds = [json.loads((tmp_path / name / "results.json").read_text())["test_elbo"] for name in ("fp32", "bf16")]
    assert all(math.isfinite(b) for b in bounds)
    assert abs(bounds[0] - bounds[1]) < 0.05 * abs(bounds[0]), bounds
    assert tensors(tmp_path / "fp32" / "model.safetensors") != tensors(tmp_path / "bf16" / "model.safetensors")


def test_the_cli_trains_evaluates_and_samples_on_the_gpu(tmp_path: Path, cli):
    run = tmp_path / "run"
    trained = cli("train", "--data", "digits", "--device", "cuda", "--epochs", "3", "--out", run, "--quiet")
    assert trained.code == 0, trained.err
    assert json.loads((run / "config.json").read_text())["config"]["train"]["device"] == "cuda"
    on_gpu = cli("evaluate", run, "--device", "cuda", "--importance-samples", "500", "--json")
    on_cpu = cli("evaluate", run, "--device", "cpu", "--importance-samples", "500", "--json")
    assert on_gpu.code == on_cpu.code == 0, on_gpu.err + on_cpu.err
    nll = [json.loads(result.out)["nll"] for result in (on_gpu, on_cpu)]
    assert abs(nll[0] - nll[1]) < 0.5, nll  # other draws of ε, the same estimate
    sampled = cli("sample", run, "--device", "cuda", "--out", tmp_path / "samples.png")
    assert sampled.code == 0 and (tmp_path / "samples.png").stat().st_size > 0, sampled.err


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_graphed_steps_take_the_eager_steps(tmp_path: Path, schedule: str, caplog):
    """A CUDA graph replays the eager step's kernels on the same draws: the same weights, bit for bit
    (β rises over the first epoch, and the cosine schedule changes the step size at every step)."""
    for graphs in (True, False):
        train(tiny(device="cuda", cuda_graphs=graphs, lr_schedule=schedule), tmp_path / str(graphs))
    assert "CUDA graph capture failed" not in caplog.text
    graphed, eager = (load_file(tmp_path / str(graphs) / "model.safetensors") for graphs in (True, False))
    differences = {name: (graphed[name] - eager[name]).abs().max().item() for name in eager}
    assert all(torch.equal(graphed[name], eager[name]) for name in eager), differences


# Not the conv network: it trains without graphs, and two eager runs of it differ in the last bits on a GPU
# (cuDNN's convolution gradients are not deterministic), as an H100 showed.
@pytest.mark.parametrize("overrides", [o for o in OTHER_MODELS if "model" not in o or "architecture" not in o["model"]],
                         ids=lambda o: next(iter(next(iter(o.values())).items()))[0])
def test_graphed_steps_take_the_eager_steps_of_other_models(tmp_path: Path, overrides: dict, caplog):
    for graphs in (True, False):
        train(tiny(device="cuda", cuda_graphs=graphs, epochs=1).with_overrides(overrides), tmp_path / str(graphs))
    assert "CUDA graph capture failed" not in caplog.text
    assert tensors(tmp_path / "True" / "checkpoint.safetensors") == tensors(
        tmp_path / "False" / "checkpoint.safetensors"
    )


def test_a_non_finite_gradient_inside_a_graph_stops_before_the_update(tmp_path: Path, monkeypatch):
    poison, built = torch.ones((), device="cuda"), []

    def poisoned(config, info):  # the hook's product is captured; the graph reads `poison` at every replay
        model = build_model(config, info)
        model.decoder.out.bias.register_hook(lambda grad: grad * poison)
        built.append(model)
        return model

    def poisoning_step_3(progress: Progress) -> None:
        if progress.global_step == 2:
            poison.fill_(float("nan"))

    monkeypatch.setattr(vaekit.api, "build_model", poisoned)
    with pytest.raises(
        TrainingDiverged, match=r"the gradient of decoder\.out\.bias became NaN or infinite at epoch 1, step 3"
    ):
        train(
            tiny(device="cuda", checkpoint_every_steps=None), tmp_path / "run", hooks=Hooks(after_step=poisoning_step_3)
        )
    assert all(torch.isfinite(value).all() for value in built[0].state_dict().values()), "the NaN step was taken"


def test_an_absurd_learning_rate_on_the_gpu_stops_at_the_same_step(tmp_path: Path, cli):
    result = cli("train", "--data", "digits", "--out", tmp_path / "run", "--hidden-sizes", "32", "--latent-dim", "4",
                 "--learning-rate", "1e6", "--batch-size", "128", "--device", "cuda", "--quiet")
    assert result.code == 2
    assert "the loss became NaN or infinite at epoch 1, step 2 of 11" in result.err


def test_a_run_resumed_with_cuda_graphs_switched_goes_on_exactly(tmp_path: Path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(tiny(device="cuda", epochs=4), straight)
    train(tiny(device="cuda", cuda_graphs=False), resumed)
    train(tiny(device="cuda", epochs=4), resumed, resume=True)
    assert_same_run(resumed, straight)


def test_conv_networks_train_without_graphs(tmp_path: Path, caplog):
    caplog.set_level("INFO", logger="vaekit.training.graphed_step")
    train(tiny(device="cuda", epochs=1).with_overrides({"model": {"architecture": "conv", "conv_channels": (8,)}}),
          tmp_path / "conv")
    assert "convolutional networks train without CUDA graphs" in caplog.text


def test_a_failed_capture_leaves_a_run_that_trains_eagerly_to_the_same_weights(tmp_path: Path, monkeypatch, caplog):
    """A forward hook that asks the host for a value cannot be captured; the run goes on without graphs.
    (Last in this file: a failed capture may leave torch's default CUDA generator unusable.)"""
    built = []

    def syncing(config, info):
        model = build_model(config, info)
        model.decoder.register_forward_hook(lambda module, inputs, output: output.sum().item() and None)
        built.append(model)
        return model

    train(tiny(device="cuda", cuda_graphs=False, epochs=2), tmp_path / "eager")
    monkeypatch.setattr(vaekit.api, "build_model", syncing)
    train(tiny(device="cuda", epochs=2), tmp_path / "fallback")
    assert "CUDA graph capture failed" in caplog.text
    assert tensors(tmp_path / "fallback" / "checkpoint.safetensors") == tensors(
        tmp_path / "eager" / "checkpoint.safetensors"
    )


def test_a_text_run_trains_resumes_and_decodes_on_the_gpu(tmp_path: Path):
    """The sentence VAE on a GPU: word dropout draws on the CPU's generator (saved), so it resumes bit for bit,
    and its sentences and codes match the CPU's for the same weights."""
    from helpers import topic_corpus
    from vaekit.config import RunConfig

    corpus = topic_corpus(tmp_path / "c.txt", 400)
    config = RunConfig().with_overrides({
        "data": {"source": str(corpus)}, "model": {"latent_dim": 4, "rnn_size": 32, "embedding_dim": 16},
        "train": {"epochs": 3, "batch_size": 32, "device": "cuda", "seed": 3}})
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(config, straight)
    train(config.with_overrides({"train": {"epochs": 2}}), resumed)
    train(config, resumed, resume=True)
    assert_same_run(resumed, straight)
    on_gpu, on_cpu = TrainedVAE(straight, device="cuda"), TrainedVAE(straight, device="cpu")
    lines = ["the cat sees the ball .", "a sailor loads the boat !"]
    assert on_gpu.text.reconstruct(lines, beam=3) == on_cpu.text.reconstruct(lines, beam=3)
    torch.testing.assert_close(torch.as_tensor(on_gpu.text.encode(lines)[0]),
                               torch.as_tensor(on_cpu.text.encode(lines)[0]), rtol=1e-4, atol=1e-4)
