{{/*
One inference Deployment (context: dict "root" $ "track" "stable"|"canary"). The stable
track keeps the name and selector the chart always had (a Deployment's selector cannot
change); the canary is its own component, inference-canary, so that neither selector,
Service nor autoscaler of the one takes in the pods of the other. The canary runs
inference.canary.modelPackage merged over inference.modelPackage.
*/}}
{{- define "captioner.inference.deployment" -}}
{{- $root := .root -}}
{{- $track := .track -}}
{{- $inf := $root.Values.inference -}}
{{- $t := include "captioner.inference.track" (dict "root" $root "track" $track) | fromJson -}}
{{- $name := $t.name -}}
{{- $package := $inf.modelPackage -}}
{{- $version := toString $inf.modelVersion -}}
{{- if eq $track "canary" }}
{{- $package = mergeOverwrite (deepCopy $inf.modelPackage) (deepCopy $inf.canary.modelPackage) -}}
{{- $version = toString $inf.canary.modelVersion -}}
{{- end }}
{{- $source := $package.source -}}
{{- $ctx := dict "root" $root "component" $t.component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace | quote }}
  labels:
    {{- include "captioner.componentLabels" $ctx | nindent 4 }}
    track: {{ $track }}
  {{- with $root.Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if eq $track "canary" }}
  # A fixed size: the route's weight, not an autoscaler, sets the canary's share.
  replicas: {{ $inf.canary.replicaCount }}
  {{- else if not $inf.autoscaling.enabled }}
  replicas: {{ $inf.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # A new pod must be ready (model loaded, warmed up) before an old one goes.
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "captioner.componentSelectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "captioner.componentSelectorLabels" $ctx | nindent 8 }}
        # Scraped into every series (metrics.*: relabeling), so that the canary
        # analysis and the dashboards tell the tracks and the model versions apart.
        track: {{ $track }}
        {{- with $version }}
        captioner.io/model-version: {{ . | quote }}
        {{- end }}
        {{- with $inf.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $podAnnotations := deepCopy $inf.podAnnotations }}
      {{- if eq $source "gcsFuse" }}
      {{- $podAnnotations = merge $podAnnotations (deepCopy $package.gcsFuse.sidecarAnnotations) }}
      {{- $_ := set $podAnnotations "gke-gcsfuse/volumes" "true" }}
      {{- end }}
      {{- with $podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "captioner.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      {{- with $inf.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $inf.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $inf.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- $nodeSelector := deepCopy $inf.nodeSelector }}
      {{- if $inf.gpu.enabled }}
      {{- $_ := set $nodeSelector "cloud.google.com/gke-accelerator" $inf.gpu.accelerator }}
      {{- if $inf.gpu.timeSharing.enabled }}
      {{- $_ := set $nodeSelector "cloud.google.com/gke-gpu-sharing-strategy" "time-sharing" }}
      {{- $_ := set $nodeSelector "cloud.google.com/gke-max-shared-clients-per-gpu" ($inf.gpu.timeSharing.maxSharedClientsPerGpu | toString) }}
      {{- end }}
      {{- end }}
      {{- with $nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- $tolerations := $inf.tolerations }}
      {{- if and $inf.gpu.enabled $inf.gpu.tolerate }}
      {{- $tolerations = append $tolerations (dict "key" "nvidia.com/gpu" "operator" "Exists" "effect" "NoSchedule") }}
      {{- end }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $inf.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $inf.topologySpread.enabled }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: {{ $inf.topologySpread.zoneWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "captioner.componentSelectorLabels" $ctx | nindent 14 }}
          matchLabelKeys: ["pod-template-hash"]
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: {{ $inf.topologySpread.nodeWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "captioner.componentSelectorLabels" $ctx | nindent 14 }}
          matchLabelKeys: ["pod-template-hash"]
      {{- end }}
      {{- if eq $source "initCopy" }}
      initContainers:
        - name: fetch-model
          image: {{ include "captioner.image" (dict "image" $package.initCopy.image "root" $root) }}
          imagePullPolicy: {{ $package.initCopy.image.pullPolicy }}
          # Copies the package (a folder, or one .tar.gz the service unpacks) with the
          # pod's Workload Identity; an interrupted copy restarts the init container.
          command: ["gcloud", "storage", "cp", "--recursive"]
          args:
            - {{ required "inference.modelPackage.initCopy.uri is required with source initCopy" $package.initCopy.uri | quote }}
            - {{ printf "%s/%s" $package.mountPath $package.path | quote }}
          env:
            - name: CLOUDSDK_CONFIG
              value: /tmp/gcloud
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          resources:
            {{- toYaml $package.initCopy.resources | nindent 12 }}
          volumeMounts:
            - name: model
              mountPath: {{ $package.mountPath }}
            - name: tmp
              mountPath: /tmp
      {{- end }}
      containers:
        - name: inference
          image: {{ include "captioner.image" (dict "image" $inf.image "root" $root) }}
          imagePullPolicy: {{ $inf.image.pullPolicy }}
          args: ["serve"]
          ports:
            - name: http
              containerPort: {{ $inf.port }}
              protocol: TCP
          env:
            - name: CAPTIONER_HOST
              value: "0.0.0.0"
            - name: CAPTIONER_PORT
              value: {{ $inf.port | quote }}
            - name: CAPTIONER_MODEL_DIR
              value: {{ printf "%s/%s" $package.mountPath $package.path | quote }}
            {{- include "captioner.settingsEnv" $inf.settings | trim | nindent 12 }}
            {{- with $inf.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if $inf.startupProbe.enabled }}
          startupProbe:
            httpGet:
              path: /v2/health/live
              port: http
            periodSeconds: {{ $inf.startupProbe.periodSeconds }}
            timeoutSeconds: {{ $inf.startupProbe.timeoutSeconds }}
            failureThreshold: {{ $inf.startupProbe.failureThreshold }}
          {{- end }}
          {{- if $inf.livenessProbe.enabled }}
          livenessProbe:
            httpGet:
              path: /v2/health/live
              port: http
            periodSeconds: {{ $inf.livenessProbe.periodSeconds }}
            timeoutSeconds: {{ $inf.livenessProbe.timeoutSeconds }}
            failureThreshold: {{ $inf.livenessProbe.failureThreshold }}
          {{- end }}
          {{- if $inf.readinessProbe.enabled }}
          readinessProbe:
            httpGet:
              path: /v2/health/ready
              port: http
            periodSeconds: {{ $inf.readinessProbe.periodSeconds }}
            timeoutSeconds: {{ $inf.readinessProbe.timeoutSeconds }}
            failureThreshold: {{ $inf.readinessProbe.failureThreshold }}
          {{- end }}
          lifecycle:
            preStop:
              # Keep serving while endpoints and load balancers drop this pod; then
              # SIGTERM starts the service's own drain (drain_seconds).
              sleep:
                seconds: {{ $inf.preStopSleepSeconds }}
          {{- $resources := deepCopy $inf.resources }}
          {{- if $inf.gpu.enabled }}
          {{- $limits := default (dict) $resources.limits }}
          {{- $_ := set $limits "nvidia.com/gpu" $inf.gpu.count }}
          {{- $_ := set $resources "limits" $limits }}
          {{- end }}
          resources:
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if ne $source "image" }}
            - name: model
              mountPath: {{ $package.mountPath }}
              {{- if ne $source "initCopy" }}
              readOnly: true
              {{- end }}
              {{- if and (eq $source "pvc") $package.pvc.subPath }}
              subPath: {{ $package.pvc.subPath }}
              {{- end }}
            {{- end }}
      volumes:
        # The service writes only temporary files (multi-worker metrics, an unpacked .tar.gz).
        - name: tmp
          emptyDir:
            sizeLimit: 2Gi
        {{- if eq $source "gcsFuse" }}
        - name: model
          csi:
            driver: gcsfuse.csi.storage.gke.io
            readOnly: true
            volumeAttributes:
              bucketName: {{ required "inference.modelPackage.gcsFuse.bucket is required with source gcsFuse" $package.gcsFuse.bucket | quote }}
              {{- $options := list }}
              {{- with $package.gcsFuse.mountOptions }}{{ $options = append $options . }}{{ end }}
              {{- with $package.gcsFuse.onlyDir }}{{ $options = append $options (printf "only-dir=%s" .) }}{{ end }}
              {{- with $options }}
              mountOptions: {{ join "," . | quote }}
              {{- end }}
        {{- else if eq $source "initCopy" }}
        - name: model
          emptyDir:
            sizeLimit: {{ $package.initCopy.sizeLimit }}
        {{- else if eq $source "pvc" }}
        - name: model
          persistentVolumeClaim:
            claimName: {{ required "inference.modelPackage.pvc.claimName is required with source pvc" $package.pvc.claimName | quote }}
            readOnly: true
        {{- end }}
{{- end -}}
