"""Loss functions shared by the models, each written from its paper's equation (parts, no models).

`regression`: RMSE and the stop-gradient distillation variants (SDUMC's L_MKD / L_RS);
`rnc`: Rank-N-Contrast (Zha et al. 2023), the L_RNC of the missing-modality double flow.
"""

from .regression import rmse, sg_l1, sg_mse, sg_rmse
from .rnc import rnc_loss

__all__ = ["rmse", "rnc_loss", "sg_l1", "sg_mse", "sg_rmse"]
