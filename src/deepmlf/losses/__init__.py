"""Loss functions shared by the models, each written from its paper's equation (parts, no models).

`regression`: RMSE and the stop-gradient distillation variants (SDUMC's L_MKD / L_RS);
`kd`: MAGTKD's cross-modal KD (DIST soft labels eq. 6-9, batch-similarity KL eq. 10-12);
`rnc`: Rank-N-Contrast (Zha et al. 2023), the L_RNC of the missing-modality double flow;
`token_kd`: token-level KD (CE + KL at T, MulCoT-RD's student loss) for the rationale head.
"""

from .kd import batch_similarity_kl, dist_loss, pearson
from .regression import rmse, sg_l1, sg_mse, sg_rmse
from .rnc import rnc_loss

__all__ = ["batch_similarity_kl", "dist_loss", "pearson", "rmse", "rnc_loss", "sg_l1", "sg_mse", "sg_rmse"]
