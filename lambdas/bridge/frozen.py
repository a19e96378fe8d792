"""`frozen`: `@dataclass(frozen=True, slots=True)` with `__eq__`, `__hash__` and `__repr__` shared, not compiled.

`dataclasses.dataclass` writes the source of every method it adds and compiles it with `exec`, class by
class, on every cold start: six compilations for a frozen class (`__init__`, `__repr__`, `__eq__`,
`__hash__`, `__setattr__`, `__delattr__`). For the bridge's ~35 frozen classes that was most of the time
its own modules took to import (callgrind: 89 M instructions for bridge.config's 18 classes, against 11 M
for the rest of the module). `frozen` lets dataclasses compile `__init__` (its exact signature, defaults and
default factories) and the frozen `__setattr__`/`__delattr__`, and gives the class `__eq__`, `__hash__` and
`__repr__` made here from one function each, over an `operator.attrgetter` of the class's fields: no
compilation. They answer what dataclasses' would: equal when the other object is of the same class and the
fields compared (`compare=True`) are equal in order, else NotImplemented; the hash of the tuple of the
fields dataclasses hashes; `Name(field=repr, ...)` over the `repr=True` fields, `...` on recursion.
The class is still a dataclass (`fields`, `replace`, `asdict`, `__match_args__`, FrozenInstanceError);
`__dataclass_params__` says eq and repr False, as they are not dataclasses' own methods.
tests/unit/test_frozen.py checks every class of the package that uses it against
`dataclass(frozen=True, slots=True)` applied to the same fields.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of these attributes (attrgetter of one name returns the value alone)."""
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    if not names:
        return lambda obj: ()
    getter: Callable[[Any], tuple[Any, ...]] = attrgetter(*names)
    return getter


@dataclass_transform(field_specifiers=(dataclasses.field,))
def lean(cls: type[T] | None = None, /, *, frozen: bool = False, slots: bool = False,
         eq: bool = True) -> Any:
    """`@dataclass(frozen=..., slots=..., eq=...)` whose `__eq__`, `__hash__` and `__repr__` are not compiled.

    With `eq` and not `frozen`, `__hash__` is None, as dataclasses sets it; without `eq`, the class keeps
    its inherited `__eq__` and `__hash__`."""
    def wrap(cls: type[T]) -> type[T]:
        return _lean(cls, frozen=frozen, slots=slots, eq=eq)

    return wrap if cls is None else wrap(cls)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True, slots=True)` whose `__eq__`, `__hash__` and `__repr__` are not compiled."""
    return _lean(cls, frozen=True, slots=True, eq=True)


def _lean(cls: type[T], *, frozen: bool, slots: bool, eq: bool) -> type[T]:
    # What the class body defines itself stays, as dataclasses leaves it (its rule for an explicit __hash__).
    own = cls.__dict__
    keep_hash = not eq or not ("__hash__" not in own or (own["__hash__"] is None and "__eq__" in own))
    keep = {"__eq__": not eq or "__eq__" in own, "__hash__": keep_hash, "__repr__": "__repr__" in own}
    cls = dataclasses.dataclass(cls, frozen=frozen, slots=slots, eq=False, repr=False)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    compared = _tuple_getter(tuple(f.name for f in fields if f.compare))
    hashed = _tuple_getter(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
    shown = tuple(f.name for f in fields if f.repr)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return compared(self) == compared(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(hashed(self))

    @reprlib.recursive_repr("...")
    def __repr__(self: Any) -> str:
        return f"{self.__class__.__qualname__}({', '.join([f'{n}={getattr(self, n)!r}' for n in shown])})"

    for method in (__eq__, __hash__, __repr__):
        if not keep[method.__name__]:
            method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
            setattr(cls, method.__name__, method)
    if not frozen and not keep_hash:
        cls.__hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as dataclasses does
    return cls
