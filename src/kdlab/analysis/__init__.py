"""Analysis of what a teacher's outputs offer a student: dark-knowledge statistics and class affinity.

- ``dark_knowledge``: derived average / std, inherent variance, non-GT entropy, target probability,
  accuracy and ECE, streamed over batches.
- ``affinity``: class-affinity matrices, their rank consistency across models, and plots.
"""

from .affinity import (
    AffinityAccumulator,
    affinity_consistency,
    class_affinity,
    consistency_matrix,
    kendall_tau_b,
    plot_affinity_heatmap,
    plot_consistency_matrix,
    spearman_correlation,
)
from .fit import FIT_VERDICTS, fit_verdict, kfold_indices, recommend_capacity, sweep_verdicts
from .profile import profile_model
from .dark_knowledge import (
    DarkKnowledgeAccumulator,
    dark_knowledge_metrics,
    derived_average_per_sample,
    derived_std_per_sample,
    inherent_variance_per_sample,
    nongt_entropy_per_sample,
    nongt_logits,
    nongt_probabilities,
    target_probability_per_sample,
)

__all__ = [
    "FIT_VERDICTS",
    "fit_verdict",
    "kfold_indices",
    "profile_model",
    "recommend_capacity",
    "sweep_verdicts",
    "AffinityAccumulator",
    "DarkKnowledgeAccumulator",
    "affinity_consistency",
    "class_affinity",
    "consistency_matrix",
    "dark_knowledge_metrics",
    "derived_average_per_sample",
    "derived_std_per_sample",
    "inherent_variance_per_sample",
    "kendall_tau_b",
    "nongt_entropy_per_sample",
    "nongt_logits",
    "nongt_probabilities",
    "plot_affinity_heatmap",
    "plot_consistency_matrix",
    "spearman_correlation",
    "target_probability_per_sample",
]
