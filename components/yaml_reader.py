"""Read a stack file as YAML the way Pulumi's parser accepts it: one read, libyaml, no surprises.

Pure Python (no Pulumi import), below :mod:`components.config`. What it rejects, each with
the line where the construct starts:

- bytes that are not text: gzip archives, binary files, text that is not UTF-8 (a Latin-1
  comment saved by a Windows editor). Pulumi's YAML parser (go-yaml v3) reads UTF-8, or
  UTF-16 with a byte-order mark, and so does this reader;
- a key given twice in one mapping: go-yaml v3 rejects it ("mapping key ... already
  defined"), PyYAML keeps the last one silently (a second ``models:`` would replace the
  first);
- nesting deeper than :data:`MAX_DEPTH` (libyaml stops at 1,000 levels, deep enough for
  Python's recursion limit to break whatever walks the result), aliases that refer to
  themselves or expand to more than :data:`MAX_VALUES` values (a "billion laughs" file);
- tags Pulumi config cannot hold (``!!binary``, ``!!set``, ``!!python/...``); timestamps
  stay strings, as Pulumi reads ``2025-01-01`` in a config value.

libyaml (PyYAML's C loader, ``CSafeLoader``) parses; the pure-Python loader is the
fallback where PyYAML was built without it.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

#: Deepest nesting accepted; a stack's config nests a handful of levels.
MAX_DEPTH = 64
#: Most values a document may expand to through aliases.
MAX_VALUES = 2_000_000

_TAG = "tag:yaml.org,2002:"
#: Tags a Pulumi config value can carry (JSON's types, plus YAML merge keys).
ALLOWED_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}
_GZIP = b"\x1f\x8b"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class YamlError(ValueError):
    """Why a file is not acceptable YAML; ``line`` is 1-based (None: the whole file)."""

    def __init__(self, message: str, line: Optional[int] = None, path: str = "config"):
        super().__init__(message)
        self.line = line
        #: Where in the document (``config.gpu-fleet:fleet.models``), for duplicate keys.
        self.path = path

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.args[0]}"


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader without the timestamp resolver (Pulumi keeps those as strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TAG + "timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def decode(data: bytes) -> str:
    """The text of a YAML file, or YamlError saying what the bytes are instead."""
    if data.startswith(_GZIP):
        raise YamlError("this is a gzip-compressed file, not YAML text; decompress it (gunzip) first")
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise YamlError(f"not valid UTF-16 text ({e.reason})") from None
    if b"\x00" in data[:8192]:
        raise YamlError("this is a binary file, not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlError(f"byte 0x{data[e.start]:02x} (column {column}) is not UTF-8; save the file as UTF-8 (an "
                        "editor may have saved it as Latin-1 or Windows-1252)", line) from None


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _duplicate(node: MappingNode) -> Optional[tuple[Node, Node]]:
    """The first key of ``node`` given twice, with its first occurrence."""
    seen: dict[tuple[str, str], Node] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _TAG + "merge":
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            return seen[ident], key
        seen[ident] = key
    return None


def _path_to(root: Node, target: Node) -> str:
    """``config.gpu-fleet:fleet.models`` for a mapping node, searched from ``root``."""
    stack: list[tuple[Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) else "?"
                stack.append((value, f"{path}.{name}" if path else str(name)))
    return ""


def check_tree(root: Node) -> None:
    """Depth, alias expansion, tags and duplicate keys of a composed document, without recursion."""
    measured: dict[int, tuple[int, int]] = {}  # id -> (height, expanded values)
    path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = [measured[id(k)] for k in _children(node)]
            height = 1 + max((h for h, _ in kids), default=0)
            size = 1 + sum(s for _, s in kids)
            if height > MAX_DEPTH:
                raise YamlError(f"nested more than {MAX_DEPTH} levels deep from here; a stack's config needs a "
                                "handful", _line(node))
            if size > MAX_VALUES:
                raise YamlError(f"aliases here expand to more than {MAX_VALUES:,} values", _line(node))
            measured[key] = (height, size)
            path.discard(key)
            continue
        if key in measured:
            continue
        if key in path:
            raise YamlError("an alias refers to the value that contains it", _line(node))
        if node.tag not in ALLOWED_TAGS:
            tag = node.tag.replace(_TAG, "!!")
            raise YamlError(f"tag {tag} is not a Pulumi config type (strings, numbers, booleans, null, "
                            "lists and mappings)", _line(node))
        if isinstance(node, MappingNode):
            dup = _duplicate(node)
            if dup is not None:
                first, again = dup
                where = _path_to(root, node)
                raise YamlError(f"key {again.value!r} is given twice (first on line {_line(first)}); Pulumi's "
                                "YAML parser rejects duplicate keys: merge the two", _line(again),
                                f"{where}.{again.value}" if where else str(again.value))
        path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in measured)


def _yaml_error(e: yaml.YAMLError, text: str) -> YamlError:
    """One line for a PyYAML error, at the line where the failing construct starts."""
    if isinstance(e, yaml.MarkedYAMLError):
        problem = e.problem or "invalid YAML"
        start, at = e.context_mark, e.problem_mark
        if start is not None and e.context:
            more = f" (line {at.line + 1})" if at is not None and at.line != start.line else ""
            return YamlError(f"{e.context}: {problem}{more}", start.line + 1)
        return YamlError(problem, at.line + 1 if at is not None else None)
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, e.position) + 1 if isinstance(e.position, int) else None
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return YamlError(f"character U+{char:04X} is not allowed in YAML ({e.reason})", line)
    return YamlError(str(e).splitlines()[0] if str(e) else type(e).__name__)


def parse(text: str) -> Any:
    """The document in ``text`` (None when empty); YamlError when Pulumi would not accept it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_tree(node)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _yaml_error(e, text) from None
    finally:
        loader.dispose()


def read(path: Path) -> Any:
    """Read and parse ``path`` in one read; OSError and YamlError propagate."""
    return parse(decode(path.read_bytes()))
