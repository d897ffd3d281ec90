"""The sentence VAE (vaekit.model.sentence_vae) and its decoding (vaekit.model.sentence_decoding): teacher
forcing scores what step-by-step decoding scores, padding and batch companions change nothing, the
language model's bound is exact, and beam search finds the likeliest sentence where all can be listed."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.data.tokens import BOS, EOS, PAD
from vaekit.evaluation.importance import importance_terms
from vaekit.model.objectives import Elbo
from vaekit.model.sentence_decoding import decode_sentences
from vaekit.model.sentence_vae import SentenceVAE

VOCAB, LENGTH = 9, 6  # 4 special ids and 5 words; 6 tokens and </s>


def model(**settings) -> SentenceVAE:
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=3, embedding_dim=8, rnn_size=16, **settings)
    return SentenceVAE(config, VOCAB, LENGTH).eval()


def sentences(*rows: list[int]) -> torch.Tensor:
    """Token ids (N, LENGTH + 1): each row's words, </s>, then <pad>."""
    ids = torch.full((len(rows), LENGTH + 1), PAD)
    for i, row in enumerate(rows):
        ids[i, : len(row) + 1] = torch.tensor([*row, EOS])
    return ids


def stepwise_log_likelihood(vae: SentenceVAE, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Σₜ log p(xₜ | x<ₜ, z), one token at a time through `next_token_logits`."""
    totals = []
    for row, code in zip(ids, z):
        state, token, total = vae.first_state(code[None]), torch.tensor([BOS]), 0.0
        for target in row[row != PAD]:
            logits, state = vae.next_token_logits(token, state, code[None])
            total += torch.log_softmax(logits, -1)[0, target]
            token = target[None]
        totals.append(total)
    return torch.stack(totals)


@pytest.mark.parametrize("language_model", [False, True])
def test_teacher_forcing_scores_what_decoding_token_by_token_scores(language_model: bool):
    vae = model(language_model=language_model)
    ids = sentences([4, 5, 6], [7], [8, 8, 4, 5, 6, 7])
    z = torch.randn(3, 3)
    with torch.no_grad():
        forced = vae.log_likelihood(z, Batch(ids))
        stepped = stepwise_log_likelihood(vae, z, ids)
    torch.testing.assert_close(forced, stepped, rtol=1e-5, atol=1e-5)


def test_padding_and_the_other_sentences_of_a_batch_change_nothing():
    vae = model()
    alone = sentences([4, 5])
    batch = sentences([8, 8, 8, 8, 8, 8], [4, 5], [6])
    z = torch.randn(1, 3)
    with torch.no_grad():
        loc_alone, _ = vae.encode(Batch(alone))
        loc_batch, _ = vae.encode(Batch(batch))
        torch.testing.assert_close(loc_alone[0], loc_batch[1])
        shorter = Batch(alone[:, :3])  # less padding after the same tokens
        torch.testing.assert_close(vae.log_likelihood(z, Batch(alone)), vae.log_likelihood(z, shorter))
        many = vae.log_likelihood(z.expand(3, 3)[None].repeat(2, 1, 1), Batch(batch))  # (2 samples, 3)
        torch.testing.assert_close(many[1, 1], vae.log_likelihood(z, Batch(alone))[0])


def test_gradients_reach_the_encoder_through_the_sampled_code():
    vae = model(word_dropout=0.0).train()
    terms = Elbo().terms(vae, Batch(sentences([4, 5, 6], [7, 8])), torch.Generator().manual_seed(0))
    (-terms.reconstruction.mean()).backward()  # the reconstruction term alone: only through z = μ + σ·ε
    assert vae.encoder.weight_ih_l0.grad.abs().sum() > 0
    assert vae.to_log_variance.weight.grad.abs().sum() > 0


def test_word_dropout_only_while_training():
    vae = model(word_dropout=0.5)
    ids, z = sentences([4, 5, 6, 7, 8, 4]), torch.zeros(1, 3)
    with torch.no_grad():
        evaluated = {float(vae.log_likelihood(z, Batch(ids))) for _ in range(3)}
        vae.train()
        trained = {float(vae.log_likelihood(z, Batch(ids))) for _ in range(8)}
    assert len(evaluated) == 1 and len(trained) > 1


def test_the_language_model_has_no_kl_and_its_importance_estimate_is_its_exact_likelihood():
    vae = model(language_model=True)
    ids = sentences([4, 5, 6], [7, 8])
    terms = Elbo().terms(vae, Batch(ids), torch.Generator().manual_seed(0))
    assert float(terms.kl.abs().max()) == 0.0
    estimate = importance_terms(vae, ids, 7, torch.Generator().manual_seed(1))
    torch.testing.assert_close(estimate.log_marginal, terms.bound.detach())


def test_greedy_decoding_ends_each_sentence_and_pads_after_it():
    vae = model()
    out = decode_sentences(vae, torch.randn(5, 3))
    assert out.shape == (5, LENGTH + 1)
    for row in out.tolist():
        end = row.index(EOS)
        assert all(token not in (PAD, BOS) for token in row[:end]) and all(t == PAD for t in row[end + 1 :])


def test_beam_search_finds_the_likeliest_sentence_when_the_beam_holds_every_prefix():
    torch.manual_seed(3)
    vae = SentenceVAE(ModelConfig(latent_dim=2, embedding_dim=4, rnn_size=8), 6, 2).eval()  # words 4, 5; 2 tokens
    z = torch.randn(4, 2)
    candidates = [list(words) for length in range(3) for words in itertools.product([4, 5, 1], repeat=length)]
    with torch.no_grad():
        best = []
        for code in z:
            ids = [torch.tensor([[*c, EOS] + [PAD] * (2 - len(c))]) for c in candidates]
            scored = [(float(stepwise_log_likelihood(vae, code[None], row)), c) for row, c in zip(ids, candidates)]
            best.append(max(scored)[1])
        found = decode_sentences(vae, z, beam=len(candidates))
    assert [row[: row.index(EOS)] for row in found.tolist()] == best


def test_drawn_sentences_follow_the_seed_and_the_temperature():
    vae = model()
    z = torch.randn(6, 3)
    draw = [decode_sentences(vae, z, 1.0, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])
    cold = decode_sentences(vae, z, 1e-4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(cold, decode_sentences(vae, z))  # near 0, a draw is the greedy choice
    with torch.no_grad():
        assert math.isfinite(float(vae.log_likelihood(z, Batch(draw[0])).sum()))
