"""Training speed of the reference VAE (784-400-20 MLP) on Fashion-MNIST: vaekit against a plain loop.

The plain loop is pytorch/examples' `vae/main.py` re-typed with its data in memory: fc1 784→400,
fc21/fc22 400→20, fc3 20→400, fc4 400→784, ReLU, sigmoid, `F.binary_cross_entropy(reduction='sum')`
plus the closed-form KL, Adam 1e-3, a `DataLoader(shuffle=True)` over a `TensorDataset` of float32
images in [0, 1]. Every worker runs in its own subprocess, so that its peak memory (ru_maxrss) is its
own, with the same thread count, on the same images.

throughput (default)  the same number of Adam steps at batch 128 on the 60,000 training images: vaekit's
                      `Trainer.fit` (its per-epoch metrics and checkpoints included) against the plain
                      loop. Interleaved repeats; medians of images/s, of the ratio within each repeat,
                      and of peak RSS. The plain loop slows from its second epoch on (denormals in
                      Adam's moments, which vaekit flushes), so longer runs widen the gap; the
                      default, 10 epochs, is the length of pytorch/examples' own default run.
quality               wall time until test −ELBO ≤ --target nats on grey-level Fashion-MNIST: vaekit
                      with its defaults (validation every epoch, counted; the test loss of the running
                      average of the weights, the model a run keeps) against the plain loop with
                      pytorch/examples' settings. Measuring the test loss stops both clocks; both use
                      the same one-sample estimate, seeded alike.

    python benchmarks/train_speed.py                        # throughput: 3 repeats of 10 epochs each
    python benchmarks/train_speed.py --epochs 3 --cli-memory    # shorter runs; `vaekit train`'s peak RSS
    python benchmarks/train_speed.py --threads 1            # on a machine busy with other work
    python benchmarks/train_speed.py --mode quality         # time to test −ELBO ≤ 245
    python benchmarks/train_speed.py --mode quality --set learning_rate=2e-3
    python benchmarks/train_speed.py --device cuda --epochs 3                  # on a GPU, both loops
    python benchmarks/train_speed.py --device cuda --epochs 3 --set precision=bf16
    python benchmarks/train_speed.py --epochs 3 --profile      # and where vaekit's step time goes, by kind

Throughput is also given as a fraction of the machine's own bound, measured in the same run, interleaved
with the workers: the matrix products of one step of the network at batch 128 timed alone, with the same
threads (benchmarks/product_bound.py). A third worker, "autograd", is vaekit with `step = "autograd"`: on a
CPU it shows what the hand-written step (vaekit.training.explicit_step) gains, in the same run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PLAIN, VAEKIT, AUTOGRAD, BOUND, PROFILE = "plain", "vaekit", "autograd", "bound", "profile"
REFERENCE_BATCH = 128  # pytorch/examples' batch; the throughput comparison is at this batch
TEST_BATCH = 1000


# ----- measuring, shared by both workers ------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux gives KiB


def test_loss(encode: Callable, decode_logits: Callable, images, seed: int, device: str = "cpu") -> float:
    """Mean one-sample −ELBO (nats per example) of uint8 images (N, 1, H, W), the same for both workers;
    ε is drawn on the CPU, so both see the same draws on any device."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(images), TEST_BATCH):
            x = images[start : start + TEST_BATCH].to(device).float().div(255).flatten(1)
            loc, log_variance = encode(x)
            z = loc + torch.exp(0.5 * log_variance) * torch.randn(loc.shape, generator=generator).to(device)
            reconstruction = F.binary_cross_entropy_with_logits(decode_logits(z), x, reduction="sum")
            kl = 0.5 * torch.sum(log_variance.exp() + loc.square() - log_variance - 1)
            total += (reconstruction + kl).item()
    return total / len(images)


def quality_run(train_epoch: Callable[[], None], evaluate: Callable[[], float], target: float, max_epochs: int) -> dict:
    """Train epoch by epoch until the test loss reaches `target`; evaluation is off the clock."""
    seconds, curve = 0.0, []
    for epoch in range(1, max_epochs + 1):
        started = time.perf_counter()
        train_epoch()
        seconds += time.perf_counter() - started
        loss = evaluate()
        curve.append({"epoch": epoch, "seconds": round(seconds, 3), "test_loss": round(loss, 3)})
        if loss <= target:
            return {"reached_seconds": seconds, "reached_epoch": epoch, "curve": curve}
    return {"reached_seconds": None, "reached_epoch": None, "curve": curve}


# ----- the plain loop: pytorch/examples vae/main.py, data in memory ----------------------------------
def read_images_plainly(path: Path):
    """uint8 (N, 1, 28, 28) from an IDX file, as a script would re-type it."""
    import numpy as np
    import torch

    with gzip.open(path) as file:
        blob = file.read()
    return torch.from_numpy(np.frombuffer(blob, np.uint8, offset=16).reshape(-1, 1, 28, 28).copy())


def plain_worker(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class ExamplesVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, 20)
            self.fc22 = nn.Linear(400, 20)
            self.fc3 = nn.Linear(20, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std

        def decode_logits(self, z):
            return self.fc4(F.relu(self.fc3(z)))

        def forward(self, x):
            mu, logvar = self.encode(x.view(-1, 784))
            z = self.reparameterize(mu, logvar)
            return torch.sigmoid(self.decode_logits(z)), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    train_images = read_images_plainly(FASHION_MNIST / "train-images-idx3-ubyte.gz").float().div(255)
    train_loader = DataLoader(TensorDataset(train_images), batch_size=REFERENCE_BATCH, shuffle=True)
    device = torch.device(args.device)
    model = ExamplesVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    setup_seconds = time.perf_counter() - started

    def train_epoch():
        model.train()
        train_loss = 0
        for (data,) in train_loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()

    if args.mode == "quality":
        test_images = read_images_plainly(FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
        evaluate = lambda: test_loss(model.encode, model.decode_logits, test_images, args.seed, args.device)  # noqa: E731
        return {"setup_seconds": setup_seconds, **quality_run(train_epoch, evaluate, args.target, args.max_epochs)}
    epochs = lambda: [train_epoch() for _ in range(args.epochs)]  # noqa: E731
    return timed(epochs, args.epochs * len(train_loader), args.epochs * len(train_images), setup_seconds, device)


def timed(train: Callable[[], object], steps: int, images: int, setup_seconds: float, device) -> dict:
    """Wall and CPU time of `train`, which takes `steps` Adam steps over `images` images in all."""
    import torch

    started, cpu_started = time.perf_counter(), time.process_time()
    train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "images_per_second": images / seconds,
        "images": images,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "steps": steps,
        "setup_seconds": setup_seconds,
    }


# ----- vaekit ---------------------------------------------------------------------------------------
def vaekit_worker(args: argparse.Namespace) -> dict:
    import torch

    from vaekit.config import RunConfig
    from vaekit.data import load_data
    from vaekit.data.batch import Batch
    from vaekit.data.source import resolve_likelihood
    from vaekit.model.vae import VAE
    from vaekit.runtime.cpu import cpu_settings
    from vaekit.runtime.device import resolve_device
    from vaekit.training.loop import Trainer

    started = time.perf_counter()
    train_settings: dict = {"seed": args.seed, "device": args.device}
    data_settings: dict = {"source": "fashion-mnist"}
    if args.mode == "throughput":
        # All 60,000 images, as the plain loop sees; a fixed number of epochs, no early stopping; Adam with
        # the plain loop's settings. The running average of the weights stays on: its cost counts.
        train_settings.update(epochs=args.epochs, patience=None, batch_size=REFERENCE_BATCH, learning_rate=1e-3,
                              adam_beta2=0.999)
        data_settings.update(validation_fraction=0.0)
    else:
        train_settings.update(epochs=args.max_epochs)  # vaekit's defaults otherwise
    train_settings.update(parse_settings(args.set))
    config = RunConfig().with_overrides({"data": data_settings, "train": train_settings})
    splits = load_data(config.data)
    torch.manual_seed(config.train.seed)
    model = VAE(config.model, splits.event_shape, resolve_likelihood(config.model.likelihood, splits))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, splits, config.train, Path(run_dir), resolve_device(config.train.device),
                          progress_bar=False)
        setup_seconds = time.perf_counter() - started
        if args.mode == "throughput":  # `fit` trains all the epochs, as `vaekit train` does
            return {**timed(trainer.fit, args.epochs * trainer.data.steps_per_epoch, args.epochs * len(trainer.data),
                            setup_seconds, trainer.device), "step": type(trainer.step).__name__}
        test_images = torch.from_numpy(splits.test.x)

        def train_and_validate():  # an epoch of `fit`
            trainer.model.train()
            trainer.run_epoch()
            trainer.end_epoch()

        def evaluate() -> float:
            encode = lambda x: model.encode(Batch(x.view(-1, *splits.event_shape)))  # noqa: E731
            decode_logits = lambda z: model.decoder(z).flatten(1)  # noqa: E731
            return test_loss(encode, decode_logits, test_images, args.seed, args.device)

        def evaluate_kept() -> float:  # the model a run keeps and reports: the running average of the weights
            with trainer.parts.average.applied():
                return evaluate()

        with cpu_settings(trainer.device, config.train.threads):  # the threads and arithmetic `fit` trains with
            return {"setup_seconds": setup_seconds,
                    **quality_run(train_and_validate, evaluate_kept, args.target, args.max_epochs)}


def parse_settings(pairs: list[str]) -> dict:
    """--set learning_rate=2e-3 batch_size=256: training settings, their values read as JSON where they parse."""
    settings = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def bound_worker(args: argparse.Namespace) -> dict:
    """The product bound: a step's matrix products alone, at the reference batch, with the workers' threads."""
    sys.path.insert(0, str(Path(__file__).parent))
    from product_bound import step_products_seconds

    seconds = step_products_seconds(REFERENCE_BATCH)
    return {"images_per_second": REFERENCE_BATCH / seconds, "product_seconds": seconds}


def profile_worker(args: argparse.Namespace) -> dict:
    """One epoch of vaekit's steps (469 at batch 128) under torch.profiler: self CPU time by operator kind (of
    autograd's step with `--set step=autograd`)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from product_bound import profile_by_kind

    from vaekit.config import RunConfig
    from vaekit.data import load_data
    from vaekit.data.source import resolve_likelihood
    from vaekit.model.vae import VAE
    from vaekit.runtime.cpu import cpu_settings
    from vaekit.runtime.device import resolve_device
    from vaekit.training.loop import Trainer

    config = RunConfig().with_overrides({
        "data": {"source": "fashion-mnist", "validation_fraction": 0.0},
        "train": {"epochs": 1, "patience": None, "batch_size": REFERENCE_BATCH, "learning_rate": 1e-3,
                  "adam_beta2": 0.999, "seed": args.seed, "device": args.device,
                  "step": parse_settings(args.set).get("step", "auto")}})
    splits = load_data(config.data)
    model = VAE(config.model, splits.event_shape, resolve_likelihood(config.model.likelihood, splits))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, splits, config.train, Path(run_dir), resolve_device(args.device), progress_bar=False)
        with cpu_settings(trainer.device, None):
            trainer.model.train()
            wall, by_kind = profile_by_kind(trainer.run_epoch)
    return {"wall_seconds": wall, "steps": trainer.data.steps_per_epoch, "seconds_by_kind": by_kind,
            "step": type(trainer.step).__name__}


WORKERS = {PLAIN: plain_worker, VAEKIT: vaekit_worker, AUTOGRAD: vaekit_worker, BOUND: bound_worker,
           PROFILE: profile_worker}
AUTOGRADS = ("step=autograd",)  # the --set of the autograd worker and of its profile: vaekit with autograd's step


# ----- the parent: interleaved repeats in subprocesses ----------------------------------------------
def run_worker(name: str, args: argparse.Namespace, settings: tuple[str, ...] = ()) -> dict:
    """`name`'s worker in a subprocess; `settings` are --set pairs on top of the command line's."""
    command = [sys.executable, __file__, "--worker", name, "--mode", args.mode, "--threads", str(args.threads),
               "--epochs", str(args.epochs), "--seed", str(args.seed), "--target", str(args.target),
               "--max-epochs", str(args.max_epochs), "--device", args.device, "--set", *args.set, *settings]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_peak_rss_mb(threads: int) -> float:
    """Peak RSS of `vaekit train --data fashion-mnist --epochs 1` (defaults otherwise): loading, training,
    validation, checkpoints, the test figures and the pictures, as the kernel counted it."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "vaekit", "train", "--data", "fashion-mnist", "--epochs", "1", "--quiet",
                   "--out", str(Path(scratch) / "run")]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with open(Path(scratch) / "stderr", "w+b") as errors:
            child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
            _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage, not the largest child's
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode != 0:
                errors.seek(0)
                raise SystemExit(f"vaekit train failed:\n{errors.read().decode()}")
    return usage.ru_maxrss / 1024


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def summarize_throughput(runs: dict[str, list[dict]]) -> dict:
    ratios = [v["images_per_second"] / p["images_per_second"] for v, p in zip(runs[VAEKIT], runs[PLAIN])]
    cpu_ratios = [p["cpu_seconds"] / v["cpu_seconds"] for v, p in zip(runs[VAEKIT], runs[PLAIN])]
    summary = {name: {"images_per_second": statistics.median(r["images_per_second"] for r in results),
                      "cpu_images_per_second": statistics.median(r["images"] / r["cpu_seconds"] for r in results),
                      "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results)}
               for name, results in runs.items() if name != BOUND}
    if runs.get(BOUND):
        summary[BOUND] = {"images_per_second": statistics.median(r["images_per_second"] for r in runs[BOUND])}
    summary["ratio"] = statistics.median(ratios)
    summary["cpu_ratio"] = statistics.median(cpu_ratios)
    summary["ratios"] = ratios
    return summary


def summarize_quality(runs: dict[str, list[dict]]) -> dict:
    summary: dict = {}
    for name, results in runs.items():
        reached = [r["reached_seconds"] for r in results]
        summary[name] = {
            "reached_seconds": statistics.median(reached) if None not in reached else None,
            "reached_epochs": [r["reached_epoch"] for r in results],
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        }
    if summary[PLAIN]["reached_seconds"] and summary[VAEKIT]["reached_seconds"]:
        fractions = [v["reached_seconds"] / p["reached_seconds"] for v, p in zip(runs[VAEKIT], runs[PLAIN])]
        summary["time_fraction"] = statistics.median(fractions)
        summary["time_fractions"] = fractions
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("throughput", "quality"), default="throughput")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each (default 3)")
    parser.add_argument("--epochs", type=int, default=10,
                        help="throughput: epochs of 469 steps each (default 10, pytorch/examples' own default run)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads of both workers (default: the CPUs this process may use)")
    parser.add_argument("--target", type=float, default=245.0, help="quality: test −ELBO to reach (nats)")
    parser.add_argument("--max-epochs", type=int, default=30, help="quality: give up after this many epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where both train (default cpu); on cuda the plain loop moves each batch there, as "
                             "pytorch/examples does, and vaekit keeps the data on the GPU")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="vaekit training settings on top of the mode's, e.g. learning_rate=2e-3 (quality) or "
                             "precision=bf16 (throughput on cuda); the plain loop stays as it is")
    parser.add_argument("--cli-memory", action="store_true",
                        help="throughput: also the peak RSS of a whole `vaekit train` run of 1 epoch with its defaults")
    parser.add_argument("--profile", action="store_true",
                        help="throughput: also where an epoch of vaekit's steps spends its time, by operator kind")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        result = WORKERS[args.worker](args)
        if args.device == "cuda":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
            result["gpu"] = torch.cuda.get_device_name()
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}))
        return

    where = f"{args.threads} thread(s)" if args.device == "cpu" else f"{args.device}, {args.threads} CPU thread(s)"
    print(f"{args.mode}: {args.repeats} interleaved repeats, {where}; load average {load_average()}", file=sys.stderr)
    runs: dict[str, list[dict]] = {PLAIN: [], VAEKIT: []}
    if args.mode == "throughput":
        runs[AUTOGRAD], runs[BOUND] = [], []
    for repeat in range(args.repeats):
        order = (PLAIN, VAEKIT) if repeat % 2 == 0 else (VAEKIT, PLAIN)  # neither always goes first
        order = (*order, AUTOGRAD) if AUTOGRAD in runs else order
        for name in (*order, *((BOUND,) if BOUND in runs else ())):
            runs[name].append(run_worker(name, args, AUTOGRADS if name == AUTOGRAD else ()))
            print(f"  repeat {repeat + 1} {name:6s} {describe(runs[name][-1], args.mode)}  (load {load_average()})",
                  file=sys.stderr)
    summary = summarize_throughput(runs) if args.mode == "throughput" else summarize_quality(runs)
    if args.mode == "throughput" and args.cli_memory:
        summary["cli_peak_rss_mb"] = cli_peak_rss_mb(args.threads)
    if args.mode == "throughput" and args.profile:
        summary["profile"] = run_worker(PROFILE, args)
        summary["profile_autograd"] = run_worker(PROFILE, args, AUTOGRADS)
    if args.json:
        print(json.dumps({"summary": summary, "runs": runs, "threads": args.threads}))
    else:
        print(report(summary, args))


def describe(result: dict, mode: str) -> str:
    if "product_seconds" in result:
        milliseconds = result["product_seconds"] * 1e3
        return f"{result['images_per_second']:8,.0f} img/s  (a step's products alone: {milliseconds:.3f} ms)"
    if mode == "throughput":
        gpu = f"  peak GPU memory {result['peak_gpu_mb']:5.0f} MB" if "peak_gpu_mb" in result else ""
        step = f"  ({result['step']})" if "step" in result else ""
        return (f"{result['images_per_second']:8,.0f} img/s  {result['seconds']:6.1f} s  "
                f"cpu {result['cpu_seconds']:6.1f} s  peak RSS {result['peak_rss_mb']:5.0f} MB{gpu}{step}")
    reached = result["reached_seconds"]
    last = result["curve"][-1]
    where = f"reached at {reached:6.1f} s, epoch {result['reached_epoch']}" if reached else "not reached"
    return f"{where}  (last test −ELBO {last['test_loss']:.2f})  peak RSS {result['peak_rss_mb']:5.0f} MB"


def report(summary: dict, args: argparse.Namespace) -> str:
    lines = []
    if args.mode == "throughput":
        lines.append(f"medians of {args.repeats} runs, {args.epochs} epochs at batch {REFERENCE_BATCH}, "
                     f"{args.threads} thread(s){' on ' + args.device if args.device != 'cpu' else ''}:")
        for name in (PLAIN, VAEKIT, AUTOGRAD):
            if name not in summary:
                continue
            s = summary[name]
            lines.append(f"  {name:8s} {s['images_per_second']:8,.0f} img/s   "
                         f"({s['cpu_images_per_second']:8,.0f} per CPU-second)   peak RSS {s['peak_rss_mb']:4.0f} MB")
        each = ", ".join(f"{r:.2f}" for r in summary["ratios"])
        lines.append(f"  vaekit / plain: {summary['ratio']:.2f}x wall ({each}), {summary['cpu_ratio']:.2f}x CPU time")
        if BOUND in summary:
            bound = summary[BOUND]["images_per_second"]
            lines.append(f"  product bound {bound:8,.0f} img/s (a step's matrix products alone, same threads): "
                         f"vaekit at {summary[VAEKIT]['images_per_second'] / bound:.0%} of it, with autograd's "
                         f"step {summary[AUTOGRAD]['images_per_second'] / bound:.0%}, plain at "
                         f"{summary[PLAIN]['images_per_second'] / bound:.0%}")
        for key in ("profile", "profile_autograd"):
            if key not in summary:
                continue
            profile = summary[key]
            kinds = sorted(profile["seconds_by_kind"].items(), key=lambda item: -item[1])
            shares = ", ".join(f"{kind} {seconds / profile['wall_seconds']:.0%}" for kind, seconds in kinds)
            lines.append(f"  vaekit's epoch of {profile['steps']} steps ({profile['step']}) under torch.profiler "
                         f"({profile['wall_seconds']:.1f} s, the profiler's own cost included): {shares}")
        if "cli_peak_rss_mb" in summary:
            lines.append(f"  `vaekit train --data fashion-mnist --epochs 1`, the whole run: peak RSS "
                         f"{summary['cli_peak_rss_mb']:.0f} MB")
    else:
        lines.append(f"medians of {args.repeats} runs, time to test −ELBO ≤ {args.target:g}, "
                     f"{args.threads} thread(s){' on ' + args.device if args.device != 'cpu' else ''}:")
        for name in (PLAIN, VAEKIT):
            s = summary[name]
            seconds = f"{s['reached_seconds']:7.1f} s" if s["reached_seconds"] else "not reached"
            lines.append(f"  {name:6s} {seconds}  epochs {s['reached_epochs']}  peak RSS {s['peak_rss_mb']:4.0f} MB")
        if "time_fraction" in summary:
            lines.append(f"  vaekit / plain time: {summary['time_fraction']:.2f} "
                         f"({', '.join(f'{r:.2f}' for r in summary['time_fractions'])})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
