"""The sizes of a wasm module's function bodies, read from its code section.

Envoy compiles every function with V8's optimizing compiler when it loads the filter, and keeps
the peak memory that took; that peak grows faster than the largest function's size (see
"Function size" in `src/lib.rs`). The bench reports the largest bodies, and a test keeps them
under a bound.
"""

from __future__ import annotations

from pathlib import Path

CODE_SECTION = 10


def _leb_u32(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``pos``: (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise ValueError("truncated or overlong LEB128 number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def function_body_sizes(module: bytes) -> list[int]:
    """The size in bytes of each function body, in the module's order (imports have none)."""
    if module[:4] != b"\0asm":
        raise ValueError("not a wasm module")
    pos = 8
    while pos < len(module):
        section, pos = module[pos], pos + 1
        size, pos = _leb_u32(module, pos)
        end = pos + size
        if end > len(module):
            raise ValueError("a section runs past the end of the module")
        if section == CODE_SECTION:
            count, pos = _leb_u32(module, pos)
            sizes = []
            for _ in range(count):
                body, pos = _leb_u32(module, pos)
                sizes.append(body)
                pos += body
            if pos != end:
                raise ValueError("the code section's bodies do not add up to its size")
            return sizes
        pos = end
    return []


def largest_bodies(path: Path, n: int = 3) -> list[int]:
    return sorted(function_body_sizes(path.read_bytes()), reverse=True)[:n]


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        print(arg, largest_bodies(Path(arg), 8))
