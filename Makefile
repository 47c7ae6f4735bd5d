# Two entry points (see README): `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test lint hooks bench samples signatures fuzz clean

demo: install
	$(BIN)/classifier scan pcaps/demo.pcap --format table
	@mkdir -p out
	$(BIN)/classifier scan pcaps/demo.pcap -o out/demo.jsonl -q --html out/demo.html
	@echo "one JSON record per flow: out/demo.jsonl; the HTML report: out/demo.html"

# Lint, formatting and types first (seconds), then the suite; the same checks pre-commit runs
# (.pre-commit-config.yaml). mypy reads what to check from [tool.mypy] in pyproject.toml.
test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -ra

# Every Python package comes in the exact version constraints.txt names, build environments included,
# so a new upstream release cannot change what the tests run against. The pinned pip comes first:
# the venv's own pip may be too old for --build-constraint.
PIN := -c constraints.txt
PIP_INSTALL := $(BIN)/python -m pip install -q $(PIN) --build-constraint constraints.txt

# The venv needs no Debian package but python3-venv (installed by the script if ensurepip is
# missing); `make demo` installs nothing else system-wide but what the compiled per-packet loop needs
# (tools/debian-build-packages.txt: gcc, headers), and those are optional: a failure to install them
# is said, and the pure-Python loop runs. The packages the tests need (tshark, unbound, chromium...)
# are installed by install-test only.
$(BIN)/python:
	bash tools/install-system-packages.sh tools/debian-build-packages.txt || \
		echo "make: no C compiler or Python headers: the pure-Python per-packet loop will run" >&2
	bash tools/install-system-packages.sh
	$(PYTHON) -m venv $(VENV)

# Which per-packet loop and parsers the install gives (compiled, or pure Python and why), said after
# each install: the lines of `classifier --version` after the first.
SAY_LOOP := $(BIN)/classifier --version | tail -n +2

install: $(BIN)/python
	$(BIN)/python -m pip install -q $(PIN) pip
	$(PIP_INSTALL) -e .
	@$(SAY_LOOP)

install-test: $(BIN)/python
	bash tools/install-system-packages.sh tools/debian-packages.txt
	$(BIN)/python -m pip install -q $(PIN) pip
	$(PIP_INSTALL) -e '.[test,dask]'
	@$(SAY_LOOP)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The same checks at every `git commit` (.pre-commit-config.yaml; local hooks on this venv, no network).
hooks: install-test
	$(BIN)/pre-commit install

bench: install
	$(BIN)/python benchmarks/scan_throughput.py

# Fuzz every target in turn, FUZZ_SECONDS each (FUZZ_RUNS: also stop a target after that many
# inputs; FUZZ_TARGETS: a comma-separated subset). Corpus and findings stay in fuzz-out/.
FUZZ_SECONDS ?= 60
fuzz: install-test
	$(BIN)/python -m fuzz.campaign --seconds $(FUZZ_SECONDS) $(if $(FUZZ_RUNS),--runs $(FUZZ_RUNS)) \
		$(if $(FUZZ_TARGETS),--targets $(FUZZ_TARGETS))

samples: install-test
	$(BIN)/python pcaps/build_samples.py

signatures: install-test
	$(BIN)/python tools/build_signatures.py

clean:
	rm -rf $(VENV) out benchmarks/work build *.egg-info .mypy_cache classifier/_batchcount.c classifier/_pcapscan.c classifier/_partfeed.c classifier/_dnsparse.c classifier/_hello.c classifier/_quicinitial.c classifier/*.so
