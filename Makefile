# Two commands: `make demo` (train, record and analyse the paper's Figure-1 runs and the theorem's) and `make test`.
# Both create ./.venv on first use. torch is installed first and pinned to the CPU build; GPU users override:
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test clean browser notebooks

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test,notebook]"
	touch $@

# The paper's Figure-1 runs (outside Assumption 4.1: predictions, not tests), then huang2024-theorem (every term of
# Assumption 4.1 met, about a minute): its verdicts are tests of the theorem, the OOD probe logged every 20 steps.
demo: setup
	$(BIN)/dyn run --preset huang2024-figure1 --modality single --evaluate-every 20 --out runs/single.zarr --overwrite
	$(BIN)/dyn run --preset huang2024-figure1 --modality multi --evaluate-every 20 --out runs/multi.zarr --overwrite
	$(BIN)/dyn analyze runs/single.zarr runs/multi.zarr --out runs/report --overwrite
	$(BIN)/dyn run --preset huang2024-theorem --modality single --evaluate-every 20 --out runs/theorem-single.zarr --overwrite
	$(BIN)/dyn run --preset huang2024-theorem --modality multi --evaluate-every 20 --out runs/theorem-multi.zarr --overwrite
	$(BIN)/dyn analyze runs/theorem-single.zarr runs/theorem-multi.zarr --out runs/theorem-report --overwrite

# Debian's headless Chromium and its WebDriver for the HTML report test (never downloaded by the test itself);
# skipped when already installed. Needs root (CI runs as root) or sudo.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo "chromium: installed"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; fi

# Run every notebook top to bottom into runs/notebooks/ (with outputs; the committed ones stay output-free).
# SMALL=1 runs them at the test suite's small sizes (minutes instead of the paper sizes' hours).
notebooks: setup
	mkdir -p runs/notebooks/work
	DYN_NOTEBOOK_SMALL=$(if $(SMALL),1,0) DYN_NOTEBOOK_WORK=$(CURDIR)/runs/notebooks/work MPLBACKEND=Agg \
	  $(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
	  --output-dir runs/notebooks notebooks/*.ipynb

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
