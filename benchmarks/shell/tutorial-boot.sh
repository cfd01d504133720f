#!/bin/sh
# The tutorials' boot path (../shared/context/), as one script run with /bin/sh:
# the Phoenix notes' create-profile.sh (five jq calls over DB_SECRET, then
# application.profile, .pg_service.conf and .pgpass written with echo), the
# WordPress tutorial's startup.sh (sed on wp-config.php; here a copy, named by
# WP_CONFIG_PATH), then runtime-entry.sh's ". application.profile" and the exec of
# the server ("$@"). Nothing waits for the database and nothing is quoted.
DB_HOST="$(printenv DB_SECRET | jq -r '.host')"
DB_PORT="$(printenv DB_SECRET | jq -r '.port')"
DB_NAME="$(printenv DB_SECRET | jq -r '.dbname')"
DB_USER="$(printenv DB_SECRET | jq -r '.username')"
DB_PASSWORD="$(printenv DB_SECRET | jq -r '.password')"
echo "export DATABASE_URL=\"ecto://${DB_USER}:${DB_PASSWORD}:${DB_PORT}@${DB_HOST}/${DB_NAME}\"" > ~/application.profile
echo "[app]" > ~/.pg_service.conf \
&& echo "host=${DB_HOST}" >> ~/.pg_service.conf \
&& echo "port=${DB_PORT}" >> ~/.pg_service.conf \
&& echo "dbname=${DB_NAME}" >> ~/.pg_service.conf \
&& echo "user=${DB_USER}" >> ~/.pg_service.conf
echo "${DB_HOST}:${DB_PORT}:${DB_NAME}:${DB_USER}:${DB_PASSWORD}" > ~/.pgpass \
&& chmod 600 ~/.pgpass
sed -i "s/define( 'DB_COLLATE', '' );/define( 'DB_COLLATE', 'utf8mb4_bin' );/g" "$WP_CONFIG_PATH"
. ~/application.profile
exec "$@"
