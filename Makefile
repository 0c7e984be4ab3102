# Two commands do all the set-up on a fresh machine (Python >= 3.10 with venv):
#   make demo   the main job on digits: teacher, every method over 5 seeds, comparison table, statistics
#   make test   the test suite
# Both create .venv/ on first use and reuse it afterwards.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPRKD := $(BIN)/sprkd

.PHONY: install demo test bench clean-runs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(SPRKD) train-teacher --dataset digits --model mlp-large --epochs 30 --seed 0 --reuse
	$(SPRKD) compare --dataset digits --student mlp-small --seeds 0-4 --epochs 60 --jobs 2
	$(SPRKD) stats --dataset digits --student mlp-small

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean-runs:
	rm -rf runs runs.db runs.db-wal runs.db-shm runs.db.lock
