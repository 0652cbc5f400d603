# Set-up and the two entry points of the README. Everything lands in .venv; nothing global is touched.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build is found locally on the project's machines; on a GPU machine this resolves to the CUDA build.
TORCH ?= torch==2.13.0
MAIN_CONFIGS := --config configs/data/hippocampus_3d.yaml --config configs/model/res_unet_3d.yaml \
                --config configs/trainer/cpu.yaml --trainer.default_root_dir runs/main

.PHONY: install main test lint clean-main

$(BIN)/medlight: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/medlight

# Train a 3D Res-UNet on the embedded hippocampus data, test it on the held-out cases, print the summary.
main: install
	$(BIN)/medlight fit $(MAIN_CONFIGS)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check medlight tests
	$(BIN)/mypy medlight

clean-main:
	rm -rf runs/main
