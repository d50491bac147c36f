"""296 real A1111 infotexts (tests/data/real-infotexts, sources in its README): each one reads without a crash,
SD 1.5 recipes load or are refused with a message naming the key, and nothing ignored comes back out."""
from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from creationmix.errors import InfotextError
from creationmix.infotext import RE_PARAM, format_infotext, parse_infotext

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "real-infotexts" / "infotexts.jsonl"
COPY = ROOT / "tests" / "data" / "real-infotexts" / "infotexts.jsonl"
CORPUS = SHARED if SHARED.is_file() else COPY
ROWS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]

# Refusals we expect today, each naming its key: samplers and upscalers other helpers add, an extension's
# fractional clip skip, and sizes mangled in the source posts.
EXPECTED_REFUSALS = (
    r"^Sampler: '[^']+': unknown sampler ",
    r"^Hires upscaler: '[^']+': unknown hires upscaler ",
    r"^Clip skip: '1\.75' is not a whole number \(a fractional clip skip is an extension's feature",
    # r0141's post ran the next prompt into its last value ("ENSD: 31337high resolution photograph ...").
    r"^ENSD: '31337high resolution[^']*' is not a whole number",
    # A negative ENSD (r0272, r0280) is refused with its range (A1111 would re-seed with seed - 1).
    r"^ENSD: '-\d+': eta noise seed delta \(ENSD\) must be in \[0, ",
    r"^First pass size(/Size)?: '[^']*'.*(is not a size like|must be a multiple of 8)",
)


def _outcome(row):
    try:
        return parse_infotext(row["text"])
    except InfotextError as e:
        return e


OUTCOMES = {row["id"]: _outcome(row) for row in ROWS}


def test_the_copy_matches_the_shared_corpus():
    if not SHARED.is_file():
        pytest.skip(f"{SHARED} not present (a plain clone): the copy is used")
    assert COPY.read_bytes() == SHARED.read_bytes()


def test_corpus_is_all_there():
    assert len(ROWS) == 296 and len(OUTCOMES) == 296


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_every_entry_parses_or_is_refused_naming_the_key(row):
    result = OUTCOMES[row["id"]]
    if isinstance(result, InfotextError):
        message = str(result)
        key = message.split(":")[0].split("/")[0]
        assert f"{key}:" in row["text"], message  # the key it names is in this recipe
        assert any(re.match(p, message) for p in EXPECTED_REFUSALS), message
        return
    params_keys = {k.strip() for line in row["text"].split("\n") for k, _ in RE_PARAM.findall(line)}
    # Every key read is accounted for: applied, kept as source info, or named in a warning.
    accounted = set(result.applied) | set(result.meta) | set(result.ignored)
    assert accounted <= params_keys | {"Template", "Negative Template"}
    warned = [k.strip() for w in result.warnings for k in w.split("): ", 1)[1].split(", ")]
    assert warned == list(result.ignored)
    # What we would write names none of the ignored keys and reads back to the same parameters.
    out = format_infotext(result.params, result.meta)
    out_keys = {k for k, _ in RE_PARAM.findall(out.split("\n")[-1])}
    assert not out_keys & set(result.ignored)
    again = parse_infotext(out)
    # The schedule is written explicitly; Batch size is read but (as in A1111 1.10) not written.
    expected = result.params.replace(schedule=result.params.sampler_schedule, batch_size=1)
    assert again.params == expected and again.ignored == {}
    assert format_infotext(*again) == out


def test_corpus_totals():
    parsed = [r for r in OUTCOMES.values() if not isinstance(r, InfotextError)]
    complete = [r for r in parsed if not r.ignored]
    assert len(parsed) >= 273 and len(complete) >= 140
    ignored = collections.Counter(k for r in parsed for k in r.ignored)
    assert ignored["Hypernet"] >= 15 and ignored["Face restoration"] >= 10
    # What the issue listed as refused before: a seed above 2^32 and the old hires fix now read.
    by_id = {row["id"]: row for row in ROWS}
    big_seed = [i for i, row in by_id.items() if "Seed: 7854848731" in row["text"]]
    assert big_seed and all(OUTCOMES[i].params.seed == 7854848731 for i in big_seed)
    first_pass = [r for r in parsed if any("First pass size" in n for n in r.notes)]
    assert len(first_pass) >= 120 and all(r.params.hires_resize_x for r in first_pass)


def test_old_hires_fix_entries_run_as_a1111_1_10_runs_them():
    # r0036: "Size: 640x704, ... Denoising strength: 0.7, ... First pass size: 512x576".
    row = next(r for r in ROWS if "Size: 640x704" in r["text"] and "First pass size: 512x576" in r["text"])
    p = OUTCOMES[row["id"]].params
    assert (p.width, p.height, p.hires_size, p.enable_hires, p.denoising_strength) == (512, 576, (640, 704), True, 0.7)
