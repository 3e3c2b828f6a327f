{{- define "twiwatch.name" -}}{{ .Release.Name }}-twiwatch{{- end -}}
{{- define "twiwatch.labels" -}}
app.kubernetes.io/name: twiwatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
twiwatch/research-only: "true"
{{- end -}}
{{- define "twiwatch.secretName" -}}{{ .Values.existingSecret | default (printf "%s-secret" (include "twiwatch.name" .)) }}{{- end -}}

{{- /* A value as the text of an environment variable. values.yaml numbers arrive as float64, which Go prints as
  1.6777216e+07: a whole number is printed as an integer instead. */ -}}
{{- define "twiwatch.str" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end -}}
{{- /* One ConfigMap line: include "twiwatch.var" (list "NAME" value) -> TWIWATCH_NAME: "value" */ -}}
{{- define "twiwatch.var" -}}
TWIWATCH_{{ index . 0 }}: {{ include "twiwatch.str" (index . 1) | quote }}
{{- end -}}

{{- /* The values.yaml of chart 0.1 had one flat `config:` map handed to every pod; say where its keys went. */ -}}
{{- define "twiwatch.checkValues" -}}
{{- if .Values.config }}
{{- fail "values: `config` is gone; settings are grouped per process (kafka, hl7, fhir, worker, encoder, reasoner.client, reasoner, mllp; see values.yaml); for anything else use worker.extraEnv / mllp.extraEnv / reasoner.extraEnv" }}
{{- end }}
{{- end -}}

{{- /* ---- settings groups: each renders the TWIWATCH_* variables of one group of stream/config.py ---- */ -}}
{{- define "twiwatch.config.kafka" -}}
{{- $k := .Values.kafka -}}
{{ include "twiwatch.var" (list "BOOTSTRAP" $k.bootstrap) }}
{{ include "twiwatch.var" (list "PARTITIONS" $k.partitions) }}
{{ include "twiwatch.var" (list "REPLICATION" $k.replication) }}
{{ include "twiwatch.var" (list "MAX_MESSAGE_BYTES" $k.maxMessageBytes) }}
{{ include "twiwatch.var" (list "TOPIC_HL7_RAW" $k.topics.hl7Raw) }}
{{ include "twiwatch.var" (list "TOPIC_FHIR_RAW" $k.topics.fhirRaw) }}
{{ include "twiwatch.var" (list "TOPIC_CHUNKS" $k.topics.chunks) }}
{{ include "twiwatch.var" (list "TOPIC_TRENDS" $k.topics.trends) }}
{{ include "twiwatch.var" (list "TOPIC_REPORTS" $k.topics.reports) }}
{{ include "twiwatch.var" (list "TOPIC_DEADLETTER" $k.topics.deadletter) }}
{{ include "twiwatch.var" (list "TOPIC_REASONING" $k.topics.reasoning) }}
{{- end -}}

{{- define "twiwatch.config.hl7" -}}
{{- $h := .Values.hl7 -}}
{{ include "twiwatch.var" (list "HL7_SAMP_RATE_CODES" $h.sampRateCodes) }}
{{ include "twiwatch.var" (list "HL7_TIMEZONE" $h.timezone) }}
{{- if $h.senders }}
{{ include "twiwatch.var" (list "SENDERS" (ternary $h.senders (toJson $h.senders) (kindIs "string" $h.senders))) }}
{{- end }}
{{- end -}}

{{- define "twiwatch.config.fhir" -}}
{{- $f := .Values.fhir -}}
{{ include "twiwatch.var" (list "FHIR_VERSION" $f.version) }}
{{ include "twiwatch.var" (list "FHIR_IDENTIFIER_SYSTEM" $f.identifierSystem) }}
{{ include "twiwatch.var" (list "ORGANIZATION" $f.organization) }}
{{- end -}}

{{- define "twiwatch.config.worker" -}}
{{- $w := .Values.worker -}}
{{ include "twiwatch.var" (list "APP_ID" $w.appId) }}
{{ include "twiwatch.var" (list "WORKER_WEB_PORT" $w.webPort) }}
{{ include "twiwatch.var" (list "WORKER_WEB_BIND" $w.webBind) }}
{{ include "twiwatch.var" (list "DATA_DIR" $w.dataDir) }}
{{ include "twiwatch.var" (list "EXACTLY_ONCE" $w.exactlyOnce) }}
{{ include "twiwatch.var" (list "WORKER_SESSION_TIMEOUT_S" $w.sessionTimeoutS) }}
{{ include "twiwatch.var" (list "PRIORS_KEPT" $w.priorsKept) }}
{{- end -}}

{{- define "twiwatch.config.monitor" -}}
{{- $m := .Values.monitor -}}
{{ include "twiwatch.var" (list "MONITOR_WINDOW_S" $m.windowS) }}
{{ include "twiwatch.var" (list "MONITOR_LATENESS_S" $m.latenessS) }}
{{ include "twiwatch.var" (list "MONITOR_GAP_TOLERANCE_S" $m.gapToleranceS) }}
{{ include "twiwatch.var" (list "MONITOR_BASELINE_S" $m.baselineS) }}
{{ include "twiwatch.var" (list "MONITOR_PERSISTENCE_S" $m.persistenceS) }}
{{ include "twiwatch.var" (list "MONITOR_PAUSE_MAX_S" $m.pauseMaxS) }}
{{ include "twiwatch.var" (list "MONITOR_DEPTH_MV" $m.depthMv) }}
{{ include "twiwatch.var" (list "MONITOR_CLOSE_WITHIN_MV" $m.closeWithinMv) }}
{{ include "twiwatch.var" (list "MONITOR_CLOSE_PERSIST_S" $m.closePersistS) }}
{{ include "twiwatch.var" (list "MONITOR_SILENCE_S" $m.silenceS) }}
{{ include "twiwatch.var" (list "MONITOR_REFRACTORY_S" $m.refractoryS) }}
{{ include "twiwatch.var" (list "MONITOR_MATERIAL_DEPTH_MV" $m.materialDepthMv) }}
{{ include "twiwatch.var" (list "MONITOR_MIN_UPDATE_INTERVAL_S" $m.minUpdateIntervalS) }}
{{ include "twiwatch.var" (list "MONITOR_TICK_S" $m.tickS) }}
{{- end -}}

{{- define "twiwatch.config.encoder" -}}
{{- $e := .Values.encoder -}}
{{ include "twiwatch.var" (list "ENCODER_MANIFEST" $e.manifest) }}
{{ include "twiwatch.var" (list "ENCODER_RUNTIME" $e.runtime) }}
{{ include "twiwatch.var" (list "ENCODER_CACHE_DIR" $e.cacheDir) }}
{{ include "twiwatch.var" (list "ENCODER_PRECISION" $e.precision) }}
{{ include "twiwatch.var" (list "ENCODER_THREADS" $e.threads) }}
{{ include "twiwatch.var" (list "ENCODER_MAX_BATCH" $e.maxBatch) }}
{{ include "twiwatch.var" (list "ENCODER_MAX_WAIT_MS" $e.maxWaitMs) }}
{{- end -}}

{{- /* The worker's reasoning client. An empty url with reasoner.enabled: the chart's own reasoner Service. */ -}}
{{- define "twiwatch.config.reasonerClient" -}}
{{- $c := .Values.reasoner.client -}}
{{- $url := $c.url -}}
{{- if and (not $url) .Values.reasoner.enabled -}}
{{- $url = printf "http://%s-reasoner:%v" (include "twiwatch.name" .) (include "twiwatch.str" .Values.reasoner.port) -}}
{{- end -}}
{{ include "twiwatch.var" (list "REASONER_URL" $url) }}
{{ include "twiwatch.var" (list "REASONER_MODEL" .Values.reasoner.model) }}
{{ include "twiwatch.var" (list "REASONER_TIMEOUT_S" $c.timeoutS) }}
{{ include "twiwatch.var" (list "REASONER_CONCURRENCY" $c.concurrency) }}
{{ include "twiwatch.var" (list "REASONER_QUEUE" $c.queue) }}
{{- end -}}

{{- define "twiwatch.config.reasonerServe" -}}
{{- $r := .Values.reasoner -}}
{{ include "twiwatch.var" (list "REASONER_SERVE_HOST" "0.0.0.0") }}
{{ include "twiwatch.var" (list "REASONER_SERVE_PORT" $r.port) }}
{{ include "twiwatch.var" (list "REASONER_SERVE_MAX_INFLIGHT" $r.maxInflight) }}
{{ include "twiwatch.var" (list "REASONER_SERVE_MAX_QUEUE" $r.maxQueue) }}
{{ include "twiwatch.var" (list "REASONER_SERVE_MODEL_PATH" $r.modelPath) }}
{{ include "twiwatch.var" (list "REASONER_SERVE_ECG_TOWER" $r.ecgTowerPath) }}
{{ include "twiwatch.var" (list "REASONER_MODEL" $r.model) }}
{{- end -}}

{{- define "twiwatch.config.mllp" -}}
{{- $m := .Values.mllp -}}
{{ include "twiwatch.var" (list "MLLP_HOST" "0.0.0.0") }}
{{ include "twiwatch.var" (list "MLLP_PORT" $m.port) }}
{{ include "twiwatch.var" (list "MLLP_WEB_PORT" $m.webPort) }}
{{- end -}}

{{- define "twiwatch.config.log" -}}
{{ include "twiwatch.var" (list "LOG_LEVEL" .Values.logLevel) }}
{{- end -}}

{{- /* ---- each process's ConfigMap data: the groups its command builds ---- */ -}}
{{- define "twiwatch.data.worker" -}}
{{ include "twiwatch.config.kafka" . }}
{{ include "twiwatch.config.worker" . }}
{{ include "twiwatch.config.monitor" . }}
{{ include "twiwatch.config.encoder" . }}
{{ include "twiwatch.config.reasonerClient" . }}
{{ include "twiwatch.config.hl7" . }}
{{ include "twiwatch.config.fhir" . }}
{{ include "twiwatch.config.log" . }}
{{- end -}}
{{- define "twiwatch.data.mllp" -}}
{{ include "twiwatch.config.kafka" . }}
{{ include "twiwatch.config.mllp" . }}
{{ include "twiwatch.config.hl7" . }}
{{ include "twiwatch.config.log" . }}
{{- end -}}
{{- define "twiwatch.data.reasoner" -}}
{{ include "twiwatch.config.reasonerServe" . }}
{{ include "twiwatch.var" (list "MAX_MESSAGE_BYTES" .Values.kafka.maxMessageBytes) }}
{{ include "twiwatch.config.log" . }}
{{- end -}}

{{- /* A process's ConfigMap: include "twiwatch.configMap" (list $ "worker") */ -}}
{{- define "twiwatch.configMap" -}}
{{- $ := index . 0 }}{{ $process := index . 1 -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "twiwatch.name" $ }}-{{ $process }}
  labels:
    {{- include "twiwatch.labels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ $process }}
data:
  {{- include (printf "twiwatch.data.%s" $process) $ | nindent 2 }}
{{- end -}}
{{- /* The pod annotation that rolls a Deployment when its own ConfigMap changes. */ -}}
{{- define "twiwatch.configChecksum" -}}
checksum/config: {{ include (printf "twiwatch.data.%s" (index . 1)) (index . 0) | sha256sum }}
{{- end -}}

{{- /* A container's environment: its process's ConfigMap, the secret where the process needs it, the operator's
  extraEnv last (an `env` entry wins over the ConfigMap's value of the same name).
  include "twiwatch.env" (dict "root" $ "process" "worker" "secret" true "extraEnv" .Values.worker.extraEnv) */ -}}
{{- define "twiwatch.env" -}}
{{- $ := .root -}}
envFrom:
  - configMapRef:
      name: {{ include "twiwatch.name" $ }}-{{ .process }}
env:
  {{- if .secret }}
  - name: TWIWATCH_PATIENT_HASH_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "twiwatch.secretName" $ }}
        key: patient-hash-secret
  {{- end }}
  - name: HOME  # libraries' ~/.cache lands on the writable volume
    value: /var/lib/twiwatch
  {{- with .extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
securityContext: {{- toYaml $.Values.securityContext | nindent 2 }}
{{- end -}}
{{- /* The pod-level part every component shares: non-root, and the writable volumes a read-only root needs. */ -}}
{{- define "twiwatch.podSecurity" -}}
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
{{- define "twiwatch.stateMounts" -}}
- {name: state, mountPath: /var/lib/twiwatch}
- {name: tmp, mountPath: /tmp}
{{- end -}}
{{- define "twiwatch.stateVolumes" -}}
- {name: state, emptyDir: {}}
- {name: tmp, emptyDir: {}}
{{- end -}}
