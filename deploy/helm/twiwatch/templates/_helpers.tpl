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
  - name: HOME  # libraries' ~/.cache lands on the writable volume
    value: /var/lib/twiwatch
securityContext: {{- toYaml .Values.securityContext | nindent 2 }}
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
