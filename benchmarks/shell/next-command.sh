#!/bin/sh
# The command every waiter of the time-to-ready figure runs once it is satisfied, in
# place of the server: it records the moment it started (date +%s.%N, the exec moment),
# then tries ONE verified-TLS login and "select 1" at once and records whether it worked.
# A waiter that let it run while PostgreSQL still said "starting up" is false-ready.
#   next-command.sh RESULT CONNINFO   (CONNINFO names the password file; no password here)
date +%s.%N > "$1.tmp"
if psql -X -w -q -d "$2" -c 'select 1' >/dev/null 2>"$1.login-error"; then
    echo ok >> "$1.tmp"
else
    echo failed >> "$1.tmp"
fi
mv "$1.tmp" "$1"
