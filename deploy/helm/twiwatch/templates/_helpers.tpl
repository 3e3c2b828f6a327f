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
{{- fail "values: `config` is gone; settings are grouped per process (kafka, hl7, fhir, worker, encoder, reasoner.client, reasoner, mllp, fhirSink, dashboard; see values.yaml); for anything else use worker.extraEnv / mllp.extraEnv / reasoner.extraEnv / fhirSink.extraEnv / dashboard.extraEnv" }}
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
{{ include "twiwatch.var" (list "TOPIC_ANALYSIS" $k.topics.analysis) }}
{{ include "twiwatch.var" (list "TOPIC_PRIOR_SUMMARIES" $k.topics.priorSummaries) }}
{{ include "twiwatch.var" (list "TOPIC_ADJUDICATIONS" $k.topics.adjudications) }}
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
{{ include "twiwatch.var" (list "MONITOR_PRIOR_MAX_AGE_S" $m.priorMaxAgeS) }}
{{ include "twiwatch.var" (list "MONITOR_PRIOR_LIMB_LEADS" $m.priorLimbLeads) }}
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

{{- /* `twiwatch fhir-sink`. Credentials never land here: the bearer token and the SMART client id come from the
  operator's Secret as env entries, the private key and the CA bundle as mounted files (twiwatch.fhirSink.* below). */ -}}
{{- define "twiwatch.config.fhirSink" -}}
{{- $f := .Values.fhirSink -}}
{{ include "twiwatch.var" (list "FHIR_SINK_URL" $f.url) }}
{{ include "twiwatch.var" (list "FHIR_SINK_GROUP_ID" $f.groupId) }}
{{ include "twiwatch.var" (list "TOPIC_DELIVERY_DEADLETTER" $f.deadletterTopic) }}
{{ include "twiwatch.var" (list "FHIR_SINK_AUTH" $f.auth.type) }}
{{- if eq $f.auth.type "smart" }}
{{ include "twiwatch.var" (list "FHIR_SINK_SMART_KEY_FILE" (printf "%s/%s" (include "twiwatch.fhirSink.keyDir" .) $f.auth.privateKeyKey)) }}
{{ include "twiwatch.var" (list "FHIR_SINK_SMART_KEY_ID" $f.auth.smart.keyId) }}
{{ include "twiwatch.var" (list "FHIR_SINK_SMART_ALG" $f.auth.smart.alg) }}
{{ include "twiwatch.var" (list "FHIR_SINK_SMART_SCOPE" $f.auth.smart.scope) }}
{{ include "twiwatch.var" (list "FHIR_SINK_SMART_TOKEN_URL" $f.auth.smart.tokenUrl) }}
{{- end }}
{{- if or $f.caBundle.configMap $f.caBundle.secret }}
{{ include "twiwatch.var" (list "FHIR_SINK_CA_FILE" (printf "%s/%s" (include "twiwatch.fhirSink.caDir" .) $f.caBundle.key)) }}
{{- end }}
{{ include "twiwatch.var" (list "FHIR_SINK_TLS_VERIFY" $f.tlsVerify) }}
{{ include "twiwatch.var" (list "FHIR_SINK_TIMEOUT_S" $f.timeoutS) }}
{{ include "twiwatch.var" (list "FHIR_SINK_CONCURRENCY" $f.concurrency) }}
{{ include "twiwatch.var" (list "FHIR_SINK_REPORTS_PER_TRANSACTION" $f.reportsPerTransaction) }}
{{ include "twiwatch.var" (list "FHIR_SINK_CREATE_PATIENTS" $f.createPatients) }}
{{ include "twiwatch.var" (list "FHIR_SINK_RETRY_INITIAL_S" $f.retryInitialS) }}
{{ include "twiwatch.var" (list "FHIR_SINK_RETRY_MAX_S" $f.retryMaxS) }}
{{ include "twiwatch.var" (list "FHIR_SINK_RETRY_AFTER_MAX_S" $f.retryAfterMaxS) }}
{{ include "twiwatch.var" (list "FHIR_SINK_WEB_PORT" $f.webPort) }}
{{ include "twiwatch.var" (list "FHIR_SINK_WEB_BIND" "0.0.0.0") }}
{{ include "twiwatch.var" (list "FHIR_SINK_SESSION_TIMEOUT_S" $f.sessionTimeoutS) }}
{{- end -}}
{{- define "twiwatch.fhirSink.keyDir" -}}/etc/twiwatch/fhir-sink/smart{{- end -}}
{{- define "twiwatch.fhirSink.caDir" -}}/etc/twiwatch/fhir-sink/ca{{- end -}}

{{- /* `twiwatch dashboard`. Its database URL (it may hold a password) and its session key come from Secrets. */ -}}
{{- define "twiwatch.config.dashboard" -}}
{{- $d := .Values.dashboard -}}
{{ include "twiwatch.var" (list "DASHBOARD_HOST" "0.0.0.0") }}
{{ include "twiwatch.var" (list "DASHBOARD_PORT" $d.port) }}
{{ include "twiwatch.var" (list "DASHBOARD_DATA_DIR" $d.dataDir) }}
{{ include "twiwatch.var" (list "DASHBOARD_GROUP" $d.group) }}
{{ include "twiwatch.var" (list "DASHBOARD_IDLE_TIMEOUT_S" $d.idleTimeoutS) }}
{{ include "twiwatch.var" (list "DASHBOARD_COOKIE_SECURE" $d.cookieSecure) }}
{{ include "twiwatch.var" (list "DASHBOARD_TIMEZONE" $d.timezone) }}
{{ include "twiwatch.var" (list "DASHBOARD_LOGIN_ATTEMPTS" $d.loginAttempts) }}
{{ include "twiwatch.var" (list "DASHBOARD_LOGIN_WINDOW_S" $d.loginWindowS) }}
{{- end -}}
{{- /* SQLite (no database Secret) lives on one PersistentVolumeClaim: one writer, so one replica. */ -}}
{{- define "twiwatch.dashboard.sqlite" -}}{{ if not .Values.dashboard.database.existingSecret }}true{{ end }}{{- end -}}
{{- define "twiwatch.dashboard.sessionSecretName" -}}
{{- .Values.dashboard.sessionSecret.existingSecret | default (printf "%s-dashboard" (include "twiwatch.name" .)) -}}
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

{{- define "twiwatch.data.fhir-sink" -}}
{{ include "twiwatch.config.kafka" . }}
{{ include "twiwatch.config.fhirSink" . }}
{{ include "twiwatch.config.fhir" . }}
{{ include "twiwatch.config.log" . }}
{{- end -}}
{{- define "twiwatch.data.dashboard" -}}
{{ include "twiwatch.config.kafka" . }}
{{ include "twiwatch.config.dashboard" . }}
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
  extraEnv last (an `env` entry wins over the ConfigMap's value of the same name); `secretEnv`: a process's own
  entries read from Secrets (credentials that never go into a ConfigMap).
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
  {{- with .secretEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
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
