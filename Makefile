# Scorehook: every target bootstraps what it needs (venv, pip and npm packages) by itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bootstrap browser demo run test test-unit test-integration test-e2e test-security reliability lint bench clean

# The MLflow server of tests, devhost and the demo has a venv of its own (devhost/services.py finds it): the full
# mlflow would force its mlflow-skinny into .venv, where azureml-mlflow (requirements.txt) caps it lower.
MLFLOW_SERVER_VENV := .local/mlflow-server

bootstrap: $(STAMP) $(MLFLOW_SERVER_VENV)/.installed node_modules/.installed

$(STAMP): requirements.txt requirements-cli.txt requirements-dev.txt pyproject.toml
	@echo "bootstrap [1/4] Python venv in $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "bootstrap [2/4] pip itself"
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@# a venv from before the server's own venv has the full mlflow, whose files overlap mlflow-skinny's
	if $(PY) -m pip show --quiet mlflow >/dev/null 2>&1; then \
		$(PY) -m pip uninstall --quiet --disable-pip-version-check -y mlflow mlflow-tracing mlflow-skinny; fi
	@echo "bootstrap [3/4] the pinned packages of requirements-dev.txt (the first time: a few minutes)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@echo "bootstrap [4/4] this project (the scorehook command: $(VENV)/bin/scorehook)"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(MLFLOW_SERVER_VENV)/.installed: requirements-mlflow-server.txt
	@echo "bootstrap: the MLflow server's venv in $(MLFLOW_SERVER_VENV) (requirements-mlflow-server.txt)"
	test -x $(MLFLOW_SERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_SERVER_VENV)
	$(MLFLOW_SERVER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(MLFLOW_SERVER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-mlflow-server.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "bootstrap: Azurite from npm (package-lock.json)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The ops page's browser test drives Debian's chromium through chromedriver (nothing downloads a browser):
# installed here when missing, as root or through sudo, without questions; its output goes to a log file.
APT_LOG := /tmp/scorehook-apt-chromium.log
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	echo "installing chromium and chromium-driver with apt-get (log: $(APT_LOG))"; \
	{ $$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends chromium chromium-driver; } >$(APT_LOG) 2>&1 \
		|| { tail -n 20 $(APT_LOG); exit 1; }

demo: bootstrap
	$(PY) -m devhost demo

run: bootstrap
	$(PY) -m devhost run

test: bootstrap browser
	$(PY) -m pytest

test-unit: bootstrap
	$(PY) -m pytest tests/unit shared

test-integration: bootstrap
	$(PY) -m pytest tests/integration

test-e2e: bootstrap browser
	$(PY) -m pytest tests/e2e

# The hostile corpus and the fuzzing (also part of `make test`, with the small storm).
test-security: bootstrap
	$(PY) -m pytest tests/security

# Everything of tests/security and tests/reliability, the slow runs too (big storm, faults, 500-file burst),
# with more fuzzing examples; prints one table (also in .local/reliability.json). Under 15 minutes on 2 cores.
reliability: bootstrap
	SCOREHOOK_FUZZ_EXAMPLES=$${SCOREHOOK_FUZZ_EXAMPLES:-1000} $(PY) -m pytest -p no:cacheprovider \
		-m "reliability or not reliability" tests/security tests/reliability

# checkov (policy scan of infra/ and the CI/CD definitions) gets a venv of its own: it conflicts with our pins.
# Failed checks fail the target; skips are inline (`// checkov:skip=ID:reason`), each with its reason.
CHECKOV_VENV := .local/checkov

lint: bootstrap $(CHECKOV_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(CHECKOV_VENV)/bin/python infra/bicep_parses.py infra
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework bicep github_actions azure_pipelines \
		-d infra -d .github/workflows -f azure-pipelines.yml

$(CHECKOV_VENV)/.installed: infra/requirements-policy.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements-policy.txt
	touch $@

bench: bootstrap
	$(PY) -m benchmarks

# Fan-out scaling of issue 15: the 10M-row file by 1, 2 and 4 part workers and the single path (about 10 min).
.PHONY: bench-fanout
bench-fanout: bootstrap
	$(PY) -m benchmarks.fanout

# Drift figures of issue 6; Evidently (pandas < 3) gets a venv of its own under .local.
EVIDENTLY_VENV := .local/bench-evidently
.PHONY: bench-drift

bench-drift: bootstrap $(EVIDENTLY_VENV)/.installed
	$(PY) -m benchmarks.drift_bench --evidently-python $(EVIDENTLY_VENV)/bin/python

$(EVIDENTLY_VENV)/.installed: benchmarks/requirements-drift.txt
	test -x $(EVIDENTLY_VENV)/bin/python || $(PYTHON) -m venv $(EVIDENTLY_VENV)
	$(EVIDENTLY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements-drift.txt
	touch $@

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache
