"""bridge.frozen: every class of the package built with `@frozen` or `@lean` behaves as `@dataclass` with the
same options over the same fields would: constructor signature and defaults, repr, equality, hash, frozen
errors, dataclass functions. The reference class is made by dataclasses from the class's own fields, so a
field added, removed or flagged later is compared too."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import bridge
import pytest
from bridge.frozen import frozen


def frozen_classes() -> list[type]:
    """Every class defined in a bridge module whose methods come from bridge.frozen."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(bridge.__path__, "bridge."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (isinstance(value, type) and value.__module__ == info.name and dataclasses.is_dataclass(value)
                    and getattr(value.__repr__, "__module__", None) == "bridge.frozen"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[k] for k in sorted(found)]


FROZEN = frozen_classes()


def options(cls: type) -> dict[str, bool]:
    """The dataclass options `cls` was made with (bridge.frozen gives dataclasses eq=False, repr=False)."""
    return {"frozen": cls.__dataclass_params__.frozen, "slots": "__slots__" in cls.__dict__,  # type: ignore[attr-defined]
            "eq": getattr(cls.__eq__, "__module__", None) == "bridge.frozen"}


def reference(cls: type) -> type:
    """`@dataclass` with the options of `cls` over its fields (type, default, factory, flags)."""
    specs = [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory, init=f.init,
                                                repr=f.repr, hash=f.hash, compare=f.compare, kw_only=f.kw_only))
             for f in dataclasses.fields(cls)]
    ref: type = dataclasses.make_dataclass(cls.__name__, specs, **options(cls))
    ref.__qualname__ = cls.__qualname__
    return ref


def values(cls: type, variant: str) -> dict[str, Any]:
    """A hashable, distinct value for each field (dataclasses checks no types)."""
    return {f.name: (f.name, variant) for f in dataclasses.fields(cls) if f.init}


def test_the_package_builds_its_frozen_classes_with_frozen() -> None:
    # the config model, settings, records, routing, delivery, service, trust, parking, checkpoints ...
    names = {c.__qualname__ for c in FROZEN}
    assert len(FROZEN) >= 40
    assert {"BridgeConfig", "BridgeSettings", "Destination", "Source", "Settings", "KafkaBatch"} <= names
    # and the mutable ones, with and without slots or equality, and a frozen one without slots
    assert {"OutgoingMessage", "BatchTally", "DeliveryReceipt", "_Request", "Template", "Answer"} <= names
    assert {(o["frozen"], o["slots"], o["eq"]) for o in map(options, FROZEN)} == {
        (True, True, True), (False, True, True), (False, True, False), (False, False, True), (True, False, True)}


@pytest.mark.parametrize("cls", FROZEN, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_a_frozen_class_behaves_as_the_dataclass_of_its_fields(cls: type) -> None:
    ref = reference(cls)
    # the constructor: same parameters, defaults and annotations; the slots and match args
    assert str(inspect.signature(cls)) == str(inspect.signature(ref))
    assert getattr(cls, "__slots__", None) == getattr(ref, "__slots__", None)
    assert cls.__match_args__ == ref.__match_args__  # type: ignore[attr-defined]
    a, b = values(cls, "a"), values(cls, "b")
    ca, ra = cls(**a), ref(**a)
    # repr, with defaults and with every field set
    assert repr(ca) == repr(ra)
    assert repr(cls(**{k: v for k, v in a.items() if k in required(cls)})) == repr(
        ref(**{k: v for k, v in a.items() if k in required(cls)}))
    # equality and hash: equal twins, each field changed alone, another class, another type
    assert (ca == cls(**a)) is (ra == ref(**a))
    assert (cls.__hash__ is None) is (ref.__hash__ is None)
    hashable = ref.__hash__ is not None and options(cls)["eq"]
    if not options(cls)["eq"]:  # identity, as object's
        assert cls.__eq__ is ref.__eq__ is object.__eq__
        assert cls.__hash__ is ref.__hash__ is object.__hash__
    if hashable:
        assert hash(ca) == hash(ra) == hash(cls(**a))
    for name in a:
        changed = {**a, name: b[name]}
        assert (ca == cls(**changed)) is (ra == ref(**changed)), name
        assert (ca != cls(**changed)) is (ra != ref(**changed)), name
        if hashable:
            assert (hash(ca) == hash(cls(**changed))) is (hash(ra) == hash(ref(**changed))), name
    assert (cls.__eq__(ca, ra) is NotImplemented) is (ref.__eq__(ra, ca) is NotImplemented) is True
    assert (ca == object()) is False
    assert (ca == ra) is False
    if options(cls)["frozen"]:
        # frozen: the same errors, for fields and for other names
        for obj in (ca, ra):
            with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field"):
                setattr(obj, next(iter(a)), 1)
            with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field"):
                delattr(obj, next(iter(a)))
    raised = []
    for obj in (ca, ra):  # another name: whatever both raise (slots and frozen), or neither
        try:
            obj.not_a_field = 1  # type: ignore[attr-defined]
        except Exception as error:
            raised.append(type(error))
        else:
            raised.append(None)
    assert raised[0] is raised[1]
    # the dataclass functions
    assert dataclasses.asdict(ca) == dataclasses.asdict(ra)
    assert dataclasses.astuple(ca) == dataclasses.astuple(ra)
    assert repr(dataclasses.replace(ca, **b)) == repr(dataclasses.replace(ra, **b))


def required(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def test_flags_recursion_and_the_class_s_own_methods_are_kept_as_dataclasses_keeps_them() -> None:
    # given classes with fields left out of repr, comparison or hash, and with methods of their own
    def both(body: dict[str, Any], annotations: dict[str, str]) -> tuple[type, type]:
        made = []
        for decorate in (frozen, lambda c: dataclasses.dataclass(c, frozen=True, slots=True)):
            made.append(decorate(type("Flags", (), {"__annotations__": dict(annotations), **body})))
        return made[0], made[1]

    flags = {"a": "int", "b": "Any", "c": "Any", "d": "Any"}
    body = {"b": dataclasses.field(default=None, repr=False), "c": dataclasses.field(default=None, compare=False),
            "d": dataclasses.field(default=None, hash=False)}
    mine, theirs = both(body, flags)
    for x, y in (((1, 2, 3, 4), (1, 9, 3, 4)), ((1, 2, 3, 4), (1, 2, 9, 4)), ((1, 2, 3, 4), (1, 2, 3, 9))):
        assert (mine(*x) == mine(*y)) is (theirs(*x) == theirs(*y))
        assert (hash(mine(*x)) == hash(mine(*y))) is (hash(theirs(*x)) == hash(theirs(*y)))
        assert hash(mine(*x)) == hash(theirs(*x))
        assert repr(mine(*x)) == repr(theirs(*x))
    # a value that contains the object itself: `...` where it recurs
    cycle: list[Any] = []
    m, t = mine(1, None, cycle), theirs(1, None, [])
    cycle.append(m)
    t.c.append(t)
    assert repr(m) == repr(t) == "Flags(a=1, c=[...], d=None)"
    # a class's own __eq__, __hash__ and __repr__ stay; __eq__ alone gets the fields' hash, as dataclasses does
    own = {"__eq__": lambda s, o: True, "__hash__": lambda s: 7, "__repr__": lambda s: "own"}
    mine, theirs = both(own, {"a": "int"})
    assert (mine(1) == mine(2), hash(mine(1)), repr(mine(1))) == (theirs(1) == theirs(2), hash(theirs(1)),
                                                                 repr(theirs(1))) == (True, 7, "own")
    mine, theirs = both({"__eq__": lambda s, o: True}, {"a": "int"})
    assert hash(mine(1)) == hash(theirs(1)) == hash((1,))
    # no fields at all
    mine, theirs = both({}, {})
    assert (mine() == mine(), hash(mine()), repr(mine())) == (theirs() == theirs(), hash(theirs()), repr(theirs()))
