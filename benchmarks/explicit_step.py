"""How near the product bound a training step of the 784-400-20 VAE can come without autograd: an experiment
for the speed issue, not a path vaekit trains with.

The step is written out by hand: forward, the ELBO's gradient layer by layer, and Adam, every tensor
preallocated and every elementwise pass in place, with the same matrix products autograd runs (forward, then
the weight and input gradients). It is checked against autograd's gradients of the same loss (to float32
rounding, since the sums run in another order), then timed against vaekit's own eager step (`EagerStep` with
its Adam and weight average switched off, so both do the same work) and against the bound of
benchmarks/product_bound.py, in one run, interleaved.

    python benchmarks/explicit_step.py                  # batch 128, 2 threads: img/s and fraction of the bound
    python benchmarks/explicit_step.py --batch 256 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from product_bound import step_products_seconds

SIZES = (784, 400, 20)


def relu_backward(gradient: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU, in place: zero where its output is 0 (one fused pass, no mask tensor)."""
    return torch.ops.aten.threshold_backward.grad_input(gradient, output, 0.0, grad_input=gradient)


class ExplicitStep:
    """One ELBO step (L = 1, Bernoulli, ReLU, β) of x (B, 784) in [0, 1], gradients by hand, then Adam."""

    def __init__(self, batch: int, learning_rate: float = 1e-3, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        data, hidden, latent = SIZES

        def linear(fan_in: int, fan_out: int) -> list[torch.Tensor]:
            bound = fan_in ** -0.5
            return [(torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound,
                    (torch.rand(fan_out, generator=generator) * 2 - 1) * bound]

        # encoder 784 -> 400 -> (μ, log σ²) as one 400 -> 40 product; decoder 20 -> 400 -> 784
        self.parameters = [*linear(data, hidden), *linear(hidden, 2 * latent), *linear(latent, hidden),
                           *linear(hidden, data)]
        self.gradients = [torch.zeros_like(p) for p in self.parameters]
        self.first = [torch.zeros_like(p) for p in self.parameters]
        self.second = [torch.zeros_like(p) for p in self.parameters]
        self.learning_rate, self.steps = learning_rate, torch.zeros(())  # Adam's step count, one tensor for all
        b = batch
        self.h1, self.heads = torch.empty(b, hidden), torch.empty(b, 2 * latent)
        self.std, self.z = torch.empty(b, latent), torch.empty(b, latent)
        self.h2, self.logits = torch.empty(b, hidden), torch.empty(b, data)
        self.d_logits, self.d_h2, self.d_z = torch.empty(b, data), torch.empty(b, hidden), torch.empty(b, latent)
        self.d_heads, self.d_h1 = torch.empty(b, 2 * latent), torch.empty(b, hidden)

    def gradient(self, x: torch.Tensor, noise: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """The loss −(Σ log p(x|z) − β KL) / B, with each parameter's gradient in `self.gradients`."""
        w1, b1, w2, b2, w3, b3, w4, b4 = self.parameters
        g1, gb1, g2, gb2, g3, gb3, g4, gb4 = self.gradients
        batch, latent = len(x), SIZES[2]
        torch.addmm(b1, x, w1.t(), out=self.h1).clamp_(min=0)
        torch.addmm(b2, self.h1, w2.t(), out=self.heads)
        loc, log_variance = self.heads[:, :latent], self.heads[:, latent:]
        torch.mul(log_variance, 0.5, out=self.std).exp_()
        torch.addcmul(loc, self.std, noise, out=self.z)
        torch.addmm(b3, self.z, w3.t(), out=self.h2).clamp_(min=0)
        torch.addmm(b4, self.h2, w4.t(), out=self.logits)
        reconstruction = F.binary_cross_entropy_with_logits(self.logits, x, reduction="sum")
        kl = 0.5 * (log_variance.exp() + loc.square() - log_variance - 1).sum()
        scale = 1.0 / batch
        # the output layer: d loss / d logits = (sigmoid(l) − x) / B
        torch.sigmoid(self.logits, out=self.d_logits).sub_(x).mul_(scale)
        torch.mm(self.d_logits.t(), self.h2, out=g4)
        torch.sum(self.d_logits, 0, out=gb4)
        relu_backward(torch.mm(self.d_logits, w4, out=self.d_h2), self.h2)
        torch.mm(self.d_h2.t(), self.z, out=g3)
        torch.sum(self.d_h2, 0, out=gb3)
        torch.mm(self.d_h2, w3, out=self.d_z)
        # the heads: through z = μ + σ ε, and the KL's β (μ and (σ² − 1) / 2) / B
        d_loc, d_log_variance = self.d_heads[:, :latent], self.d_heads[:, latent:]
        torch.add(self.d_z, loc, alpha=beta * scale, out=d_loc)
        torch.mul(self.d_z, noise, out=d_log_variance).mul_(self.std).mul_(0.5)
        d_log_variance.add_(self.std.square().sub(1), alpha=0.5 * beta * scale)
        torch.mm(self.d_heads.t(), self.h1, out=g2)
        torch.sum(self.d_heads, 0, out=gb2)
        relu_backward(torch.mm(self.d_heads, w2, out=self.d_h1), self.h1)
        torch.mm(self.d_h1.t(), x, out=g1)
        torch.sum(self.d_h1, 0, out=gb1)
        return (reconstruction + beta * kl) * scale

    def update(self) -> None:
        """Adam (β₁ 0.9, β₂ 0.999), fused over all parameters, as vaekit's optimizer runs on a CPU."""
        self.steps += 1
        torch._fused_adam_(self.parameters, self.gradients, self.first, self.second, [],
                           [self.steps] * len(self.parameters), lr=self.learning_rate, beta1=0.9, beta2=0.999,
                           weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)

    def step(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        loss = self.gradient(x, noise)
        if not torch.isfinite(loss):
            raise FloatingPointError("the loss is not finite")
        self.update()
        return loss


def autograd_gradients(step: ExplicitStep, x: torch.Tensor, noise: torch.Tensor) -> list[torch.Tensor]:
    """The same loss by autograd, for the check."""
    w1, b1, w2, b2, w3, b3, w4, b4 = [p.detach().clone().requires_grad_() for p in step.parameters]
    latent = SIZES[2]
    heads = F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)
    loc, log_variance = heads[:, :latent], heads[:, latent:]
    z = loc + torch.exp(0.5 * log_variance) * noise
    logits = F.linear(F.relu(F.linear(z, w3, b3)), w4, b4)
    kl = 0.5 * (log_variance.exp() + loc.square() - log_variance - 1).sum()
    loss = (F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + kl) / len(x)
    return list(torch.autograd.grad(loss, [w1, b1, w2, b2, w3, b3, w4, b4]))


def vaekit_step(batch: int):
    """vaekit's eager step of the same network and objective, with the weight average off."""
    from vaekit.config import ModelConfig, TrainConfig
    from vaekit.data.batch import Batch
    from vaekit.model.vae import VAE
    from vaekit.training.loop import step_parts
    from vaekit.training.step import EagerStep, StepAt

    model = VAE(ModelConfig(), (1, 28, 28), "bernoulli")
    parts = step_parts(model, TrainConfig(batch_size=batch, weight_average=0.0), torch.device("cpu"), False)
    eager = EagerStep(parts)
    at = StepAt(1, 1.0, 1e-3, batch)
    return lambda x: eager(Batch(x.view(-1, 1, 28, 28)), at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(args.batch, SIZES[0], generator=generator) < 0.3).float()
    noise = torch.randn(args.batch, SIZES[2], generator=generator)
    explicit = ExplicitStep(args.batch)
    explicit.gradient(x, noise)
    worst = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
                for a, b in zip(explicit.gradients, autograd_gradients(explicit, x, noise)))
    print(f"explicit gradients against autograd's: largest difference {worst:.2e} of the largest gradient")
    ours = vaekit_step(args.batch)
    timings: dict[str, list[float]] = {"products alone": [], "explicit step": [], "vaekit eager step": []}
    for _ in range(args.repeats):
        timings["products alone"].append(step_products_seconds(args.batch))
        for name, work in (("explicit step", lambda: explicit.step(x, noise)), ("vaekit eager step", lambda: ours(x))):
            for _ in range(20):
                work()
            started = time.perf_counter()
            for _ in range(args.steps):
                work()
            timings[name].append((time.perf_counter() - started) / args.steps)
    bound = statistics.median(timings["products alone"])
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, medians of {args.repeats}:")
    for name, seconds in timings.items():
        per_step = statistics.median(seconds)
        print(f"  {name:<18} {per_step * 1e3:6.3f} ms/step  {args.batch / per_step:>9,.0f} img/s  "
              f"{bound / per_step:5.0%} of the bound")


if __name__ == "__main__":
    main()
