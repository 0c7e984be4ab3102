"""The methods: every package under methods/ whose `OPTIONS` is a MethodOptions class, and every module named
in $SPRKD_METHODS (comma-separated importable names: methods kept outside this package). Importable without
torch: only the declarations load here; a method's implementation loads on first use (`method_class`)."""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil

from ..errors import UserError, unknown_name
from ..options import check_options, coerce, declared_fields
from .contract import Method, MethodOptions

ENV = "SPRKD_METHODS"
_found: dict[str, type[MethodOptions]] | None = None


def _declared_in(module_name: str) -> type[MethodOptions]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"${ENV}: cannot import method module {module_name!r}: {exc}") from None
    options = getattr(module, "OPTIONS", None)
    if not (isinstance(options, type) and issubclass(options, MethodOptions)):
        raise UserError(f"method module {module_name!r} has no OPTIONS (a MethodOptions class)")
    return options


def registry() -> dict[str, type[MethodOptions]]:
    """Method name -> options class, in their rank order (then by name)."""
    global _found
    if _found is None:
        modules = [f"{__package__}.{m.name}" for m in pkgutil.iter_modules(_package_path())
                   if m.ispkg]
        modules += [name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()]
        declared: dict[str, type[MethodOptions]] = {}
        for module_name in modules:
            options = _declared_in(module_name)
            if options.name in declared and declared[options.name] is not options:
                raise UserError(f"two methods are named {options.name!r} ({module_name} and "
                                f"{declared[options.name].__module__})")
            declared[options.name] = options
        _found = dict(sorted(declared.items(), key=lambda item: (item[1].rank, item[0])))
    return _found


def _package_path() -> list[str]:
    return list(importlib.import_module(__package__).__path__)


def method_names() -> list[str]:
    return list(registry())


def plain_methods() -> list[str]:
    """What --methods means when not given: the methods that need no more than a plain teacher (sprkd needs
    tracked saddles, sage a student built for the teacher's embedding; both are asked for by name)."""
    return [name for name, cls in registry().items() if cls.plain]


def options_class(name: str) -> type[MethodOptions]:
    methods = registry()
    if name not in methods:
        raise unknown_name("method", name, methods)
    return methods[name]


def method_class(name: str):
    """The method's implementation (imports torch)."""
    return options_class(name).load()


def method_options(name: str, given: dict, training=None, *, where=None) -> dict:
    """The method's options as stored with a run: its declared defaults overridden by what was given
    (None = not given; keys the method does not declare are ignored), checked, plus the training fields it
    reads from `training` (a TrainConfig; defaults when None). `where(name, declared)` names an option in
    error messages (default: its flag)."""
    return declared_options(name, given, where=where).stored(training)


def declared_options(name: str, given: dict, *, where=None) -> MethodOptions:
    """The method's options object: declared defaults overridden by `given` (None = not given), checked."""
    cls = options_class(name)
    own = {f.name for f, _ in declared_fields(cls)}
    options = cls(**coerce(cls, {k: v for k, v in given.items() if k in own and v is not None}))
    check_options(options, where)
    wrong = options.check()
    if wrong:
        raise UserError(wrong if where is None else f"{where('', None).rstrip(': ')}: {wrong}")
    return options


def check_used(methods: list[str], given: dict, label: str | None = None) -> None:
    """UserError for a method option given (not None) that none of `methods` has: a flag that would
    silently do nothing (distill --method kd --nhe-gate global). `label` names it (default: its flag)."""
    from ..options import flag_name

    for key, value in given.items():
        if value is None:
            continue
        owners = [m for m in method_names() if any(f.name == key for f, _ in declared_fields(options_class(m)))]
        if owners and not set(owners) & set(methods):
            declared = next(d for f, d in declared_fields(options_class(owners[0])) if f.name == key)
            name = label or flag_name(key, declared)
            subject = (f"method {methods[0]} does" if len(methods) == 1
                       else f"the arms' methods ({', '.join(methods)}) do")
            raise UserError(f"{name} is an option of {', '.join(owners)}; {subject} not use it: drop {name}")


def parse_methods(text: str | None) -> list[str]:
    """A --methods value: comma-separated known method names; not given: the plain methods."""
    if text is None:
        return plain_methods()
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise UserError(f"bad --methods '{text}': give comma-separated methods, e.g. {','.join(registry())}")
    for name in names:
        options_class(name)
    return names


def prepare_detached(name: str, data, options: dict | None = None, *, teachers: tuple | list = (), config=None,
                     device: str = "cpu") -> Method:
    """A method prepared outside any run and store (benches, notebooks, tests): `teachers` are models, not
    runs; `options` are given as for method_options; `config` (a TrainConfig) defaults to a student's
    defaults. Methods that read the store (sprkd with its ASR) need a real run's context."""
    import torch

    from ..config import TrainConfig
    from .contract import MethodContext

    typed = declared_options(name, options or {})
    config = config or TrainConfig(kind="student", method=name, dataset="", model="")
    stand_ins = [_DetachedTeacher(i) for i in range(len(teachers))]
    context = MethodContext(config=config, options=typed, data=data, device=torch.device(device), store=None,
                            teacher_runs=stand_ins, load_model=lambda run: teachers[run.index])
    return typed.load().prepare(context)


@dataclasses.dataclass(frozen=True)
class _DetachedTeacher:
    index: int

    @property
    def id(self) -> str:
        return f"teacher-{self.index}"
