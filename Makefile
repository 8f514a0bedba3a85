# Tollgate: `make run` starts a working gateway, `make test` runs the suite. Both install what is
# missing first (Debian packages as root, then the Python venv).
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := nginx libnginx-mod-http-lua lua-resty-core lua-nginx-redis lua-cjson redis-server wrk libjs-chart.js \
	libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
# The console's browser tests drive Debian's Chromium; the document tests read PDFs with poppler;
# docker-compose checks docker-compose.yml.
# (pango and the DejaVu fonts above: WeasyPrint renders invoices and statements to PDF.)
TEST_DEB_PACKAGES := chromium poppler-utils docker-compose
STAMP := $(VENV)/.installed

.PHONY: run test bench install deps venv clean

run: install
	$(VENV)/bin/tollgate up

# The suite on TEST_WORKERS processes (pytest-xdist; each starts its own shared instances);
# PYTEST_ARGS after it, e.g. PYTEST_ARGS="-n 0 tests/test_faults.py" for one process.
TEST_WORKERS ?= 3

test: install
	@bash scripts/install-debian-packages.sh $(TEST_DEB_PACKAGES)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

install: deps venv

deps:
	@bash scripts/install-debian-packages.sh $(DEB_PACKAGES)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info
