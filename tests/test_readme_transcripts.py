"""The README's marked console transcripts are what the commands print today (tools/readme_transcripts.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "readme_transcripts.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("readme_transcripts", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_transcripts_are_what_the_commands_print(capsys):
    tool = load_tool()
    code = tool.main(["--check"])
    assert code == 0, capsys.readouterr().out  # the diff; `python tools/readme_transcripts.py` rewrites them


def test_a_transcript_block_is_rewritten_in_place_and_a_missing_one_is_named():
    tool = load_tool()
    readme = "intro\n<!-- transcript: tour -->\n```console\n$ old\n```\n<!-- /transcript -->\nafter\n"
    assert tool.rewritten(readme, {"tour": "$ new\nout\n"}) == readme.replace("$ old\n", "$ new\nout\n")
    try:
        tool.rewritten(readme, {"tour": "", "other": ""})
    except SystemExit as missing:
        assert "<!-- transcript: other -->" in str(missing)
    else:
        raise AssertionError("a transcript without its block was not named")


def test_volatile_parts_are_normalized(tmp_path):
    tool = load_tool()
    printed = f"epoch 3  95,176 img/s\nwrote {tmp_path}/runs/x/a.png  \n"
    assert tool.normalized(printed, tmp_path) == "epoch 3  … img/s\nwrote runs/x/a.png"
