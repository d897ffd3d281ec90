"""Flags: every one documented with its default, shared ones defined once, and typos named with a suggestion."""

from __future__ import annotations

import argparse

import pytest
import torch

from vaekit.cli import build_parser

# The commands that run a model, each of which takes --threads.
RUNS_THE_MODEL = ("train", "evaluate", "sample", "reconstruct", "encode", "interpolate", "traverse", "manifold",
                  "latents", "report", "explore", "gradient-variance")


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def exempt_from_default(action: argparse.Action) -> bool:
    """A positional, a switch (store_true) or a required flag has no default to state."""
    return not action.option_strings or isinstance(action, argparse._StoreTrueAction) or action.required


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return parser._option_string_actions[flag]


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_flag_has_help_that_states_its_default(command):
    undocumented = []
    for action in commands()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        help_text = action.help or ""
        if not help_text.strip():
            undocumented.append(f"{action.option_strings or action.dest}: no help")
        elif exempt_from_default(action) or "default" in help_text:
            continue
        else:
            undocumented.append(f"{action.option_strings[0]}: no default in {help_text!r}")
    assert not undocumented, f"vaekit {command}: {undocumented}"


@pytest.mark.parametrize("flag", ["--device", "--threads", "--debug"])
def test_a_shared_flag_means_the_same_everywhere(flag):
    helps = {name: option(parser, flag).help for name, parser in commands().items() if flag in
             parser._option_string_actions and name != "train"}
    assert len(helps) >= 5 and len(set(helps.values())) == 1, helps


def test_every_command_that_runs_the_model_takes_threads_and_device():
    parsers = commands()
    for name in RUNS_THE_MODEL:
        assert {"--threads", "--device"} <= set(parsers[name]._option_string_actions), name
    assert option(parsers["train"], "--threads").type is option(parsers["sample"], "--threads").type


def test_train_takes_the_test_fraction():
    args = build_parser().parse_args(["train", "--test-fraction", "0.25"])
    assert args.test_fraction == 0.25


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "--epochz", "3"], "vaekit train: error: unknown flag --epochz; did you mean --epochs?"),
    (["train", "--epoch", "3"], "vaekit train: error: unknown flag --epoch; did you mean --epochs?"),
    (["train", "--latent-dims=4"], "vaekit train: error: unknown flag --latent-dims; did you mean --latent-dim?"),
    (["sample", "RUN", "--outt", "x.png"], "vaekit sample: error: unknown flag --outt; did you mean --out?"),
    (["--verison"], "vaekit: error: unknown flag --verison; did you mean --version?"),
    (["info", "RUN", "--zzz"], "vaekit info: error: unknown flag --zzz; see `vaekit info --help`"),
])
def test_an_unknown_flag_is_one_line_with_the_nearest_flag(cli, argv, expected):
    result = cli(*argv)
    assert result.code == 2 and result.err.strip() == expected and not result.out


def test_no_prefix_stands_for_a_flag(cli):
    result = cli("sample", "RUN", "--out", "x.png", "--temp", "2")
    assert result.code == 2 and "unknown flag --temp; did you mean --temperature?" in result.err


def test_negative_numbers_are_values_not_flags():
    args = build_parser().parse_args(["interpolate", "RUN", "--out", "x.png", "--from", "-1", "--to", "2"])
    assert args.first == -1


def test_threads_are_set_for_the_command_and_restored(cli, digits_run, tmp_path, monkeypatch):
    from vaekit.runs.trained import TrainedVAE

    seen = []
    sample = TrainedVAE.sample
    monkeypatch.setattr(TrainedVAE, "sample", lambda self, *a, **k: seen.append(torch.get_num_threads())
                        or sample(self, *a, **k))
    before = torch.get_num_threads()
    result = cli("sample", digits_run, "--n", "4", "--out", tmp_path / "x.npy", "--threads", str(before + 1))
    assert result.code == 0, result.err
    assert seen == [before + 1] and torch.get_num_threads() == before
    assert cli("sample", digits_run, "--out", tmp_path / "y.npy", "--threads", "0").code == 2
