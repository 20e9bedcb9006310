"""``kdlab advise``: from a user's teachers and student, a budgeted pilot that recommends what to distil and how."""

from .run import advise

__all__ = ["advise"]
