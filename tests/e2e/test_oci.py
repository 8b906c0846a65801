"""The OCI packaging (`make oci`, `make push`) round-trips through a real registry.

``scripts/oci_layout.py`` packs the built module in both forms gateways pull (the image with a
``plugin.wasm`` tar layer, and the Wasm OCI artifact); a real registry (the ``docker-registry``
binary of Debian's package, distribution 2.8, on a free loopback port with its storage in a
temporary directory, stopped by PID) receives both through ``skopeo copy``; ``skopeo`` pulls
them back into a new layout; the digests, the annotations and the module's SHA-256 are the
built ones; and the pulled module, loaded by a real Envoy, lets a request with a real token
through and refuses one without.

Needs ``skopeo`` and ``docker-registry`` (`make oci-tools`, which `make e2e` runs); skipped
without them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pytest

import harness

ROOT = harness.ROOT
SCRIPT = ROOT / "scripts" / "oci_layout.py"
RELATIVE_WASM = "target/wasm32-wasip1/release/tollgate_filter.wasm"

SKOPEO = shutil.which("skopeo")
# `make oci-tools` unpacks Debian's docker-registry into .tools/oci (see the Makefile).
_UNPACKED_REGISTRY = ROOT / ".tools" / "oci" / "usr" / "bin" / "docker-registry"
REGISTRY_BIN = (str(_UNPACKED_REGISTRY) if _UNPACKED_REGISTRY.is_file()
                else shutil.which("docker-registry"))
pytestmark = pytest.mark.skipif(
    SKOPEO is None or REGISTRY_BIN is None,
    reason="skopeo or docker-registry missing: run `make oci-tools`",
)


def built_wasm() -> Path:
    path = Path(harness.wasm_path() or ROOT / RELATIVE_WASM)
    if not path.is_file():
        pytest.skip(f"{path} is missing: run `make wasm`")
    return path.resolve()


def run(argv: list[Any], timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=timeout, check=False,
    )
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{out}"
    return out


def build_layout(wasm: Path, out: Path) -> dict[str, str]:
    """`make oci`'s command: {ref name: manifest digest} from its output."""
    output = run([sys.executable, SCRIPT, "build", "--wasm", wasm, "--out", out])
    refs = {}
    for line in output.splitlines():
        name, digest = line.rsplit(None, 1)
        refs[name.rsplit(":", 1)[1]] = digest
    assert set(refs) == {"image", "artifact"}, output
    return refs


class Blobs:
    """Reading an OCI image layout, independently of the script that writes one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index = json.loads((root / "index.json").read_text())

    def raw(self, digest: str) -> bytes:
        algo, hexdigest = digest.split(":")
        data = (self.root / "blobs" / algo / hexdigest).read_bytes()
        assert hashlib.sha256(data).hexdigest() == hexdigest, f"blob {digest} is corrupt"
        return data

    def manifest_digest(self, ref: str) -> str:
        found = [m["digest"] for m in self.index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
        assert len(found) == 1, (ref, self.index)
        return str(found[0])

    def manifest(self, ref: str) -> dict[str, Any]:
        return dict(json.loads(self.raw(self.manifest_digest(ref))))


def wasm_from_image(layout: Blobs) -> bytes:
    """plugin.wasm from the image form's one tar+gzip layer, as Istio's fetcher reads it."""
    manifest = layout.manifest("image")
    assert [l["mediaType"] for l in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"]
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    config = json.loads(layout.raw(manifest["config"]["digest"]))
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    layer = layout.raw(manifest["layers"][0]["digest"])
    tar_bytes = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["plugin.wasm"]
        assert members[0].isreg() and members[0].mode == 0o644 and members[0].uid == 0
        extracted = tar.extractfile(members[0])
        assert extracted is not None
        return extracted.read()


def wasm_from_artifact(layout: Blobs) -> bytes:
    manifest = layout.manifest("artifact")
    assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert [l["mediaType"] for l in manifest["layers"]] == ["application/wasm"]
    config = json.loads(layout.raw(manifest["config"]["digest"]))
    assert config["architecture"] == "wasm" and config["os"] == "wasip1"
    assert config["layerDigests"] == [manifest["layers"][0]["digest"]]
    return layout.raw(manifest["layers"][0]["digest"])


# --------------------------------------------------------------------------------------------
# a real registry


class Registry:
    def __init__(self, workdir: Path) -> None:
        self.port = harness.free_port()
        self.config = workdir / "registry.yml"
        # JSON is YAML; no auth, no TLS: loopback only.
        harness.write_json(self.config, {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "e2e-only"},
        })
        self.service = harness.Service(
            "registry", [REGISTRY_BIN, "serve", self.config], log_dir=workdir,
            ready_url=f"http://127.0.0.1:{self.port}/v2/", timeout=20,
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def manifest_digest(self, repo: str, tag: str) -> str:
        """The registry's own word: Docker-Content-Digest of HEAD /v2/<repo>/manifests/<tag>."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("HEAD", f"/v2/{repo}/manifests/{tag}",
                         headers={"accept": "application/vnd.oci.image.manifest.v1+json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, (repo, tag, resp.status)
            return str(resp.getheader("docker-content-digest"))
        finally:
            conn.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    try:
        reg.service.start()
        yield reg
    finally:
        reg.service.stop()


# --------------------------------------------------------------------------------------------


def test_layout_is_reproducible(tmp_path: Path):
    wasm = built_wasm()
    first = build_layout(wasm, tmp_path / "one")
    second = build_layout(wasm, tmp_path / "two")
    assert first == second
    for name in ("index.json", "oci-layout"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "one/blobs/sha256").iterdir()) == sorted(
        p.name for p in (tmp_path / "two/blobs/sha256").iterdir())

    # What the manifests say about the module and its source.
    layout = Blobs(tmp_path / "one")
    module = wasm.read_bytes()
    workspace = (ROOT / "Cargo.toml").read_text().split("[workspace.package]", 1)[1]
    version = re.search(r'^version\s*=\s*"([^"]+)"', workspace, re.M).group(1)
    revision = run(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip()
    for ref in ("image", "artifact"):
        notes = layout.manifest(ref)["annotations"]
        assert notes["org.opencontainers.image.version"] == version
        assert notes["org.opencontainers.image.revision"] == revision
        assert notes["dev.tollgate.wasm.sha256"] == hashlib.sha256(module).hexdigest()
    assert wasm_from_image(layout) == module
    assert wasm_from_artifact(layout) == module

    # Another creation time is another digest: the time is an input, not the clock.
    third = run([sys.executable, SCRIPT, "build", "--wasm", wasm, "--out", tmp_path / "three",
                 "--epoch", "0"])
    assert first["image"] not in third


def test_push_and_pull_through_a_registry_then_serve_with_the_pulled_module(
    tmp_path: Path, registry: Registry, envoy_with, idp: harness.Idp
):
    wasm = built_wasm()
    module_sha = hashlib.sha256(wasm.read_bytes()).hexdigest()
    built = build_layout(wasm, tmp_path / "built")

    # `make push REGISTRY=127.0.0.1:PORT/tollgate:e2e`: both forms, one skopeo copy each.
    reference = f"{registry.host}/tollgate/filter:e2e"
    out = run([sys.executable, SCRIPT, "push", tmp_path / "built", reference])
    assert "--dest-tls-verify=false" in out  # loopback registry, plain HTTP
    tags = {"image": "e2e", "artifact": "e2e-artifact"}
    for ref, tag in tags.items():
        assert registry.manifest_digest("tollgate/filter", tag) == built[ref], ref

    # Pull both back with skopeo into a fresh layout.
    pulled_dir = tmp_path / "pulled"
    for ref, tag in tags.items():
        run([SKOPEO, "copy", "--quiet", "--src-tls-verify=false",
             f"docker://{registry.host}/tollgate/filter:{tag}", f"oci:{pulled_dir}:{ref}"])
    pulled = Blobs(pulled_dir)
    for ref in tags:
        assert pulled.manifest_digest(ref) == built[ref], ref
        assert pulled.manifest(ref)["annotations"]["dev.tollgate.wasm.sha256"] == module_sha

    # The modules that came back are the built one, byte for byte...
    modules = {"image": wasm_from_image(pulled), "artifact": wasm_from_artifact(pulled)}
    for ref, data in modules.items():
        assert hashlib.sha256(data).hexdigest() == module_sha, ref

    # ...and a real Envoy runs them: a real token passes, no token is refused.
    config = {"providers": {"e2e": {"issuer": idp.issuer, "audiences": ["api://orders"],
                                    "discovery": {"cluster": "idp"}}},
              "headers": {"claims": {"x-user": "sub"}}}
    token = idp.token("reporting", scope="orders:read")
    for ref, data in modules.items():
        path = tmp_path / f"{ref}-plugin.wasm"
        path.write_bytes(data)
        proxy = envoy_with(config, wasm=path, concurrency=1, name=f"envoy-{ref}")
        allowed = proxy.request("GET", "/orders", {"authorization": f"Bearer {token}"})
        assert allowed.status == 200, (ref, allowed)
        assert allowed.json()["headers"]["x-user"] == "reporting"
        assert proxy.request("GET", "/orders").status == 401
        proxy.stop()
