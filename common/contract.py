"""The loss contract, framework-free: what every loss declares, checked the same way in both
backends and readable without importing torch or mxnet (common/manifest.py).

- Hyper-parameters: the constructor's signature gives the names and defaults (the one place a
  default is written); ``ranges`` (class attribute, merged along the MRO) gives each one's
  valid values as a ``Real``, ``Int`` or ``Bool`` spec. ``Declared.set_hyperparameters``,
  called by the base constructors, checks them in signature order and sets them as attributes,
  with the ``ValueError`` texts of ``check_real``/``check_int``/``check_bool`` (identical in
  both backends; tests/losses/test_loss_contract.py compares them). A bound may name an earlier
  hyper-parameter (MagFace: ``upper_norm`` >= ``lower_norm``).
- ``"auto"``: a ``Real`` with a rule (``Real(..., auto="adacos")``, ``AUTO_RULES``) also takes
  the string ``"auto"``; the check keeps it as the string (the CLI knows no class count), the
  constructor resolves it with ``num_classes`` (``resolve_auto``) before setting the
  attribute, so the loss and ``loss.scale`` see the number. The normalised losses' ``scale``
  has the AdaCos rule (SPEC.md section 1, "scale='auto'").
- Capabilities (class attributes, ``CAPABILITIES``): ``joinable`` (a base of the joint
  objectives "<loss>+<aux>"), ``shardable`` (Partial FC can shard its class weights),
  ``fused_head`` (its forward is the fused margin head over one C x D weight),
  ``requires_pk_batches`` (needs P x K batches).
- Joint objectives "<base>+<aux>": ``register_joints`` generates them from the registries once
  every module is imported (an explicit call in each backend's ``losses/__init__.py``).
"""

from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass

MAX_SIZE = 2**31 - 1
CAPABILITIES = ("joinable", "shardable", "fused_head", "requires_pk_batches")
SIZES = ("num_classes", "embedding_size")
AUTO = "auto"  # the value a ``Real`` with a rule also takes (``AUTO_RULES``)


# ---- argument checks (the error texts) ------------------------------------------------------
# numpy scalars are accepted too; numpy is not imported for that (the CLI checks arguments
# before any heavy import): a value can only be a numpy scalar if numpy is loaded already

def _numpy_types(*names: str) -> tuple:
    np = sys.modules.get("numpy")
    return tuple(getattr(np, n) for n in names) if np is not None else ()


def _real_in(value, lo: float, hi: float, lo_open: bool, hi_open: bool) -> bool:
    ok = (isinstance(value, (int, float, *_numpy_types("floating", "integer")))
          and not isinstance(value, bool))
    if ok:
        v = float(value)
        ok = (math.isfinite(v) and (v > lo if lo_open else v >= lo)
              and (v < hi if hi_open else v <= hi))
    return ok


def _interval(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def check_real(owner: str, name: str, value, lo: float, hi: float,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` must be a finite real in the interval; returns it as float."""
    if not _real_in(value, lo, hi, lo_open, hi_open):
        raise ValueError(f"{owner}: argument '{name}' must be a real number in "
                         f"{_interval(lo, hi, lo_open, hi_open)}, got {value!r}")
    return float(value)


def check_real_or_auto(owner: str, name: str, value, lo: float, hi: float,
                       lo_open: bool = False, hi_open: bool = False) -> float | str:
    """``check_real``, or the string ``"auto"``, returned as is (``resolve_auto`` turns it into
    a number once the class count is known)."""
    if isinstance(value, str) and value == AUTO:
        return AUTO
    if not _real_in(value, lo, hi, lo_open, hi_open):
        raise ValueError(f"{owner}: argument '{name}' must be a real number in "
                         f"{_interval(lo, hi, lo_open, hi_open)} or {AUTO!r}, got {value!r}")
    return float(value)


def check_int(owner: str, name: str, value, lo: int, hi: int) -> int:
    ok = (isinstance(value, (int, *_numpy_types("integer"))) and not isinstance(value, bool)
          and lo <= value <= hi)
    if not ok:
        raise ValueError(f"{owner}: argument '{name}' must be an integer in [{lo}, {hi}], "
                         f"got {value!r}")
    return int(value)


def check_bool(owner: str, name: str, value) -> bool:
    if not isinstance(value, (bool, *_numpy_types("bool_"))):
        raise ValueError(f"{owner}: argument '{name}' must be True or False, got {value!r}")
    return bool(value)


def check_known(owner: str, allowed: dict, given) -> None:
    """Every name in ``given`` is a hyper-parameter of ``allowed`` ({name: default})."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"{owner}: unknown hyper-parameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(f'{k}={v!r}' for k, v in allowed.items()) or 'none'}")


# ---- "auto" values: rules that need the sizes ----------------------------------------------

def adacos_scale(owner: str, num_classes: int) -> float:
    """AdaCos's fixed scale (Zhang et al., "AdaCos", CVPR 2019, arXiv:1905.00292):
    s = sqrt(2) ln(C - 1) for C classes, e.g. 10.0 for C = 1184, 4.76 for C = 30. C <= 2 has
    no such scale (0 at C = 2, undefined below)."""
    if num_classes <= 2:
        raise ValueError(f"{owner}: scale='auto' (AdaCos, sqrt(2) * ln(num_classes - 1)) needs "
                         f"num_classes > 2, got num_classes={num_classes}")
    return math.sqrt(2.0) * math.log(num_classes - 1)


AUTO_RULES = {"adacos": adacos_scale}  # rule name -> (owner, num_classes) -> value


# ---- value specs ----------------------------------------------------------------------------

def _bound(bound, values: dict):
    return values[bound] if isinstance(bound, str) else bound


@dataclass(frozen=True)
class Real:
    """A finite real in [lo, hi] (ends open on request); a bound may name another argument.

    ``auto``: the name of a rule in ``AUTO_RULES``; the spec then also takes the string
    ``"auto"``, which ``resolve`` turns into the rule's value for the loss's ``num_classes``.
    """

    lo: float | str
    hi: float | str
    lo_open: bool = False
    hi_open: bool = False
    auto: str | None = None

    def __post_init__(self) -> None:
        if self.auto is not None and self.auto not in AUTO_RULES:
            raise ValueError(f"unknown 'auto' rule {self.auto!r}; known: "
                             f"{', '.join(AUTO_RULES)}")

    def check(self, owner: str, name: str, value, values: dict) -> float | str:
        check = check_real if self.auto is None else check_real_or_auto
        return check(owner, name, value, _bound(self.lo, values), _bound(self.hi, values),
                     self.lo_open, self.hi_open)

    def resolve(self, owner: str, value, num_classes: int):
        """A checked ``value``, with ``"auto"`` replaced by the rule's value."""
        if self.auto is not None and isinstance(value, str) and value == AUTO:
            return AUTO_RULES[self.auto](owner, num_classes)
        return value

    def to_json(self) -> dict:
        out = {"type": "real", "lo": self.lo, "hi": self.hi, "lo_open": self.lo_open,
               "hi_open": self.hi_open}
        return out if self.auto is None else {**out, "auto": self.auto}


@dataclass(frozen=True)
class Int:
    """An integer in [lo, hi]."""

    lo: int | str
    hi: int | str

    def check(self, owner: str, name: str, value, values: dict) -> int:
        return check_int(owner, name, value, _bound(self.lo, values), _bound(self.hi, values))

    def to_json(self) -> dict:
        return {"type": "int", "lo": self.lo, "hi": self.hi}


@dataclass(frozen=True)
class Bool:
    """True or False."""

    def check(self, owner: str, name: str, value, values: dict) -> bool:
        return check_bool(owner, name, value)

    def to_json(self) -> dict:
        return {"type": "bool"}


# the scale s of a softmax over s-scaled logits; with cosine logits (W and x normalised) it may
# also be "auto", AdaCos's fixed scale for the class count
SCALE = Real(0.0, 1e6, lo_open=True)
SCALE_AUTO = Real(0.0, 1e6, lo_open=True, auto="adacos")


def spec_from_json(data: dict):
    kind = data["type"]
    if kind == "real":
        return Real(data["lo"], data["hi"], data["lo_open"], data["hi_open"], data.get("auto"))
    if kind == "int":
        return Int(data["lo"], data["hi"])
    if kind == "bool":
        return Bool()
    raise ValueError(f"unknown hyper-parameter spec {data!r}")


def check_values(specs: dict, values: dict) -> dict:
    """Check ``values`` in the order of ``specs`` ({name: (owner, spec)}); the checked values.

    Every name of ``specs`` must be in ``values`` (defaults filled in), so that a bound naming
    another argument always resolves, as in the constructor.
    """
    out: dict = {}
    for name, (owner, spec) in specs.items():
        out[name] = spec.check(owner, name, values[name], {**values, **out})
    return out


def resolve_auto(specs: dict, values: dict, num_classes: int) -> dict:
    """``values`` with every ``"auto"`` of a spec with a rule replaced by the rule's value at
    ``num_classes`` (the loss's whole class count: Partial FC resolves before it shards).
    Names without a spec, and values a spec refuses, pass unchanged (the constructor's check
    names them)."""
    out = dict(values)
    for name, value in values.items():
        owner, spec = specs.get(name, (None, None))
        if isinstance(spec, Real):
            out[name] = spec.resolve(owner, value, num_classes)
    return out


# ---- what a loss (or auxiliary term) declares ------------------------------------------------

class Declared:
    """Mixed into both backends' ``Loss`` and ``AuxTerm``: the declarations and their checks."""

    ranges: dict = {}  # name -> Real/Int/Bool, for this class's own arguments
    joinable = False
    shardable = False
    fused_head = False
    requires_pk_batches = False

    @classmethod
    def signature_defaults(cls) -> dict:
        """The constructor's own arguments other than the sizes, with their defaults."""
        params = inspect.signature(cls.__init__).parameters
        return {k: p.default for k, p in params.items()
                if k != "self" and k not in SIZES and p.kind is p.POSITIONAL_OR_KEYWORD}

    @classmethod
    def hyperparameters(cls) -> dict:
        """Every hyper-parameter ``build_loss`` accepts, with its default."""
        return cls.signature_defaults()

    @classmethod
    def own_specs(cls) -> dict:
        """name -> (owner, spec) of the constructor's own arguments (signature order)."""
        ranges = {}
        for klass in reversed(cls.__mro__):
            ranges.update(vars(klass).get("ranges", {}))
        missing = [k for k in cls.signature_defaults() if k not in ranges]
        if missing:
            raise TypeError(f"{cls.__name__}: hyper-parameter(s) {', '.join(missing)} have no "
                            f"entry in `ranges`")
        return {k: (cls.__name__, ranges[k]) for k in cls.signature_defaults()}

    @classmethod
    def specs(cls) -> dict:
        """name -> (owner, spec) of every hyper-parameter, in the order the constructor checks
        them; the owner is the class whose error text names it."""
        return cls.own_specs()

    @classmethod
    def capabilities(cls) -> dict:
        return {k: bool(getattr(cls, k)) for k in CAPABILITIES}

    def set_hyperparameters(self, values: dict, num_classes: int | None = None) -> None:
        """Check the constructor's arguments against ``ranges``; set them as attributes, an
        ``"auto"`` resolved with ``num_classes`` (``resolve_auto``)."""
        specs = type(self).own_specs()
        if set(values) != set(specs):
            raise TypeError(f"{type(self).__name__}.__init__ must pass exactly its "
                            f"hyper-parameters {sorted(specs)} to the base, got {sorted(values)}")
        checked = resolve_auto(specs, check_values(specs, values), num_classes)
        for name, value in checked.items():
            setattr(self, name, value)


class DeclaredJoint(Declared):
    """``Declared`` of a joint objective: its own ``lambda_`` plus the base's and the term's."""

    base_cls: type = None
    aux_cls: type = None
    ranges = {"lambda_": Real(0.0, 1e6)}

    @classmethod
    def hyperparameters(cls) -> dict:
        return {**cls.signature_defaults(), **cls.base_cls.hyperparameters(),
                **cls.aux_cls.hyperparameters()}

    @classmethod
    def specs(cls) -> dict:
        return {**cls.own_specs(), **cls.base_cls.specs(), **cls.aux_cls.specs()}

    def split_hyperparameters(self, hyperparams: dict) -> tuple[dict, dict]:
        """(base arguments, auxiliary term arguments) of ``hyperparams``."""
        aux_names = set(self.aux_cls.hyperparameters())
        return ({k: v for k, v in hyperparams.items() if k not in aux_names},
                {k: v for k, v in hyperparams.items() if k in aux_names})


def register_joints(losses, aux_terms, joint_cls: type, namespace: dict) -> list[str]:
    """Register "<base>+<aux>" = base + lambda_ x aux for every ``joinable`` registered loss and
    every registered auxiliary term; the classes become attributes of ``namespace`` (a module's
    globals). Call it once, after every loss module is imported. Returns the new names."""
    names = []
    for base_name in losses.names():
        base_cls = losses.get(base_name)
        if not base_cls.joinable:
            continue
        for aux_name in aux_terms.names():
            aux_cls = aux_terms.get(aux_name)
            clash = set(base_cls.hyperparameters()) & (
                set(aux_cls.hyperparameters()) | set(joint_cls.signature_defaults()))
            if clash:
                raise ValueError(f"joint {base_name}+{aux_name}: hyper-parameter(s) "
                                 f"{', '.join(sorted(clash))} named twice")
            cls_name = base_cls.__name__ + aux_name.capitalize()
            doc = f"{base_cls.__name__} + lambda_ x {aux_cls.__name__} (see {base_cls.__module__})."
            cls = type(cls_name, (joint_cls,), {"base_cls": base_cls, "aux_cls": aux_cls,
                                                "__doc__": doc,
                                                "__module__": namespace["__name__"]})
            namespace[cls_name] = losses.register(f"{base_name}+{aux_name}")(cls)
            names.append(f"{base_name}+{aux_name}")
    return names


def describe(cls) -> dict:
    """A registered loss class as the manifest holds it (framework-free, JSON-ready)."""
    defaults = cls.hyperparameters()
    return {
        "class": cls.__name__,
        "hyperparameters": {k: {"default": defaults[k], "owner": owner, **spec.to_json()}
                            for k, (owner, spec) in cls.specs().items()},
        "capabilities": cls.capabilities(),
    }
