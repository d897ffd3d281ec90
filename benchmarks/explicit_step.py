"""vaekit's two CPU training steps of the 784-400-20 VAE, timed against the machine's product bound in one run.

The explicit step (vaekit.training.explicit_step: the gradients written out by hand, every buffer preallocated)
and the eager step (autograd), each with vaekit's Adam and running average of the weights, are timed step by
step, interleaved with the bound of benchmarks/product_bound.py (the same step's matrix products alone, same
threads). First the two steps' gradients of one batch are compared. `--profile` adds the explicit step's
operators by kind under torch.profiler.

    python benchmarks/explicit_step.py                  # batch 128, all CPUs: ms a step and fraction of the bound
    python benchmarks/explicit_step.py --batch 256 --threads 1 --profile
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from product_bound import profile_by_kind, step_products_seconds

from vaekit.config import ModelConfig, TrainConfig
from vaekit.data.batch import Batch
from vaekit.model.vae import VAE
from vaekit.runtime.cpu import cpu_settings
from vaekit.training.explicit_step import ExplicitStep
from vaekit.training.loop import step_parts
from vaekit.training.step import EagerStep, StepAt

CPU = torch.device("cpu")


def steps(batch: int, weight_average: float) -> dict[str, EagerStep | ExplicitStep]:
    """Both steps, on copies of the same initial network, with pytorch/examples' Adam settings."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(), (1, 28, 28), "bernoulli")
    config = TrainConfig(batch_size=batch, learning_rate=1e-3, adam_beta2=0.999, weight_average=weight_average)
    return {"explicit step": ExplicitStep(step_parts(copy.deepcopy(model), config, CPU, False)),
            "eager step": EagerStep(step_parts(model, config, CPU, False))}


def largest_gradient_difference(batch: int) -> float:
    """max |explicit − autograd| over each gradient, as a fraction of that gradient's largest entry."""
    pair = steps(batch, 0.0)
    x = (torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    explicit, eager = pair["explicit step"], pair["eager step"]
    explicit.gradient(Batch(x), 1.0)
    eager.forward_backward(Batch(x), 1.0)
    return max(float((explicit.gradients[id(q)] - p.grad).abs().max() / p.grad.abs().max())
               for p, q in zip(eager.parts.model.parameters(), explicit.parts.optimizer.params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=400, help="steps timed in each block (default 400)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved blocks of each (default 5)")
    parser.add_argument("--weight-average", type=float, default=0.998, help="vaekit's running average (default 0.998)")
    parser.add_argument("--profile", action="store_true", help="also the explicit step's operators by kind")
    args = parser.parse_args()
    with cpu_settings(CPU, args.threads):  # the threads and arithmetic a vaekit run trains with
        print(f"explicit gradients against autograd's: largest difference "
              f"{largest_gradient_difference(args.batch):.1e} of the largest entry")
        work = steps(args.batch, args.weight_average)
        x = (torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(2)) < 0.3).float()
        taken = {name: 0 for name in work}

        def run(name: str, count: int) -> None:
            for _ in range(count):
                taken[name] += 1
                work[name](Batch(x), StepAt(taken[name], 1.0, 1e-3, args.batch))

        timings: dict[str, list[float]] = {"products alone": [], **{name: [] for name in work}}
        for _ in range(args.repeats):
            timings["products alone"].append(step_products_seconds(args.batch))
            for name in work:
                run(name, 20)
                started = time.perf_counter()
                run(name, args.steps)
                timings[name].append((time.perf_counter() - started) / args.steps)
        bound = statistics.median(timings["products alone"])
        print(f"batch {args.batch}, {torch.get_num_threads()} threads, weight average {args.weight_average:g}, "
              f"medians of {args.repeats} blocks:")
        for name, seconds in timings.items():
            per_step = statistics.median(seconds)
            print(f"  {name:<15} {per_step * 1e3:6.3f} ms/step  {args.batch / per_step:>9,.0f} img/s  "
                  f"{bound / per_step:5.0%} of the bound  (blocks {', '.join(f'{s * 1e3:.2f}' for s in seconds)})")
        if args.profile:
            wall, by_kind = profile_by_kind(lambda: run("explicit step", args.steps))
            kinds = sorted(by_kind.items(), key=lambda item: -item[1])
            print(f"  explicit step under torch.profiler ({wall / args.steps * 1e3:.3f} ms a step, the profiler's "
                  f"own cost included): " + ", ".join(f"{kind} {seconds / wall:.0%}" for kind, seconds in kinds))


if __name__ == "__main__":
    main()
