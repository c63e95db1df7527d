{{/* The chart's names and labels, in one place. */}}

{{- define "tokengate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* fullname: the release name, prefixed with the chart name unless it holds it. */}}
{{- define "tokengate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tokengate.injector" -}}
{{- printf "%s-injector" (include "tokengate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokengate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tokengate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tokengate.injectorSelector" -}}
app.kubernetes.io/name: {{ include "tokengate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end -}}

{{- define "tokengate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The webhook's serving certificate is for its Service's DNS names. */}}
{{- define "tokengate.injectorDNS" -}}
{{- $svc := include "tokengate.injector" . -}}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) | toJson -}}
{{- end -}}

{{- define "tokengate.tlsSecret" -}}
{{- printf "%s-tls" (include "tokengate.injector" .) -}}
{{- end -}}

{{/*
generatedTLS returns {ca, crt, key}, base64: the Secret's current data when it exists
(so that upgrades keep the CA), or a new CA and a certificate signed by it. Helm
memoises nothing across templates, so the result is cached in .Values for the webhook
configuration's caBundle to use the same CA.
*/}}
{{- define "tokengate.generatedTLS" -}}
{{- if not (hasKey .Values "__generatedTLS") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "tokengate.tlsSecret" .) -}}
{{- if and $existing (index $existing.data "ca.crt") -}}
{{- $_ := set .Values "__generatedTLS" (dict "ca" (index $existing.data "ca.crt") "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key")) -}}
{{- else -}}
{{- $days := int .Values.certificates.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "tokengate.injector" .)) $days -}}
{{- $svc := include "tokengate.injector" . -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc .Release.Namespace) nil (include "tokengate.injectorDNS" . | fromJsonArray) $days $ca -}}
{{- $_ := set .Values "__generatedTLS" (dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- get .Values "__generatedTLS" | toJson -}}
{{- end -}}

{{- define "tokengate.generatedCA" -}}
{{- (include "tokengate.generatedTLS" . | fromJson).ca -}}
{{- end -}}

{{/*
ownCA is "true" when cert-manager issues the webhook's certificate and no issuer is
given: the chart then makes a CA for it (injector-selfsigned-issuer.yaml,
injector-ca-certificate.yaml, injector-ca-issuer.yaml). Empty otherwise, so that `if`
reads it.
*/}}
{{- define "tokengate.ownCA" -}}
{{- if and .Values.certificates.certManager.enabled (not .Values.certificates.certManager.issuerRef) -}}
true
{{- end -}}
{{- end -}}

{{/* The name of that CA: its Certificate, its Secret and the Issuer that signs with it. */}}
{{- define "tokengate.injectorCA" -}}
{{- printf "%s-ca" (include "tokengate.injector" .) -}}
{{- end -}}

{{/* The self-signed Issuer that signs that CA. */}}
{{- define "tokengate.injectorSelfSigned" -}}
{{- printf "%s-selfsigned" (include "tokengate.injector" .) -}}
{{- end -}}

{{/* The decision service for gateways (authz.enabled): `tokengate authz`. */}}
{{- define "tokengate.authz" -}}
{{- printf "%s-authz" (include "tokengate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokengate.authzSelector" -}}
app.kubernetes.io/name: {{ include "tokengate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: authz
{{- end -}}

{{/* The ConfigMap holding the decision service's configuration file. */}}
{{- define "tokengate.authzConfigMap" -}}
{{- .Values.authz.existingConfigMap | default (include "tokengate.authz" .) -}}
{{- end -}}

{{/*
authzConfig is the decision service's configuration file: authz.config, with the
addresses the chart's ports say (authz.listen and admin), which the schema keeps the
values from setting themselves.
*/}}
{{- define "tokengate.authzConfig" -}}
{{- $cfg := deepCopy .Values.authz.config -}}
{{- $authz := get $cfg "authz" | default dict -}}
{{- $_ := set $authz "listen" (printf ":%d" (int .Values.authz.port)) -}}
{{- $_ = set $cfg "authz" $authz -}}
{{- $_ = set $cfg "admin" (printf ":%d" (int .Values.authz.adminPort)) -}}
{{- toYaml $cfg -}}
{{- end -}}
