"""Read plan YAML within limits, remembering where every value was written.

No input may make reading a plan take unbounded time or memory. PyYAML's own composer
keeps an alias (``*name``) as a reference, but anything that walks the result (the source
map, pydantic) expands it: ten levels of ten aliases make 10^10 values, the "billion
laughs". So this reader builds the data straight from the parser's events, in one pass
without recursion, and counts as it goes: an alias counts as every value it repeats. It
stops at the first limit reached, with a message naming the limit and the line:

- the size of the plan (all files of a folder together) and the number of files;
- nesting depth, the length of one value, the number of values (aliases expanded);
- the values repeated by aliases, in all;
- the time spent reading.

The limits sit well above the largest real plans (a few megabytes, a few hundred thousand
values) and cap the worst case: docs/routing-plan.md gives the figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from routing.core.problems import PathPart

SourceKey = tuple[PathPart, ...]

# libyaml's parser when PyYAML was built with it (about ten times faster); the events are the same.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "timestamp", "binary")
}
_COLLECTION_TAGS = {None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_CLOCK_EVERY = 4096  # events between two looks at the clock


@dataclass(frozen=True)
class Limits:
    """How much a plan may ask of the reader. The defaults suit every real plan."""

    max_bytes: int = 8_000_000  # the whole plan: one file, or all files of a folder
    max_files: int = 1000  # files in a folder plan
    max_depth: int = 64  # mappings and lists inside each other
    max_scalar: int = 4096  # characters in one value or key
    max_nodes: int = 1_000_000  # values in all, each alias counted as what it repeats
    max_alias_nodes: int = 100_000  # values repeated by aliases, in all
    max_seconds: float = 30.0  # reading the YAML (not validating it)


DEFAULT_LIMITS = Limits()


class LimitReached(Exception):
    """The plan asks too much of the reader. ``str()`` is the message for the engineer."""

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


@dataclass(frozen=True, slots=True)
class Scalar:
    """Where and how a scalar was written in the YAML source."""

    text: str
    source: str
    plain: bool  # written without quotes


@dataclass
class SourceMap:
    """Every scalar's source by path; a key's source under ``(*path, "[key]")``, and where a
    mapping or list starts under ``(*path, "[start]")`` (for an item of a list, which has no key).

    A value written as an alias is found through ``links``: its path leads to the path
    of the anchored value, whose scalars carry the lines they were written on."""

    scalars: dict[SourceKey, Scalar] = field(default_factory=dict)
    links: dict[SourceKey, SourceKey] = field(default_factory=dict)

    def get(self, path: SourceKey) -> Scalar | None:
        for _ in range(8):  # a link leads to an earlier value: a few hops at most
            found = self.scalars.get(path)
            if found is not None or not self.links:
                return found
            for cut in range(len(path), 0, -1):
                target = self.links.get(path[:cut])
                if target is not None:
                    path = (*target, *path[cut:])
                    break
            else:
                return None
        return None

    def nearest(self, path: SourceKey) -> str | None:
        """The line of the value at ``path``, else of the nearest key (or list item) holding it."""
        exact = self.get(path)
        if exact is not None:
            return exact.source
        for cut in range(len(path), 0, -1):
            key = self.get((*path[:cut], "[key]")) or self.get((*path[:cut], "[start]"))
            if key is not None:
                return key.source
        return None

    def __len__(self) -> int:
        return len(self.scalars)

    def update(self, other: SourceMap) -> None:
        self.scalars.update(other.scalars)
        self.links.update(other.links)


class Budget:
    """What is left of the limits while reading one plan (shared by the files of a folder)."""

    def __init__(self, limits: Limits, clock: Any = time.monotonic) -> None:
        self.limits = limits
        self.nodes = 0
        self.alias_nodes = 0
        self.events = 0
        self._clock = clock
        self.deadline = clock() + limits.max_seconds

    def tick(self, where: str) -> None:
        self.events += 1
        if self.events % _CLOCK_EVERY == 0 and self._clock() > self.deadline:
            raise LimitReached(
                f"reading the plan took more than {self.limits.max_seconds:g} s: it is too large", where
            )

    def add(self, nodes: int, where: str, alias: bool = False) -> None:
        self.nodes += nodes
        if alias:
            self.alias_nodes += nodes
            if self.alias_nodes > self.limits.max_alias_nodes:
                raise LimitReached(
                    f"aliases (*name) repeat more than {self.limits.max_alias_nodes:,} values in all: "
                    "write the values out, or share less (is this a 'billion laughs' file?)",
                    where,
                )
        if self.nodes > self.limits.max_nodes:
            raise LimitReached(
                f"more than {self.limits.max_nodes:,} values (aliases counted as what they repeat)", where
            )


def _construct(loader: yaml.SafeLoader, tag: str, event: yaml.ScalarEvent) -> Any:
    """A plain scalar YAML reads as something other than text: its value, or a YAML error
    (PyYAML's constructors raise ValueError and others for ``2026-02-30``, ``!!int 0x``...)."""
    start: Any = event.start_mark  # libyaml's marks serve as well
    node = yaml.ScalarNode(tag, event.value, start, start, event.style)
    try:
        return loader.yaml_constructors[tag](loader, node)
    except yaml.YAMLError:
        raise
    except Exception:  # any constructor failure is a problem with the text
        kind = tag.rsplit(":", 1)[-1]
        problem = f"cannot read '{event.value[:40]}' as {kind}: quote it if it is text"
        raise yaml.constructor.ConstructorError(None, None, problem, start) from None


_NO_KEY = object()


@dataclass(slots=True)
class _Frame:
    """A mapping or list being built."""

    path: SourceKey
    value: Any
    anchor: str | None
    nodes: int = 1
    key: Any = _NO_KEY


@dataclass(frozen=True, slots=True)
class _Anchored:
    value: Any
    nodes: int
    path: SourceKey | None  # None: the anchored value is a key


class Reader:
    """Builds Python data from one YAML document's events, recording every scalar's source."""

    def __init__(self, filename: str, budget: Budget) -> None:
        self.filename = filename
        self.budget = budget
        self.limits = budget.limits
        self.sources = SourceMap()
        self.duplicates: list[tuple[SourceKey, str]] = []  # (path, source) of each repeated key
        self._stack: list[_Frame] = []
        self._anchors: dict[str, _Anchored] = {}
        self._root: Any = None

    def where(self, event: yaml.Event) -> str:
        mark = event.start_mark
        return f"{self.filename}:{mark.line + 1}" if mark is not None else self.filename

    def read(self, text: str) -> Any:
        loader = _Loader(text)
        try:
            documents = 0
            while True:
                event: yaml.Event = loader.get_event()  # type: ignore[no-untyped-call]
                if isinstance(event, yaml.StreamEndEvent):
                    return self._root
                if isinstance(event, yaml.DocumentStartEvent):
                    documents += 1
                    if documents > 1:
                        raise LimitReached(
                            "a plan file holds one YAML document: found a second", self.where(event)
                        )
                elif not isinstance(event, (yaml.StreamStartEvent, yaml.DocumentEndEvent)):
                    self.budget.tick(self.where(event))
                    self._event(loader, event)
        finally:
            loader.dispose()

    def _event(self, loader: yaml.SafeLoader, event: yaml.Event) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._scalar(loader, event)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, yaml.CollectionStartEvent):
            self._start(event)
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = self._stack.pop()
            self._place(frame.value, frame.nodes, frame.anchor, frame.path)

    def _child_path(self) -> SourceKey | None:
        """The path of the next value, or None when the next value is a mapping's key."""
        if not self._stack:
            return ()
        top = self._stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        return None if top.key is _NO_KEY else (*top.path, str(top.key))

    def _start(self, event: yaml.CollectionStartEvent) -> None:
        where = self.where(event)
        path = self._child_path()
        if path is None:
            raise LimitReached("a key must be a plain value, not a mapping or a list", where)
        if event.tag not in _COLLECTION_TAGS:
            raise LimitReached(f"the tag {event.tag} is not supported in a plan", where)
        if len(self._stack) >= self.limits.max_depth:
            raise LimitReached(f"nested more than {self.limits.max_depth} levels deep", where)
        self.budget.add(1, where)
        if path and isinstance(path[-1], int):
            self.sources.scalars[(*path, "[start]")] = Scalar("", where, plain=False)
        value: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
        self._stack.append(_Frame(path, value, event.anchor))

    def _scalar(self, loader: yaml.SafeLoader, event: yaml.ScalarEvent) -> None:
        where = self.where(event)
        if len(event.value) > self.limits.max_scalar:
            raise LimitReached(f"a value longer than {self.limits.max_scalar:,} characters", where)
        self.budget.add(1, where)
        tag = event.tag
        if tag is None or tag == "!":
            tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        if tag == _STR:
            value: Any = event.value
        elif tag == _MERGE:
            raise LimitReached("merge keys (<<) are not supported: write the fields out", where)
        elif tag in _SCALAR_TAGS:
            value = _construct(loader, tag, event)
        else:
            raise LimitReached(f"the tag {tag} is not supported in a plan", where)
        path = self._child_path()
        scalar = Scalar(event.value, where, not event.style)  # plain: None or ""
        if path is None:
            self._key(value, scalar, event.anchor)
            return
        self.sources.scalars[path] = scalar
        self._place(value, 1, event.anchor, path)

    def _alias(self, event: yaml.AliasEvent) -> None:
        where = self.where(event)
        anchored = self._anchors.get(event.anchor or "")
        if anchored is None:
            raise LimitReached(f"unknown alias *{event.anchor} (an alias must follow its &anchor)", where)
        self.budget.add(anchored.nodes, where, alias=True)
        path = self._child_path()
        if path is None:
            if isinstance(anchored.value, (dict, list)):
                raise LimitReached("a key must be a plain value, not a mapping or a list", where)
            self._key(anchored.value, Scalar(str(anchored.value), where, True), None)
            return
        if anchored.path is not None:
            self.sources.links[path] = anchored.path
        self._place(anchored.value, anchored.nodes, None, path)

    def _key(self, key: Any, scalar: Scalar, anchor: str | None) -> None:
        top = self._stack[-1]
        try:
            duplicate = key in top.value
        except TypeError:  # e.g. a binary value as a key
            raise LimitReached("a key must be a plain value", scalar.source) from None
        path = (*top.path, str(key))
        if duplicate:
            self.duplicates.append((path, scalar.source))
        self.sources.scalars[(*path, "[key]")] = scalar
        top.key = key
        if anchor is not None:
            self._anchors[anchor] = _Anchored(key, 1, None)

    def _place(self, value: Any, nodes: int, anchor: str | None, path: SourceKey) -> None:
        if anchor is not None:
            self._anchors[anchor] = _Anchored(value, nodes, path)
        if not self._stack:
            self._root = value
            return
        top = self._stack[-1]
        top.nodes += nodes
        if isinstance(top.value, list):
            top.value.append(value)
        else:
            top.value[top.key] = value
            top.key = _NO_KEY
