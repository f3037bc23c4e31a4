"""``musictranslate.evaluate``: every metric on synthetic signals with a known answer, then the
classifier, lineup, embedding study, report and CLI end to end on a tiny model.

Signals are short (pyin costs ~0.1-0.2 s per audio second) and made here: melodies of pure or
square tones whose pitch, timing and timbre are known exactly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from musictranslate import load_model
from musictranslate.audio import mu_law_decode, mu_law_encode
from musictranslate.cli import app
from musictranslate.config import SAMPLE_RATE
from musictranslate.errors import ModelError, OutputError
from musictranslate.evaluate import EvaluationError, optional_import
from musictranslate.evaluate.classifier import WEIGHTS, load_classifier, recognition_rate, train_classifier
from musictranslate.evaluate.embedding import EmbeddingStudy, cosine_matrix
from musictranslate.evaluate.files import pair_files, parallel_pieces
from musictranslate.evaluate.lineup import lineup, write_lineup
from musictranslate.evaluate.pitch import (
    HOP,
    correlation,
    dtw_correlation,
    ncc_at_optimal_shift,
    score_pitch,
)
from musictranslate.evaluate.reference import score_reference
from musictranslate.evaluate.report import ReportOptions, build_report

from .conftest import make_tiny_model, tone

TUNE = (0, 2, 4, 5, 7, 5, 4, 2, 0, 7, 12, 7)
"""Semitones above A4: a melody with steps, leaps and repeats."""

runner = CliRunner()


def melody(
    notes=TUNE, note_seconds: float = 0.25, shape: str = "sine", delay: float = 0.0, semitones: float = 0.0
) -> np.ndarray:
    """A melody of decaying tones; ``delay`` holds the first note longer so the tune comes late
    (same length out), ``semitones`` transposes it, ``shape`` is ``sine`` or ``square``."""
    n = int(note_seconds * SAMPLE_RATE)
    freqs = np.repeat([440.0 * 2 ** ((k + semitones) / 12) for k in notes], n)
    freqs = np.concatenate([np.full(int(delay * SAMPLE_RATE), freqs[0]), freqs])[: len(notes) * n]
    phase = 2 * np.pi * np.cumsum(freqs) / SAMPLE_RATE
    wave = np.sin(phase) if shape == "sine" else 0.6 * np.sign(np.sin(phase))
    envelope = np.tile(np.exp(-np.arange(n) / SAMPLE_RATE * 6.0), len(notes))
    onset_delay = int(delay * SAMPLE_RATE)
    envelope = np.concatenate([np.ones(onset_delay), envelope])[: len(wave)]
    return (0.4 * wave * envelope).astype(np.float32)


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------------
# pitch: the paper's NCC and DTW, and the absolute measures beside them


def test_pure_tone_translated_to_itself_scores_one() -> None:
    scores = score_pitch(tone(1.0), tone(1.0))
    assert scores.ncc == pytest.approx(1.0) and scores.lag_seconds == 0.0
    assert scores.dtw_ncc == pytest.approx(1.0) and scores.dtw_cents_error == pytest.approx(0.0)
    assert scores.raw_pitch_accuracy == 1.0 and scores.output_voiced > 0.9


def test_shifted_melody_is_found_at_the_right_lag() -> None:
    source = melody()
    late = score_pitch(source, melody(delay=0.2))
    assert late.ncc > 0.95
    assert late.lag_seconds == pytest.approx(0.2, abs=HOP / SAMPLE_RATE)
    # DTW forgives the timing, so the absolute measure agrees the notes are right
    assert late.dtw_cents_error < 10
    # on contours the answer is exact, in both directions
    contour = np.cumsum(np.random.default_rng(0).normal(0, 50, 300))
    assert ncc_at_optimal_shift(contour[:-7], contour[7:], 20) == (pytest.approx(1.0), -7)
    assert ncc_at_optimal_shift(contour[7:], contour[:-7], 20) == (pytest.approx(1.0), 7)


def test_transposition_fools_ncc_but_not_the_absolute_measures() -> None:
    scores = score_pitch(melody(), melody(semitones=1.0))
    assert scores.ncc > 0.99 and scores.dtw_ncc > 0.99  # zero-mean: blind to transposition
    assert scores.raw_pitch_accuracy == 0.0 and scores.raw_chroma_accuracy == 0.0
    assert scores.dtw_cents_error > 30


def test_dtw_correlation_follows_a_tempo_change() -> None:
    steps = np.repeat([0.0, 200, 400, 500, 700, 500, 400, 200], 20)
    slower = np.repeat([0.0, 200, 400, 500, 700, 500, 400, 200], [20, 30, 20, 35, 20, 25, 20, 30])
    assert dtw_correlation(steps, slower) == pytest.approx(1.0)
    assert ncc_at_optimal_shift(steps, slower, 10)[0] < 0.9


def test_flat_contours_and_unpitched_audio() -> None:
    assert correlation(np.full(10, 6900.0), np.full(10, 7000.0)) == 1.0  # two held notes: same shape
    assert correlation(np.full(10, 6900.0), np.arange(10.0) * 100) == 0.0
    noise = np.random.default_rng(0).normal(0, 0.3, SAMPLE_RATE).astype(np.float32)
    scores = score_pitch(tone(1.0), noise)
    assert scores.ncc == 0.0 and scores.raw_pitch_accuracy == 0.0 and scores.lag_seconds is None
    with pytest.raises(EvaluationError, match="no pitched frames"):
        score_pitch(noise, tone(1.0))


# ------------------------------------------------------------------------------------------------
# against a parallel reference


def test_reference_scores_of_identical_and_rescaled_audio() -> None:
    reference = melody()
    for output in (reference, 3.0 * reference):  # gain is not timbre
        scores = score_reference(output, reference)
        assert scores.stft_distance == pytest.approx(0.0, abs=1e-6)
        assert scores.log_mel_distance == pytest.approx(0.0, abs=1e-4)
        assert scores.chroma_similarity == pytest.approx(1.0)
        assert scores.onset_f == 1.0


def test_reference_scores_separate_notes_from_timbre() -> None:
    reference = melody()
    same_notes_other_timbre = score_reference(melody(shape="square"), reference)
    other_notes_same_timbre = score_reference(melody(notes=[k + 6 for k in TUNE]), reference)
    assert same_notes_other_timbre.chroma_similarity > 0.9
    assert other_notes_same_timbre.chroma_similarity < 0.5
    assert same_notes_other_timbre.log_mel_distance > 2 * other_notes_same_timbre.log_mel_distance
    assert same_notes_other_timbre.stft_distance > other_notes_same_timbre.stft_distance


def test_onset_f_measure_finds_late_attacks_and_can_be_left_out() -> None:
    reference = melody()
    assert score_reference(melody(delay=0.12), reference).onset_f < 0.2  # every attack 120 ms late
    assert score_reference(reference, reference, with_onsets=False).onset_f is None


# ------------------------------------------------------------------------------------------------
# files


def test_pair_files_matches_translations_to_inputs(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for path in (
        src / "a.wav",
        src / "a_b.wav",
        src / "sub/c.flac",
        out / "a_piano.wav",
        out / "a_b_flute.wav",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(0.1), SAMPLE_RATE)
    sf.write(out / "sub.wav", tone(0.1), SAMPLE_RATE)  # no input of that name: ignored
    (out / "sub").mkdir()
    sf.write(out / "sub/c_piano.wav", tone(0.1), SAMPLE_RATE)
    pairs = {(a.relative_to(src).as_posix(), b.relative_to(out).as_posix()) for a, b in pair_files(src, out)}
    assert pairs == {
        ("a.wav", "a_piano.wav"),
        ("a_b.wav", "a_b_flute.wav"),
        ("sub/c.flac", "sub/c_piano.wav"),
    }
    with pytest.raises(EvaluationError, match="no file matches"):
        pair_files(out / "sub", src)
    with pytest.raises(EvaluationError, match="two files or two folders"):
        pair_files(src, out / "a_piano.wav")


def test_a_missing_optional_package_is_a_one_line_error() -> None:
    with pytest.raises(EvaluationError, match=r"pip install 'musictranslate\[evaluate\]'"):
        optional_import("no_such_package_here.sub")


# ------------------------------------------------------------------------------------------------
# a parallel test set and a tiny model with a domain classifier, shared by the tests below


@pytest.fixture(scope="module")
def parallel_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``piano`` (square waves) and ``flute`` (sines) playing the same two tunes, sample-aligned."""
    root = tmp_path_factory.mktemp("parallel")
    tunes = {"tune_a": TUNE[:8], "tune_b": [7, 5, 4, 2, 0, 2, 4, 0]}
    for domain, shape in (("piano", "square"), ("flute", "sine")):
        (root / domain).mkdir()
        for name, notes in tunes.items():
            audio = np.concatenate([np.zeros(1600, np.float32), melody(notes, 0.2, shape)])
            sf.write(root / domain / f"{name}.wav", audio, SAMPLE_RATE)
    return root


@pytest.fixture(scope="module")
def model_with_classifier(tmp_path_factory: pytest.TempPathFactory, parallel_set: Path) -> Path:
    """A tiny model whose folder holds a classifier trained by the CLI on ``parallel_set``."""
    folder = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
    args = (
        "evaluate",
        "classifier",
        "-m",
        folder,
        "--data",
        parallel_set,
        "--steps",
        "50",
        "--batch-size",
        "16",
    )
    result = run(*args, "--threads", "1", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["domains"] == ["flute", "piano"]
    again = run(*args)
    assert again.exit_code == 1 and "--force" in again.output
    return folder


def test_re_saving_a_model_keeps_its_classifier_while_it_has_the_classifiers_domains(
    model_with_classifier: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(model_with_classifier, tmp_path / "tiny")
    make_tiny_model(copy, domains=("piano", "flute", "organ"), seed=1)  # trained further, a domain added
    assert load_classifier(copy).domains == ["flute", "piano"]
    make_tiny_model(copy, domains=("piano", "organ"))
    assert not (copy / WEIGHTS).exists()


def test_parallel_pieces_groups_renders_by_piece(parallel_set: Path) -> None:
    pieces = parallel_pieces(parallel_set)
    assert list(pieces) == ["tune_a", "tune_b"] and set(pieces["tune_a"]) == {"piano", "flute"}


def test_domain_classifier_tells_timbres_apart(model_with_classifier: Path, tmp_path: Path) -> None:
    classifier = load_classifier(model_with_classifier)
    assert classifier.domains == ["flute", "piano"]
    assert classifier.meta["training"]["train_accuracy"] == 1.0
    unseen = [melody([3, 8, 1, 10], 0.2, shape) for shape in ("square", "sine")]
    assert [classifier.predict(clip) for clip in unseen] == ["piano", "flute"]
    assert recognition_rate(classifier, unseen, "piano") == 0.5
    with pytest.raises(EvaluationError, match="knows no domain 'organ'"):
        recognition_rate(classifier, unseen, "organ")
    tampered = shutil.copytree(model_with_classifier, tmp_path / "copy")
    with open(tampered / WEIGHTS, "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\0")
    with pytest.raises(ModelError, match="sha256"):
        load_classifier(tampered)
    with pytest.raises(ModelError, match="no domain classifier"):
        load_classifier(tmp_path)


def test_domain_classifier_hears_the_models_codec_noise_as_no_timbre(tmp_path: Path) -> None:
    """Every translation is 8-bit mu-law; a classifier that learnt the renders uncoded took the
    codec's noise floor for a breathier domain (it named mu-law-coded FluidR3 piano harpsichord)."""
    rng = np.random.default_rng(0)
    hiss = 0.4 * 10 ** (-30 / 20)  # a domain whose tones carry noise 30 dB below their peak
    for domain in ("flute", "breath"):
        (tmp_path / domain).mkdir()
        for name, notes in {"a": TUNE[:8], "b": [7, 5, 4, 2, 0, 2, 4, 0]}.items():
            audio = melody(notes, 0.2, "sine")
            if domain == "breath":
                audio = audio + hiss * rng.standard_normal(len(audio)).astype(np.float32)
            sf.write(tmp_path / domain / f"{name}.wav", audio, SAMPLE_RATE)
    classifier = train_classifier([tmp_path], steps=50, batch_size=16)
    unseen = melody([3, 8, 1, 10], 0.2, "sine")
    coded = mu_law_decode(mu_law_encode(unseen))
    breathy = unseen + hiss * rng.standard_normal(len(unseen)).astype(np.float32)
    assert [classifier.predict(clip) for clip in (unseen, coded, breathy)] == ["flute", "flute", "breath"]


# ------------------------------------------------------------------------------------------------
# lineup and embedding study


def test_lineup_holds_one_autoencoding_and_every_translation(registry: Path, tmp_path: Path) -> None:
    model = load_model("tiny", registry)
    clips = lineup(model, tone(0.3), "piano")
    assert [(c.domain, c.autoencoded) for c in clips] == [("piano", True), ("flute", False)]
    assert all(c.audio.shape == (4800,) for c in clips)
    key = write_lineup(clips, tmp_path, seed=1, source="tone.wav")
    answers = json.loads(key.read_text())["clips"]
    assert sorted(answers) == ["clip_1.wav", "clip_2.wav"]
    assert sorted(a["domain"] for a in answers.values()) == ["flute", "piano"]
    assert all((tmp_path / name).is_file() for name in answers)
    with pytest.raises(OutputError, match="--force"):
        write_lineup(clips, tmp_path, seed=1)


def test_embedding_summary_on_known_embeddings() -> None:
    rng = np.random.default_rng(0)
    notes = rng.normal(size=(5, 8)) + 3.0  # a shared offset, like a bias in the latent
    same_note_everywhere = np.stack([notes + 0.01 * rng.normal(size=notes.shape) for _ in range(3)])
    summary = EmbeddingStudy(["a", "b", "c"], [60, 62, 64, 65, 67], same_note_everywhere).summary()
    assert summary["raw"]["cross_diagonal_mean"] == pytest.approx(1.0, abs=1e-3)
    assert summary["raw"]["cross_off_diagonal_mean"] > 0.8  # the offset makes every raw cosine high
    assert summary["centred"]["cross_diagonal_mean"] == pytest.approx(1.0, abs=1e-2)
    assert summary["centred"]["cross_off_diagonal_mean"] < 0.3  # centring shows notes differ
    assert set(summary["raw"]["pairs"]) == {"a/b", "a/c", "b/c"}
    np.testing.assert_allclose(np.diag(cosine_matrix(notes, notes)), 1.0, rtol=1e-6)


def _fluidsynth_available() -> bool:
    try:
        from musictranslate.recipes.render import find_soundfont, fluidsynth_cli, fluidsynth_lib
    except ImportError:
        return False
    return find_soundfont() is not None and (fluidsynth_lib() is not None or fluidsynth_cli() is not None)


@pytest.mark.skipif(not _fluidsynth_available(), reason="fluidsynth or a GM soundfont is not installed")
def test_embedding_study_on_rendered_notes(registry: Path, tmp_path: Path) -> None:
    result = run("evaluate", "embedding", "-m", "tiny", "--models", registry, "-o", tmp_path,
                 "-i", "piano", "-i", "organ=19", "--pitches", "60-64:2", "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["instruments"] == ["piano", "organ"] and summary["pitches"] == [60, 62, 64]
    assert -1.0 <= summary["raw"]["cross_diagonal_mean"] <= 1.0
    assert (tmp_path / "embedding_raw.png").stat().st_size > 1000
    assert json.loads((tmp_path / "embedding.json").read_text())["raw"] == summary["raw"]


# ------------------------------------------------------------------------------------------------
# the report, through the CLI, and in a real browser


@pytest.fixture(scope="module")
def report(model_with_classifier: Path, parallel_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    result = run("evaluate", "report", "--model", model_with_classifier, "--data", parallel_set, "-o", out,
                 "--pieces", "1", "--seconds", "1.2", "--no-embedding", "--threads", "1", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_report_scores_model_and_baselines(report: Path) -> None:
    document = _strict_json(report / "report.json")
    assert [(p["source"], p["target"]) for p in document["pairs"]] == [("flute", "piano"), ("piano", "flute")]
    assert document["failures"] == []
    for pair in document["pairs"]:
        scores = pair["scores"]
        assert set(scores) == {"model", "identity", "reference"}
        assert pair["transpose"] == 0  # tunes in the training register are not shifted
        assert scores["identity"]["ncc"] == pytest.approx(1.0)  # the input is its own melody
        assert scores["identity"]["domain_accuracy"] == 0.0  # the input is the *other* instrument
        assert scores["reference"]["domain_accuracy"] == 1.0  # the real target is recognised
        assert scores["reference"]["raw_pitch_accuracy"] > 0.8  # same notes on the target instrument
        assert "log_mel_distance" not in scores["reference"]  # its distance to itself means nothing
        assert (scores["identity"]["onset_f"] is None) == (pair["target"] != "piano")
        for path in (*pair["audio"].values(), *pair["plots"].values()):
            assert (report / path).stat().st_size > 1000
    summary = document["summary"]
    assert summary["model"]["all"]["n"] == 2 and summary["identity"]["piano"]["n"] == 1
    by_source = document["summary_by_source"]["model"]
    assert by_source["flute"]["ncc"] == pytest.approx(document["pairs"][0]["scores"]["model"]["ncc"])
    page = (report / "index.html").read_text()
    assert page.count("<audio") == 6 and page.count("<img") == 5
    again = run(
        "evaluate", "report", "--model", document["model"]["path"], "--data", document["data"], "-o", report
    )
    assert again.exit_code == 1 and "--force" in again.output


def test_report_at_several_seeds_averages_what_single_seed_reports_score(
    report: Path, tmp_path: Path
) -> None:
    at_0 = _strict_json(report / "report.json")  # the fixture: seed 0, one translation per clip
    base = ("evaluate", "report", "--model", at_0["model"]["path"], "--data", at_0["data"],
            "--pieces", "1", "--seconds", "1.2", "--no-embedding", "--threads", "1", "-q")  # fmt: skip
    assert run(*base, "-o", tmp_path / "one", "--seed", "1").exit_code == 0
    assert run(*base, "-o", tmp_path / "both", "--seeds", "2").exit_code == 0
    at_1, both = (
        _strict_json(tmp_path / "one" / "report.json"),
        _strict_json(tmp_path / "both" / "report.json"),
    )
    assert both["settings"]["seeds"] == [0, 1] and at_0["settings"]["seeds"] == [0]
    for pair, zero, one in zip(both["pairs"], at_0["pairs"], at_1["pairs"], strict=True):
        assert zero["scores"]["model"] != one["scores"]["model"]  # the seed matters, so this test can fail
        assert pair["model_by_seed"] == {"0": zero["scores"]["model"], "1": one["scores"]["model"]}
        for key in ("stft_distance", "log_mel_distance", "chroma_similarity", "domain_accuracy"):
            mean = (zero["scores"]["model"][key] + one["scores"]["model"][key]) / 2
            assert pair["scores"]["model"][key] == pytest.approx(mean)
        assert pair["scores"]["identity"] == zero["scores"]["identity"]  # baselines do not sample
        assert pair["audio"] == zero["audio"]  # the first seed's translation is the one kept
    assert both["summary_by_seed"]["1"] == at_1["summary"]["model"]
    assert not at_0["summary_by_seed"] and "model_by_seed" not in at_0["pairs"][0]
    page = (tmp_path / "both" / "index.html").read_text()
    assert "seeds 0-1 (each clip translated 2 times" in page and "seed 1</td>" in page


def test_report_ceiling_from_another_rendering(
    model_with_classifier: Path, parallel_set: Path, tmp_path: Path
) -> None:
    """With the test set itself as the "other soundfont", the ceiling must score perfectly."""
    options = ReportOptions(seconds=1.0, pieces=1, sources=["flute"], targets=["piano"], ceiling=parallel_set,
                            embedding=False)  # fmt: skip
    document = build_report(load_model(model_with_classifier), parallel_set, tmp_path, options)
    (pair,) = document["pairs"]
    ceiling = pair["scores"]["ceiling"]
    assert ceiling["stft_distance"] == pytest.approx(0.0, abs=1e-6) and ceiling["chroma_similarity"] == 1.0
    assert ceiling["domain_accuracy"] == 1.0 and ceiling["onset_f"] == 1.0
    assert (tmp_path / pair["audio"]["ceiling"]).is_file()
    assert document["summary"]["ceiling"]["piano"]["n"] == 1
    with pytest.raises(EvaluationError, match="no test audio for domain 'organ'"):
        build_report(
            load_model(model_with_classifier), parallel_set, tmp_path / "x", ReportOptions(sources=["organ"])
        )


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium to open the report in")
def test_report_opens_in_a_real_browser_with_plots_and_players(report: Path) -> None:
    dom = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         "--virtual-time-budget=15000", "--dump-dom", (report / "index.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    status = re.search(r"<p id=\"media-status\"([^>]*)>([^<]*)", dom)
    assert status, dom[:500]
    attributes = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', status.group(1)))
    assert attributes["checked"] == "true", status.group(0)
    assert int(attributes["images"]) == 5 and attributes["broken-images"] == "0"
    assert int(attributes["audio"]) == 6 and attributes["broken-audio"] == "0"
    assert "All 5 plots and 6 audio clips loaded." in status.group(2)


# ------------------------------------------------------------------------------------------------
# the other commands, and their errors


def test_cli_pitch_and_reference_over_folders(parallel_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("tune_a", "tune_b"):
        shutil.copy(parallel_set / "flute" / f"{name}.wav", out / f"{name}_piano.wav")
    pitch = run("evaluate", "pitch", parallel_set / "flute", out, "--json", "-q")
    assert pitch.exit_code == 0, pitch.output
    rows = json.loads(pitch.stdout)
    assert len(rows) == 2 and all(r["ncc"] == pytest.approx(1.0) for r in rows)
    reference = run("evaluate", "reference", out, parallel_set / "piano", "--json", "-q")
    assert reference.exit_code == 0, reference.output
    assert all(
        r["chroma_similarity"] > 0.8 and r["log_mel_distance"] > 1 for r in json.loads(reference.stdout)
    )
    table = run("evaluate", "pitch", parallel_set / "flute" / "tune_a.wav", out / "tune_a_piano.wav")
    assert table.exit_code == 0 and "ncc" in table.stdout


def test_cli_errors_are_one_line_and_non_zero(registry: Path, parallel_set: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (("evaluate", "pitch", parallel_set / "flute", empty), "no file matches"),
        (("evaluate", "reference", tmp_path / "missing.wav", parallel_set / "flute"), "no such file"),
        (("evaluate", "domain", parallel_set / "flute", "--to", "flute", "-m", "tiny", "--models", registry),
         "no domain classifier"),
        (("evaluate", "report", "-m", "tiny", "--models", registry, "--data", empty, "-o", tmp_path / "r"),
         "no audio found"),
        (("evaluate", "lineup", parallel_set / "flute/tune_a.wav", "--from", "oboe", "-o", tmp_path / "l",
          "-m", "tiny", "--models", registry), "unknown domain 'oboe'"),
    ]  # fmt: skip
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_cli_domain_and_lineup(model_with_classifier: Path, parallel_set: Path, tmp_path: Path) -> None:
    domain = run(
        "evaluate", "domain", parallel_set / "piano", "--to", "piano", "-m", model_with_classifier, "--json"
    )
    assert domain.exit_code == 0, domain.output
    assert [r["predicted"] for r in json.loads(domain.stdout)] == ["piano", "piano"]
    lineup_dir = tmp_path / "lineup"
    result = run("evaluate", "lineup", parallel_set / "flute/tune_a.wav", "--from", "flute", "-o", lineup_dir,
                 "--seconds", "0.3", "-m", model_with_classifier, "--threads", "1", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in lineup_dir.iterdir()) == ["answers.json", "clip_1.wav", "clip_2.wav"]
