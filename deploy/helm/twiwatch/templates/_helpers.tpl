{{- define "twiwatch.name" -}}{{ .Release.Name }}-twiwatch{{- end -}}
{{- define "twiwatch.labels" -}}
app.kubernetes.io/name: twiwatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
twiwatch/research-only: "true"
{{- end -}}
{{- define "twiwatch.secretName" -}}{{ .Values.existingSecret | default (printf "%s-secret" (include "twiwatch.name" .)) }}{{- end -}}
{{- define "twiwatch.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "twiwatch.name" . }}-config
env:
  - name: TWIWATCH_PATIENT_HASH_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "twiwatch.secretName" . }}
        key: patient-hash-secret
{{- end -}}
