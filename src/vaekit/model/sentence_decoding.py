"""Sentences from codes: a sentence VAE's decoder run token by token from z, until </s>.

Three ways, as Bowman et al. show them: greedy (the most likely token at each step), drawn (each token
drawn from p(xₜ | x<ₜ, z) sharpened by a temperature), and beam search (the `beam` most likely prefixes
kept at each step; the likeliest finished sentence wins). Each returns token ids (N, max_length + 1):
the tokens, </s>, then <pad>.
"""

from __future__ import annotations

import torch

from vaekit.data.tokens import BOS, EOS, PAD
from vaekit.model.sentence_vae import SentenceVAE


@torch.no_grad()
def decode_sentences(model: SentenceVAE, z: torch.Tensor, temperature: float | None = None, beam: int = 1,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Token ids (N, max_length + 1) for codes z (N, D): greedy by default, drawn at `temperature` when one is
    given, or by beam search of width `beam` > 1."""
    if beam > 1:
        return _beam_search(model, z, beam)
    count, steps = len(z), model.max_length + 1
    tokens = torch.full((count,), BOS, dtype=torch.long, device=z.device)
    state = model.first_state(z)
    out = torch.full((count, steps), PAD, dtype=torch.long, device=z.device)
    finished = torch.zeros(count, dtype=torch.bool, device=z.device)
    for step in range(steps):
        logits, state = model.next_token_logits(tokens, state, z)
        logits[:, (PAD, BOS)] = -torch.inf  # never emitted
        if step == steps - 1:
            tokens = torch.full_like(tokens, EOS)  # the longest a sentence may be: it ends here
        elif temperature is None:
            tokens = logits.argmax(-1)
        else:
            tokens = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
        out[:, step] = torch.where(finished, torch.full_like(tokens, PAD), tokens)
        finished |= tokens == EOS
        if bool(finished.all()):
            break
    return out


def _beam_search(model: SentenceVAE, z: torch.Tensor, beam: int) -> torch.Tensor:
    """The likeliest sentence of each z among `beam` prefixes kept at every step (log-probability summed;
    a finished sentence keeps its score and waits)."""
    count, steps, vocab = len(z), model.max_length + 1, model.vocab_size
    device = z.device
    z = z.repeat_interleave(beam, 0)  # (N·k, D): beam j of example i at row i·k + j
    state = model.first_state(z)
    tokens = torch.full((count * beam,), BOS, dtype=torch.long, device=device)
    scores = torch.full((count, beam), -torch.inf, device=device)
    scores[:, 0] = 0.0  # one prefix to start from, not k copies of it
    history = torch.full((count, beam, steps), PAD, dtype=torch.long, device=device)
    finished = torch.zeros(count, beam, dtype=torch.bool, device=device)
    rows = torch.arange(count, device=device)[:, None]
    for step in range(steps):
        logits, state = model.next_token_logits(tokens, state, z)
        log_probs = torch.log_softmax(logits, -1)
        log_probs[:, (PAD, BOS)] = -torch.inf
        if step == steps - 1:
            log_probs[:, :EOS] = log_probs[:, EOS + 1 :] = -torch.inf  # only </s> is left
            log_probs[:, EOS] = 0.0
        log_probs = log_probs.view(count, beam, vocab)
        done = finished[..., None]
        stay = torch.full_like(log_probs, -torch.inf)
        stay[..., PAD] = 0.0  # a finished sentence continues only with <pad>, at no cost
        log_probs = torch.where(done, stay, log_probs)
        candidates = (scores[..., None] + log_probs).view(count, beam * vocab)
        scores, chosen = candidates.topk(beam, dim=-1)
        origin, tokens = chosen // vocab, chosen % vocab  # (N, k) each
        history = history[rows, origin]
        history[:, :, step] = tokens
        finished = finished[rows, origin] | (tokens == EOS)
        state = state[:, (rows * beam + origin).reshape(-1)]
        tokens = tokens.reshape(-1)
        if bool(finished.all()):
            break
    return history[torch.arange(count, device=device), scores.argmax(-1)]
