"""Analysis of what a teacher's outputs offer a student: dark-knowledge statistics and class affinity.

- ``dark_knowledge``: derived average / std, inherent variance, non-GT entropy, target probability,
  accuracy and ECE, streamed over batches.
- ``affinity``: class-affinity matrices, their rank consistency across models, and plots.
- ``bayes_distance``: a model's distance to a known Bayes posterior, next to the posterior's own dark knowledge.
- ``mismatch_gap`` / ``multiplicity``: the capacity-mismatch gap with teacher- and student-seed variation in its
  interval, and verdicts over many cells with the false discovery rate controlled.
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
from .bayes_distance import BayesDistanceAccumulator, bayes_distance, compare_with_bayes
from .fit import FIT_VERDICTS, fit_verdict, kfold_indices, recommend_capacity, sweep_verdicts
from .mismatch_gap import difference_interval, map_verdicts, mismatch_gap, one_sided_p_values, select_best_kd
from .multiplicity import benjamini_hochberg, fcr_adjusted_confidence, holm
from .ntk import NTKParamMLP, empirical_ntk, linearized_predictions, ntk_drift
from .profile import profile_model
from .theory import (
    distillation_error,
    generalization_bound,
    margin_rademacher_bound,
    risk_variance,
    variance_interval,
    variance_ratio_interval,
)
from .undistillable import class_gain, confusion_shift, teacher_class_profile, undistillable_classes
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
    "BayesDistanceAccumulator",
    "NTKParamMLP",
    "bayes_distance",
    "benjamini_hochberg",
    "compare_with_bayes",
    "difference_interval",
    "fcr_adjusted_confidence",
    "holm",
    "map_verdicts",
    "mismatch_gap",
    "one_sided_p_values",
    "select_best_kd",
    "class_gain",
    "confusion_shift",
    "distillation_error",
    "empirical_ntk",
    "generalization_bound",
    "linearized_predictions",
    "margin_rademacher_bound",
    "ntk_drift",
    "risk_variance",
    "teacher_class_profile",
    "undistillable_classes",
    "variance_interval",
    "variance_ratio_interval",
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
