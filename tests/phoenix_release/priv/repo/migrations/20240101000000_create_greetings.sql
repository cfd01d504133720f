-- The stand-in release's only migration. The run is recorded first, outside the
-- migration's transaction, so that a second run would leave a second row even though
-- its CREATE TABLE fails; together with the server's TLS status of the session.
CREATE TABLE IF NOT EXISTS migration_runs (
    id bigserial PRIMARY KEY,
    ran_at timestamptz NOT NULL DEFAULT now(),
    ran_as text NOT NULL DEFAULT current_user,
    ssl boolean NOT NULL,
    ssl_version text
);
INSERT INTO migration_runs (ssl, ssl_version)
    SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid();

-- Not idempotent on purpose: it succeeds only once.
BEGIN;
CREATE TABLE greetings (
    id bigserial PRIMARY KEY,
    body text NOT NULL
);
INSERT INTO greetings (body) VALUES ('hello from App.Release.migrate');
COMMIT;
