"""Protection against unwanted distillation, and the attacks that test it.

- ``nasty``: ``protect_nasty`` trains a nasty teacher (Ma et al., ICLR 2021) with the ``nasty`` loss.
- ``skeptical``: the skeptical student (Kundu et al., NeurIPS 2021), KD into an auxiliary head at a shallow tap.
- ``audit``: ``audit_distillability`` measures how much probe students learn from a model (protection margin).

Import order matters: ``audit`` imports ``kdlab.studies``, whose ``nasty`` study imports ``skeptical`` and ``nasty``
from here, so those two never import ``audit`` or ``kdlab.studies`` at module level.
"""

from .skeptical import AuxiliaryHead, SkepticalConfig, SkepticalObjective, SkepticalRunConfig, run_skeptical
from .nasty import NastyConfig, protect_nasty, protected_weights
from .audit import AuditConfig, ModelSource, audit_distillability, resolve_model

__all__ = ["AuditConfig", "AuxiliaryHead", "ModelSource", "NastyConfig", "SkepticalConfig", "SkepticalObjective",
           "SkepticalRunConfig", "audit_distillability", "protect_nasty", "protected_weights", "resolve_model",
           "run_skeptical"]
