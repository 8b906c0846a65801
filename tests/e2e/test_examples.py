"""The shipped examples stay valid: the Envoy bootstrap of ``examples/envoy`` passes
``envoy --mode validate`` with the real filter (which runs tollgate's own configuration check),
and the plugin configurations it and ``docs/configuration.md`` embed follow
``docs/config.schema.json`` and are accepted by the filter.

No PyYAML here: the embedded JSON is read from the YAML's ``value: |`` block by indentation.
"""

from __future__ import annotations

import json
import re
import subprocess
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
