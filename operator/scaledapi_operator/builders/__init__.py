"""Pure builders: ScaledApi identity + spec -> the dict of each child object."""

from scaledapi_operator.builders.backend import (
    backend_deployment,
    backend_pdb,
    backend_service,
    canary_deployment,
    canary_service,
)
from scaledapi_operator.builders.common import Owner, selector_string
from scaledapi_operator.builders.network import (
    backend_network_policy,
    canary_network_policy,
    proxy_network_policy,
)
from scaledapi_operator.builders.proxy import (
    nginx_settings,
    proxy_configmap,
    proxy_deployment,
    proxy_pdb,
    proxy_role,
    proxy_role_binding,
    proxy_service,
    proxy_service_account,
    proxy_status_configmap,
)

__all__ = [
    "Owner",
    "backend_deployment",
    "backend_network_policy",
    "backend_pdb",
    "backend_service",
    "canary_deployment",
    "canary_network_policy",
    "canary_service",
    "nginx_settings",
    "proxy_configmap",
    "proxy_deployment",
    "proxy_network_policy",
    "proxy_pdb",
    "proxy_role",
    "proxy_role_binding",
    "proxy_service",
    "proxy_service_account",
    "proxy_status_configmap",
    "selector_string",
]
