"""Protection against unwanted distillation, and the attacks that test it.

- ``nasty``: ``protect_nasty`` trains a nasty teacher (Ma et al., ICLR 2021) with the ``nasty`` loss;
  ``NastyTeacherJob`` is the same as a run-store job.
- ``skeptical``: the skeptical student (Kundu et al., NeurIPS 2021), KD into an auxiliary head at a shallow tap.
- ``source``: a model given by path (run directory or weights file) resolved to weights, spec and training data.

The distillability audit that uses them is a study: :mod:`kdlab.studies.audit` (``kdlab audit distillability``).
"""

from .skeptical import AuxiliaryHead, SkepticalConfig, SkepticalObjective, SkepticalRunConfig, run_skeptical
from .nasty import NastyConfig, NastyTeacherJob, protect_nasty, protected_weights
from .source import ModelSource, resolve_model

__all__ = ["AuxiliaryHead", "ModelSource", "NastyConfig", "NastyTeacherJob", "SkepticalConfig", "SkepticalObjective",
           "SkepticalRunConfig", "protect_nasty", "protected_weights", "resolve_model", "run_skeptical"]
