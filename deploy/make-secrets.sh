#!/usr/bin/env bash
# Makes the secrets compose.yaml mounts (and the files deploy/README.md turns into
# Kubernetes Secrets): a CA, a server certificate for every name the compose services
# and the host dial, and an --auth file with one admin principal.
#   deploy/make-secrets.sh [DIR]        (default: deploy/secrets, ignored by git)
# Prints the admin token once: give it to clients (--token, or DAXD_TOKEN). The auth file
# holds only its SHA-256. Re-running replaces everything in DIR.
set -euo pipefail
dir="${1:-$(dirname "$0")/secrets}"
days="${DAXD_CERT_DAYS:-365}"
mkdir -p "$dir"
# The directory is private to you; the files in it are readable by the container's
# user (uid 10001), which a compose file secret mounts with the host's modes.
chmod 0700 "$dir"
cd "$dir"
umask 022

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -keyout ca.key -out ca.crt -subj "/CN=daxd CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=daxd" 2>/dev/null
# Compose service names, the Kubernetes names of deploy/k8s (namespace daxd), and the host.
sans="DNS:daxd,DNS:daxd-1,DNS:daxd-2,DNS:daxd-3,DNS:localhost,IP:127.0.0.1"
sans="$sans,DNS:daxd.daxd.svc,DNS:daxd.daxd.svc.cluster.local,DNS:*.daxd-headless.daxd.svc,DNS:*.daxd-headless.daxd.svc.cluster.local"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 0600 ca.key
chmod 0644 server.key server.crt ca.crt

token="daxd_$(openssl rand -hex 32)"
hash="$(printf '%s' "$token" | openssl dgst -sha256 -r | cut -d' ' -f1)"
cat > auth.yaml <<YAML
# daxd --auth file (docs/SECURITY.md): principals and the SHA-256 of their tokens.
principals:
  - name: admin
    role: admin
    token_sha256: $hash
YAML
chmod 0644 auth.yaml
printf '%s\n' "$token" > admin.token
chmod 0600 admin.token
echo "secrets in $(pwd): ca.crt server.crt server.key auth.yaml (admin token in admin.token)"
echo "admin token: $token"
