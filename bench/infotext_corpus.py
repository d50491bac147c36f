"""How the real-world infotext corpus reads: `python bench/infotext_corpus.py [infotexts.jsonl]`.

Prints entries, parsed, applied completely (nothing ignored), the refusals by message, and the keys most
often ignored. Reads ../shared/real-infotexts/infotexts.jsonl beside the clone when present, else the copy in
tests/data/real-infotexts/.
"""
from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from creationmix.errors import InfotextError  # noqa: E402
from creationmix.infotext import parse_infotext  # noqa: E402

SHARED = ROOT.parent / "shared" / "real-infotexts" / "infotexts.jsonl"
COPY = ROOT / "tests" / "data" / "real-infotexts" / "infotexts.jsonl"


def corpus_path() -> Path:
    return SHARED if SHARED.is_file() else COPY


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else corpus_path()
    rows = load(path)
    parsed = complete = 0
    refused: collections.Counter = collections.Counter()
    ignored: collections.Counter = collections.Counter()
    applied: collections.Counter = collections.Counter()
    for row in rows:
        try:
            result = parse_infotext(row["text"])
        except InfotextError as e:
            # "Sampler: 'X': unknown sampler 'X'; valid ..." -> "Sampler: unknown sampler"
            m = re.match(r"^([\w /-]+): .*?: ([^;'(]+)", str(e))
            refused[f"{m.group(1)}: {m.group(2).strip()}" if m else str(e)] += 1
            continue
        parsed += 1
        complete += not result.ignored
        ignored.update(result.ignored.keys())
        applied.update(result.applied)
    print(f"corpus: {path}")
    print(f"{'entries':<28}{len(rows):>6}")
    print(f"{'parsed':<28}{parsed:>6}")
    print(f"{'applied completely':<28}{complete:>6}   (no key ignored)")
    print(f"{'refused':<28}{len(rows) - parsed:>6}")
    for reason, n in refused.most_common():
        print(f"  {n:>4}  {reason}")
    print("keys most often ignored (entries):")
    for key, n in ignored.most_common(15):
        print(f"  {n:>4}  {key}")
    print(f"distinct keys applied: {len(applied)}; ignored: {len(ignored)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
