"""The MLP VAE's ELBO step with its gradients written out by hand: the step a CPU run of the reference network takes.

Autograd records every operation of a step, keeps each intermediate alive in a graph and allocates a fresh
tensor for each result; on two CPU cores that bookkeeping is about a fifth of a 784-400-20 step at batch 128
(docs/performance.md). For the network most runs train (dense layers with ReLU, Bernoulli pixels, the ELBO
with L samples, β and free bits) the backward pass is short enough to write down:

    d loss / d logits = (sigmoid(l) − x) / (L·B)                      the Bernoulli log-likelihood
    through a dense layer y = h Wᵀ + b:  dW = dyᵀ h,  db = Σ dy,  dh = dy W
    through a ReLU:  dh = dy where its output is > 0, else 0
    through z = μ + σ·ε:  dμ = Σₗ dz,  d log σ² = Σₗ dz·ε·σ/2
    the KL's β·(μ, (σ² − 1)/2) / B, for each latent dimension whose batch-mean KL is not floored by free bits

Every buffer is allocated once per batch size and every elementwise pass runs in place; the products are the
ones autograd runs. The gradients land in one flat buffer, lent to the parameters' `.grad` for vaekit's Adam
(so its state, checkpoints and resume are the eager step's), and the finite check sums that buffer in one pass.
The numbers equal autograd's to float32 rounding, since sums run in another order
(tests/training/test_explicit_step.py: gradients within 1e-5 of the largest, whole runs within a tolerance).
Which runs take this step: `explicit_step_suits`; `TrainConfig.step = "autograd"` keeps the eager one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.data.batch import Batch
from vaekit.model.networks import MLPDecoder, MLPEncoder
from vaekit.model.objectives import Elbo
from vaekit.model.vae import VAE
from vaekit.training.guard import NonFinite
from vaekit.training.step import StepAt, StepParts


def explicit_step_suits(parts: StepParts, device: torch.device) -> bool:
    """Whether the hand-written step computes this run's step: a plain (unconditional) MLP VAE with ReLU and
    Bernoulli pixels, trained on the ELBO in float32 on a CPU. Everything else takes autograd's step."""
    model = parts.model
    if not (isinstance(model, VAE) and isinstance(model.encoder, MLPEncoder) and isinstance(model.decoder, MLPDecoder)):
        return False
    if model.classes or model.config.activation != "relu" or model.likelihood.name != "bernoulli":
        return False
    if not isinstance(parts.objective, Elbo) or device.type != "cpu" or parts.bf16:
        return False
    if any(p.dtype != torch.float32 for p in parts.optimizer.params):  # its buffers are float32
        return False
    linear = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    return {id(p) for p in parts.optimizer.params} == linear  # every trained weight is a dense layer's


def relu_backward_(gradient: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU, in place: zeroed where the ReLU's output is 0 (autograd's own kernel)."""
    return torch.ops.aten.threshold_backward.grad_input(gradient, output, 0.0, grad_input=gradient)


@dataclass
class Buffers:
    """Every tensor of one step for batches of one size: activations forward, their gradients backward."""

    encoder: list[torch.Tensor]  # each hidden layer's output (B, width)
    loc: torch.Tensor  # μ (B, D)
    log_variance: torch.Tensor  # log σ² (B, D)
    std: torch.Tensor  # σ (B, D)
    noise: torch.Tensor  # ε (L, B, D)
    z: torch.Tensor  # (L·B, D)
    decoder: list[torch.Tensor]  # each hidden layer's output (L·B, width)
    logits: torch.Tensor  # (L·B, P)
    d_logits: torch.Tensor
    d_decoder: list[torch.Tensor]
    d_z: torch.Tensor
    d_loc: torch.Tensor
    d_log_variance: torch.Tensor
    d_encoder: list[torch.Tensor]
    kl_factor: torch.Tensor  # (D,): β / B for a dimension whose KL counts, 0 for one floored by free bits


class ExplicitStep:
    """`Step` for the runs `explicit_step_suits` accepts; called like `EagerStep`, it returns the same sums."""

    def __init__(self, parts: StepParts):
        self.parts = parts
        model: VAE = parts.model  # type: ignore[assignment]
        self.encoder = [m for m in model.encoder.body.modules() if isinstance(m, nn.Linear)]
        self.loc_head, self.log_variance_head = model.encoder.heads.loc, model.encoder.heads.log_variance
        self.decoder = [m for m in model.decoder.body.modules() if isinstance(m, nn.Linear)] + [model.decoder.out]
        self.latent_dim = model.latent_dim
        objective: Elbo = parts.objective  # type: ignore[assignment]
        self.samples, self.free_bits = objective.mc_samples, objective.free_bits
        parameters = parts.optimizer.params
        self.flat_gradient = torch.zeros(sum(p.numel() for p in parameters), device=parameters[0].device)
        views = self.flat_gradient.split([p.numel() for p in parameters])
        self.gradients = {id(p): view.view_as(p) for p, view in zip(parameters, views)}
        self.buffers: dict[int, Buffers] = {}  # by batch size: the full batches and an epoch's last one

    def _buffers(self, batch: int) -> Buffers:
        if batch not in self.buffers:
            rows, latent = self.samples * batch, self.latent_dim

            def empty(*shape: int) -> torch.Tensor:
                return torch.empty(shape, device=self.flat_gradient.device)

            encoder = [empty(batch, m.out_features) for m in self.encoder]
            decoder = [empty(rows, m.out_features) for m in self.decoder[:-1]]
            outputs = self.decoder[-1].out_features
            self.buffers[batch] = Buffers(
                encoder, empty(batch, latent), empty(batch, latent), empty(batch, latent),
                empty(self.samples, batch, latent), empty(rows, latent), decoder, empty(rows, outputs),
                empty(rows, outputs), [torch.empty_like(t) for t in decoder], empty(rows, latent),
                empty(batch, latent), empty(batch, latent), [torch.empty_like(t) for t in encoder], empty(latent),
            )
        return self.buffers[batch]

    def gradient(self, batch: Batch, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss −(Σ log p(x|z) / L − β Σ_d max(KL_d, λ)) / B and the batch's sums (bound, reconstruction, KL),
        with every parameter's gradient written into `flat_gradient`."""
        parts, samples = self.parts, self.samples
        x = batch.x
        if parts.binarize_dynamically:
            x = torch.bernoulli(x, generator=parts.randomness.noise)
        size = len(x)
        x = x.reshape(size, -1)
        b = self._buffers(size)
        with torch.no_grad():
            h = x
            for layer, out in zip(self.encoder, b.encoder):
                h = torch.addmm(layer.bias, h, layer.weight.t(), out=out).relu_()
            loc = torch.addmm(self.loc_head.bias, h, self.loc_head.weight.t(), out=b.loc)
            log_variance = torch.addmm(self.log_variance_head.bias, h, self.log_variance_head.weight.t(),
                                       out=b.log_variance)
            std = torch.mul(log_variance, 0.5, out=b.std).exp_()
            noise = torch.randn(b.noise.shape, generator=parts.randomness.noise, out=b.noise)
            torch.addcmul(loc, std, noise, out=b.z.view_as(noise))
            g = b.z
            for layer, out in zip(self.decoder[:-1], b.decoder):
                g = torch.addmm(layer.bias, g, layer.weight.t(), out=out).relu_()
            logits = torch.addmm(self.decoder[-1].bias, g, self.decoder[-1].weight.t(), out=b.logits)
            targets = x if samples == 1 else x.expand(samples, *x.shape).reshape(logits.shape)
            # Σ −log p(x|z) = Σ softplus(l) − Σ x·l, the cross-entropy with logits summed, in two passes (not five)
            cross_entropy = F.softplus(logits).sum() - torch.dot(targets.reshape(-1), logits.view(-1))
            variance = log_variance.exp()
            kl_per_dim = (variance + loc.square() - log_variance - 1.0).mul_(0.5)  # (B, D)
            kl_sums = kl_per_dim.sum(0)  # (D,)
            reconstruction = -cross_entropy / samples  # Σ over the batch of (1/L) Σₗ log p(x|z⁽ˡ⁾)
            kl = kl_sums.sum()
            if self.free_bits > 0:
                floored = kl_sums / size < self.free_bits  # such a dimension counts λ and sends no gradient
                loss = -(reconstruction / size - beta * (kl_sums / size).clamp(min=self.free_bits).sum())
                b.kl_factor.fill_(beta / size).masked_fill_(floored, 0.0)
            else:
                loss = -(reconstruction - beta * kl) / size
                b.kl_factor.fill_(beta / size)
            self._backward(x, targets, b, variance)
            sums = torch.stack([reconstruction - kl, reconstruction, kl])
        return loss, sums

    def _backward(self, x: torch.Tensor, targets: torch.Tensor, b: Buffers, variance: torch.Tensor) -> None:
        grad = self.gradients
        scale = 1.0 / len(b.logits)  # 1 / (L·B): the loss averages log p(x|z) over the batch and the L draws
        d = torch.sigmoid(b.logits, out=b.d_logits).sub_(targets)  # (L·B, P), unscaled
        inputs = [b.z, *b.decoder]  # what each decoder layer reads
        for index in reversed(range(len(self.decoder))):
            layer, below = self.decoder[index], inputs[index]
            # the output layer's d is unscaled: its products take the 1 / (L·B) (addmm's alpha, no extra pass)
            alpha = scale if index == len(self.decoder) - 1 else 1.0
            weight_gradient, bias_gradient = grad[id(layer.weight)], grad[id(layer.bias)]
            torch.addmm(weight_gradient, d.t(), below, beta=0.0, alpha=alpha, out=weight_gradient)
            torch.sum(d, 0, out=bias_gradient).mul_(alpha)
            into = b.d_z if index == 0 else b.d_decoder[index - 1]
            torch.addmm(into, d, layer.weight, beta=0.0, alpha=alpha, out=into)
            d = into if index == 0 else relu_backward_(into, below)
        d_z = b.d_z.view_as(b.noise)  # (L, B, D)
        # z = μ + σ ε: dμ = Σₗ dz; d log σ² = Σₗ dz ε σ / 2; then the KL's β/B (μ, (σ² − 1) / 2)
        d_loc, d_log_variance = b.d_loc, b.d_log_variance
        torch.sum(d_z, 0, out=d_loc)
        torch.sum(d_z.mul(b.noise), 0, out=d_log_variance)
        d_loc.addcmul_(b.loc, b.kl_factor)
        d_log_variance.mul_(b.std).mul_(0.5).addcmul_(variance.sub_(1.0), b.kl_factor, value=0.5)
        h = b.encoder[-1] if self.encoder else x
        for head, d_head in ((self.loc_head, d_loc), (self.log_variance_head, d_log_variance)):
            torch.mm(d_head.t(), h, out=grad[id(head.weight)])
            torch.sum(d_head, 0, out=grad[id(head.bias)])
        if not self.encoder:
            return
        d = torch.mm(d_loc, self.loc_head.weight, out=b.d_encoder[-1])
        d.addmm_(d_log_variance, self.log_variance_head.weight)
        for index in reversed(range(len(self.encoder))):
            layer = self.encoder[index]
            d = relu_backward_(d, b.encoder[index])
            below = x if index == 0 else b.encoder[index - 1]
            torch.mm(d.t(), below, out=grad[id(layer.weight)])
            torch.sum(d, 0, out=grad[id(layer.bias)])
            if index > 0:
                d = torch.mm(d, layer.weight, out=b.d_encoder[index - 1])

    def __call__(self, batch: Batch, at: StepAt) -> torch.Tensor:
        loss, sums = self.gradient(batch, at.beta)
        parts = self.parts
        for p in parts.optimizer.params:
            p.grad = self.gradients[id(p)]
        # The finite check: the loss and the sum of every gradient entry, in one pass over the flat buffer (a NaN
        # or an infinity anywhere makes the total one, as does a sum too large for float32: divergence too).
        if not math.isfinite(self.flat_gradient.sum().add_(loss).item()):
            parts.guard.check(loss)  # names the loss or the parameter whose gradient is not finite
            parts.optimizer.zero_grad(set_to_none=True)
            raise NonFinite("the sum of the gradients")  # finite gradients whose sum overflows: divergence too
        parts.update(at)
        return sums
