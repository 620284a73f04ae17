"""``Linear``, ``Flatten``, ``Identity``, ``Dropout``."""
import numbers

from ... import functional as F
from ..module import Module
from ._utils import default_uniform_init, empty_parameter, positive_int

__all__ = ["Linear", "Flatten", "Identity", "Dropout"]


class Linear(Module):
    """``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    ``weight`` (out_features, in_features) and ``bias`` (out_features,) are both
    U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default.

    Examples
    --------
    >>> import numpy as np, fastconv as fc
    >>> fc.nn.Linear(20, 5)(fc.tensor(np.zeros((8, 20), np.float32))).shape
    (8, 5)
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features = positive_int("Linear", "in_features", in_features, 0)
        self.out_features = positive_int("Linear", "out_features", out_features, 0)
        self.weight = empty_parameter((out_features, in_features), dtype)
        if bias:
            self.bias = empty_parameter((out_features,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        default_uniform_init(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Flatten(Module):
    """Merge dims ``start_dim`` .. ``end_dim`` into one, as ``torch.nn.Flatten``."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input; constructor arguments are ignored, as ``torch.nn.Identity``."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Dropout(Module):
    """Inverted dropout in training mode, identity in eval mode, as ``torch.nn.Dropout``.
    The mask is drawn from the generator :func:`fastconv.manual_seed` seeds."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"Dropout: expected p to be a float, got {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p} "
                             f"(expected p in [0, 1])")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
