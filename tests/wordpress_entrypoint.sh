#!/bin/sh
# Stand-in for docker-entrypoint.sh of the official WordPress image (docker-library/
# wordpress), for tests/test_image_wordpress.py: the image cannot run here (no container
# engine), and its script is bash that assumes the image's paths. This is not that
# script; it does what that script does, in the same order, read from its source:
#   - only for a server command (apache2*, php-fpm); anything else is exec'd at once;
#   - when neither index.php nor wp-includes/version.php is in the working folder (the
#     image's /var/www/html): as root, a folder owned by root is given to the run user;
#     a warning when it holds anything but wp-content; then WordPress is copied in from
#     the source (the image's /usr/src/wordpress, here $WORDPRESS_SOURCE) with tar, owned
#     by the run user, leaving out .htaccess and each wp-content/*/*/ the folder already
#     has;
#   - when wp-config.php is missing or EMPTY (test ! -s) and any WORDPRESS_* variable is
#     set: wp-config.php is written from wp-config-docker.php (the folder's own, else the
#     source's), each "put your unique phrase here" replaced by a random string;
#   - exec "$@".
set -eu

case "${1-}" in
apache2* | php-fpm) ;;
*) exec "$@" ;;
esac

src=${WORDPRESS_SOURCE:-/usr/src/wordpress}
uid=$(id -u)
if [ "$uid" = 0 ]; then
    case "$1" in
    apache2*) user=${APACHE_RUN_USER:-www-data} group=${APACHE_RUN_GROUP:-www-data} ;;
    *) user=www-data group=www-data ;;
    esac
    user=${user#'#'} group=${group#'#'}
else
    user=$uid group=$(id -g)
fi

if [ ! -e index.php ] && [ ! -e wp-includes/version.php ]; then
    if [ "$uid" = 0 ] && [ "$(stat -c '%u:%g' .)" = 0:0 ]; then
        chown "$user:$group" .
    fi
    echo "WordPress not found in $PWD - copying now..." >&2
    if [ -n "$(find . -mindepth 1 -maxdepth 1 ! -name wp-content)" ]; then
        echo "WARNING: $PWD is not empty! (copying anyhow)" >&2
    fi
    excludes=$(mktemp)
    for content in "$src/.htaccess" "$src"/wp-content/*/*/; do
        content=${content%/}
        [ -e "$content" ] || continue
        content=${content#"$src"/}
        if [ -e "$PWD/$content" ]; then
            echo "WARNING: '$PWD/$content' exists! (not copying the WordPress version)" >&2
            echo "./$content" >>"$excludes"
        fi
    done
    keep_dir=
    [ "$uid" = 0 ] || keep_dir=--no-overwrite-dir
    tar --create --file - --directory "$src" --owner "$user" --group "$group" \
        --exclude-from "$excludes" . | tar --extract --file - $keep_dir
    rm -f "$excludes"
    echo "Complete! WordPress has been successfully copied to $PWD" >&2
fi

if [ ! -s wp-config.php ] && env | grep -q '^WORDPRESS_[A-Za-z0-9_]*='; then
    for docker_config in wp-config-docker.php "$src/wp-config-docker.php"; do
        if [ -s "$docker_config" ]; then
            echo "No 'wp-config.php' found in $PWD, but 'WORDPRESS_...' variables supplied; copying '$docker_config'" >&2
            while IFS= read -r line || [ -n "$line" ]; do
                case $line in
                *"put your unique phrase here"*)
                    phrase=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
                    line=$(printf '%s\n' "$line" | sed "s/put your unique phrase here/$phrase/g")
                    ;;
                esac
                printf '%s\n' "$line"
            done <"$docker_config" >wp-config.php
            if [ "$uid" = 0 ]; then
                chown "$user:$group" wp-config.php || true
            fi
            break
        fi
    done
fi

exec "$@"
