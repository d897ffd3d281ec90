from pathlib import Path


def test_train_writes_a_complete_run(digits_run: Path):
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
                 "results.json", "samples.png", "reconstructions.png", "loss.png"):
        assert (digits_run / name).is_file(), name
