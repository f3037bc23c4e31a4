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

# numba compiles the fused decoder step and pyin on first use (~45 s for both dtypes): done here, once per
# change of the kernel, so the first translation after installing runs as fast as the next. Its disk cache
# is keyed by the compiled function's own file alone (not bf16_dot.py's), so it is cleared first.
$(VENV)/.compiled: $(VENV)/.installed musictranslate/fused.py musictranslate/bf16_dot.py musictranslate/pyin.py musictranslate/retune.py
	rm -f musictranslate/__pycache__/*.nbi musictranslate/__pycache__/*.nbc
	$(PY) -m musictranslate.compile_ahead
	touch $@

install: system-deps $(VENV)/.installed $(VENV)/.compiled

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

# Trains the shipped default model further: resumes the local checkpoint in models/default.train
# when there is one, else starts a new run from the shipped weights (--init; the resume state is
# never committed). Checkpoints every 50 steps (about 2 minutes on 2 cores) on 2 validation
# batches per domain, so a run stopped at any moment loses at most a few minutes.
# lr 5e-5: the shipped weights were trained last with batches of 32 x 1 s on a GPU; with these
# 8x smaller batches a larger rate raised the validation loss (models/default/README.md, History).
DEFAULT_TRAIN = -o models/default --preset small --steps 100000 --batch-size 8 --lr 5e-5 --segment 0.5 \
	--bf16 --checkpoint-every 50 --val-batches 2 --loader-workers 1
DEFAULT_CHECKPOINT = models/default.train/checkpoint/state.json
train-default: data
	$(BIN)/musictranslate train data/train $(DEFAULT_TRAIN) \
		$$(if [ -f $(DEFAULT_CHECKPOINT) ]; then echo --resume; else echo --init models/default --force; fi)

# Trains the default model's piano decoder alone, encoder frozen (`add-domain --refine`), for
# REFINE_STEPS more steps; saved every 50, so stopping loses at most two minutes. A refinement
# step gives piano ~9x the updates per hour of a joint one. Evaluate before shipping what it
# gives: a lower validation loss has made whistle -> piano follow the notes worse (model card).
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
