"""Training schemes beyond offline distillation (Gou, Yu, Maybank, Tao, "Knowledge Distillation: A Survey", IJCV
2021, Sec. 4): who teaches whom, and when.

    offline   a trained, frozen teacher teaches the student: the plain Distiller (no ``scheme`` in the config)
    online    ``dml``   peers learn from each other while all train (Deep Mutual Learning, CVPR 2018)
              ``joint`` teacher and student train together from scratch; the teacher only on labels
    self      ``byot``  auxiliary classifiers on the student's own intermediate taps learn from its deepest
                        classifier (Be Your Own Teacher, ICCV 2019)
              born-again networks: a chain of runs, each generation taught by the previous one
              (:func:`kdlab.distill.schemes.ban.born_again`; not a single run, so not a ``scheme`` name)

A run selects a single-run scheme with ``scheme: {name: dml, ...options}``. Each scheme builds one objective module
that the one training loop trains like a Distiller: an :class:`~kdlab.distill.objective.Objective` (a step returns
the loss, the student's logits and the loss's named parts; ``.student`` is the model evaluated and exported).
Everything that trains besides the student (peers, a live teacher, auxiliary heads) is a registered submodule of the
objective, so ``parameters()`` hands it to the optimiser and checkpoints resume it; only the student is exported.
"""

from . import byot, dml, joint  # noqa: F401  (importing registers the schemes)
from .ban import born_again, born_again_configs
from .base import SCHEMES, Scheme, build_scheme, check_scheme, scheme_options

__all__ = ["SCHEMES", "Scheme", "build_scheme", "check_scheme", "scheme_options", "born_again",
           "born_again_configs"]
