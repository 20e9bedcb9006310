"""kdlab: knowledge distillation that explains and fixes why distillation fails."""

__version__ = "0.1.0"
