"""Adam (Kingma & Ba, 2015), the update of `torch.optim.Adam`, without torch.optim's machinery.

Every `torch.optim` optimizer imports `torch._dynamo` (and with it sympy) the first time it adds
a parameter group or takes a step: 70 MB of resident memory and more than a second of start-up
for a trainer that never compiles anything. This class takes the same step, with the same fused
kernel where the device has one (`torch._fused_adam_`, what `Adam(fused=True)` calls), and the
textbook per-tensor update elsewhere; tests/test_optim.py checks both bit for bit against
`torch.optim.Adam`. Its `state_dict` has torch's layout, so checkpoints hold the same tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

FUSED_DEVICES = ("cpu", "cuda")  # where torch.optim.Adam(fused=True) has long had its kernel (CPU since torch 2.4)


class Adam:
    """Adam without weight decay or AMSGrad, as vaekit trains. `param_groups[0]["lr"]` may be changed
    between steps (a schedule), as with torch.optim."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        fused: bool | None = None,
    ):
        self.params = list(params)
        self.param_groups: list[dict[str, Any]] = [
            {"params": self.params, "lr": lr, "betas": tuple(betas), "eps": eps}
        ]
        devices = {p.device.type for p in self.params}
        self.fused = (
            all(d in FUSED_DEVICES for d in devices) and hasattr(torch, "_fused_adam_") if fused is None else fused
        )
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def _state(self, index: int, p: torch.Tensor) -> dict[str, torch.Tensor]:
        if index not in self.state:
            # As torch.optim.Adam keeps them: the step count a float32 tensor beside the parameter
            # (fused) or on the CPU (per tensor), the moments zeros of the parameter's shape.
            step_device = p.device if self.fused else torch.device("cpu")
            self.state[index] = {
                "step": torch.zeros((), dtype=torch.float32, device=step_device),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return self.state[index]

    def init_state(self) -> None:
        """Create every parameter's state now (zero moments, step 0) rather than at its first step."""
        for i, p in enumerate(self.params):
            self._state(i, p)

    @torch.no_grad()
    def step(self, lr: torch.Tensor | None = None, found_inf: torch.Tensor | None = None) -> None:
        """One update of the parameters with gradients. For a step captured in a CUDA graph (fused only):
        `lr`, a tensor on the device read when the step runs, in place of the group's; `found_inf`, a
        float tensor that skips the update, step count included, where it is 1."""
        group = self.param_groups[0]
        (beta1, beta2), eps = group["betas"], group["eps"]
        lr = group["lr"] if lr is None else lr
        live = [(i, p) for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        states = [self._state(i, p) for i, p in live]
        if (found_inf is not None or isinstance(lr, torch.Tensor)) and not self.fused:
            raise ValueError("a tensor learning rate or found_inf needs the fused kernel")
        if self.fused:
            by_device: dict[tuple[torch.device, torch.dtype], list[int]] = {}
            for k, (_, p) in enumerate(live):
                by_device.setdefault((p.device, p.dtype), []).append(k)
            for members in by_device.values():
                steps = [states[k]["step"] for k in members]
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(
                    [live[k][1] for k in members], [live[k][1].grad for k in members],
                    [states[k]["exp_avg"] for k in members], [states[k]["exp_avg_sq"] for k in members],
                    [], steps, amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps,
                    maximize=False, grad_scale=None, found_inf=found_inf,
                )
                if found_inf is not None:  # a skipped update does not count as a step (as torch.optim)
                    torch._foreach_sub_(steps, [found_inf] * len(steps))
            return
        for (_, p), state in zip(live, states):
            state["step"] += 1
            step = state["step"].item()
            state["exp_avg"].lerp_(p.grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad.conj(), value=1 - beta2)
            bias_correction1 = 1 - beta1**step
            bias_correction2_sqrt = math.sqrt(1 - beta2**step)
            denominator = (state["exp_avg_sq"].sqrt() / bias_correction2_sqrt).add_(eps)
            p.addcdiv_(state["exp_avg"], denominator, value=-lr / bias_correction1)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: per-parameter state by index, and the settings with parameter indices."""
        settings = {key: value for key, value in self.param_groups[0].items() if key != "params"}
        return {
            "state": {index: dict(values) for index, values in self.state.items()},
            "param_groups": [{**settings, "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Per-parameter state from `state_dict`'s layout (copied to each parameter's device and dtype);
        the settings stay this optimizer's own."""
        state: dict[int, dict[str, torch.Tensor]] = {}
        for index, values in saved["state"].items():
            index = int(index)
            if not 0 <= index < len(self.params):
                raise ValueError(f"state for parameter {index}, but there are {len(self.params)}")
            p = self.params[index]
            missing = {"step", "exp_avg", "exp_avg_sq"} - set(values)
            if missing:
                raise ValueError(f"state for parameter {index} lacks {sorted(missing)}")
            for name in ("exp_avg", "exp_avg_sq"):
                if values[name].shape != p.shape:
                    raise ValueError(f"{index}.{name} is {tuple(values[name].shape)}, its parameter {tuple(p.shape)}")
            step_device = p.device if self.fused else torch.device("cpu")
            state[index] = {
                "step": torch.as_tensor(values["step"], dtype=torch.float32).to(step_device).clone(),
                "exp_avg": values["exp_avg"].to(p.device, p.dtype, copy=True),
                "exp_avg_sq": values["exp_avg_sq"].to(p.device, p.dtype, copy=True),
            }
        self.state = state
