'use strict';
// One long-lived process per Node consumer: reads cases as JSON lines on stdin, logs in
// the way an app does with the variables cloudboot rendered, answers one JSON line each.
//   node clients.js pg|prisma-pg|prisma-mariadb|mysql2
// A case: {"id", "engine", "url_env", "env": {name: value}}. An answer: {"id", "ok",
// "user", "database", "ssl"} or {"id", "ok": false, "error"}, in the order they finish.
// NODE_EXTRA_CA_CERTS is read by Node once at start: one process per value.
const dns = require('dns');
const readline = require('readline');

// A host name the certificate does not name, for clients that check the host name only
// for names (mysql2 skips it for IP addresses): resolved like DNS would.
const STUB_HOSTS = { 'mismatch.test': '127.0.0.2' };
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  return lookup.call(this, STUB_HOSTS[host] || host, options, callback);
};

const PG_PROOF =
  'select ssl, version, current_user as u, current_database() as d ' +
  'from pg_stat_ssl where pid = pg_backend_pid()';
const MY_STATUS = "SHOW SESSION STATUS LIKE 'Ssl_version'";
const MY_WHO = 'SELECT CURRENT_USER() AS u, DATABASE() AS d';

function pgAnswer(row) {
  return { ok: true, user: row.u, database: row.d, ssl: row.ssl ? row.version : null };
}

function myAnswer(status, who) {
  return { ok: true, user: who.u.replace(/@[^@]*$/, ''), database: who.d, ssl: status || null };
}

const consumers = {
  async pg(url) {
    const pg = require('pg');
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return pgAnswer((await client.query(PG_PROOF)).rows[0]);
    } finally {
      await client.end();
    }
  },
  async 'prisma-pg'(url) {
    const { PrismaPg } = require('@prisma/adapter-pg');
    const adapter = await new PrismaPg(url).connect();
    try {
      const result = await adapter.queryRaw({ sql: PG_PROOF, args: [], argTypes: [] });
      const row = Object.fromEntries(result.columnNames.map((n, i) => [n, result.rows[0][i]]));
      return pgAnswer(row);
    } finally {
      await adapter.dispose();
    }
  },
  async 'prisma-mariadb'(url) {
    const { PrismaMariaDb } = require('@prisma/adapter-mariadb');
    const adapter = await new PrismaMariaDb(url).connect();
    try {
      const q = async (sql) => (await adapter.queryRaw({ sql, args: [], argTypes: [] })).rows;
      const status = await q(MY_STATUS);
      const who = await q(MY_WHO);
      return myAnswer(status[0][1], { u: who[0][0], d: who[0][1] });
    } finally {
      await adapter.dispose();
    }
  },
  async mysql2(url) {
    const mysql = require('mysql2/promise');
    const connection = await mysql.createConnection(url);
    try {
      const [status] = await connection.query(MY_STATUS);
      const [who] = await connection.query(MY_WHO);
      return myAnswer(status[0].Value, who[0]);
    } finally {
      await connection.end();
    }
  },
};

// Cases run a few at a time: a refusal can take a pool's whole acquire timeout. Only the
// URL varies between cases (NODE_EXTRA_CA_CERTS is per process), so nothing is shared.
const WORKERS = 6;

async function answer(consumer, request) {
  const names = Object.keys(request.env);
  if (names.some((name) => name !== request.url_env)) {
    return { ok: false, error: `harness: this client reads only ${request.url_env}: ${names}` };
  }
  try {
    return await consumer(request.env[request.url_env]);
  } catch (error) {
    const code = error && (error.code || error.errno);
    return { ok: false, error: `${error && error.name}${code ? ` ${code}` : ''}: ${error && error.message}` };
  }
}

async function main() {
  const consumer = consumers[process.argv[2]];
  if (!consumer) throw new Error(`unknown consumer ${process.argv[2]}`);
  const requests = [];
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim()) requests.push(JSON.parse(line));
  }
  const worker = async () => {
    for (let request = requests.shift(); request; request = requests.shift()) {
      const result = await answer(consumer, request);
      process.stdout.write(JSON.stringify({ id: request.id, ...result }) + '\n');
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));
}

main().catch((error) => {
  process.stderr.write(`clients.js: ${error && error.stack}\n`);
  process.exit(1);
});
