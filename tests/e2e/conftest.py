"""Fixtures for the end-to-end tests: a real OpenID provider, an echo upstream, real Envoys.

- ``idp``: module-scoped ``harness.Idp`` signing with a fresh RS256 key (kid ``e2e-1``);
  ``idp_keys`` is that private JWKS and ``idp_keys_file`` its path.
- ``echo``: module-scoped ``harness.Echo``.
- ``envoy_with(plugin_config=None, concurrency=2, **kwargs)``: a factory that starts an Envoy in
  front of ``echo`` with the ``idp`` cluster, and stops every Envoy it started at the end of the
  test, pass or fail. ``plugin_config=None`` runs Envoy without the filter.

When a test fails, the tails of the logs of the Envoys it started are printed in the report.
Processes are stopped by PID in finalizers; harness.py also stops leftovers at exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import harness


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="module")
def idp_keys() -> dict[str, Any]:
    return harness.keygen("RS256", "e2e-1")


@pytest.fixture(scope="module")
def idp_keys_file(idp_keys: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harness.write_json(tmp_path_factory.mktemp("keys") / "idp-keys.json", idp_keys)


@pytest.fixture(scope="module")
def idp(idp_keys_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Idp]:
    provider = harness.Idp(tmp_path_factory.mktemp("idp"))
    try:
        provider.start(keys_file=idp_keys_file)
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Echo]:
    upstream = harness.Echo(tmp_path_factory.mktemp("echo"))
    try:
        upstream.start()
        yield upstream
    finally:
        upstream.stop()


EnvoyFactory = Callable[..., harness.Envoy]


@pytest.fixture
def envoy_with(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    idp: harness.Idp,
    echo: harness.Echo,
) -> Iterator[EnvoyFactory]:
    started: list[harness.Envoy] = []

    def make(plugin_config: Any = None, concurrency: int = 2, **kwargs: Any) -> harness.Envoy:
        assert echo.port is not None and idp.port is not None
        kwargs.setdefault("name", f"envoy{len(started) + 1}" if started else "envoy")
        kwargs.setdefault("upstream_port", echo.port)
        kwargs.setdefault("idp_port", idp.port)
        proxy = harness.Envoy(
            tmp_path, plugin_config=plugin_config, concurrency=concurrency, **kwargs
        )
        started.append(proxy)
        proxy.start()
        return proxy

    try:
        yield make
    finally:
        failed = any(
            getattr(request.node, f"rep_{when}", None) is not None
            and getattr(request.node, f"rep_{when}").failed
            for when in ("setup", "call")
        )
        for proxy in started:
            if failed and proxy.service is not None:
                print(f"\n--- {proxy.name} log ({proxy.service.log_path}), last lines:")
                print(proxy.service.log_tail(60))
            proxy.stop()
