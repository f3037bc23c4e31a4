# Quick start: `make demo` translates the shipped whistle with the shipped model; `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install system-deps demo test lint bench data eval-data train-default refine-default-piano evaluate-default clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,data,evaluate]'
	touch $@

install: system-deps $(VENV)/.installed

# ffmpeg decodes m4a/aac; fluidsynth + a GM soundfont render the training data; libportaudio2 is
# PortAudio, which `musictranslate live` uses for audio devices. Installed when root.
system-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v fluidsynth >/dev/null || [ ! -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] \
		|| ! /sbin/ldconfig -p | grep -q libportaudio.so.2; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg fluidsynth fluid-soundfont-gm libportaudio2 >/dev/null) \
			|| echo "warning: could not install ffmpeg/fluidsynth/libportaudio2; m4a input, data rendering and live devices need them"; \
		else echo "warning: install ffmpeg, fluidsynth, fluid-soundfont-gm and libportaudio2 for m4a input, `make data` and live devices"; fi; \
	fi

demo: install
	mkdir -p out
	$(BIN)/musictranslate translate examples/whistle.wav --to piano -o out/whistle_piano.wav --force

test: install
	$(PY) -m pytest -q

lint: install
	$(BIN)/ruff check musictranslate tests bench examples hatch_build.py
	$(BIN)/ruff format --check musictranslate tests bench examples hatch_build.py

bench: install
	$(PY) -m bench

data: install
	$(PY) -m musictranslate.recipes.build --out data

# Rewrites the evaluation sets (data/eval_whistle, eval_register, eval_unseen; `make data` writes
# them too) from an existing build's MIDI and test renders: seconds, no re-export.
eval-data: install
	$(PY) -m musictranslate.recipes.eval_sets --data data

# Trains (or, when models/default.train holds a checkpoint, resumes) the shipped default model.
# Checkpoints every 50 steps (about 2 minutes) on 2 validation batches per domain (about 12 s),
# so a session that ends mid-run loses at most a few minutes.
# The committed checkpoint is stage 5's: the H200 run's 4,000 steps of 32 x 1 s (README "Training
# on a GPU machine"), then 1,150 of these on the CPU, which raised whistle -> piano NCC 0.75 -> 0.82
# (README, "The shipped default model"). Earlier, from 5,850 steps here: 0-3,725 at --lr 1e-3, then
# 3e-4, which lowered every domain's validation loss 0.03-0.05 nats more in 100 steps.
# Going on here with 8x smaller batches than the H200's needs a smaller learning rate: refining
# the GPU-trained piano decoder at 3e-4 raised its validation loss 0.06 nats, at 5e-5 lowered it.
DEFAULT_TRAIN = -o models/default --preset small --steps 100000 --batch-size 8 --lr 5e-5 --segment 0.5 \
	--bf16 --checkpoint-every 50 --val-batches 2 --loader-workers 1
train-default: data
	$(BIN)/musictranslate train data/train $(DEFAULT_TRAIN) \
		$$([ -f models/default.train/checkpoint/state.json ] && echo --resume)

# Trains the default model's piano decoder alone, encoder frozen (`add-domain --refine`), for
# REFINE_STEPS more steps; saved every 50, so stopping loses at most two minutes. Every score the
# README quotes is X -> piano, and a refinement step gives piano ~9x the updates per hour of a
# joint one. A later `make train-default` goes on from the refined decoder. Learning rate: above.
# Evaluate before shipping what it gives: past stage 4, 3,300 more steps lowered the loss yet made
# whistle -> piano follow the notes worse (README, "The shipped default model").
REFINE_STEPS ?= 2000
refine-default-piano: data
	$(BIN)/musictranslate add-domain data/train/piano --name piano --refine -m default --steps $(REFINE_STEPS) \
		--batch-size 8 --segment 0.5 --lr 5e-5 --warmup 100 --bf16 --checkpoint-every 50 --loader-workers 1

# Scores the default model over every target domain on the whistle, test, register and unseen
# sets (needs `make data`) and writes the numbers into its model card; reports in out/eval_default.
# Another model: make evaluate-default EVAL_ARGS="--model PATH --out DIR --no-card".
EVAL_ARGS ?=
evaluate-default: install
	$(PY) examples/evaluate_default.py $(EVAL_ARGS)

clean:
	rm -rf out build dist *.egg-info
