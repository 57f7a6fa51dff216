# The two commands a newcomer needs: `make train` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: setup data train test test-fast lint format benchmark app dashboard mlflow clean-logs

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,sweep,app,export,mlflow,wandb,lint]'
	touch $@

setup: $(INSTALLED)

data: setup
	$(PY) scripts/fetch_data.py

# Extra Hydra overrides: make train ARGS="trainer.max_epochs=5"
train: data
	$(PY) src/train.py $(ARGS)

# Extra pytest flags: make test PYTEST_ARGS="-m 'not slow'"
test: data
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: data
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff (lint and format) and mypy, configured in pyproject.toml; CI runs this before the tests.
lint: setup
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy

# Let ruff sort the imports, apply its safe fixes and format the code.
format: setup
	$(VENV)/bin/ruff check --fix
	$(VENV)/bin/ruff format

# Time src/train.py against the tutorial's loop: make benchmark ARGS="--epochs 3 --runs 3"
benchmark: data
	$(PY) scripts/benchmark.py $(ARGS)

# Look inside the newest run's last.ckpt at http://127.0.0.1:7860, or another: make app ARGS="ckpt_path=<x.ckpt>"
app: data
	$(PY) src/app.py $(ARGS)

# Watch the newest search's study at http://127.0.0.1:8080, or another: make dashboard ARGS="<sweep dir or storage URL>"
dashboard: setup
	$(PY) scripts/dashboard.py $(ARGS)

# The MLflow UI on http://127.0.0.1:5000 over the runs of logger=mlflow (or many): make mlflow ARGS="--port 5001"
mlflow: setup
	$(PY) -m mlflow ui --backend-store-uri sqlite:///logs/mlflow/mlflow.db --host 127.0.0.1 --port 5000 $(ARGS)

clean-logs:
	rm -rf logs
