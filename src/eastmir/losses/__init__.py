"""Loss families: prediction losses, time alignment, knowledge distillation
and the feature-space regularisers (registered in
:data:`eastmir.registry.REGULARISERS`)."""

from eastmir.losses import cosine_distance_difference, distance_correlation, fitnet  # noqa: F401  (register them)
