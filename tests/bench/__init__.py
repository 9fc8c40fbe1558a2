"""make bench: ScaledApi against plain Kubernetes on the kind cluster (issue 10). See __main__.py."""
