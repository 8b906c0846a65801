#!/usr/bin/env python3
"""Package the tollgate filter module as OCI, the way gateways pull Wasm plugins.

``build`` writes one OCI image layout (https://github.com/opencontainers/image-spec/blob/main/
image-layout.md: ``oci-layout``, ``index.json``, ``blobs/sha256/...``) holding the module in two
forms, each a manifest named by its ``org.opencontainers.image.ref.name``:

- ``image``: an OCI image with one ``application/vnd.oci.image.layer.v1.tar+gzip`` layer, a tar
  holding ``plugin.wasm`` (the "compat" variant of the Wasm image specification, annotated
  ``module.wasm.image/variant: compat``). Istio's ``WasmPlugin`` and Envoy Gateway's
  ``EnvoyExtensionPolicy`` (``code.type: Image``) pull this form.
- ``artifact``: the Wasm OCI artifact of the CNCF TAG Runtime (config
  ``application/vnd.wasm.config.v0+json``, one ``application/wasm`` layer: the module itself), for
  tools and hosts that pull Wasm artifacts (``oras``, wasmCloud, Spin, ...).

Both manifests carry the version (``[workspace.package] version`` of Cargo.toml), the source
revision (``git rev-parse HEAD``), the creation time and the SHA-256 of the module as
annotations. The output depends only on the module and those values: the time is
$SOURCE_DATE_EPOCH, else the HEAD commit's time; tar entries have fixed owner, mode and mtime;
the gzip header has no name and no time; JSON is written with sorted keys. The same module from
the same commit gives the same digests.

``push`` copies both forms to a registry with ``skopeo copy`` (image form to ``REPO:TAG``,
artifact to ``REPO:TAG-artifact``); TLS verification is off for a loopback registry only.

Standard library only (Python 3.9+). ``make oci`` / ``make push`` call it; see README.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
WASM_LAYER = "application/wasm"

IMAGE_REF = "image"
ARTIFACT_REF = "artifact"
ARTIFACT_TAG_SUFFIX = "-artifact"
PLUGIN_FILE = "plugin.wasm"

# Annotation keys: the OCI pre-defined ones, and ours for the module's own digest.
A_VERSION = "org.opencontainers.image.version"
A_REVISION = "org.opencontainers.image.revision"
A_CREATED = "org.opencontainers.image.created"
A_TITLE = "org.opencontainers.image.title"
A_DESCRIPTION = "org.opencontainers.image.description"
A_LICENSES = "org.opencontainers.image.licenses"
A_REF_NAME = "org.opencontainers.image.ref.name"
A_WASM_SHA256 = "dev.tollgate.wasm.sha256"
A_VARIANT = "module.wasm.image/variant"


# --------------------------------------------------------------------------------------------
# inputs


def workspace_version(cargo_toml: Path = ROOT / "Cargo.toml") -> str:
    """``version`` of ``[workspace.package]``: the project's one version."""
    text = cargo_toml.read_text("utf-8")
    try:
        import tomllib  # Python 3.11+

        return str(tomllib.loads(text)["workspace"]["package"]["version"])
    except ImportError:
        section = re.search(r"^\[workspace\.package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        found = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
        if not found:
            raise SystemExit(f"{cargo_toml}: no [workspace.package] version") from None
        return found.group(1)


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            check=True, timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.decode().strip() or None


def source_revision() -> str:
    return _git("rev-parse", "HEAD") or "unknown"


def source_epoch() -> int:
    """$SOURCE_DATE_EPOCH (reproducible-builds.org), else the HEAD commit's time, else 0."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    commit_time = _git("log", "-1", "--format=%ct")
    return int(commit_time) if commit_time else 0


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# --------------------------------------------------------------------------------------------
# blobs


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout being written into ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def blob(self, media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
        """Store ``data``; its descriptor."""
        digest = sha256_hex(data)
        path = self.blobs / digest
        if not path.exists():
            path.write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}

    def finish(self, manifests: list[dict[str, Any]]) -> None:
        (self.root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": manifests}
        (self.root / "index.json").write_bytes(canonical_json(index))


def plugin_tar(wasm: bytes, epoch: int) -> bytes:
    """A ustar archive with one regular file, plugin.wasm: owner 0:0, mode 0644, mtime epoch."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(wasm)
        info.mtime = epoch
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_fixed(data: bytes) -> bytes:
    """gzip without a file name and with mtime 0 (the header then depends on nothing else)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# build


def build(wasm_path: Path, out: Path, version: str, revision: str, epoch: int) -> dict[str, str]:
    """Write the layout to ``out`` (replacing it); returns {ref name: manifest digest}."""
    wasm = wasm_path.read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"{wasm_path}: not a WebAssembly module")
    wasm_sha = sha256_hex(wasm)
    created = rfc3339(epoch)
    annotations = {
        A_TITLE: "tollgate",
        A_DESCRIPTION: "tollgate: OpenID Connect / OAuth 2 access control, a proxy-wasm filter",
        A_LICENSES: "Apache-2.0",
        A_VERSION: version,
        A_REVISION: revision,
        A_CREATED: created,
        A_WASM_SHA256: wasm_sha,
    }

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        layout = Layout(staging)

        # The image form: tar+gzip layer with plugin.wasm, an image config that names it.
        tar = plugin_tar(wasm, epoch)
        layer = layout.blob(OCI_LAYER_TAR_GZIP, gzip_fixed(tar))
        image_config = {
            "created": created,
            "architecture": "wasm",
            "os": "wasip1",
            "config": {"Labels": annotations},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256_hex(tar)}"]},
            "history": [{"created": created, "created_by": "scripts/oci_layout.py"}],
        }
        image_manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": layout.blob(OCI_IMAGE_CONFIG, canonical_json(image_config)),
            "layers": [layer],
            "annotations": {**annotations, A_VARIANT: "compat"},
        }

        # The Wasm OCI artifact: the module itself as the one layer.
        module = layout.blob(WASM_LAYER, wasm, annotations={A_TITLE: PLUGIN_FILE})
        wasm_config = {
            "created": created,
            "architecture": "wasm",
            "os": "wasip1",
            "layerDigests": [module["digest"]],
        }
        artifact_manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": layout.blob(WASM_CONFIG, canonical_json(wasm_config)),
            "layers": [module],
            "annotations": annotations,
        }

        refs: dict[str, str] = {}
        manifests = []
        for ref, manifest in ((IMAGE_REF, image_manifest), (ARTIFACT_REF, artifact_manifest)):
            desc = layout.blob(OCI_MANIFEST, canonical_json(manifest),
                               annotations={A_REF_NAME: ref})
            manifests.append(desc)
            refs[ref] = desc["digest"]
        layout.finish(manifests)

        staging.chmod(0o755)  # mkdtemp makes it 0700
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return refs


# --------------------------------------------------------------------------------------------
# push


def is_loopback(reference: str) -> bool:
    host = reference.split("/", 1)[0]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return host in ("localhost", "[::1]") or host.startswith("127.")


def push(layout: Path, reference: str, tls_verify: Optional[bool] = None) -> list[str]:
    """``skopeo copy`` both forms: image to REPO:TAG, artifact to REPO:TAG-artifact. Returns the
    destinations."""
    repo, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or not repo:
        raise SystemExit(f"push: want REGISTRY=host[:port]/repository:tag, got {reference!r}")
    if tls_verify is None:
        tls_verify = not is_loopback(reference)
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise SystemExit("push: skopeo is missing: run `make oci-tools`")
    targets = [(IMAGE_REF, reference), (ARTIFACT_REF, f"{repo}:{tag}{ARTIFACT_TAG_SUFFIX}")]
    for ref, dest in targets:
        argv = [skopeo, "copy", "--quiet", f"--dest-tls-verify={str(tls_verify).lower()}",
                f"oci:{layout}:{ref}", f"docker://{dest}"]
        print("+", " ".join(argv), flush=True)
        subprocess.run(argv, check=True, timeout=300)
    return [dest for _, dest in targets]


# --------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the OCI image layout")
    b.add_argument("--wasm", required=True, type=Path, help="the filter module")
    b.add_argument("--out", required=True, type=Path, help="the layout directory (replaced)")
    b.add_argument("--version", help="default: [workspace.package] version of Cargo.toml")
    b.add_argument("--revision", help="default: git rev-parse HEAD")
    b.add_argument("--epoch", type=int,
                   help="creation time, Unix seconds (default: $SOURCE_DATE_EPOCH, else HEAD's)")
    p = sub.add_parser("push", help="skopeo copy both forms to a registry")
    p.add_argument("layout", type=Path)
    p.add_argument("reference", help="host[:port]/repository:tag")
    p.add_argument("--tls-verify", choices=("true", "false"),
                   help="default: false for a loopback registry, else true")
    args = parser.parse_args(argv)

    if args.command == "build":
        refs = build(
            args.wasm, args.out,
            args.version or workspace_version(),
            args.revision or source_revision(),
            source_epoch() if args.epoch is None else args.epoch,
        )
        for ref, digest in refs.items():
            print(f"{args.out}:{ref:<9} {digest}")
        return 0
    verify = None if args.tls_verify is None else args.tls_verify == "true"
    for dest in push(args.layout, args.reference, verify):
        print(f"pushed {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
