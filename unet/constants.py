"""The papers' constants, one home: the defaults of :mod:`unet.tasks` and :mod:`unet.data.weights`.

Equations and sections refer to Falk et al. 2019, Methods (``shared/papers/falk2019-...md``) and Ronneberger
et al. 2015 (``shared/papers/ronneberger2015-unet.md``). Where the paper text gives no value, the value is the
U-Net Fiji plugin's default, as said below. The loss weight is ``w = w'_bal + lambda_sep * w_sep`` (M2).
"""

from __future__ import annotations

#: ``v_bal``, background weight of ``w_bal`` and ``w'_bal`` (M2.1); tile centres fall on foreground
#: ``1 / v_bal`` times more often (M3: "ten times more often ... according to our selection of v_bal = 0.1")
V_BAL: float = 0.1
#: ``sigma_bal``, std of the Gaussian fall-off of ``w'_bal`` (M2.1, eq. of ``w'_bal``), px of the finest axis;
#: not stated in the paper text: the Fiji plugin's default
SIGMA_BAL: float = 10.0
#: ``sigma_sep``, std of ``w_sep = exp(-(d1 + d2)^2 / (2 sigma_sep^2))`` (M2.2), px of the finest axis; the
#: Fiji plugin's default (Ronneberger 2015 eq. 2 used ``sigma ~ 5`` px)
SIGMA_SEP: float = 6.0
#: ``lambda``, weight of ``w_sep`` in ``w = w'_bal + lambda w_sep`` (M2); the Fiji plugin's default
#: (Ronneberger 2015 eq. 2 used ``w_0 = 10``)
LAMBDA_SEP: float = 50.0
#: foreground disk (sphere) radius around an annotated point for detection (M2.1 detection), px of the
#: finest axis; our choice (the paper gives no value); the ignored ring reaches ``r_ign = 2 * radius``
DETECTION_RADIUS: float = 2.0
#: ``d_match``, matching tolerance of detections and annotations (M6.2), px; our choice (the paper gives no
#: value)
D_MATCH: float = 6.0
