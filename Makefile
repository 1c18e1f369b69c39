# Herald: `make run` brings the whole stack up; `make test` runs every check and suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint fmt pytest bench bench-tenant-overhead bench-web bench-broadcast bench-noisy \
	bench-rate-limit bench-api bench-console bench-console-queries clean

$(INSTALLED): requirements/base.txt requirements/production.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $(INSTALLED)

install: $(INSTALLED)

run: install
	$(PY) deploy/dev/run.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

pytest: install
	$(VENV)/bin/pytest

test: lint pytest

bench: bench-tenant-overhead bench-web bench-broadcast bench-noisy bench-rate-limit bench-api bench-console

bench-tenant-overhead: install
	$(PY) bench/tenant_overhead.py

bench-web: install
	$(PY) bench/web.py

bench-broadcast: install
	$(PY) bench/broadcast.py

bench-noisy: install
	$(PY) bench/noisy_neighbour.py

bench-rate-limit: install
	$(PY) bench/rate_limit.py

bench-api: install
	$(PY) bench/api.py

bench-console: install
	$(PY) bench/console_live.py

bench-console-queries: install
	$(PY) bench/console_queries.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-output
