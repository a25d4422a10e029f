# Two commands run everything: `make figures` (every notebook, default preset, read from the committed
# results store) and `make test` (unit tests + every notebook under nbval with the smoke preset).
# `make evidence` computes the store, `make audit` recomputes stored runs. Each target bootstraps .venv.
SHELL := /bin/bash
PY := .venv/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SMOKE := $(CURDIR)/build/smoke
export CODECARBON_LOG_LEVEL ?= error
export RAY_AUTH_MODE ?= disabled
# Headless targets switch progress bars off (executed notebooks stay free of them); `make lab` and
# `make browser` keep them, so notebooks opened in Lab show their bars.
test unit smoke figures evidence audit bench: export TQDM_DISABLE ?= 1

.PHONY: figures evidence audit test unit smoke lab browser bench clean
.DEFAULT_GOAL := test

.venv/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,scale]"
	$(PY) -m ipykernel install --sys-prefix --name ssl_core --display-name "Python 3 (ssl_core)"   # the notebooks' kernel
	touch $@

# Executed copies land in figures/executed/, never over the source notebooks; `python scripts/same_numbers.py`
# then says whether every number they print and every verdict equals the committed ones.
figures: .venv/.installed
	mkdir -p figures/executed
	for nb in $(NOTEBOOKS); do \
	  .venv/bin/papermill --cwd notebooks "$$nb" "figures/executed/$$(basename $$nb)" || exit 1; \
	done

# The evidence behind the committed figures: every notebook's default preset, each finished run and row added
# to results/ as it lands (resumable: what the store or the cache holds is not recomputed). PARTS picks
# notebooks, so machines can share the work and merge results/ by copying files; DEVICE=cuda and
# BACKEND=ray pass through; RESULTS=<folder> computes a store from nothing in another folder. Until its notebooks
# have finished, results/weights/ keeps the weights of the runs trained (a notebook evaluates after its whole grid).
PARTS ?= $(NOTEBOOKS)
evidence: .venv/.installed
	mkdir -p figures/executed
	for nb in $(PARTS); do \
	  SSL_CORE_STORE=write $(if $(RESULTS),SSL_CORE_RESULTS=$(abspath $(RESULTS))) .venv/bin/papermill --cwd notebooks \
	    $(if $(DEVICE),-p device $(DEVICE)) $(if $(BACKEND),-p backend $(BACKEND)) "$$nb" "figures/executed/$$(basename $$nb)" || exit 1; \
	done
	$(if $(RESULTS),SSL_CORE_RESULTS=$(abspath $(RESULTS))) $(PY) -m ssl_core.store --drop-weights

# Recompute N stored runs (chosen at random) from nothing and compare every stored metric.
N ?= 1
audit: .venv/.installed
	$(PY) -m ssl_core.audit --runs $(N)

test: unit smoke

# One pytest-xdist worker per core, each on its share of the threads (tests/conftest.py): the tests are mostly
# small models and process starts, which one thread per core runs faster than all threads on one test.
unit: .venv/.installed
	$(PY) -m pytest tests -q -n auto --dist worksteal

# Smoke: papermill runs each notebook cold in a private cache, then nbval re-runs the executed
# copy (warm) and compares the cells marked NBVAL_CHECK_OUTPUT with what papermill printed.
smoke: .venv/.installed
	rm -rf $(SMOKE) && mkdir -p $(SMOKE)
	for nb in $(NOTEBOOKS); do \
	  SSL_CORE_CACHE=$(SMOKE)/cache .venv/bin/papermill --cwd notebooks -p preset smoke "$$nb" "$(SMOKE)/$$(basename $$nb)" || exit 1; \
	done
	$(PY) scripts/plan_vs_measured.py $(SMOKE)/*.ipynb    # each cold run's plan estimate within 2x of its time
	SSL_CORE_CACHE=$(SMOKE)/cache $(PY) -m pytest -q --nbval-lax -p no:cacheprovider $(SMOKE)/*.ipynb
	! grep -l "overlapping text" $(SMOKE)/*.ipynb    # a figure whose texts collide (plots.save_figure warned)

lab: .venv/.installed
	.venv/bin/nbstripout --install --attributes .gitattributes    # git add strips notebooks (see .gitattributes)
	git config filter.nbstripout.clean '"$(abspath $(PY))" -m nbstripout --keep-id'    # keeping cell ids
	git config filter.nbstripout.extrakeys '$(addprefix metadata.language_info.,version codemirror_mode \
	  file_extension mimetype nbconvert_exporter pygments_lexer)'    # and the kernel's details
	.venv/bin/jupyter lab notebooks

# A real browser (Debian's /usr/bin/chromium, driven by playwright) runs notebook 04 with the smoke preset in
# a JupyterLab the test starts; screenshots in build/browser/. Slow (minutes), so not part of `make test`.
browser: .venv/.installed
	SSL_CORE_BROWSER=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_browser.py

bench: .venv/.installed
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,scale,bench]"   # the peers measured beside us
	$(PY) bench/run_all.py

clean:
	rm -rf build .cache figures/smoke
