"""The ScaledApi operator: reconciles N backend copies behind a round-robin nginx."""

GROUP = "scaledapi.dev"
VERSION = "v1alpha1"
PLURAL = "scaledapis"
KIND = "ScaledApi"
API_VERSION = f"{GROUP}/{VERSION}"
