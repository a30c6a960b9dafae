# Entry points (see README): `make dub` (the main command), `make test`, `make demo`, `make speak` and
# `make tiny-checkpoints`.
# All are idempotent: the venv is rebuilt only when setup.py or constraints.txt change, system packages only when
# missing, and the recipe skips the stages it has finished.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
APT_PACKAGES := ffmpeg espeak-ng sox chromium
TEXT ?= Where did you put the map?
OUT ?= speech.wav
SAMPLE := checkpoints/deepdubber-tiny/sample
CLIP ?= $(SAMPLE)/clip.mp4
DUBBED ?= dubbed.mp4

.PHONY: test speak dub demo tiny-checkpoints system-deps venv clean-venv

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

$(STAMP): setup.py constraints.txt
	@$(PYTHON) -c 'import shutil, sys; free = shutil.disk_usage(".").free / 2**30; \
	sys.exit(0 if free >= 8 else f"only {free:.1f} GiB free here: the install needs about 8 GiB (torch and its libraries); free some disk and retry")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --no-cache-dir -c constraints.txt -e ".[dev,eval,data,train,demo]"
	$(PIP) install -q --no-cache-dir -c constraints.txt --no-deps f5-tts==1.1.22 resemblyzer==0.1.4
	touch $(STAMP)

venv: $(STAMP)

test: system-deps $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests

speak: system-deps $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/deepdubber speak "$(TEXT)" -o $(OUT)

# Dubs the sample clip (or CLIP=... LINE="...") with the embedded default: prints the reasoning, writes $(DUBBED).
dub: system-deps $(STAMP)
	@test -f "$(CLIP)" || { echo "no clip at $(CLIP): pass CLIP=your_clip.mp4 LINE=\"...\", or build the embedded default and its sample with make tiny-checkpoints"; exit 1; }
	HF_HUB_OFFLINE=1 $(VENV)/bin/deepdubber dub "$(CLIP)" --text "$(if $(LINE),$(LINE),$$(cat $(SAMPLE)/line.txt))" -o $(DUBBED)

# Serves the web demo on http://127.0.0.1:$(PORT) with the embedded default (or MODEL=...).
PORT ?= 7860
demo: system-deps $(STAMP)
	HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False $(VENV)/bin/deepdubber demo --port $(PORT) $(if $(MODEL),--model $(MODEL))

# Generates the corpus and trains every component of checkpoints/deepdubber-tiny (resumable; under 3 h on 2 cores).
tiny-checkpoints: system-deps $(STAMP)
	bash scripts/tiny_checkpoints.sh

clean-venv:
	rm -rf $(VENV)
