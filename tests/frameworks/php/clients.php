<?php
// One long-lived process for Laravel (Debian's php-illuminate-database, Laravel 8):
// reads cases as JSON lines on stdin, gives the URL to Laravel's own URL parser and
// connector through the Capsule Manager, with the connection entries of Laravel's
// default config/database.php, and answers one JSON line each.
require '/usr/share/php/Illuminate/Database/autoload.php';

use Illuminate\Database\Capsule\Manager as Capsule;

const PG_PROOF = 'select ssl::text as ssl, version, current_user as u, current_database() as d '
    . 'from pg_stat_ssl where pid = pg_backend_pid()';

function laravel_config(string $engine, string $url): array
{
    // As Laravel's config/database.php has them, with 'url' => env('DB_URL').
    if ($engine === 'postgres') {
        return ['driver' => 'pgsql', 'url' => $url, 'host' => '127.0.0.1', 'port' => '5432',
            'database' => 'laravel', 'username' => 'root', 'password' => '', 'charset' => 'utf8',
            'prefix' => '', 'prefix_indexes' => true, 'search_path' => 'public',
            'sslmode' => 'prefer'];
    }
    return ['driver' => 'mysql', 'url' => $url, 'host' => '127.0.0.1', 'port' => '3306',
        'database' => 'laravel', 'username' => 'root', 'password' => '', 'unix_socket' => '',
        'charset' => 'utf8mb4', 'collation' => 'utf8mb4_unicode_ci', 'prefix' => '',
        'prefix_indexes' => true, 'strict' => true, 'engine' => null, 'options' => []];
}

function proof(string $engine, $connection): array
{
    if ($engine === 'postgres') {
        $row = $connection->selectOne(PG_PROOF);
        return ['ok' => true, 'user' => $row->u, 'database' => $row->d,
            'ssl' => $row->ssl === 'true' ? $row->version : null];
    }
    $status = $connection->selectOne("SHOW SESSION STATUS LIKE 'Ssl_version'")->Value;
    $who = $connection->selectOne('SELECT CURRENT_USER() AS u, DATABASE() AS d');
    return ['ok' => true, 'user' => preg_replace('/@[^@]*$/', '', $who->u),
        'database' => $who->d, 'ssl' => $status === '' ? null : $status];
}

$count = 0;
while (($line = fgets(STDIN)) !== false) {
    if (trim($line) === '') {
        continue;
    }
    $request = json_decode($line, true);
    $count++;
    $capsule = new Capsule();
    $name = "case$count";
    $capsule->addConnection(laravel_config($request['engine'], $request['env'][$request['url_env']]), $name);
    try {
        $answer = proof($request['engine'], $capsule->getConnection($name));
    } catch (Throwable $e) {
        $answer = ['ok' => false, 'error' => get_class($e) . ': ' . $e->getMessage()];
    }
    $capsule->getDatabaseManager()->purge($name);
    echo json_encode(['id' => $request['id']] + $answer, JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}
