{{/*
Naming and labels, as in the bitnami and prometheus-community charts.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "captioner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release-qualified name, or fullnameOverride. Truncated to 63 characters
(DNS label); components append a suffix, so keep release names short.
*/}}
{{- define "captioner.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: fullname-component (context: dict "root" $ "component" "inference"). */}}
{{- define "captioner.componentName" -}}
{{- printf "%s-%s" (include "captioner.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "captioner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "captioner.labels" -}}
helm.sh/chart: {{ include "captioner.chart" . }}
{{ include "captioner.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: captioner
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "captioner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "captioner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component (context: dict "root" $ "component" "ui"). */}}
{{- define "captioner.componentLabels" -}}
{{ include "captioner.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "captioner.componentSelectorLabels" -}}
{{ include "captioner.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* commonAnnotations, for metadata.annotations blocks. */}}
{{- define "captioner.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{- define "captioner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "captioner.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
An image reference: repository[:tag][@digest]; the tag defaults to the chart's appVersion.
(context: dict "image" .Values.inference.image "root" $)
*/}}
{{- define "captioner.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Settings as CAPTIONER_* variables: a key of a settings map is the pydantic field
name; lists and maps are JSON (as pydantic-settings reads them), null is left out.
*/}}
{{- define "captioner.settingsEnv" -}}
{{- range $key, $value := . }}
{{- if not (kindIs "invalid" $value) }}
- name: CAPTIONER_{{ upper $key }}
  value: {{ if kindIs "string" $value }}{{ $value | quote }}{{ else }}{{ $value | toJson | quote }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "captioner.inference.fullname" -}}
{{- include "captioner.componentName" (dict "root" . "component" "inference") -}}
{{- end -}}

{{- define "captioner.ui.fullname" -}}
{{- include "captioner.componentName" (dict "root" . "component" "ui") -}}
{{- end -}}

{{- define "captioner.mongodb.fullname" -}}
{{- include "captioner.componentName" (dict "root" . "component" "mongodb") -}}
{{- end -}}

{{/* The drain the service is told (its own default when the values leave it out). */}}
{{- define "captioner.inference.drainSeconds" -}}
{{- $drain := 30 -}}
{{- if hasKey .Values.inference.settings "drain_seconds" -}}
{{- $drain = .Values.inference.settings.drain_seconds -}}
{{- end -}}
{{- $drain -}}
{{- end -}}

{{/* The Secret and key holding the MongoDB URI the UI uses; empty when there is none. */}}
{{- define "captioner.mongodb.uriSecretName" -}}
{{- if .Values.mongodb.enabled -}}
{{- default (include "captioner.mongodb.fullname" .) .Values.mongodb.auth.existingSecret -}}
{{- else if .Values.externalMongodb.existingSecret -}}
{{- .Values.externalMongodb.existingSecret -}}
{{- else if .Values.externalMongodb.uri -}}
{{- printf "%s-external" (include "captioner.mongodb.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "captioner.mongodb.uriSecretKey" -}}
{{- if .Values.mongodb.enabled -}}
mongodb-uri
{{- else -}}
{{- .Values.externalMongodb.uriKey -}}
{{- end -}}
{{- end -}}

{{/* The MongoDB hosts the chart's StatefulSet answers on, comma-separated. */}}
{{- define "captioner.mongodb.hosts" -}}
{{- $name := include "captioner.mongodb.fullname" . -}}
{{- $hosts := list -}}
{{- if .Values.mongodb.replicaSet.enabled -}}
{{- range $i := until (int .Values.mongodb.replicaSet.replicas) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s-headless.%s.svc.%s:27017" $name $i $name $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- else -}}
{{- $hosts = append $hosts (printf "%s.%s.svc.%s:27017" $name .Release.Namespace .Values.clusterDomain) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{/*
The inference tracks, as JSON: ["stable"], and "canary" with inference.canary.enabled.
*/}}
{{- define "captioner.inference.tracks" -}}
{{- $tracks := list "stable" -}}
{{- if .Values.inference.canary.enabled -}}
{{- $tracks = append $tracks "canary" -}}
{{- end -}}
{{- toJson $tracks -}}
{{- end -}}

{{/*
One track's names, as JSON {"track", "component", "name"} (context: dict "root" $ "track" "canary").
The stable track is the component "inference" the chart always had.
*/}}
{{- define "captioner.inference.track" -}}
{{- $component := ternary "inference" "inference-canary" (eq .track "stable") -}}
{{- toJson (dict "track" .track "component" $component "name" (include "captioner.componentName" (dict "root" .root "component" $component))) -}}
{{- end -}}

{{/* A canary needs the route that sends it traffic and two versions to tell apart. */}}
{{- define "captioner.inference.checkCanary" -}}
{{- $inf := .Values.inference -}}
{{- if $inf.canary.enabled -}}
{{- if not .Values.gateway.enabled -}}
{{- fail "inference.canary needs gateway.enabled: the HTTPRoute's weights are what send the canary its share of requests" -}}
{{- end -}}
{{- if or (not (toString $inf.modelVersion)) (not (toString $inf.canary.modelVersion)) -}}
{{- fail "inference.modelVersion and inference.canary.modelVersion are required with a canary: the analysis tells the tracks apart by them" -}}
{{- end -}}
{{- if eq (toString $inf.modelVersion) (toString $inf.canary.modelVersion) -}}
{{- fail (printf "inference.canary.modelVersion (%v) must differ from inference.modelVersion: a canary of the stable model compares nothing" $inf.canary.modelVersion) -}}
{{- end -}}
{{- end -}}
{{- end -}}
