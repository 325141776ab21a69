#!/usr/bin/env bash
# examples/curl.sh: the HTTP API with nothing but curl.
#
#   examples/curl.sh MAGNET [PATH]
#
# Adds a torrent by magnet link, waits for its info, streams the first MiB of a file with a
# Range request, then watches /events for a few seconds while it reads the rest of that range.
# CONFLUENCE (default http://localhost:8080) is the daemon; CONFLUENCE_AUTH_TOKEN, if set, is
# sent as a bearer token. Every step has a time limit (WAIT seconds, default 60).
set -euo pipefail

MAGNET=${1:?usage: curl.sh MAGNET [PATH]}
FILE=${2:-}
BASE=${CONFLUENCE:-http://localhost:8080}
WAIT=${WAIT:-60}
AUTH=()
[[ -n ${CONFLUENCE_AUTH_TOKEN:-} ]] && AUTH=(-H "Authorization: Bearer $CONFLUENCE_AUTH_TOKEN")

# 1. Add by magnet. The magnet goes in the query string, so it must be percent-encoded:
#    curl does that for us with -G --data-urlencode.
q=(-G --data-urlencode "magnet=$MAGNET")
echo "== adding the torrent and waiting for its info (nowait=1: 202 until it is there)"
deadline=$((SECONDS + WAIT))
until [[ $(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "${q[@]}" \
  --data-urlencode nowait=1 "$BASE/info") == 200 ]]; do
  ((SECONDS < deadline)) || { echo "no info within $WAIT s" >&2; exit 1; }
  sleep 0.5
done

# 2. The info is there: the file list, as JSON (the .torrent's info is base64 in "info").
json=$(curl -sf --max-time "$WAIT" "${AUTH[@]}" -H 'Accept: application/json' "${q[@]}" \
  "$BASE/metainfo")
echo "${json:0:300}..."

# 3. Watch /events: a websocket of {"PieceChanged":N} text frames. curl 7.x speaks no websocket,
#    but the upgrade is a plain HTTP request and server frames are unmasked, so the JSON is in
#    the raw bytes. It runs in the background for 5 s while step 4 reads, so pieces change.
echo "== /events (5 s, first 5 frames)"
key=$(head -c 16 /dev/urandom | base64)
curl -s -N --http1.1 --max-time 5 "${AUTH[@]}" "${q[@]}" \
  -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
  -H 'Sec-WebSocket-Version: 13' -H "Sec-WebSocket-Key: $key" \
  "$BASE/events" -o - | grep -ao '{"PieceChanged":[0-9]*}' | head -n 5 &
watcher=$!
sleep 0.5

# 4. Stream the first MiB of FILE (or of the whole torrent): a 206 with Content-Range (the
#    headers go to stderr), the bytes into sha256sum.
echo "== GET Range: bytes=0-1048575 of ${FILE:-the whole torrent}" >&2
path=()
[[ -n $FILE ]] && path=(--data-urlencode "path=$FILE")
curl -sf --max-time "$WAIT" "${AUTH[@]}" "${q[@]}" "${path[@]}" -r 0-1048575 \
  -D /dev/stderr "$BASE/data" | sha256sum
wait "$watcher" || true
