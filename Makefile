# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench faults install clean

# The venv is (re)built when pyproject.toml changes; the stamp records it.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,fast,runtimes]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/callgate demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# The hot-path micro-benchmarks, the side-by-side latency benchmark (direct, callgate
# per output mode, nginx if on PATH; BENCH_ARGS, e.g. --levels 100x50 --modes strip),
# the capacity benchmark (calls shaped like calls; one process, --workers 2 on a
# throwaway PostgreSQL, nginx, direct; CAPACITY_ARGS, e.g. --levels 50,100), and the
# end-of-call / database benchmark.
bench: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/bench/test_hot_path.py --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,max,rounds --benchmark-sort=name
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)
	$(BIN)/python -m tests.bench.capacity $(CAPACITY_ARGS)
	$(BIN)/python -m tests.bench.end_of_call

# The fault tests at full size (kill -9, a failing webhook, 20,000 calls); their
# short versions run in `make test`. About 3 minutes.
faults: $(VENV)/.installed
	FAULTS=long $(BIN)/python -m pytest -q -s tests/faults

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
