"""A corpus of short English texts from Debian's fortunes (apt-get install fortunes), one per line.

Each fortune of the cookie files under /usr/share/games/fortunes (entries between lines of "%") becomes one
line, its whitespace collapsed and its attribution ("-- Author") dropped; only those of at most --max-words
words are kept, each once, in the files' order. Offensive fortunes (fortunes-off) are never read.

    python tools/fortunes.py runs/fortunes.txt                  # ~8,500 lines of 20 words or fewer
    vaekit train --data runs/fortunes.txt --out runs/fortunes
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
ATTRIBUTION = re.compile(r"\s+--\s.*$")  # "... -- Mark Twain", "... -- Larry Wall in <...>"


def fortunes(folder: Path = FORTUNES, max_words: int = 20) -> list[str]:
    """The short fortunes of `folder`'s cookie files (not their .dat indexes, .u8 links or sub-folders)."""
    seen: dict[str, None] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in (".dat", ".u8") or path.is_dir() or path.is_symlink():
            continue
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            line = ATTRIBUTION.sub("", " ".join(entry.replace("%", " ").split())).strip()
            if line and len(line.split()) <= max_words and sum(c.isalpha() for c in line) > len(line) / 2:
                seen.setdefault(line)
    return list(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the corpus to write (.txt)")
    parser.add_argument("--max-words", type=int, default=20, help="keep fortunes of at most this many words")
    parser.add_argument("--folder", type=Path, default=FORTUNES, help=f"the cookie files (default {FORTUNES})")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        sys.exit(f"{args.folder}: no fortunes here; apt-get install fortunes, or pass --folder")
    lines = fortunes(args.folder, args.max_words)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    print(f"wrote {len(lines)} fortunes of at most {args.max_words} words to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
