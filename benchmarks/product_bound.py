"""The machine's own limit for a training step: its matrix products alone, and where the rest of a step goes.

`step_products_seconds` times, in isolation, the matrix products one Adam step of an MLP VAE cannot do
without, with the step's shapes and the process's threads: each linear layer's forward product (x Wᵀ), its
weight gradient (gᵀ x) and, but for the first layer, its input gradient (g W). Outputs are preallocated
(`torch.mm(..., out=)`), so nothing but the products is timed; the best of several blocks is kept (the
machine's capacity, not its noise). `batch / seconds` is then the throughput bound of the network.

`profile_by_kind` runs a callable under torch.profiler and sums the self CPU time of its operators by kind
(products, elementwise, optimizer, finite check, allocation and copies, reductions), the rest of the wall
time being Python and autograd's own work.

Used by benchmarks/train_speed.py (`bound` and `--profile`); alone:

    python benchmarks/product_bound.py                      # the 784-400-20 network at batch 128
    python benchmarks/product_bound.py --batch 256 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

REFERENCE_LAYERS = ((784, 400), (400, 20), (400, 20), (20, 400), (400, 784))  # fc1, μ and log σ² heads, fc3, fc4
FIRST_LAYERS = 1  # layers fed by the data, whose input gradient no step needs

# operator kinds: (substrings of an aten name, exact aten names); the first kind that matches wins
KINDS = {
    "products": (("mm", "matmul", "linear"), ()),
    "optimizer": (("adam", "_foreach_", "lerp"), ()),
    "finite check": (("isfinite", "isinf", "isnan"), ("all", "any")),
    "allocation and copies": (("empty", "zeros", "ones", "copy", "clone", "contiguous", "index_select", "resize",
                               "fill", "full", "as_strided", "expand", "transpose", "permute", "squeeze", "slice",
                               "select", "view", "reshape", "detach"), ("to", "t", "_to_copy")),
    "reductions": (("sum", "mean", "logsumexp", "norm", "amax", "amin"), ("max", "min")),
}


def kind_of(name: str) -> str:
    short = name.split("::")[-1].lower()
    for kind, (parts, names) in KINDS.items():
        if short in names or any(part in short for part in parts):
            return kind
    return "elementwise"


def step_products_seconds(batch: int = 128, layers: tuple[tuple[int, int], ...] = REFERENCE_LAYERS,
                          repeats: int = 200, blocks: int = 5) -> float:
    """Seconds the matrix products of one training step take, alone (the best block's mean)."""
    import torch

    products = []
    for index, (fan_in, fan_out) in enumerate(layers):
        x, w, g = torch.randn(batch, fan_in), torch.randn(fan_out, fan_in), torch.randn(batch, fan_out)
        products.append((x, w.t(), torch.empty(batch, fan_out)))  # forward: x Wᵀ
        products.append((g.t(), x, torch.empty(fan_out, fan_in)))  # weight gradient: gᵀ x
        if index >= FIRST_LAYERS:
            products.append((g, w, torch.empty(batch, fan_in)))  # input gradient: g W
    for a, b, out in products:  # warm up: the first product of a shape pays for its setup
        torch.mm(a, b, out=out)
    times = []
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(repeats):
            for a, b, out in products:
                torch.mm(a, b, out=out)
        times.append((time.perf_counter() - started) / repeats)
    return min(times)


DECODER_LAYERS = ((20, 400), (400, 784))  # the reference decoder: what evaluation's K samples go through


def decoder_products_seconds_per_sample(layers: tuple[tuple[int, int], ...] = DECODER_LAYERS, rows: int = 8192,
                                        blocks: int = 5) -> float:
    """Seconds the decoder's matrix products take per decoded sample z, alone, in blocks of `rows` samples (the
    best block): the bound of importance sampling, whose K samples per input all go through the decoder."""
    import torch

    products = [(torch.randn(rows, fan_in), torch.randn(fan_out, fan_in).t(), torch.empty(rows, fan_out))
                for fan_in, fan_out in layers]
    for a, b, out in products:
        torch.mm(a, b, out=out)
    times = []
    for _ in range(blocks):
        started = time.perf_counter()
        for a, b, out in products:
            torch.mm(a, b, out=out)
        times.append(time.perf_counter() - started)
    return min(times) / rows


def profile_by_kind(work: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Wall seconds of `work()`, and the self CPU seconds of its operators by kind (with "Python, autograd and
    the rest" making up the wall time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        work()
        wall = time.perf_counter() - started
    seconds: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        if event.key.startswith("aten::"):  # the operators; autograd's own nodes and Python are the rest
            seconds[kind_of(event.key)] += event.self_cpu_time_total / 1e6
    seconds["Python, autograd and the rest"] = max(0.0, wall - sum(seconds.values()))
    return wall, dict(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = [step_products_seconds(args.batch) for _ in range(3)]
    best = min(seconds)
    flops = 2 * args.batch * sum(i * o for i, o in REFERENCE_LAYERS) * 3 - 2 * args.batch * 784 * 400
    print(f"one step's products at batch {args.batch}, {torch.get_num_threads()} thread(s): {best * 1e3:.3f} ms "
          f"(of {', '.join(f'{s * 1e3:.3f}' for s in seconds)}), {flops / best / 1e9:.0f} GFLOP/s; "
          f"bound {args.batch / best:,.0f} img/s (median {args.batch / statistics.median(seconds):,.0f})")


if __name__ == "__main__":
    main()
