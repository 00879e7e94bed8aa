"""Loss families: prediction losses, time alignment and the feature-space
regularisers (registered in :data:`eastmir.registry.REGULARISERS`)."""

from eastmir.losses import distance_correlation  # noqa: F401  (registers it)
