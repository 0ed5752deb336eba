#!/bin/sh
# Container entrypoint: maps GAMESESSION_* environment variables to
# `twistd -n --pidfile= gamesession` options, creates the server key on the
# /data volume on first start (and keeps it afterwards), then execs twistd in
# the foreground so it is the process `docker stop` signals (SIGTERM: the
# server tells every client it is shutting down and ends the sessions).
#
# Variable                      Option                 Default
# GAMESESSION_LOGIN_PORT        --login tcp:PORT       7000
# GAMESESSION_LOGIN             --login ENDPOINT       tcp:$GAMESESSION_LOGIN_PORT
# GAMESESSION_UDP_PORT          --udp                  7001
# GAMESESSION_PUBLIC_UDP_PORT   --public-udp-port      $GAMESESSION_UDP_PORT
#                               (set it to the UDP port published on the host)
# GAMESESSION_INTERFACE         --interface            0.0.0.0
# GAMESESSION_FRAMING           --framing              int16
# GAMESESSION_KEY_FILE          --key-file             /data/gamesession.key
# GAMESESSION_AUTH              --auth                 (none: guests may log in)
# GAMESESSION_LOGIN_TIMEOUT     --login-timeout        (server default, 10)
# GAMESESSION_SESSION_TIMEOUT   --session-timeout      (server default, 10)
# GAMESESSION_KEEPALIVE         --keepalive            (server default)
# GAMESESSION_MAX_SESSIONS      --max-sessions         (server default)
# GAMESESSION_DUPLICATE_LOGIN   --duplicate-login      (server default, kick)
# GAMESESSION_APP               --app                  (server default, echo)
# GAMESESSION_KNOCK             --knock                (none: no port knocking)
# GAMESESSION_CLUSTER           --cluster              (none: a single node)
# GAMESESSION_NODE_NAME         --node-name            (server default, HOSTNAME:PORT)
# GAMESESSION_ADVERTISE         --advertise            (server default)
# GAMESESSION_EXTRA_ARGS        appended as they are   (none)
#
# Arguments starting with "-" are appended to the server's options; any other
# command (e.g. `gamesession pubkey --key-file /data/gamesession.key`) is run
# instead of the server.
set -euf

case "${1:-}" in
    ""|-*) ;;
    *) exec "$@" ;;
esac

login_port="${GAMESESSION_LOGIN_PORT:-7000}"
login="${GAMESESSION_LOGIN:-tcp:$login_port}"
udp_port="${GAMESESSION_UDP_PORT:-7001}"
public_udp_port="${GAMESESSION_PUBLIC_UDP_PORT:-$udp_port}"
key_file="${GAMESESSION_KEY_FILE:-/data/gamesession.key}"

# Optional settings are passed only when set, so the server's defaults apply.
# Extra arguments come last so they win over the variables.
# shellcheck disable=SC2086
set -- --login "$login" \
    --udp "$udp_port" \
    --interface "${GAMESESSION_INTERFACE:-0.0.0.0}" \
    --public-udp-port "$public_udp_port" \
    --framing "${GAMESESSION_FRAMING:-int16}" \
    --key-file "$key_file" \
    ${GAMESESSION_AUTH:+--auth "$GAMESESSION_AUTH"} \
    ${GAMESESSION_LOGIN_TIMEOUT:+--login-timeout "$GAMESESSION_LOGIN_TIMEOUT"} \
    ${GAMESESSION_SESSION_TIMEOUT:+--session-timeout "$GAMESESSION_SESSION_TIMEOUT"} \
    ${GAMESESSION_KEEPALIVE:+--keepalive "$GAMESESSION_KEEPALIVE"} \
    ${GAMESESSION_MAX_SESSIONS:+--max-sessions "$GAMESESSION_MAX_SESSIONS"} \
    ${GAMESESSION_DUPLICATE_LOGIN:+--duplicate-login "$GAMESESSION_DUPLICATE_LOGIN"} \
    ${GAMESESSION_APP:+--app "$GAMESESSION_APP"} \
    ${GAMESESSION_KNOCK:+--knock "$GAMESESSION_KNOCK"} \
    ${GAMESESSION_CLUSTER:+--cluster "$GAMESESSION_CLUSTER"} \
    ${GAMESESSION_NODE_NAME:+--node-name "$GAMESESSION_NODE_NAME"} \
    ${GAMESESSION_ADVERTISE:+--advertise "$GAMESESSION_ADVERTISE"} \
    ${GAMESESSION_EXTRA_ARGS:-} \
    "$@"

# The server logs its public key at every start ("server public key: ..."),
# so the key appears once in the container log.
if [ ! -e "$key_file" ]; then
    echo "entrypoint: creating the server key $key_file (kept on the volume)"
    gamesession keygen --quiet --key-file "$key_file"
fi

exec twistd -n --pidfile= gamesession "$@"
