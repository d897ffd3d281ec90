"""A text run from end to end: train on a corpus, then sample, reconstruct, encode, interpolate, evaluate and
report through the CLI; the language-model baseline; and a resumed text run equal to an unbroken one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_same_run, run_subprocess, topic_corpus
from vaekit.api import train
from vaekit.cli import main
from vaekit.config import RunConfig
from vaekit.runs.trained import TrainedVAE
from vaekit.training.loop import Hooks


class Crash(Exception):
    """Stands for a kill: raised where a run file was about to be written."""


SMALL = ["--epochs", "4", "--latent-dim", "4", "--rnn-size", "32", "--embedding-dim", "16", "--batch-size", "64",
         "--quiet"]


def text_config(source: Path, **train) -> RunConfig:
    return RunConfig().with_overrides({
        "data": {"source": str(source)},
        "model": {"latent_dim": 4, "rnn_size": 32, "embedding_dim": 16},
        "train": {"epochs": 3, "batch_size": 64, "seed": 2, "checkpoint_every_steps": 4, **train},
    })


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return topic_corpus(tmp_path_factory.mktemp("corpus") / "topics.txt", 600)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, corpus: Path) -> Path:
    out = tmp_path_factory.mktemp("text") / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *SMALL]) == 0
    return out


def test_a_text_run_saves_its_tokenizer_and_its_sentences(text_run: Path):
    saved = json.loads((text_run / "config.json").read_text())
    assert saved["data"]["kind"] == "text" and saved["data"]["likelihood"] == "categorical"
    assert saved["data"]["codec"]["type"] == "tokens" and "the" in saved["data"]["codec"]["tokenizer"]["model"]["vocab"]
    assert saved["config"]["model"]["architecture"] == "rnn"
    assert saved["config"]["train"]["warmup_epochs"] == 1  # a third of 4 epochs, for text
    assert len((text_run / "samples.txt").read_text().splitlines()) == 20
    assert "reconstruction:" in (text_run / "reconstructions.txt").read_text()
    report = (text_run / "report.html").read_text()
    for section in ("Samples", "Reconstructions", "Homotopies", "KL per dimension", "beam search"):
        assert section in report


def test_sample_reconstruct_encode_and_interpolate_speak_text(text_run: Path, tmp_path: Path, capsys):
    assert main(["sample", str(text_run), "--n", "3", "--beam", "3"]) == 0
    sampled = capsys.readouterr().out.splitlines()
    assert len(sampled) == 3 and all(line.strip() for line in sampled)
    assert main(["sample", str(text_run), "--n", "4", "--temperature", "0.8", "--out", str(tmp_path / "s.jsonl")]) == 0
    assert [set(json.loads(line)) for line in (tmp_path / "s.jsonl").read_text().splitlines()] == [{"sentence"}] * 4
    capsys.readouterr()
    assert main(["reconstruct", str(text_run), "--text", "The cat sees the ball .", "--text", "A boat !"]) == 0
    pairs = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [given for given, _ in pairs] == ["the cat sees the ball.", "a boat!"]  # as the tokenizer reads them
    assert main(["encode", str(text_run), "--split", "test", "--out", str(tmp_path / "c.npz")]) == 0
    codes = np.load(tmp_path / "c.npz")
    assert codes["loc"].shape == (len(codes["lines"]), 4) and codes["lines"].dtype.kind == "U"
    assert main(["interpolate", str(text_run), "--text", "my dog bites its tail", "--text", "the chef burns a cake",
                 "--steps", "5", "--out", str(tmp_path / "h.txt")]) == 0
    assert len((tmp_path / "h.txt").read_text().splitlines()) == 5


def test_evaluate_gives_the_nll_per_sentence_per_token_and_the_perplexity(text_run: Path, capsys):
    assert main(["evaluate", str(text_run), "--importance-samples", "20", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    run = TrainedVAE(text_run)
    x, _ = run.load_inputs()
    assert figures["tokens"] == int((x != 0).sum())
    assert figures["nll_per_token"] == pytest.approx(figures["nll"] * figures["examples"] / figures["tokens"])
    assert figures["perplexity"] == pytest.approx(np.exp(figures["nll_per_token"]))
    assert figures["nll"] <= -figures["elbo"] + 1e-6  # the estimate is at least as tight as the ELBO


def test_the_language_model_baseline_has_kl_zero_and_an_exact_nll(corpus: Path, tmp_path: Path, capsys):
    out = tmp_path / "lm"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--language-model", *SMALL]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["test_kl"] == 0.0
    capsys.readouterr()
    estimates = []
    for samples in ("1", "9"):
        assert main(["evaluate", str(out), "--importance-samples", samples, "--json"]) == 0
        estimates.append(json.loads(capsys.readouterr().out))
    assert estimates[0]["nll"] == pytest.approx(estimates[1]["nll"], abs=1e-4)
    assert estimates[0]["nll"] == pytest.approx(-results["test_elbo"], abs=1e-3)


def test_array_methods_of_a_text_run_say_to_use_its_text(text_run: Path):
    with pytest.raises(Exception, match="run.text.sample"):
        TrainedVAE(text_run).sample(3)
    result = run_subprocess("manifold", text_run, "--out", text_run.parent / "m.png")
    assert result.code == 2 and "manifold picture cannot" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(("command", "words"), [
    (["explore"], "the explorer shows pictures"),
    (["gradient-variance", "--draws", "2", "--out", "{tmp}/gv"], "is a text run"),
    (["convert", "--to-label", "a", "--out", "{tmp}/c.png"], "conditional VAE"),
    (["sample", "--out", "{tmp}/s.png"], ".txt or .jsonl"),
    (["sample", "--label", "a"], "no labels"),
])
def test_what_a_text_run_cannot_do_is_one_line(text_run: Path, tmp_path: Path, capsys, command, words):
    argv = [command[0], str(text_run), *(part.format(tmp=tmp_path) for part in command[1:])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_a_text_run_resumes_bit_for_bit(corpus: Path, tmp_path: Path):
    reference = tmp_path / "reference"
    train(text_config(corpus), reference)
    out = tmp_path / "run"
    calls = iter(range(1, 100))

    def crash_at_the_third_checkpoint(written: str, progress) -> None:
        if written == "checkpoint.safetensors" and next(calls) == 3:
            raise Crash

    with pytest.raises(Crash):
        train(text_config(corpus), out, hooks=Hooks(before_write=crash_at_the_third_checkpoint))
    train(None, out, resume=True)
    assert_same_run(out, reference)


@pytest.mark.parametrize("tokens", ["char", "bpe"])
def test_characters_and_subwords_train_and_speak_text(corpus: Path, tmp_path: Path, capsys, tokens: str):
    out = tmp_path / tokens
    assert main(["train", "--data", str(corpus), "--out", str(out), "--tokens", tokens, "--vocab-size", "200",
                 "--max-length", "60", "--epochs", "2", *SMALL[2:]]) == 0
    codec = json.loads((out / "config.json").read_text())["data"]["codec"]
    assert codec["tokens"] == tokens and codec["max_length"] == 60
    capsys.readouterr()
    assert main(["reconstruct", str(out), "--text", "The cat sees a mouse."]) == 0
    given, _ = capsys.readouterr().out.rstrip("\n").split("\t")
    assert given == "The cat sees a mouse."  # characters and subwords keep the line as written
    assert main(["evaluate", str(out), "--importance-samples", "3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["tokens"] >= figures["examples"] * (15 if tokens == "char" else 4)  # a token a char, a piece
