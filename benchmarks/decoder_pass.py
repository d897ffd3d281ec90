"""Where one chunk of importance sampling goes: the reference decoder (20 -> 400 -> 784) on 5,000 samples z, with
the Bernoulli log-likelihood of each, as `vaekit evaluate` computes it, against its matrix products alone.

Also measured, as the speed issue suggested: the same chunk decoded in blocks of fewer rows (cache-sized chunks),
and with `--compile`, the likelihood pass fused by torch.compile (its C++ backend needs a compiler at run time).
Random weights of the reference shapes; the numbers do not depend on them.

    python benchmarks/decoder_pass.py                 # 2 threads, blocks of 160 to 5,000 rows
    python benchmarks/decoder_pass.py --compile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from product_bound import decoder_products_seconds_per_sample

from vaekit.runtime.cpu import flush_denormals, keep_freed_memory

EXAMPLES, SAMPLES, LATENT, HIDDEN, PIXELS = 5, 1000, 20, 400, 784  # 5 images x 1,000 samples: 5,000 rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also the pass fused by torch.compile")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `vaekit evaluate` runs
    generator = torch.Generator().manual_seed(0)
    w3, b3 = torch.randn(HIDDEN, LATENT, generator=generator) * 0.3, torch.randn(HIDDEN, generator=generator)
    w4, b4 = torch.randn(PIXELS, HIDDEN, generator=generator) * 0.05, torch.randn(PIXELS, generator=generator)
    x = (torch.rand(EXAMPLES, PIXELS, generator=generator) < 0.3).float()
    z = torch.randn(SAMPLES, EXAMPLES, LATENT, generator=generator)
    logits = torch.randn(SAMPLES * EXAMPLES, PIXELS)

    def decode(z: torch.Tensor) -> torch.Tensor:  # log p(x|z) (k, B): vaekit's Bernoulli path for many samples
        h = torch.addmm(b3, z.reshape(-1, LATENT), w3.t()).relu_()
        out = torch.addmm(b4, h, w4.t()).view(*z.shape[:2], PIXELS)
        return torch.einsum("kbp,bp->kb", out, x) - F.softplus(out).sum(-1)

    def blocked(rows: int) -> torch.Tensor:
        k = max(1, rows // EXAMPLES)
        return torch.cat([decode(z[start:start + k]) for start in range(0, SAMPLES, k)])

    def timed(work) -> float:  # milliseconds, the median of `repeats`
        work()
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            work()
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds) * 1e3

    with torch.no_grad(), flush_denormals():
        # the bound benchmarks/evaluate_speed.py measures: the decoder's products alone, in blocks of 8,192 rows
        bound = decoder_products_seconds_per_sample() * SAMPLES * EXAMPLES * 1e3
        print(f"{SAMPLES * EXAMPLES:,} decoded samples, {torch.get_num_threads()} threads, medians of {args.repeats}:")
        print(f"  the matrix products alone (the bound)  {bound:6.2f} ms")
        whole = timed(lambda: decode(z))
        print(f"  decoder and log p(x|z), one block      {whole:6.2f} ms  ({whole / bound:.2f}x the products)")
        softplus = timed(lambda: F.softplus(logits).sum(-1))
        print(f"  of which the softplus and its sum      {softplus:6.2f} ms  (products + it: "
              f"{(bound + softplus) / bound:.2f}x)")
        for rows in (2560, 1280, 640, 320, 160):
            milliseconds = timed(lambda rows=rows: blocked(rows))
            print(f"  in blocks of {rows:>4} rows                {milliseconds:6.2f} ms")
        if args.compile:
            started = time.perf_counter()
            fused = torch.compile(decode, dynamic=False)
            difference = float((fused(z) - decode(z)).abs().max())
            print(f"  torch.compile: {time.perf_counter() - started:.1f} s to compile, largest difference "
                  f"{difference:.1e} nats")
            print(f"  compiled decoder and log p(x|z)        {timed(lambda: fused(z)):6.2f} ms")


if __name__ == "__main__":
    main()
