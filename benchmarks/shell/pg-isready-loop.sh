#!/bin/sh
# The most common hand-written entrypoint wait, as the tutorials write it:
#   until pg_isready -h "$HOST" -p "$PORT"; do sleep 1; done; exec "$@"
# pg_isready's defaults: libpq's sslmode=prefer, no user or password, connect_timeout 3.
# It asks the server's state with a startup packet and never logs in; it prints
# "HOST:PORT - no response" (or "- rejecting connections") each time it is not satisfied.
#   pg-isready-loop.sh HOST PORT CMD [ARG...]
host=$1 port=$2
shift 2
until pg_isready -h "$host" -p "$port"; do sleep 1; done
exec "$@"
