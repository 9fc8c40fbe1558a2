{{/* The name of every object: "<release>-operator" when the release name says scaledapi already. */}}
{{- define "scaledapi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "scaledapi" .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-scaledapi-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The selector labels: the same as manifests/ (a Deployment's selector cannot change later). */}}
{{- define "scaledapi.selectorLabels" -}}
app.kubernetes.io/name: scaledapi-operator
{{- end -}}

{{- define "scaledapi.labels" -}}
{{ include "scaledapi.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Rules that are cluster-wide in both modes: kopf reads the CRD, which is cluster-scoped. */}}
{{- define "scaledapi.clusterRules" -}}
# kopf discovers the ScaledApi CRD at startup and notices it being (re)installed.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end -}}

{{/* Rules on the ScaledApis and their children: a ClusterRole's, or a Role's in each watched namespace.
     Keep them as manifests/rbac.yaml has them: tests/unit/test_chart.py compares. */}}
{{- define "scaledapi.namespacedRules" -}}
# Watch ScaledApis (create/update/resume handlers); kopf keeps its progress and diff-base in
# annotations (scaledapi.dev/*), which it writes with patch.
- apiGroups: [scaledapi.dev]
  resources: [scaledapis]
  verbs: [get, list, watch, patch]
# The operator writes .status (replicas, selector, conditions, ...) through the status subresource.
- apiGroups: [scaledapi.dev]
  resources: [scaledapis/status]
  verbs: [get, patch]
# Children carry owner references with blockOwnerDeletion, which needs update on the owner's
# finalizers subresource where the OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: [scaledapi.dev]
  resources: [scaledapis/finalizers]
  verbs: [update]
# Backend, canary and nginx Deployments: reconciled (create/patch) and watched for drift and
# readiness; NAME-canary is deleted when spec.canary is removed (a promotion), only if ours.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# Services NAME-backend, NAME-canary and NAME-proxy: reconciled and watched for drift; NAME-canary
# deleted with the canary.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# ServiceAccount NAME-proxy: reconciled and watched for drift.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch, create, patch]
# ConfigMaps NAME-proxy (the nginx config) and NAME-proxy-status (reports of the nginx pods):
# reconciled and watched. get/list/watch/patch are also what the nginx Role grants; a Role can
# only grant what its creator holds (RBAC escalation check).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
# PodDisruptionBudget NAME-backend: created when replicas > 1, deleted when replicas drop to 1 or 0.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# Role and RoleBinding NAME-proxy for the nginx pods' reloader: reconciled and watched for drift.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch]
# NetworkPolicies NAME-backend and NAME-canary (only the proxy reaches the API's pods) and
# NAME-proxy: reconciled and watched for drift; NAME-canary deleted with the canary.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# Backend pods: container states (ImagePullBackOff, CrashLoopBackOff) for the Degraded condition;
# nginx pods: which of them must have applied the current config.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# The ready backend addresses that nginx round-robins over.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
# Events on ScaledApis about meaningful transitions (Ready, Degraded, Recovered, children changed).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* values.monitoringNamespace, checked: a namespace name or empty. */}}
{{- define "scaledapi.monitoringNamespace" -}}
{{- $ns := .Values.monitoringNamespace | default "" -}}
{{- if and $ns (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $ns)) -}}
{{- fail (printf "monitoringNamespace: %q is not a namespace name (DNS-1123 label)" $ns) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}
