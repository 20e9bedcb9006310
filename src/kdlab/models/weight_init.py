"""The one weight initialisation shared by the kdlab conv nets."""

from __future__ import annotations

from torch import nn


def init_conv_net(model: nn.Module) -> None:
    """Initialise conv weights Kaiming-normal, conv biases 0, batch norm weight 1 and bias 0; leave nn.Linear alone.

    Kaiming normal (He et al., "Delving Deep into Rectifiers", ICCV 2015) with ``mode="fan_out"`` and the ReLU gain
    keeps the variance of gradients constant through the ReLU conv stacks. Linear layers keep PyTorch's default
    (Kaiming-uniform with a=sqrt(5)), which is what the MLP family also uses.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
