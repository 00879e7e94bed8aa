"""eastmir: Embeddings As Teachers for music classification.

Small student networks are trained on log-mel spectrograms with
``L = (1 - λ)·L_pred + λ·L_reg``, where ``L_reg`` pulls a student feature map
towards a frozen teacher's pre-computed embedding (Ding & Lerch, ISMIR 2023).
"""

__version__ = "0.1.0"
