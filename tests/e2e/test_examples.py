"""The shipped examples stay valid: the Envoy bootstrap of ``examples/envoy`` passes
``envoy --mode validate`` with the real filter (which runs tollgate's own configuration check),
and the plugin configurations it and ``docs/configuration.md`` embed follow
``docs/config.schema.json`` and are accepted by the filter.

No PyYAML for the Envoy bootstrap: the embedded JSON is read from the YAML's ``value: |`` block
by indentation. The Kubernetes manifests of ``examples/istio`` and ``examples/envoy-gateway`` are
read with PyYAML: their embedded plugin configurations follow the schema and load in the real
filter, and the clusters they name are the ones the manifests make. Every recipe of
``examples/recipes`` loads in the real filter; the local demo's runs against the real provider.
The module's exports and the Makefile's Envoy versions match README.md's "Compatibility".
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

import harness

ROOT = harness.ROOT
ENVOY_YAML = ROOT / "examples" / "envoy" / "envoy.yaml"
SCHEMA = ROOT / "docs" / "config.schema.json"
CONFIG_DOC = ROOT / "docs" / "configuration.md"
RELATIVE_WASM = "target/wasm32-wasip1/release/tollgate_filter.wasm"


def built_wasm() -> Path:
    """The filter module: $TOLLGATE_WASM (set by `make e2e`), else the release build."""
    path = Path(harness.wasm_path() or ROOT / RELATIVE_WASM)
    if not path.is_file():
        pytest.skip(f"{path} is missing: run `make wasm`")
    return path.resolve()


# --------------------------------------------------------------------------------------------
# reading the examples


def embedded_plugin_config(yaml_text: str) -> str:
    """The text of the block scalar after the StringValue's ``value: |`` in the wasm filter."""
    lines = yaml_text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*value:\s*\|\s*$", line) and "StringValue" in lines[i - 1]:
            key_indent = len(line) - len(line.lstrip())
            block: list[str] = []
            for body in lines[i + 1:]:
                if body.strip() and len(body) - len(body.lstrip()) <= key_indent:
                    break
                block.append(body)
            indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
            return "\n".join(b[indent:] for b in block).strip() + "\n"
    raise AssertionError("no `value: |` block after a google.protobuf.StringValue @type")


def yaml_cluster_names(yaml_text: str) -> set[str]:
    """Names of the clusters under static_resources.clusters (entries `- name: X` there)."""
    _, _, clusters = yaml_text.partition("\n  clusters:\n")
    return set(re.findall(r"^    - name: ([\w.-]+)\s*$", clusters, re.M))


def doc_configs() -> list[dict[str, Any]]:
    """Every ```json block of docs/configuration.md that is a whole configuration."""
    blocks = re.findall(r"```json\n(.*?)```", CONFIG_DOC.read_text(), re.S)
    assert blocks, "no json blocks in docs/configuration.md"
    configs = []
    for block in blocks:
        value = json.loads(block)  # every json block of the page must at least be JSON
        if isinstance(value, dict) and "providers" in value:
            configs.append(value)
    return configs


# --------------------------------------------------------------------------------------------
# a small validator for the JSON Schema keywords config.schema.json uses


def schema_errors(
    value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = ""
) -> list[str]:
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        return schema_errors(value, root["$defs"][ref[len("#/$defs/"):]], root, path)
    where = path or "(top)"
    if "anyOf" in schema:
        if all(schema_errors(value, alt, root, path) for alt in schema["anyOf"]):
            return [f"{where}: matches none of anyOf"]
        return []
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "null": lambda v: v is None,
        }
        if not any(checks[t](value) for t in types):
            return [f"{where}: {json.dumps(value)[:60]} is not {' or '.join(types)}"]
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        errors.append(f"{where}: {value} is under {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: missing required `{name}`")
        extra = schema.get("additionalProperties", True)
        for name, member in value.items():
            sub = f"{path}.{name}" if path else name
            if name in props:
                errors += schema_errors(member, props[name], root, sub)
            elif extra is False:
                errors.append(f"{where}: unknown field `{name}`")
            elif isinstance(extra, dict):
                errors += schema_errors(member, extra, root, sub)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], root, f"{path}[{i}]")
    return errors


def test_the_schema_validator_catches_mistakes():
    schema = json.loads(SCHEMA.read_text())
    good = {"providers": {"a": {"issuer": "https://a", "audiences": ["x"],
                                "jwks": {"uri": "https://a/k", "cluster": "c"}}}}
    assert schema_errors(good, schema, schema) == []
    assert schema_errors({}, schema, schema) == ["(top): missing required `providers`"]
    bad = json.loads(json.dumps(good))
    bad["providers"]["a"]["audience"] = "x"
    bad["providers"]["a"]["audiences"] = "x"
    bad["rules"] = [{"match": {"prefix": 1}, "claims": {"roles": [1]}}]
    bad["keys_wait_timeout_ms"] = -1
    assert sorted(schema_errors(bad, schema, schema)) == sorted([
        "providers.a: unknown field `audience`",
        'providers.a.audiences: "x" is not array',
        "rules[0].match.prefix: 1 is not string or null",
        "rules[0].claims.roles: matches none of anyOf",
        "keys_wait_timeout_ms: -1 is under 0",
    ])


# --------------------------------------------------------------------------------------------
# the Envoy example


def test_envoy_example_validates_with_the_real_filter(tmp_path: Path):
    text = ENVOY_YAML.read_text()
    assert f"filename: {RELATIVE_WASM}" in text, "the example names the module relative to the repo"
    wasm = built_wasm()
    # The same file with the module's absolute path, so the check runs from any directory.
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(text.replace(f"filename: {RELATIVE_WASM}", f"filename: {wasm}"))
    proc = subprocess.run(
        [harness.envoy_binary(), "--mode", "validate", "-c", str(bootstrap),
         "--disable-hot-restart", "-l", "info", "--component-log-level", "wasm:debug"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False,
    )
    output = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, output[-4000:]
    assert f"configuration '{bootstrap}' OK" in output, output[-2000:]
    assert "invalid configuration" not in output


def test_envoy_example_settings():
    text = ENVOY_YAML.read_text()
    for setting in (
        "runtime: envoy.wasm.runtime.v8",
        "failure_policy: FAIL_CLOSED",
        "vm_id: tollgate",
        "root_id: tollgate",
        "type.googleapis.com/google.protobuf.StringValue",
        "normalize_path: true",
        "merge_slashes: true",
        "path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT",
    ):
        assert setting in text, setting
    # The wasm filter comes before the router.
    assert text.index("envoy.filters.http.wasm") < text.index("envoy.filters.http.router")


def test_envoy_example_plugin_config_follows_the_schema():
    text = ENVOY_YAML.read_text()
    config = json.loads(embedded_plugin_config(text))
    schema = json.loads(SCHEMA.read_text())

    assert set(config) <= set(schema["properties"]), set(config) - set(schema["properties"])
    assert set(schema["required"]) <= set(config)
    assert schema_errors(config, schema, schema) == []

    # Every cluster the filter fetches through is a cluster of the bootstrap.
    clusters = yaml_cluster_names(text)
    assert {"idp", "upstream"} <= clusters, clusters
    for name, provider in config["providers"].items():
        for source in ("jwks", "discovery"):
            if source in provider:
                assert provider[source]["cluster"] in clusters, (name, source)


def test_embedded_config_reader():
    yaml_text = (
        'x:\n  configuration:\n    "@type": type.googleapis.com/google.protobuf.StringValue\n'
        '    value: |\n      {\n        "a": [1,\n\n          2]\n      }\n  next: 1\n'
    )
    assert json.loads(embedded_plugin_config(yaml_text)) == {"a": [1, 2]}


# --------------------------------------------------------------------------------------------
# docs/configuration.md


def test_configuration_doc_examples_follow_the_schema():
    schema = json.loads(SCHEMA.read_text())
    configs = doc_configs()
    assert len(configs) >= 2  # the complete example and the smallest one at least
    for config in configs:
        assert schema_errors(config, schema, schema) == [], json.dumps(config)[:200]


def test_configuration_doc_examples_load_in_the_real_filter(tmp_path: Path):
    wasm = built_wasm()
    for i, config in enumerate(doc_configs()):
        proxy = harness.Envoy(tmp_path, upstream_port=1, idp_port=2, plugin_config=config,
                              wasm=wasm, name=f"doc{i}")
        ok, output = proxy.validate()
        errors = [line for line in output.splitlines() if "invalid configuration" in line]
        assert ok and not errors, f"example {i}: {errors or output[-2000:]}"


def test_configuration_doc_names_every_reason_code():
    denial = (ROOT / "src" / "denial.rs").read_text()
    codes = set(re.findall(r'Denial::\w+(?:\(_\))? => "([a-z_]+)"', denial))
    assert len(codes) > 20, codes
    doc = CONFIG_DOC.read_text()
    missing = [code for code in sorted(codes) if f"| `{code}` |" not in doc]
    assert not missing, f"docs/configuration.md lacks rows for {missing}"


# --------------------------------------------------------------------------------------------
# the Kubernetes examples: examples/istio and examples/envoy-gateway
#
# Their manifests are read with PyYAML (pinned in the Makefile's venv); the plugin configuration
# they embed must follow the schema and load in the real filter, and the clusters it names must
# be the ones the manifests make.

ISTIO_DIR = ROOT / "examples" / "istio"
GATEWAY_DIR = ROOT / "examples" / "envoy-gateway"
RECIPES_DIR = ROOT / "examples" / "recipes"


def workspace_version() -> str:
    workspace = (ROOT / "Cargo.toml").read_text().split("[workspace.package]", 1)[1]
    found = re.search(r'^version\s*=\s*"([^"]+)"', workspace, re.M)
    assert found, "no [workspace.package] version in Cargo.toml"
    return found.group(1)


def manifests(directory: Path) -> list[dict[str, Any]]:
    """Every document of every *.yaml in ``directory``, each a Kubernetes object."""
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is missing from the venv: rm .tools/venv/.done && make tools")
    docs: list[dict[str, Any]] = []
    paths = sorted(directory.glob("*.yaml"))
    assert paths, f"no manifests in {directory}"
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert isinstance(doc, dict), path
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(doc), (path, sorted(doc))
            assert doc["metadata"].get("name"), path
            docs.append(doc)
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def provider_clusters(config: dict[str, Any]) -> set[str]:
    """Every cluster a provider fetches through (keys, discovery, introspection)."""
    names = set()
    for provider in config["providers"].values():
        for source in ("jwks", "discovery", "introspection"):
            if source in provider:
                names.add(provider[source]["cluster"])
    return names


def secret_envs(config: dict[str, Any]) -> set[str]:
    return {p["introspection"]["client_secret_env"] for p in config["providers"].values()
            if "client_secret_env" in p.get("introspection", {})}


def load_in_filter(tmp_path: Path, configs: dict[str, dict[str, Any]], *,
                   clusters: Any = (), extra_clusters: Any = (), env: Any = None) -> None:
    """One ``envoy --mode validate`` with a tollgate filter for each of ``configs`` (plugin name
    -> configuration; one VM, so the module compiles once, and each plugin's configuration goes
    through the filter's own check), static clusters named ``clusters``, the cluster objects
    ``extra_clusters`` as they are, and ``env`` (name -> value) as the VM's environment."""
    wasm = built_wasm()
    items = list(configs.items())

    def plugin(name: str, config: dict[str, Any]) -> dict[str, Any]:
        entry = harness.wasm_filter(config, wasm)
        entry["typed_config"]["config"]["name"] = name
        if env:
            entry["typed_config"]["config"]["vm_config"]["environment_variables"] = {
                "key_values": dict(env)}
        return entry

    def hook(boot: dict[str, Any]) -> None:
        boot["static_resources"]["clusters"] += list(extra_clusters)
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        filters = hcm["typed_config"]["http_filters"]
        hcm["typed_config"]["http_filters"] = [plugin(n, c) for n, c in items] + filters[-1:]

    proxy = harness.Envoy(tmp_path, upstream_port=1, plugin_config=items[0][1], wasm=wasm,
                          clusters={c: 1 for c in clusters}, bootstrap_hook=hook,
                          name="examples")
    ok, output = proxy.validate()
    errors = [line for line in output.splitlines()
              if "invalid configuration" in line or "Unable to create Wasm plugin" in line]
    assert ok and not errors, errors or output[-3000:]


def test_istio_example_manifests():
    docs = manifests(ISTIO_DIR)
    [plugin] = of_kind(docs, "WasmPlugin")
    spec = plugin["spec"]
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["url"] == f"oci://registry.example.com/tollgate/filter:{workspace_version()}"
    assert spec["pluginName"] == "tollgate" and spec["phase"] in ("AUTHN", "AUTHZ")
    config = spec["pluginConfig"]
    schema = json.loads(SCHEMA.read_text())
    assert schema_errors(config, schema, schema) == []

    # Each cluster is the one Istio makes for a port of a ServiceEntry here, and the
    # DestinationRule for that host originates TLS when the issuer is https.
    entries = of_kind(docs, "ServiceEntry")
    rules = {d["spec"]["host"]: d["spec"] for d in of_kind(docs, "DestinationRule")}
    made = {f"outbound|{port['number']}||{host}"
            for e in entries for host in e["spec"]["hosts"] for port in e["spec"]["ports"]}
    assert provider_clusters(config) <= made, (provider_clusters(config), made)
    for provider in config["providers"].values():
        host = urllib.parse.urlsplit(provider["issuer"]).hostname
        assert f"outbound|443||{host}" in made
        assert rules[host]["trafficPolicy"]["tls"] == {"mode": "SIMPLE", "sni": host}
    # The VM gets every variable the configuration reads, from the gateway's environment.
    env = {e["name"]: e["valueFrom"] for e in spec["vmConfig"]["env"]}
    assert {name: "HOST" for name in secret_envs(config)} == env


def envoy_gateway_parts() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The EnvoyExtensionPolicy's wasm entry, and the clusters the EnvoyPatchPolicy adds."""
    docs = manifests(GATEWAY_DIR)
    [policy] = of_kind(docs, "EnvoyExtensionPolicy")
    [wasm] = policy["spec"]["wasm"]
    added = []
    for patch_policy in of_kind(docs, "EnvoyPatchPolicy"):
        assert patch_policy["spec"]["type"] == "JSONPatch"
        for patch in patch_policy["spec"]["jsonPatches"]:
            assert patch["type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
            assert patch["operation"]["op"] == "add" and patch["operation"]["path"] == ""
            assert patch["operation"]["value"]["name"] == patch["name"]
            added.append(patch["operation"]["value"])
    return wasm, added


def test_envoy_gateway_example_manifests():
    wasm, added = envoy_gateway_parts()
    assert wasm["failOpen"] is False
    assert wasm["rootID"] == "tollgate"
    assert wasm["code"]["type"] == "Image"
    assert wasm["code"]["image"]["url"] == (
        f"registry.example.com/tollgate/filter:{workspace_version()}")
    config = wasm["config"]
    schema = json.loads(SCHEMA.read_text())
    assert schema_errors(config, schema, schema) == []
    assert provider_clusters(config) <= {c["name"] for c in added}
    # Nothing reads a VM variable that Envoy Gateway could not provide.
    assert secret_envs(config) == set()


# --------------------------------------------------------------------------------------------
# examples/recipes


def recipes() -> dict[str, dict[str, Any]]:
    found = {p.name: json.loads(p.read_text()) for p in sorted(RECIPES_DIR.glob("*.json"))}
    assert {"keycloak.json", "auth0.json", "okta.json", "entra-id.json", "google.json",
            "local-demo.json"} <= set(found), sorted(found)
    return found


def test_recipes_follow_the_schema_and_have_a_section():
    schema = json.loads(SCHEMA.read_text())
    readme = (RECIPES_DIR / "README.md").read_text()
    for name, config in recipes().items():
        assert schema_errors(config, schema, schema) == [], name
        assert f"[{name}]({name})" in readme, f"examples/recipes/README.md does not show {name}"


def test_examples_and_recipes_load_in_the_real_filter(tmp_path: Path):
    """The Istio pluginConfig (as the JSON Istio hands over), the Envoy Gateway config (with the
    EnvoyPatchPolicy's cluster as it is, so Envoy checks that too) and every recipe, each as one
    plugin of one Envoy in validate mode."""
    [istio] = of_kind(manifests(ISTIO_DIR), "WasmPlugin")
    istio_config = json.loads(json.dumps(istio["spec"]["pluginConfig"]))
    gateway, added = envoy_gateway_parts()
    configs = {"istio": istio_config, "envoy-gateway": gateway["config"]}
    configs.update({f"recipe-{name.removesuffix('.json')}": c for name, c in recipes().items()})
    clusters = set().union(*(provider_clusters(c) for c in configs.values()))
    clusters -= {c["name"] for c in added}
    load_in_filter(tmp_path, configs, clusters=clusters, extra_clusters=added,
                   env={name: "from-the-gateway" for name in secret_envs(istio_config)})


def test_local_demo_recipe_against_the_real_provider(envoy_with, idp: harness.Idp):
    config = json.loads((RECIPES_DIR / "local-demo.json").read_text())
    assert config["providers"]["demo"]["issuer"] == "http://127.0.0.1:9000"
    config["providers"]["demo"]["issuer"] = idp.issuer  # the test provider's port
    proxy = envoy_with(config, concurrency=1)

    jwt = idp.token("orders-app", scope="orders:read orders:write")
    res = proxy.request("POST", "/orders", {"authorization": f"Bearer {jwt}"}, "{}")
    assert res.status == 200, res
    assert res.json()["headers"]["x-roles"] == "admin,buyer"

    opaque = idp.token("orders-app", scope="orders:read", resource="api://opaque")
    res = proxy.request("GET", "/orders", {"authorization": f"Bearer {opaque}"})
    assert res.status == 200, res
    assert res.json()["headers"]["x-client"] == "orders-app"

    reader = idp.token("reporting", scope="orders:read")
    assert proxy.request("POST", "/orders", {"authorization": f"Bearer {reader}"}).status == 403
    assert proxy.request("GET", "/admin", {"authorization": f"Bearer {reader}"}).status == 403
    assert proxy.request("GET", "/health").status == 200


# --------------------------------------------------------------------------------------------
# README.md "Compatibility"


def wasm_exports(module: bytes) -> list[str]:
    """The export names of a WebAssembly module (binary format: sections of LEB128 sizes)."""
    assert module[:8] == b"\0asm\x01\0\0\0", "not a WebAssembly 1.0 module"

    def leb128(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = module[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, pos

    names, pos = [], 8
    while pos < len(module):
        section, (size, pos) = module[pos], leb128(pos + 1)
        if section == 7:  # the export section
            count, p = leb128(pos)
            for _ in range(count):
                length, p = leb128(p)
                names.append(module[p:p + length].decode())
                _, p = leb128(p + length + 1)  # kind byte, then the index
        pos += size
    return names


def test_readme_compatibility_matches_the_module_and_the_makefile():
    exports = wasm_exports(built_wasm().read_bytes())
    abi = [name for name in exports if name.startswith("proxy_abi_version_")]
    assert abi == ["proxy_abi_version_0_2_1"], abi
    assert {"proxy_on_tick", "proxy_on_http_call_response", "memory"} <= set(exports)
    # A host enters the VM for every callback a module exports, so the module exports only
    # those it has work in (filters/src/abi.rs): no `proxy_on_done`, `proxy_on_log`,
    # `proxy_on_response_body`, which Envoy would otherwise call on every request.
    assert set(exports) == {
        "memory", "_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate",
        "proxy_on_context_create", "proxy_on_configure", "proxy_on_tick", "proxy_on_delete",
        "proxy_on_http_call_response", "proxy_on_request_headers", "proxy_on_request_body",
        "proxy_on_request_trailers", "proxy_on_response_headers",
    }, sorted(exports)

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Compatibility", 1)[1].split("\n## ", 1)[0]
    assert "`proxy_abi_version_0_2_1`" in section
    makefile = (ROOT / "Makefile").read_text()
    versions = re.search(r"^COMPAT_ENVOY_VERSIONS\s*:=\s*(.+)$", makefile, re.M)
    assert versions, "no COMPAT_ENVOY_VERSIONS in the Makefile"
    for version in versions.group(1).split():
        assert version in section, f"README.md Compatibility does not name Envoy {version}"
