"""Read a stack file as YAML the way Pulumi's parser accepts it: one read, libyaml, no surprises.

Pure Python (no Pulumi import), below :mod:`gpu_fleet.components.config`. What it rejects, each with
the line where the construct starts:

- bytes that are not text: gzip archives, binary files, text that is not UTF-8 (a Latin-1
  comment saved by a Windows editor). Pulumi's YAML parser (go-yaml v3) reads UTF-8, or
  UTF-16 with a byte-order mark, and so does this reader;
- a key given twice in one mapping: go-yaml v3 rejects it ("mapping key ... already
  defined"), PyYAML keeps the last one silently (a second ``models:`` would replace the
  first);
- nesting deeper than :data:`MAX_DEPTH` (libyaml stops at 1,000 levels, deep enough for
  Python's recursion limit to break whatever walks the result), aliases that refer to
  the value containing them, documents that expand to more than :data:`MAX_VALUES`
  values through aliases (a "billion laughs" file);
- integers beyond 2**53: Pulumi's SDK passes config values to the engine as protobuf
  ``Struct`` values, whose numbers are doubles (protocolbuffers/protobuf
  src/google/protobuf/struct.proto, ``double number_value``); a larger integer would be
  rounded, and one beyond a double's range fails the plan with OverflowError;
- tags Pulumi config cannot hold (``!!binary``, ``!!set``, ``!!python/...``); timestamps
  stay strings, as Pulumi reads ``2025-01-01`` in a config value.

libyaml (PyYAML's C loader, ``CSafeLoader``) parses; the pure-Python loader is the
fallback where PyYAML was built without it.
"""

from __future__ import annotations

import codecs
import gc
from pathlib import Path
from typing import Any, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

#: Deepest nesting accepted; a stack's config nests a handful of levels.
MAX_DEPTH = 64
#: Most values a document may hold, aliases counted each time they are used: a 10 MB
#: stack file of short list items holds about 700,000.
MAX_VALUES = 1_500_000

#: The largest integer a double holds exactly (see the module docstring).
MAX_INT = 2**53

_TAG = "tag:yaml.org,2002:"
#: Tags a Pulumi config value can carry (JSON's types, plus YAML merge keys).
ALLOWED_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}
_MERGE = _TAG + "merge"
_INT = _TAG + "int"
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
    """The safe loader without the timestamp resolver (Pulumi keeps those as strings), and
    with a shortcut for the common scalar: a quoted one, or a plain one whose first
    character starts no implicit type, is a string (what PyYAML's resolver concludes after
    more work, once per value)."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and (not implicit[0] or (value and value[0] not in _IMPLICIT_FIRST)):
            return _STR
        return super().resolve(kind, value, implicit)

    # No path resolvers (asserted below): the composer calls these for every node, to no end.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TAG + "timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_STR = _TAG + "str"
#: First characters of plain scalars that may be something other than a string.
_IMPLICIT_FIRST = frozenset(k for k in _Loader.yaml_implicit_resolvers if k)
assert None not in _Loader.yaml_implicit_resolvers and not _Loader.yaml_path_resolvers  # the shortcut's premise


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


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _duplicate(node: MappingNode) -> Optional[tuple[Node, Node]]:
    """The first key of ``node`` given twice, with its first occurrence."""
    seen: dict[tuple[str, str], Node] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE:
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            return seen[ident], key
        seen[ident] = key
    return None


def key_name(name: str) -> str:
    """A key as a field path shows it: quoted when it holds a line break or control character,
    so the message stays one line."""
    return name if name.isprintable() else repr(name)


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
                name = key_name(key.value) if isinstance(key, ScalarNode) else "?"
                stack.append((value, f"{path}.{name}" if path else str(name)))
    return ""


def check_tree(loader: Any, root: Node) -> bool:
    """Depth, alias expansion, tags, integer range and duplicate keys of a composed
    document (``loader`` composed it); whether it uses merge keys (``<<``).

    Iterative (no recursion limit), and it walks the document as the program will see it:
    an alias is walked each time it is used, so a self-referencing alias hits the depth
    limit and a "billion laughs" file the value limit.
    """
    if root.tag not in ALLOWED_TAGS:
        raise _bad_tag(root)
    visited, merges = 0, False
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, MappingNode):
            dup = _duplicate(node)
            if dup is not None:
                first, again = dup
                where = _path_to(root, node)
                raise YamlError(f"key {again.value!r} is given twice (first on line {_line(first)}); Pulumi's "
                                "YAML parser rejects duplicate keys: merge the two", _line(again),
                                f"{where}.{key_name(again.value)}" if where else key_name(again.value))
            children = [child for pair in node.value for child in pair]
            merges = merges or any(key.tag == _MERGE for key, _ in node.value)
        elif isinstance(node, SequenceNode):
            children = node.value
        else:
            continue
        visited += len(children)
        if visited > MAX_VALUES:
            raise YamlError(f"the document expands to more than {MAX_VALUES:,} values (aliases used over and over?)",
                            _line(node))
        for child in children:
            if child.tag == _STR and child.__class__ is ScalarNode:
                continue  # most of a large file: nothing to check
            if child.tag not in ALLOWED_TAGS:
                raise _bad_tag(child)
            if child.tag == _INT and not -MAX_INT <= loader.construct_yaml_int(child) <= MAX_INT:
                raise YamlError(f"{child.value[:30]}{'...' if len(child.value) > 30 else ''} is beyond what Pulumi "
                                f"passes exactly (numbers travel as doubles: at most {MAX_INT:,} either side of 0)",
                                _line(child), _path_to(root, child) or "config")
            if not isinstance(child, ScalarNode):
                if depth >= MAX_DEPTH:
                    raise YamlError(f"nested more than {MAX_DEPTH} levels deep here (or an alias that refers to the "
                                    "value containing it); a stack's config needs a handful", _line(child))
                stack.append((child, depth + 1))
    return merges


def _bad_tag(node: Node) -> YamlError:
    tag = node.tag.replace(_TAG, "!!")
    return YamlError(f"tag {tag} is not a Pulumi config type (strings, numbers, booleans, null, lists and mappings)",
                     _line(node))


def construct(loader: Any, root: Node) -> Any:
    """The Python value of a checked document, built without recursion.

    Strings, lists and mappings are built here (most of a large file); other scalars by
    PyYAML's safe constructor. An alias is the same object wherever it is used, as
    PyYAML builds it. Documents with merge keys go to PyYAML whole.
    """
    built: dict[int, Any] = {}
    todo: list[tuple[Node, Any]] = []

    def value(node: Node) -> Any:
        key = id(node)
        if key in built:
            return built[key]
        if isinstance(node, ScalarNode):
            out = node.value if node.tag == _STR else loader.construct_object(node)
        else:
            out = [] if isinstance(node, SequenceNode) else {}
            todo.append((node, out))
        built[key] = out
        return out

    top = value(root)
    while todo:
        node, out = todo.pop()
        if isinstance(out, list):
            # Strings inline: most of a large file's values, and not worth a call each.
            out.extend([child.value if child.tag == _STR and isinstance(child, ScalarNode) else value(child)
                        for child in node.value])
            continue
        for key_node, value_node in node.value:
            key = value(key_node)
            if not isinstance(key_node, ScalarNode):
                raise YamlError("a mapping key must be a plain value, not a list or mapping", _line(key_node))
            out[key] = value(value_node)
    return top


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
    # Parsing only allocates (no reference cycles): without pauses for the cyclic garbage
    # collector, which rescans every new node, a 10 MB file parses several times faster.
    collecting = gc.isenabled()
    gc.disable()
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if check_tree(loader, node):
            return loader.construct_document(node)
        return construct(loader, node)
    except yaml.YAMLError as e:
        raise _yaml_error(e, text) from None
    finally:
        loader.dispose()
        if collecting:
            gc.enable()


def read(path: Path) -> Any:
    """Read and parse ``path`` in one read; OSError and YamlError propagate."""
    return parse(decode(path.read_bytes()))
