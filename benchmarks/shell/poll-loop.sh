#!/bin/sh
# A fixed-interval wait, then the exec of the server ("$@"): the policy of
#   wait4x, dockerize, wait-for-it (INTERVAL=1: one check, then 1 s of sleep), and
#   Bitnami's retry_while in its libpostgresql/libmysql wait functions (INTERVAL=5).
# The check is a real TLS login and "select 1" with psql (conninfo in CONNINFO,
# password in PGPASSWORD), so that "ready" means the same as for cloudboot. After the
# first failed check it says "waiting" on stderr (the benchmark starts the server then).
until psql -X -w -q -d "$CONNINFO" -c 'select 1' >/dev/null 2>&1; do
    echo waiting >&2
    sleep "$INTERVAL"
done
exec "$@"
