"""The sizes of a wasm module's function bodies, read from its code section (and the names its
name section gives them, for `tests/bench/module_profile.py`).

Envoy compiles every function with V8's optimizing compiler when it loads the filter, and keeps
the peak memory that took; that peak grows faster than the largest function's size (see
"Function size" in `src/lib.rs`). The bench reports the largest bodies, and a test keeps them
under a bound.
"""

from __future__ import annotations

import re
from pathlib import Path

CODE_SECTION = 10
IMPORT_SECTION = 2
CUSTOM_SECTION = 0


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


def _sections(module: bytes) -> list[tuple[int, int, int]]:
    """Each section: (id, start of its content, end)."""
    if module[:4] != b"\0asm":
        raise ValueError("not a wasm module")
    out, pos = [], 8
    while pos < len(module):
        section, pos = module[pos], pos + 1
        size, pos = _leb_u32(module, pos)
        if pos + size > len(module):
            raise ValueError("a section runs past the end of the module")
        out.append((section, pos, pos + size))
        pos += size
    return out


def function_body_sizes(module: bytes) -> list[int]:
    """The size in bytes of each function body, in the module's order (imports have none)."""
    for section, pos, end in _sections(module):
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
    return []


def _name(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = _leb_u32(data, pos)
    return data[pos:pos + length].decode("utf-8", "replace"), pos + length


def function_names(module: bytes) -> tuple[int, dict[int, str]]:
    """How many functions the module imports, and the names its name section gives functions,
    by function index (imports first, then the code section's bodies in order)."""
    imported, names = 0, {}
    for section, pos, end in _sections(module):
        if section == IMPORT_SECTION:
            count, pos = _leb_u32(module, pos)
            for _ in range(count):
                _, pos = _name(module, pos)
                _, pos = _name(module, pos)
                kind, pos = module[pos], pos + 1
                if kind == 0:  # function: its type index
                    _, pos = _leb_u32(module, pos)
                    imported += 1
                elif kind == 1:  # table: element type, limits
                    flags = module[pos + 1]
                    _, pos = _leb_u32(module, pos + 2)
                    if flags & 1:
                        _, pos = _leb_u32(module, pos)
                elif kind == 2:  # memory: limits
                    flags = module[pos]
                    _, pos = _leb_u32(module, pos + 1)
                    if flags & 1:
                        _, pos = _leb_u32(module, pos)
                elif kind == 3:  # global: type, mutability
                    pos += 2
                else:
                    raise ValueError(f"unknown import kind {kind}")
        elif section == CUSTOM_SECTION:
            title, pos = _name(module, pos)
            while title == "name" and pos < end:
                sub = module[pos]
                size, pos = _leb_u32(module, pos + 1)
                if sub == 1:  # function names
                    count, at = _leb_u32(module, pos)
                    for _ in range(count):
                        index, at = _leb_u32(module, at)
                        names[index], at = _name(module, at)
                pos += size
    return imported, names


def custom_section_names(module: bytes) -> list[str]:
    return [_name(module, pos)[0] for section, pos, _ in _sections(module)
            if section == CUSTOM_SECTION]


# A `call` whose function index is a padded 5-byte LEB128 (as `wasm-ld` leaves it unless told
# to `--compress-relocations`): a value below 2^14 written as `1xxxxxxx 1xxxxxxx 10000000
# 10000000 00000000`. The bytes can also occur by chance inside a constant; rarely.
_PADDED_CALL = re.compile(rb"\x10[\x80-\xff]{2}\x80\x80\x00")


def padded_calls(module: bytes) -> int:
    """How many calls in the code section carry a padded function index."""
    return sum(len(_PADDED_CALL.findall(module, pos, end))
               for section, pos, end in _sections(module) if section == CODE_SECTION)


def largest_bodies(path: Path, n: int = 3) -> list[int]:
    return sorted(function_body_sizes(path.read_bytes()), reverse=True)[:n]


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        print(arg, largest_bodies(Path(arg), 8))
