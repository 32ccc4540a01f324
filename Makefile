# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench bench-peers faults fuzz leaks install clean

# The venv is (re)built when pyproject.toml changes; the stamp records it.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,fast,runtimes,telemetry]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/callgate demo

# Types first (mypy with the pydantic plugin, configured in pyproject.toml), then the suite.
test: $(VENV)/.installed
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

# The hot-path micro-benchmarks, the side-by-side latency benchmark (direct, callgate
# per output mode, nginx if on PATH; BENCH_ARGS, e.g. --levels 100x50 --modes strip),
# the capacity benchmark (calls shaped like calls; one process, --workers 2 on a
# throwaway PostgreSQL, nginx, direct; CAPACITY_ARGS, e.g. --levels 50,100), and the
# end-of-call / database benchmark, the upstream-faults run (FAULTS_ARGS, e.g. --calls 50)
# the front doors' time to the first token next to the HTTP path, the database's writes per
# turn (tests/bench/writes.py), and callgate beside nginx, LiteLLM and Portkey in one run
# (tests/bench/versus.py; VERSUS_ARGS, e.g. --quick or --targets direct,nginx,callgate), and
# what traces cost a reply, the OTLP receiver up and down for 10 s (tests/bench/traces.py;
# TRACES_ARGS, e.g. --streams 20 --seconds 10).
bench: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/bench/test_hot_path.py --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,max,rounds --benchmark-sort=name
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)
	$(BIN)/python -m tests.bench.capacity $(CAPACITY_ARGS)
	$(BIN)/python -m tests.bench.end_of_call
	$(BIN)/python -m tests.bench.faults $(FAULTS_ARGS)
	$(BIN)/python -m tests.bench.front_doors
	$(BIN)/python -m tests.bench.writes
	$(BIN)/python -m tests.bench.versus $(VERSUS_ARGS)
	$(BIN)/python -m tests.bench.traces $(TRACES_ARGS)

# The peers of the side-by-side run (tests/bench/versus.py), outside the repository in
# $(BENCH_PEERS) (default ~/.cache/callgate-bench-peers): LiteLLM's proxy in a virtualenv of
# its own, Portkey's gateway with npm. `make bench` skips a peer that is not installed.
bench-peers: $(VENV)/.installed
	$(BIN)/python -m tests.bench.peers install

# The fault tests at full size (kill -9, a failing webhook, 20,000 calls); their
# short versions run in `make test`. About 3 minutes.
faults: $(VENV)/.installed
	FAULTS=long $(BIN)/python -m pytest -q -s tests/faults

# Fuzzing the sans-IO core: 1,000,000 inputs shared by the four targets (SSE decoder,
# command parser, tool-call assembler, reply inspector), under atheris when installed;
# 0 exceptions and the same answer however the input is split (FUZZ_ARGS, e.g.
# --engine random --jobs 1). About 10 minutes on 2 cores; its short version runs in
# `make test`.
fuzz: $(VENV)/.installed
	$(BIN)/python -m tests.fuzz.run --inputs 1000000 $(FUZZ_ARGS)

# The leak benchmark (issue 29): LEAKS replies (default 1,000,000) of an adversarial
# grammar, streamed in every provider shape and cut at random, through the reply
# inspector on every core; fails unless 0 leaks, 0 speech lost, 0 commands or tool calls
# missed, doubled or invented (LEAKS_ARGS, e.g. --jobs 1 --seed 3). CI: make leaks
# LEAKS=100000. Its 2,000-reply version runs in `make test`.
LEAKS ?= 1000000
leaks: $(VENV)/.installed
	$(BIN)/python -m tests.leaks.run --replies $(LEAKS) $(LEAKS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
