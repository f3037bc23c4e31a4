"""Fast tests of the data recipe: MIDI hygiene, grouping/split, rendering, whistle synth.

Rendering tests skip cleanly where FluidSynth or the GM soundfont is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictranslate.recipes import midi, render, split, whistle
from musictranslate.recipes.midi import Note, NoteScore

HAVE_SOUNDFONT = render.find_soundfont() is not None
HAVE_SYNTH = HAVE_SOUNDFONT and (render.fluidsynth_lib() is not None or render.fluidsynth_cli())
HAVE_CLI = HAVE_SOUNDFONT and render.fluidsynth_cli() is not None
needs_synth = pytest.mark.skipif(not HAVE_SYNTH, reason="fluidsynth or GM soundfont not installed")
needs_cli = pytest.mark.skipif(not HAVE_CLI, reason="fluidsynth program or soundfont not installed")


def _score() -> NoteScore:
    """Two parts with the traps docs/design.md measured: a zero-length grace note, unison overlap."""
    soprano = [Note(0, 480, 72), Note(480, 480, 74), Note(480, 960, 76), Note(960, 1920, 77)]
    alto = [Note(0, 960, 67), Note(480, 1440, 67), Note(960, 1920, 65)]
    return NoteScore([soprano, alto], [(0, 500_000), (960, 1_000_000)])


# --- MIDI ---------------------------------------------------------------------------------


def test_write_midi_drops_zero_length_notes_and_never_leaves_notes_open() -> None:
    data = midi.write_midi(_score(), program=19)
    score, events = midi.read_midi(data)
    all_notes = [n for part in score.parts for n in part]
    assert all(n.end > n.start for n in all_notes)
    assert 74 not in {n.pitch for n in all_notes}  # the grace note is gone
    # every note-on is matched by a later note-off on its channel and pitch
    open_notes: dict[tuple[int, int], int] = {}
    for ev in events:
        kind = ev.status & 0xF0
        if kind == 0x90 and ev.data[1] > 0:
            key = (ev.status & 0x0F, ev.data[0])
            assert open_notes.get(key, 0) == 0, "a note-on over a sounding note"
            open_notes[key] = 1
        elif kind == 0x80:
            open_notes[(ev.status & 0x0F, ev.data[0])] = 0
    assert not any(open_notes.values())


def test_write_midi_channels_programs_and_all_notes_off() -> None:
    parts = [[Note(0, 480, 60 + i)] for i in range(11)]
    data = midi.write_midi(NoteScore(parts), program=52)
    _, events = midi.read_midi(data)
    note_channels = {ev.status & 0x0F for ev in events if ev.status & 0xF0 == 0x90}
    assert note_channels == set(range(9)) | {10, 11}  # each part its own, 9 skipped
    programs = {(ev.status & 0x0F, ev.data[0]) for ev in events if ev.status & 0xF0 == 0xC0}
    assert programs == {(c, 52) for c in note_channels}
    for track in range(1, 12):
        track_events = [ev for ev in events if ev.track == track and ev.status != 0xFF]
        last = track_events[-1]
        assert last.status & 0xF0 == 0xB0 and last.data[0] == midi.ALL_NOTES_OFF


def test_set_program_changes_only_program_bytes() -> None:
    data = midi.write_midi(_score(), program=0)
    patched = midi.set_program(data, 73)
    assert len(patched) == len(data)
    score_a, _ = midi.read_midi(data)
    score_b, ev_b = midi.read_midi(patched)
    assert score_a == score_b
    assert {ev.data[0] for ev in ev_b if ev.status & 0xF0 == 0xC0} == {73}


def test_tempo_map_seconds_and_crop() -> None:
    score = _score()  # 120 qpm for 2 quarters, then 60 qpm
    assert score.seconds(960) == pytest.approx(1.0)
    assert score.seconds(1920) == pytest.approx(3.0)
    assert score.duration == pytest.approx(3.0)
    cropped = score.cropped(2.0)
    assert cropped.duration == pytest.approx(2.0, abs=0.01)
    data = midi.write_midi(score)
    assert midi.read_midi(data)[0].tempos == [(0, 500_000), (960, 1_000_000)]


def test_clean_notes_trims_overlapping_unisons() -> None:
    notes = midi.clean_notes([Note(0, 960, 67), Note(480, 1440, 67), Note(0, 100, 67)])
    assert notes == [Note(0, 480, 67), Note(480, 1440, 67)]


# --- corpus -------------------------------------------------------------------------------


def test_corpus_export_of_one_chorale(tmp_path: Path) -> None:
    from musictranslate.recipes import corpus

    root = corpus.corpus_root()
    spec = next(s for s in corpus.bach_works(root) if s.piece_id == "bach-bwv66.6")
    assert spec.work == "bach/bwv66"
    result = corpus.export_work(spec, tmp_path)
    assert result.error is None, result.error
    assert result.parts == 4 and 20 < result.seconds < 30
    score, _ = midi.read_midi(Path(result.midi or "").read_bytes())
    assert len(score.parts) == 4
    assert result.melody[:4] == [73, 71, 69, 71]  # soprano opening, repeats removed


def test_subsets_are_nested_and_deterministic() -> None:
    from musictranslate.recipes import corpus

    tiny = {s.piece_id for s in corpus.select_works("tiny")}
    default = corpus.select_works("default")
    assert tiny <= {s.piece_id for s in default}
    assert [s.piece_id for s in default] == [s.piece_id for s in corpus.select_works("default")]
    essen = [s for s in default if s.collection == "essenFolksong"]
    assert essen and all(s.work.startswith("essen/") for s in essen)


# --- split --------------------------------------------------------------------------------


def test_melody_grouping_is_transposition_invariant_and_keeps_works_together() -> None:
    tune = [60, 62, 64, 65, 67, 65, 64, 62, 60, 67, 69, 71, 72, 71, 69, 67, 65]
    pieces = [
        split.Piece("a", "bach/bwv1", tuple(tune)),
        split.Piece("b", "bach/bwv2", tuple(p + 5 for p in tune)),  # same tune, other key
        split.Piece("c", "bach/bwv3", tuple(range(50, 67))),
        split.Piece("d", "bach/bwv3", tuple(range(70, 50, -1))),  # movement of bwv3
    ]
    out = split.assign_splits(pieces)
    assert out["a"].group == out["b"].group == "bach/bwv1"
    assert out["c"].group == out["d"].group == "bach/bwv3"
    assert out["a"].split == out["b"].split and out["c"].split == out["d"].split


def test_split_hash_is_deterministic_and_follows_ratios() -> None:
    names = [f"group-{i}" for i in range(4000)]
    splits = [split.split_of(n, (0.8, 0.1, 0.1)) for n in names]
    assert splits == [split.split_of(n, (0.8, 0.1, 0.1)) for n in names]
    frac = {s: splits.count(s) / len(splits) for s in split.SPLITS}
    assert abs(frac["train"] - 0.8) < 0.03 and abs(frac["val"] - 0.1) < 0.02


def test_shared_melody_later_in_the_tune_moves_the_group_to_train() -> None:
    rng = np.random.default_rng(0)
    tunes = [tuple(int(x) for x in 60 + np.cumsum(rng.integers(-4, 5, 40))) for _ in range(60)]
    pieces = [split.Piece(f"p{i}", f"w{i}", t) for i, t in enumerate(tunes)]
    plain = split.assign_splits(pieces, resolve_leaks=False)
    held_out = next(p for p in pieces if plain[p.piece_id].split != "train")
    trained = next(p for p in pieces if plain[p.piece_id].split == "train")
    # a variant of a held-out tune with another opening, whose body appears in a train piece
    twin = split.Piece("twin", trained.work, (50, 52, 55, *held_out.melody[5:]))
    out = split.assign_splits([*pieces, twin])
    assert out["twin"].split == "train" and out[held_out.piece_id].split == "train"
    assert out[held_out.piece_id].moved
    assert split.leak_audit([*pieces, twin], out) == {"val": 0, "test": 0, "test_with_val": 0}


# --- rendering ----------------------------------------------------------------------------


def test_finish_normalises_without_clipping_and_trims_tail() -> None:
    sr = 16_000
    t = np.arange(sr) / sr
    loud = np.concatenate([0.01 * np.sin(2 * np.pi * 440 * t), 5.0 * np.ones(10), np.zeros(sr)])
    audio, info = render.finish(loud.astype(np.float32), sr, lead_seconds=0.0)
    assert np.max(np.abs(audio)) <= 10 ** (render.PEAK_DBFS / 20) + 1e-6
    assert info.peak_db <= render.PEAK_DBFS + 1e-3
    assert len(audio) < 1.2 * sr  # the second of silence is gone
    with pytest.raises(render.RenderError):
        render.finish(np.zeros(sr, dtype=np.float32), sr)


@needs_synth
def test_render_sustained_organ_ends_and_is_parallel_across_programs(tmp_path: Path) -> None:
    mid = tmp_path / "x.mid"
    mid.write_bytes(midi.write_midi(_score()))
    lengths = []
    for program in (19, 0):
        audio, info = render.render_midi(mid, program, tmp_path / f"{program}.flac", timeout=20)
        assert info is not None and len(audio) < 8 * render.SAMPLE_RATE  # 3 s score + tail
        data, sr = sf.read(tmp_path / f"{program}.flac")
        assert sr == render.SAMPLE_RATE and data.ndim == 1
        assert np.max(np.abs(data)) < 1.0
        lengths.append(len(data))
    assert min(lengths) > 2.5 * render.SAMPLE_RATE


@needs_synth
def test_render_note_has_the_right_pitch() -> None:
    for program, pitch in ((0, 69), (73, 76)):
        audio = render.render_note(program, pitch, seconds=1.0, release=0.5)
        assert len(audio) == int(1.5 * render.SAMPLE_RATE)
        spectrum = np.abs(np.fft.rfft(audio[: render.SAMPLE_RATE] * np.hanning(render.SAMPLE_RATE)))
        f0 = float(whistle.midi_to_hz(pitch))
        assert abs(np.argmax(spectrum[: int(f0 * 1.5)]) - f0) < f0 * 0.03


@needs_cli
def test_cli_and_library_backends_agree() -> None:
    if render.fluidsynth_lib() is None:
        pytest.skip("libfluidsynth not loadable")
    data = midi.write_midi(_score(), program=48)
    a = render.render_bytes(data, backend="lib", max_seconds=10)
    b = render.render_bytes(data, backend="cli", max_seconds=10, timeout=20)
    n = min(len(a), len(b), 3 * render.SAMPLE_RATE)
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.99


@needs_synth
def test_build_tiny_subset_layout(tmp_path: Path) -> None:
    from musictranslate.recipes import build

    manifest = build.build(tmp_path, subset="tiny", domains=("piano", "organ"), jobs=1, quiet=True)
    assert manifest["counts"]["pieces"] >= 10
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["domains"]["organ"]["gm_program"] == 19
    for s in split.SPLITS:
        a = sorted(p.name for p in (tmp_path / s / "piano").glob("*.flac"))
        b = sorted(p.name for p in (tmp_path / s / "organ").glob("*.flac"))
        assert a == b  # parallel: same pieces in every domain
    for pid, entry in manifest["pieces"].items():
        assert (tmp_path / entry["split"] / "organ" / f"{pid}.flac").exists()
    # the whistle evaluation set: whistled test tunes beside their parallel renders
    chosen = manifest["eval_whistle"]["pieces"]
    assert chosen and all(manifest["pieces"][p]["split"] == "test" for p in chosen)
    for pid in chosen:
        for folder, ext in (("whistle", "wav"), ("piano", "flac"), ("organ", "flac")):
            assert (tmp_path / "eval_whistle" / folder / f"{pid}.{ext}").stat().st_size > 1000
    shifts = json.loads((tmp_path / "eval_whistle" / "transpositions.json").read_text())["whistle"]
    assert sorted(shifts) == sorted(chosen) and all(k % 12 == 0 for k in shifts.values())  # octaves only
    # out of the register: transposed MIDI beside its renders in every domain
    register = manifest["eval_sets"]["eval_register"]["pieces"]
    assert register and all(name.rsplit("_", 1)[1] in ("-12", "-5", "+5", "+12") for name in register)
    for name in register:
        piece, shift = name.rsplit("_", 1)
        moved = midi.read_midi((tmp_path / "eval_register" / "midi" / f"{name}.mid").read_bytes())[0]
        original = midi.read_midi((tmp_path / "midi" / f"{piece}.mid").read_bytes())[0]
        assert moved.parts[0][0].pitch == original.parts[0][0].pitch + int(shift)
        for domain in ("piano", "organ"):
            assert (tmp_path / "eval_register" / domain / f"{name}.flac").stat().st_size > 1000
    # unseen instruments: each plays one monophonic test tune beside the tune's test renders
    unseen = manifest["eval_sets"]["eval_unseen"]["instruments"]
    assert unseen and set(unseen) <= {"clarinet", "trumpet", "ocarina", "nylon_guitar", "voice"}
    for instrument, piece in unseen.items():
        assert manifest["pieces"][piece]["parts"] == 1
        for folder in (instrument, "piano", "organ"):
            assert (tmp_path / "eval_unseen" / folder / f"{piece}.flac").stat().st_size > 1000


# --- whistle ------------------------------------------------------------------------------


def test_whistle_is_in_range_at_minus_3_dbfs() -> None:
    audio = whistle.synthesize(whistle.melody_notes())
    sr = whistle.SAMPLE_RATE
    assert 7.5 < len(audio) / sr < 9.0
    assert 20 * np.log10(np.max(np.abs(audio))) == pytest.approx(-3.0, abs=0.05)
    frame = 1024
    peaks = []
    for i in range(0, len(audio) - frame, frame):
        chunk = audio[i : i + frame]
        if np.sqrt(np.mean(chunk**2)) > 0.05:
            spec = np.abs(np.fft.rfft(chunk * np.hanning(frame)))
            peaks.append(np.argmax(spec) * sr / frame)
    assert len(peaks) > 50
    assert min(peaks) >= 550 and max(peaks) <= 2600
    assert whistle.synthesize(whistle.melody_notes()).tobytes() == audio.tobytes()


def test_whistle_transposition_fits_range() -> None:
    shift = whistle.fit_transposition([48, 60, 64], 600.0, 2500.0)
    assert whistle.midi_to_hz(48 + shift) >= 600.0 and whistle.midi_to_hz(64 + shift) <= 2500.0
    octaves = whistle.fit_transposition([60, 64, 67], 600.0, 2500.0, step=12)
    assert octaves == 24  # the pitch classes stay those of the parallel renders
    assert whistle.fit_transposition([48, 60, 64], 600.0, 2500.0, step=12) % 12 == 0  # none fits: nearest


def test_shipped_whistle_example_matches_spec() -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "whistle.wav"
    if not path.exists():
        pytest.skip("examples/whistle.wav not generated yet")
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
    assert path.stat().st_size < 300_000
