#!/bin/sh
# A fixed-interval wait on a real login, then the exec of the server ("$@"): the policy
# of wait4x and dockerize (INTERVAL=1: one check, then 1 s of sleep), and of Bitnami's
# retry_while in its libpostgresql/libmysql wait functions (INTERVAL=5). The check is a
# verified-TLS login and "select 1" with psql (conninfo in CONNINFO, which names the
# password file), so that "ready" means the same as for cloudboot. After each failed
# check it says "waiting" on stderr.
until psql -X -w -q -d "$CONNINFO" -c 'select 1' >/dev/null 2>&1; do
    echo waiting >&2
    sleep "$INTERVAL"
done
exec "$@"
