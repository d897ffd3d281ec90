"""A trained text run in sentences: sample, encode, reconstruct and interpolate lines of text.

    run = TrainedVAE("runs/text")
    run.text.sample(5, beam=4)                       # ['the cat sat on the mat .', ...]
    run.text.reconstruct(["the dog ran home ."])    # [('the dog ran home .', 'the dog ran home .')]
    run.text.interpolate("i am here .", "you were there .", steps=5)   # Bowman et al.'s homotopy

Lines go to token ids by the run's own tokenizer (vaekit.data.tokens), saved in its config.json.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vaekit.data.batch import Batch
from vaekit.data.tokens import TokenCodec
from vaekit.errors import UserError
from vaekit.model import latent_paths
from vaekit.model.objectives import gaussian_kl
from vaekit.model.sentence_decoding import decode_sentences
from vaekit.model.sentence_vae import SentenceVAE


class TrainedSentences:
    def __init__(self, model: SentenceVAE, codec: TokenCodec, device: torch.device):
        self.model, self.codec, self.device = model, codec, device

    def ids(self, lines: Sequence[str]) -> torch.Tensor:
        """Lines as the model's token ids (N, max_length + 1) on the device; a line longer than the run's
        max_length is cut there, as in training."""
        if isinstance(lines, str):
            lines = [lines]
        if not all(isinstance(line, str) for line in lines):
            raise UserError("a text run takes lines of text (strings)")
        if not lines:
            raise UserError("no lines of text given")
        ids, _, _ = self.codec.encode([" ".join(line.split()) for line in lines])
        return torch.as_tensor(ids, device=self.device)

    def decode(self, z: torch.Tensor, temperature: float | None = None, beam: int = 1, seed: int = 0) -> list[str]:
        """Sentences for codes z (N, D): greedy, drawn at `temperature`, or by beam search of width `beam`."""
        if temperature is not None and not temperature > 0:
            raise UserError(f"--temperature {temperature}: must be above 0 (1 draws each word from p(x|z), "
                            "lower is nearer the greedy choice); leave it out for greedy decoding")
        if beam < 1:
            raise UserError(f"--beam {beam}: must be 1 (greedy) or more")
        if beam > 1 and temperature is not None:
            raise UserError("--beam and --temperature: beam search keeps the likeliest words, drawing picks them "
                            "at random; choose one")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return self.codec.decode(decode_sentences(self.model, z, temperature, beam, generator).cpu().numpy())

    @torch.no_grad()
    def sample(self, count: int, seed: int = 0, temperature: float | None = None, beam: int = 1) -> list[str]:
        """`count` sentences from codes z ~ p(z) = N(0, I) drawn by `seed`."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        z = torch.randn(count, self.model.latent_dim, generator=generator, device=self.device)
        return self.decode(z, temperature, beam, seed)

    @torch.no_grad()
    def encode(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """μ(x) and σ(x) of q(z|x) (N, D) for each line."""
        loc, log_variance = self.model.encode(Batch(self.ids(lines)))
        return loc.cpu().numpy(), torch.exp(0.5 * log_variance).cpu().numpy()

    @torch.no_grad()
    def encode_ids(self, ids: np.ndarray) -> np.ndarray:
        """μ(x) (N, D) of lines given as the run's token ids (N, max_length + 1), as `load_inputs` reads them."""
        loc, _ = self.model.encode(Batch(torch.as_tensor(np.asarray(ids), device=self.device)))
        return loc.cpu().numpy()

    @torch.no_grad()
    def traverse(self, dims: list[int], steps: int = 7, span: float = 3.0, line: str | None = None,
                 posterior_scale: bool = False) -> list[list[str]]:
        """Each of `dims` swept from −span to +span around a base code, the others held, decoded greedily: a list
        of `steps` sentences per dimension. The base is μ(line), or the prior's mean 0 without a line; the step
        is the prior's 1, or with `posterior_scale` the line's σ(x)."""
        base = torch.zeros(self.model.latent_dim, device=self.device)
        scales = torch.ones_like(base)
        if line is not None:
            loc, log_variance = self.model.encode(Batch(self.ids([line])))
            base = loc[0]
            scales = torch.exp(0.5 * log_variance[0]) if posterior_scale else scales
        elif posterior_scale:
            raise UserError("--posterior-scale needs a line to take σ(x) from: pass --text LINE or --index I")
        codes = latent_paths.traversal(base, scales, dims, steps, span)  # (dims, steps, D)
        sentences = self.decode(codes.reshape(-1, self.model.latent_dim))
        return [sentences[i * steps : (i + 1) * steps] for i in range(len(dims))]

    @torch.no_grad()
    def kl_per_dimension(self, lines: Sequence[str]) -> np.ndarray:
        """KL(q(zⱼ|x) ‖ p(zⱼ)) of each latent dimension averaged over the lines: (D,) nats."""
        loc, log_variance = self.model.encode(Batch(self.ids(lines)))
        return gaussian_kl(loc, log_variance).mean(0).cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, lines: Sequence[str], temperature: float | None = None,
                    beam: int = 1) -> list[tuple[str, str]]:
        """Each line, as the run's tokenizer reads it, beside its reconstruction decoded from z = μ(x)."""
        ids = self.ids(lines)
        loc, _ = self.model.encode(Batch(ids))
        return list(zip(self.codec.decode(ids.cpu().numpy()), self.decode(loc, temperature, beam)))

    @torch.no_grad()
    def interpolate(self, start: str, end: str, steps: int = 8, path: str = "linear", beam: int = 1) -> list[str]:
        """The homotopy between two sentences (Bowman et al.'s Table 8): the sentences decoded along the path
        from μ(start) to μ(end), both ends included."""
        latent_paths.check_path(path, steps)
        loc, _ = self.model.encode(Batch(self.ids([start, end])))
        codes = latent_paths.interpolation(loc[:1], loc[1:], steps, path)[0]  # (steps, D)
        return self.decode(codes, beam=beam)
