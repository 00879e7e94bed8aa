"""Lay out the Free Spoken Digit Dataset's recordings as two ``folder`` datasets: its official split, and a
split that holds one speaker out.

    python tools/fsdd_folders.py RECORDINGS OUT [--held-out theo]

``RECORDINGS``: the dataset's ``recordings/`` folder (``DIGIT_SPEAKER_INDEX.wav``, 8 kHz). Writes

- ``OUT/official/``: test = repetitions 0–4 of every speaker (the dataset's own test set), valid = 5–9,
  train = 10–49;
- ``OUT/speaker-<name>/``: test = every recording of the held-out speaker; valid = repetitions 5–9 and
  train = 10–49 of the other speakers (repetitions 0–4 of the others are left out, so the training clips
  are the official split's, less one speaker).

Each gets ``audio/`` (the files copied, unchanged: the ``folder`` dataset reads paths inside its root) and
``labels.csv`` (``path,label,split``); then ``eastmir data prepare folder --root OUT/official --set
csv=labels.csv``. The recordings are CC BY-SA 4.0: what is derived from them keeps that licence.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path


def split_of(index: int) -> str:
    """The official split of repetition ``index``: 0–4 test, 5–9 valid (held out of training), 10–49 train."""
    return "test" if index < 5 else "valid" if index < 10 else "train"


def layouts(names: list[str], held_out: str) -> dict[str, list[tuple[str, str, str]]]:
    """``{folder: [(file, label, split), …]}`` for the official and the speaker-held-out layouts."""
    official, speaker = [], []
    for name in sorted(names):
        digit, who, index = Path(name).stem.split("_")
        split = split_of(int(index))
        official.append((name, digit, split))
        if who == held_out:
            speaker.append((name, digit, "test"))
        elif split != "test":
            speaker.append((name, digit, split))
    return {"official": official, f"speaker-{held_out}": speaker}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recordings", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--held-out", default="theo", help="the speaker the second layout tests on")
    args = parser.parse_args()
    names = [p.name for p in args.recordings.glob("*_*_*.wav")]
    speakers = sorted({n.split("_")[1] for n in names})
    if args.held_out not in speakers:
        parser.error(f"--held-out {args.held_out}: not a speaker of {args.recordings} ({', '.join(speakers)})")
    for folder, rows in layouts(names, args.held_out).items():
        root = args.out / folder
        (root / "audio").mkdir(parents=True, exist_ok=True)
        for name, _, _ in rows:
            shutil.copyfile(args.recordings / name, root / "audio" / name)
        with open(root / "labels.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "split"])
            writer.writerows((f"audio/{name}", digit, split) for name, digit, split in rows)
        counts = {s: sum(1 for r in rows if r[2] == s) for s in ("train", "valid", "test")}
        print(f"{root}: {counts['train']} train, {counts['valid']} valid, {counts['test']} test")


if __name__ == "__main__":
    main()
