"""How long K = 5000 importance samples over the 10,000 Fashion-MNIST test images take.

Three ways of computing the same estimate, timed in one run on the reference MLP (784-400-20):

1. vaekit's `evaluate`: samples and examples batched into (k, B, D) chunks through the decoder,
   the Bernoulli log-likelihood on its fast path, over the whole test set;
2. the same batching with log p(x|z) from the `torch.distributions` object (timed on a subset);
3. straightforward per-example loops: for each image, samples from q(z|x) as a distribution
   object, log p(x|z) + log p(z) − log q(z|x), logsumexp; once as Pythae's `get_nll` does it
   (100 samples per step, the image re-encoded each step, autograd on), once with all K samples
   of an image in one step under no_grad (timed on a subset).

Subset timings are extrapolated linearly to the whole test set, and the output says so. Speed does
not depend on the weights, so an untrained model is used unless --run names a trained one.

    python benchmarks/evaluate_speed.py                     # the full measurement (minutes on a CPU)
    python benchmarks/evaluate_speed.py --examples 500      # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from product_bound import decoder_products_seconds_per_sample

from vaekit.config import DataConfig, ModelConfig
from vaekit.data import load_data
from vaekit.data.batch import Batch
from vaekit.evaluation.importance import evaluate, importance_terms
from vaekit.model.vae import VAE
from vaekit.runs.directory import load_model
from vaekit.runtime.cpu import flush_denormals, keep_freed_memory


def decoder_layers(model: VAE) -> tuple[tuple[int, int], ...]:
    """(fan_in, fan_out) of the decoder's linear layers, in order."""
    return tuple((m.in_features, m.out_features) for m in model.decoder.modules() if isinstance(m, torch.nn.Linear))


def distribution_log_likelihood(model: VAE, z: torch.Tensor, batch: Batch) -> torch.Tensor:
    return model.observation_model(z).log_prob(batch.x)


def per_example_loop(
    model: VAE, x: torch.Tensor, importance_samples: int, seed: int, samples_per_step: int
) -> torch.Tensor:
    """log p̂(x) (N,) one example at a time, `samples_per_step` samples per step, with distribution
    objects and autograd left on: the shape of Pythae's `get_nll` (which also re-encodes the
    repeated image at every step)."""
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for example in x:
        log_weights = []
        for start in range(0, importance_samples, samples_per_step):
            repeated = example.expand(min(samples_per_step, importance_samples - start), *example.shape)
            posterior = model.posterior(Batch(repeated))  # batch (S,), event (D,)
            loc, scale = posterior.base_dist.loc, posterior.base_dist.scale
            z = loc + scale * torch.randn(loc.shape, generator=generator)  # (S, D)
            log_weights.append(model.observation_model(z).log_prob(repeated) + model.prior(z).log_prob(z)
                               - posterior.log_prob(z))
        estimates.append((torch.logsumexp(torch.cat(log_weights), 0) - math.log(importance_samples)).item())
    return torch.tensor(estimates)


CPU_SECONDS: dict[str, float] = {}  # CPU time of each measurement: on a shared machine, wall time overstates


def timed(function, *args, name: str, **kwargs):
    started, cpu_started = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    CPU_SECONDS[name] = time.process_time() - cpu_started
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--importance-samples", type=int, default=5000, metavar="K")
    parser.add_argument("--examples", type=int, default=10_000, help="test images for the vectorized run")
    parser.add_argument("--subset", type=int, default=200, help="images for the distribution-object batched run")
    parser.add_argument("--loop-examples", type=int, default=20, help="images for the per-example loops")
    parser.add_argument("--run", help="a trained run directory (default: an untrained 784-400-20 MLP)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc settings alone (to measure what keep_freed_memory saves)")
    args = parser.parse_args()
    if not args.default_malloc:
        keep_freed_memory()  # as `vaekit evaluate` does

    config = DataConfig(source="fashion-mnist", binarize="dynamic", validation_fraction=1 / 6)
    splits = load_data(config)  # the test images binarized once, as in the papers' protocol
    if args.run:
        model = load_model(args.run)[0]
    else:
        torch.manual_seed(args.seed)
        model = VAE(ModelConfig(), splits.event_shape, "bernoulli").eval()
    stored = torch.as_tensor(splits.test.x[: args.examples])
    total = len(splits.test)
    k = args.importance_samples
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'default' if args.default_malloc else 'kept'} freed memory; model {model.config.hidden_sizes} "
          f"latent {model.latent_dim}; K = {k}; whole test set = {total} images", flush=True)

    figures, vectorized_seconds = timed(evaluate, model, stored, splits.codec, k, args.seed, name="vectorized")
    vectorized_total = vectorized_seconds * total / len(stored)
    print(f"vectorized (vaekit evaluate):   {vectorized_seconds:8.1f} s for {len(stored)} images"
          f"{'' if len(stored) == total else f' -> {vectorized_total:.0f} s for {total} (extrapolated)'}; "
          f"NLL {figures.nll:.2f}", flush=True)
    bound_total = decoder_products_seconds_per_sample(decoder_layers(model)) * k * total
    print(f"product bound: the decoder's matrix products alone for {k} x {total} samples: {bound_total:.0f} s; "
          f"vaekit takes {vectorized_total / bound_total:.2f}x it", flush=True)

    x_subset = splits.codec.to_model(stored[: args.subset])
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        terms, distribution_seconds = timed(importance_terms, model, x_subset, k, generator, name="distribution",
                                            log_likelihood_fn=distribution_log_likelihood)
    distribution_total = distribution_seconds * total / len(x_subset)
    print(f"vectorized, distribution p(x|z): {distribution_seconds:7.1f} s for {len(x_subset)} images -> "
          f"{distribution_total:.0f} s for {total} (extrapolated); NLL {-terms.log_marginal.mean():.2f}", flush=True)

    x_loop = splits.codec.to_model(stored[: args.loop_examples])
    loops = {}
    for name, samples_per_step in (("loop_100_per_step_grad_on", 100), ("loop_all_k_per_step", k)):
        context = torch.enable_grad() if samples_per_step == 100 else torch.no_grad()
        with context:
            estimates, seconds = timed(per_example_loop, model, x_loop, k, args.seed, samples_per_step, name=name)
        loops[name] = (seconds, seconds * total / len(x_loop))
        print(f"per-example loop, {samples_per_step:>4} samples/step"
              f"{', autograd on' if samples_per_step == 100 else ', no_grad   '}:"
              f" {seconds:6.1f} s for {len(x_loop)} images -> {loops[name][1]:.0f} s for {total} (extrapolated); "
              f"NLL {-estimates.mean():.2f}", flush=True)
    with torch.no_grad():
        same_images = importance_terms(model, x_loop, k, torch.Generator().manual_seed(args.seed + 1))
    print(f"on the loops' {len(x_loop)} images: vectorized NLL {-same_images.log_marginal.mean():.3f} "
          f"(independent samples, for comparison)")
    print("speed-up of vectorized over the loops: "
          + ", ".join(f"{total_seconds / vectorized_total:.1f}x ({name})" for name, (_, total_seconds) in loops.items())
          + f"; fast Bernoulli path over the distribution object: {distribution_total / vectorized_total:.2f}x")
    print(json.dumps({
        "importance_samples": k, "threads": torch.get_num_threads(), "default_malloc": args.default_malloc,
        "test_images": total,
        "vectorized_seconds": vectorized_seconds, "vectorized_images": len(stored),
        "vectorized_seconds_whole_test_set": vectorized_total,
        "distribution_seconds": distribution_seconds, "distribution_images": len(x_subset),
        "distribution_seconds_whole_test_set_extrapolated": distribution_total,
        "loop_images": len(x_loop),
        **{f"{name}_seconds": seconds for name, (seconds, _) in loops.items()},
        **{f"{name}_seconds_whole_test_set_extrapolated": total for name, (_, total) in loops.items()},
        "nll": figures.nll, "cpu_seconds": CPU_SECONDS, "product_bound_seconds_whole_test_set": bound_total,
    }))


if __name__ == "__main__":
    with flush_denormals():  # on every thread, as `vaekit evaluate` does; for every method measured here alike
        main()
