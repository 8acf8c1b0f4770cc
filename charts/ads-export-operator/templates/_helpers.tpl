{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "ads-export-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, used as the prefix of namespaced resources.
Truncated to 63 characters (DNS label limit); if the release name already
contains the chart name it is not repeated.
*/}}
{{- define "ads-export-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the metrics Service. Service names must be DNS-1035 labels: lower-case
letters, digits and '-', at most 63, starting with a letter (only clusters with
RelaxedServiceNameValidation, KEP-5311, on by default from Kubernetes 1.36, take
more). Release names may start with a digit or hold dots: release "9r" gets
"metrics-9r-ads-export-operator", not "9r-ads-export-operator-metrics".
*/}}
{{- define "ads-export-operator.metricsServiceName" -}}
{{- $base := include "ads-export-operator.fullname" . | replace "." "-" | trunc 55 | trimSuffix "-" }}
{{- if regexMatch "^[a-z]" $base }}
{{- printf "%s-metrics" $base }}
{{- else }}
{{- printf "metrics-%s" $base }}
{{- end }}
{{- end }}

{{/*
Name of cluster-scoped resources (ClusterRole, ClusterRoleBinding): prefixed
with the release namespace so that releases of the same name in different
namespaces do not collide.
*/}}
{{- define "ads-export-operator.clusterResourceName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ads-export-operator.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
The operator's rules on the cluster-scoped ExportAccounts and Namespaces (see
templates/rbac.yaml): in its ClusterRole, or with watchNamespace in a ClusterRole
of their own.
*/}}
{{- define "ads-export-operator.accountRules" -}}
- apiGroups: ["adsexport.io"]
  resources: ["exportaccounts"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["adsexport.io"]
  resources: ["exportaccounts/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["adsexport.io"]
  resources: ["exportaccounts/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
Prefix of the people's ClusterRoles <prefix>-accounts-admin and -accounts-viewer
(templates/accounts-rbac.yaml): the cluster-scoped name, room left for the suffix.
*/}}
{{- define "ads-export-operator.accountRolePrefix" -}}
{{- include "ads-export-operator.clusterResourceName" . | trunc 238 | trimSuffix "-" }}
{{- end }}

{{/*
"true" when the ValidatingAdmissionPolicy of spec.accountRef is rendered
(templates/account-admission-policy.yaml): admissionPolicy.enabled, the cluster serves
ValidatingAdmissionPolicy, and the ExportAccount CRD (its paramKind) is installed.
*/}}
{{- define "ads-export-operator.admissionPolicy" -}}
{{- $caps := .Capabilities.APIVersions }}
{{- /* helm install creates crds/ before rendering but may not see it in .Capabilities
yet: look the CRD up too (lookup finds nothing under helm template: pass
--api-versions adsexport.io/v1alpha1/ExportAccount there). */}}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "exportaccounts.adsexport.io" }}
{{- $accounts := or ($caps.Has "adsexport.io/v1alpha1/ExportAccount") (not (empty $crd)) }}
{{- if and .Values.admissionPolicy.enabled ($caps.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy") $accounts }}true{{ end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "ads-export-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "ads-export-operator.labels" -}}
helm.sh/chart: {{ include "ads-export-operator.chart" . }}
{{ include "ads-export-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: ads-export-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (immutable on the Deployment: never add to these).
*/}}
{{- define "ads-export-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ads-export-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "ads-export-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ads-export-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the leader-election Lease.
*/}}
{{- define "ads-export-operator.leaseName" -}}
{{- default (include "ads-export-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Container image reference.
*/}}
{{- define "ads-export-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
A one-unit duration (the schema's form: 500ms, 5s, 10m, 1h) in milliseconds.
*/}}
{{- define "ads-export-operator.ms" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d }}{{ trimSuffix "ms" $d | int64 }}
{{- else if hasSuffix "h" $d }}{{ mul (trimSuffix "h" $d | int64) 3600000 }}
{{- else if hasSuffix "m" $d }}{{ mul (trimSuffix "m" $d | int64) 60000 }}
{{- else }}{{ mul (trimSuffix "s" $d | int64) 1000 }}
{{- end }}
{{- end }}

{{/*
Reject value combinations the schema cannot express (the operator would refuse
them at start-up and the pods would crash-loop).
*/}}
{{- define "ads-export-operator.validate" -}}
{{- $resync := include "ads-export-operator.ms" .Values.resyncPeriod | int64 }}
{{- $base := include "ads-export-operator.ms" .Values.backoff.base | int64 }}
{{- $max := include "ads-export-operator.ms" .Values.backoff.max | int64 }}
{{- /* The binary's minimums (src/cli.rs MIN_RESYNC_PERIOD, MIN_BACKOFF_BASE). */}}
{{- if lt $resync 10000 }}
{{- fail (printf "resyncPeriod (%s) is shorter than the minimum, 10s (--resync-period)" .Values.resyncPeriod) }}
{{- end }}
{{- if lt $base 100 }}
{{- fail (printf "backoff.base (%s) is shorter than the minimum, 100ms (--backoff-base)" .Values.backoff.base) }}
{{- end }}
{{- if gt $base $max }}
{{- fail (printf "backoff.max (%s) must not be shorter than backoff.base (%s)" .Values.backoff.max .Values.backoff.base) }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
{{- $lease := div (include "ads-export-operator.ms" .Values.leaderElection.leaseDuration | int64) 1000 }}
{{- $renew := div (include "ads-export-operator.ms" .Values.leaderElection.renewInterval | int64) 1000 }}
{{- if lt $lease 2 }}
{{- fail (printf "leaderElection.leaseDuration (%s) must be at least 2s" .Values.leaderElection.leaseDuration) }}
{{- end }}
{{- if or (lt $renew 1) (ge $renew $lease) }}
{{- fail (printf "leaderElection.renewInterval (%s) must be at least 1s and shorter than leaderElection.leaseDuration (%s)" .Values.leaderElection.renewInterval .Values.leaderElection.leaseDuration) }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 requires leaderElection.enabled=true: without a leader every replica would reconcile the same exports" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true requires metrics.service.enabled=true" }}
{{- end }}
{{- end }}
