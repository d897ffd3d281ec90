"""A VAE of sentences (Bowman et al. 2016, "Generating Sentences from a Continuous Space").

q(z|x) = N(μ, σ²) from the last state of a GRU that reads the sentence's token embeddings; the prior
p(z) = N(0, I); and an autoregressive decoder p(x|z) = Πₜ p(xₜ | x<ₜ, z): a GRU that starts from a state
computed from z and sees z beside every input token, trained by teacher forcing. Word dropout replaces
a share of the decoder's input tokens by <unk> while training, so that it cannot predict the next word
from the previous ones alone and must use z; KL warm-up and free bits are the engine's.

It is the engine's model interface (docs/architecture.md) and nothing more: `encode(batch)`,
`log_likelihood(z, batch)` and `latent_dim`. A batch's `x` is (B, T) token ids padded with <pad> = 0
(vaekit.data.tokens), so the model finds each sentence's tokens itself; a batch is cut to its longest
sentence first, so a batch of short ones costs little.

With `language_model` it is the baseline a sentence VAE is measured against: the decoder without z. Its
q(z|x) is the prior itself, so the KL is 0, and log p(x|z) = log p(x): its bound is its exact
log-likelihood, and importance sampling returns it for any K.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.data.tokens import BOS, PAD, UNK


class SentenceVAE(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, max_length: int):
        """`vocab_size` token ids, the special ones included; sentences of `max_length` tokens and </s>."""
        super().__init__()
        self.config, self.latent_dim, self.classes = config, config.latent_dim, 0
        self.vocab_size, self.max_length = vocab_size, max_length
        self.event_shape = (max_length + 1,)
        self.language_model = config.language_model
        embedding, hidden, latent = config.embedding_dim, config.rnn_size, config.latent_dim
        self.embedding = nn.Embedding(vocab_size, embedding, padding_idx=PAD)  # shared by encoder and decoder
        if not self.language_model:
            self.encoder = nn.GRU(embedding, hidden, batch_first=True)
            self.to_loc, self.to_log_variance = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
            self.to_initial_state = nn.Linear(latent, hidden)
        self.decoder = nn.GRU(embedding + (0 if self.language_model else latent), hidden, batch_first=True)
        self.to_logits = nn.Linear(hidden, vocab_size)

    @property
    def output_elements(self) -> int:
        """Values the decoder outputs per example (a logit per token id and position): evaluation's chunks."""
        return self.vocab_size * (self.max_length + 1)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² (B, D) of q(z|x) from the encoder GRU's state after each sentence's last token."""
        x = batch.x
        if self.language_model:  # q(z|x) = p(z): nothing is encoded
            zeros = torch.zeros(len(x), self.latent_dim, device=x.device)
            return zeros, zeros.clone()
        lengths = (x != PAD).sum(1)
        packed = pack_padded_sequence(self.embedding(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.encoder(packed)  # (1, B, H): each sentence's state after its own last token
        return self.to_loc(last[0]), self.to_log_variance(last[0])

    def log_likelihood(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """log p(x|z) = Σₜ log p(xₜ | x<ₜ, z) (..., B) for latents z (..., B, D), by teacher forcing."""
        x = batch.x
        longest = int((x != PAD).sum(1).max())
        targets = x[:, :longest]  # every sentence ends in </s>; what follows it is <pad>, which scores nothing
        inputs = self._dropped(torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], 1))
        embedded = self.embedding(inputs)  # (B, T, E)
        lead = z.shape[:-1]  # (..., B)
        samples = math.prod(lead[:-1])
        if self.language_model:  # the same for every z
            return self._log_probs(self.decoder(embedded)[0], targets).expand(lead)
        z = z.reshape(samples * len(x), self.latent_dim)
        steps = embedded.expand(samples, *embedded.shape).reshape(samples * len(x), longest, -1)
        steps = torch.cat([steps, z[:, None].expand(-1, longest, -1).to(steps.dtype)], -1)
        outputs, _ = self.decoder(steps, self.initial_state(z))
        return self._log_probs(outputs, targets.repeat(samples, 1)).view(lead)

    def importance_log_likelihood(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """log p(x|z) (K, B) of K importance samples (evaluation's path): the same as `log_likelihood`."""
        return self.log_likelihood(z, batch)

    def initial_state(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder GRU's first state (1, N, H) from z (N, D)."""
        return torch.tanh(self.to_initial_state(z))[None]

    def _log_probs(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Σₜ log p(targetₜ) (N,) from the decoder's outputs (N, T, H); <pad> targets count 0."""
        logits = self.to_logits(outputs).float()
        token_nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD, reduction="none")
        return -token_nll.sum(1)

    def _dropped(self, inputs: torch.Tensor) -> torch.Tensor:
        """While training, each input token but <s> replaced by <unk> with probability `word_dropout` (drawn from
        torch's CPU generator, which a checkpoint saves, so a resumed run drops the same words)."""
        rate = self.config.word_dropout
        if not self.training or rate == 0:
            return inputs
        drop = (torch.rand(inputs.shape) < rate).to(inputs.device)
        drop[:, 0] = False
        return inputs.masked_fill(drop & (inputs != PAD), UNK)

    def next_token_logits(self, tokens: torch.Tensor, state: torch.Tensor | None,
                          z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: the logits (N, V) of the token after `tokens` (N,), and the new state."""
        step = self.embedding(tokens)[:, None]
        if not self.language_model:
            step = torch.cat([step, z[:, None].to(step.dtype)], -1)
        output, state = self.decoder(step, state)
        return self.to_logits(output[:, 0]).float(), state

    def first_state(self, z: torch.Tensor) -> torch.Tensor | None:
        """The decoder's state before the first token (None: the GRU's zeros, for the language model)."""
        return None if self.language_model else self.initial_state(z)

    def start_output_at(self, frequencies: torch.Tensor) -> None:
        """Start the output bias at the log frequencies (V,) of the training tokens, so that before training
        p(xₜ | x<ₜ, z) is the unigram distribution (`TrainingData.mean` of token ids)."""
        with torch.no_grad():
            self.to_logits.bias.copy_(torch.log(frequencies.clamp(min=1e-8)))
