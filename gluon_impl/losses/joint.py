"""Joint objectives (Gluon twin of pytorch_impl/losses/joint.py): "<base>+<aux>" losses.

Generated, not written out: bases are the registered losses with ``softmax_family = True``
(except plain ``softmax``, whose joints are ``center`` and ``ring`` themselves); aux terms are
``AUX_TERMS``. ``build_loss("arcface+center", lambda_=0.01)`` = ArcFace + 0.01 x Center.
Import this module after every loss module (losses/__init__.py does).
"""

from __future__ import annotations

from .base import _REGISTRY, JointLoss, register_loss
from .center import CenterTerm
from .ring import RingTerm

AUX_TERMS = {"center": CenterTerm, "ring": RingTerm}


def _generate() -> list[str]:
    bases = sorted((name, cls) for name, cls in _REGISTRY.items()
                   if getattr(cls, "softmax_family", False) and name != "softmax")
    names = []
    for base_name, base_cls in bases:
        for aux_name, aux_cls in AUX_TERMS.items():
            cls_name = base_cls.__name__ + aux_name.capitalize()
            doc = f"{base_cls.__name__} + lambda_ x {aux_cls.__name__} (see {base_cls.__module__})."
            cls = type(cls_name, (JointLoss,), {"base_cls": base_cls, "aux_cls": aux_cls,
                                                "__doc__": doc, "__module__": __name__})
            globals()[cls_name] = register_loss(f"{base_name}+{aux_name}")(cls)
            names.append(f"{base_name}+{aux_name}")
    return names


JOINT_NAMES = _generate()
