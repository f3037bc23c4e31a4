"""Score a model on what users hear, over every target domain, and write its card's evaluation.

``make evaluate-default`` runs this on the shipped model: ``evaluate report`` over four sets of
10 s clips (``make data`` writes them, ``make eval-data`` rewrites them), each translated into
every target domain but its own:

* ``whistle`` - ``data/eval_whistle``: test-split folk tunes whistled by the synthesiser;
* ``domains`` - ``data/test``: the test pieces, each piece from one training domain in turn;
* ``register`` - ``data/eval_register``: test pieces moved 5-12 semitones out of the register the
  model trained in;
* ``unseen`` - ``data/eval_unseen``: test tunes played by instruments that never train.

The headline numbers (``evaluate.report.HEADLINE``: raw chroma and pitch accuracy against the
notes, chroma similarity and log-mel distance to the real target rendering, recognised as the
target, median pitch offset) come per target and over all four sets, beside the identity,
transcribe-and-render and reference rows; the paper's NCC/DTW follow. Everything goes to
``OUT/summary.json`` (every set's report under ``OUT/<set>/``) and the card section to
``OUT/evaluation.md``; unless ``--no-card`` it also replaces the "Evaluation" section of the
model's README.md. Training rewrites the card at every checkpoint, so run this after it stops.

    python examples/evaluate_default.py [--model default|PATH] [--data data] [--out out/eval_default]
        [--no-card] [--clips N] [--note TEXT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musictranslate import load_model
from musictranslate.config import DEFAULT_RETUNE
from musictranslate.errors import ModelError, MusicTranslateError
from musictranslate.evaluate.classifier import load_classifier, train_classifier
from musictranslate.evaluate.report import HEADLINE, METRICS, ReportOptions, build_report, summarise
from musictranslate.model_card import history_of
from musictranslate.recipes.eval_sets import REGISTER_FOLDER, REGISTER_SHIFTS, UNSEEN_FOLDER, UNSEEN_PROGRAMS
from musictranslate.registry import refined_decoders
from musictranslate.safe_write import write_text

SETS: dict[str, tuple[str, ReportOptions]] = {
    "whistle": ("eval_whistle", ReportOptions(pieces=4, sources=["whistle"])),
    "domains": ("test", ReportOptions(pieces=6, one_source_per_piece=True)),
    "register": (REGISTER_FOLDER, ReportOptions(pieces=len(REGISTER_SHIFTS), one_source_per_piece=True)),
    "unseen": (
        UNSEEN_FOLDER,
        ReportOptions(pieces=len(UNSEEN_PROGRAMS), sources=list(UNSEEN_PROGRAMS), one_source_per_piece=True),
    ),
}
"""Each set: its folder under ``--data`` and what its report covers. Clip counts are kept small
(pyin, encoding and decoding cost seconds per clip and target); one seed, since more clips average
the sampler's noise as well as more seeds would."""

SYSTEM_ROWS = ("model", "transcribe", "identity", "reference")
PAPER = [m for m in METRICS if m[0] in ("ncc", "dtw_ncc")]
SECTION = "\n## Evaluation"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[tuple[str, dict | None]], metrics: list[tuple[str, str, str]], first: str = "") -> str:
    """A markdown table of ``metrics``, one line per named row of means (missing rows skipped)."""
    lines = [f"| {first} | n | " + " | ".join(label for _, label, _ in metrics) + " |"]
    lines.append("|" + " --- |" * (len(metrics) + 2))
    for name, row in rows:
        if row is not None:
            cells = [_cell(row.get(key)) for key, _, _ in metrics]
            lines.append(f"| {name} | {row.get('n', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_target(summary: dict, metrics: list[tuple[str, str, str]]) -> str:
    """Every target (then all of them), each with the model's row and the baseline rows."""
    targets = sorted({t for rows in summary.values() for t in rows if t != "all"}) + ["all"]
    rows = [
        (f"{target}: {system}", summary.get(system, {}).get(target))
        for target in targets
        for system in SYSTEM_ROWS
    ]
    return table(rows, metrics, "target: system")


def per_set(documents: dict[str, dict], metrics: list[tuple[str, str, str]]) -> str:
    """Each set's mean over all targets, model and baselines: how far the model generalises."""
    rows = [
        (f"{name}: {system}", doc["summary"].get(system, {}).get("all"))
        for name, doc in documents.items()
        for system in SYSTEM_ROWS
    ]
    return table(rows, metrics, "set: system")


def ensure_classifier(model_folder: Path, data: Path) -> None:
    """Train the domain classifier on the training renders once; re-saves of the model keep it.

    One saved before the classifier heard the model's codec is trained again: it named coded
    real piano harpsichord, so its "recognised as piano" said nothing about the decoder.
    """
    try:
        if load_classifier(model_folder).codec:
            return
    except ModelError:
        pass
    print("training the domain classifier on data/train (about 5 minutes)")
    train_classifier([data / "train"], val=[data / "val"]).save(model_folder)


def sampling(settings: dict) -> str:
    """How the translations were drawn and finished, in the card's words."""
    guided = settings.get("follow_pitch", 1)
    drawn = f"pitch-guided by {guided} candidates" if guided > 1 else "plain sampling"
    return drawn + (", retuned" if settings.get("retune") else ", not retuned")


def card_section(model_manifest: dict, summary: dict) -> str:
    """The card's "Evaluation" section, from ``summary.json``'s document."""
    training = model_manifest.get("training", {})
    when = f"step {training.get('steps', 0):,}"
    if training.get("initialised_from"):  # a run that started (--init) from a trained model
        start = training["initialised_from"]
        when += f" (of a run started from `{start['model']}` at step {start['steps']:,})"
    when += "".join(
        f", {d} decoder refined {p['steps']:,} more steps"
        for d, p in refined_decoders(model_manifest).items()
    )
    documents = summary["sets"]
    held_out = next(iter(documents.values()))["classifier"].get("training", {}).get("val_accuracy")
    held_out = "not measured" if held_out is None else f"{held_out:.2f}"
    settings = next(iter(documents.values()))["settings"]
    counts = ", ".join(f"{name} {len(doc['pairs'])}" for name, doc in documents.items())
    headline = list(HEADLINE)
    return f"""
## Evaluation at {when} (measured {date.today().isoformat()})

`python examples/evaluate_default.py` (`make evaluate-default`): `musictranslate evaluate report` on
10 s clips at temperature {settings["temperature"]}, seed {settings["seed"]}, {sampling(settings)}, every clip
translated into every target domain but its own ({summary["pairs"]} translations: {counts}). The sets:
*whistle* - test-split folk tunes whistled by the synthesiser (an unseen source); *domains* - the
test pieces, each from one training domain in turn; *register* - test pieces transposed
{", ".join(f"{s:+d}" for s in REGISTER_SHIFTS)} semitones, out of the training register; *unseen* -
test tunes on instruments that never train ({", ".join(UNSEEN_PROGRAMS)}).

How to read it. *raw chroma / pitch acc.*: the output's pyin pitch frame by frame against the
notes of the score (mir_eval, 50 cents; in a polyphonic piece against the sounding note nearest
to the output's pitch). *median offset*: semitones, octave-folded; negative is flat. *chroma sim.*
and *log-mel dist.*: against the real FluidR3 rendering of the same notes in the target.
*recognised*: the share of clips an independent log-mel CNN, trained on the training renders
through the model's 8-bit mu-law (held-out window accuracy {held_out}), names the target.
Baselines: *transcribe* - the input's pyin notes rendered with FluidR3 in the target's GM program
(what a user could do instead); *identity* - the input copied through; *reference* - the real
target rendering (its own distances are not shown).

**Every set, by target domain:**

{by_target(summary["overall"], headline)}

**Each set, over all targets:**

{per_set(documents, headline)}

**The paper's columns** (pitch NCC at the best shift and DTW + correlation against the input's
pitch track, zero-mean: blind to a transposition; paper 0.82-0.88 and 0.97-0.98):

{per_set(documents, PAPER)}
"""


def write_card(card: Path, section: str) -> None:
    """Replace the card's "Evaluation" section (up to the next ``## `` heading) with ``section``,
    leaving the rest of the card as it is; a card without one gets it above its hand-written
    History, which stays last. A card is never left half-written."""
    text = card.read_text()
    if SECTION in text:
        start = text.index(SECTION)
        following = text.find("\n## ", start + len(SECTION))
        rest = text[following:] if following >= 0 else ""
        text = text[:start].rstrip("\n") + "\n" + section.rstrip("\n") + "\n" + rest
    else:
        history = history_of(text)
        text = (
            text[: len(text) - len(history)].rstrip("\n")
            + "\n"
            + section
            + ("\n" + history if history else "")
        )
    write_text(card, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="a registry name or a model folder [default]")
    parser.add_argument("--data", type=Path, default=Path("data"), help="what `make data` wrote [data]")
    parser.add_argument("--out", type=Path, default=Path("out/eval_default"), help="reports and summary.json")
    parser.add_argument("--no-card", action="store_true", help="leave the model's README.md as it is")
    parser.add_argument(
        "--clips", type=int, default=None, help="at most this many clips per set (fewer: faster, noisier)"
    )
    parser.add_argument("--note", default="", help="a closing paragraph for the section")
    parser.add_argument(
        "--follow-pitch",
        type=int,
        default=1,
        metavar="N",
        help="pitch-guided sampling, N candidates [1: off]",
    )
    parser.add_argument(
        "--retune",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_RETUNE,
        help="pull each translation's pitch onto the input's (retune.py) [on]",
    )
    parser.add_argument(
        "--temperature", type=float, default=None, help="sampling temperature [the sets' own, 0.3]"
    )
    parser.add_argument(
        "--low-latency",
        action="store_true",
        help="encode with the model's causal encoder (live --low-latency); implies --no-card",
    )
    args = parser.parse_args()
    try:
        model = load_model(args.model, low_latency=args.low_latency)
        ensure_classifier(model.path, args.data)
        documents, timings = {}, {}
        for name, (folder, options) in SETS.items():
            started = time.perf_counter()
            pieces = options.pieces if args.clips is None else min(options.pieces, args.clips)
            generation = dataclasses.replace(
                options.generation, follow_pitch=args.follow_pitch, retune=args.retune
            )
            if args.temperature is not None:
                generation = dataclasses.replace(generation, temperature=args.temperature)
            options = dataclasses.replace(
                options, pieces=pieces, embedding=False, force=True, generation=generation
            )
            documents[name] = build_report(model, args.data / folder, args.out / name, options)
            timings[name] = round(time.perf_counter() - started, 1)
            doc = documents[name]
            print(f"{name}: {len(doc['pairs'])} translations, {len(doc['failures'])} failed, "
                  f"{timings[name]:.0f} s -> {args.out / name / 'index.html'}")  # fmt: skip
    except MusicTranslateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pairs = [pair for doc in documents.values() for pair in doc["pairs"]]
    summary = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": model.name,
            "path": str(model.path),
            "steps": model.manifest.get("training", {}).get("steps"),
        },
        "data": str(args.data),
        "headline_metrics": [key for key, _, _ in HEADLINE],
        "metrics": next(iter(documents.values()))["metrics"],
        "pairs": len(pairs),
        "clips_per_set_cap": args.clips,
        "timings_s": {**timings, "total": round(sum(timings.values()), 1)},
        "overall": summarise(pairs),
        "overall_by_source": summarise(pairs, by="source"),
        "sets": {
            name: {
                key: doc[key]
                for key in ("data", "settings", "classifier", "baselines", "summary", "failures")
            }
            | {
                "pairs": [
                    {k: p[k] for k in ("piece", "source", "target", "transpose", "scores")}
                    for p in doc["pairs"]
                ]
            }
            for name, doc in documents.items()
        },
    }
    section = card_section(model.manifest, summary) + (f"\n{args.note}\n" if args.note else "")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "evaluation.md").write_text(section.lstrip("\n"))
    total = summary["timings_s"]["total"]
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'evaluation.md'} ({total:.0f} s)")
    if not (args.no_card or args.low_latency):
        write_card(model.path / "README.md", section)
        print(f"wrote the evaluation section of {model.path / 'README.md'}")
    return 1 if any(doc["failures"] for doc in documents.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
