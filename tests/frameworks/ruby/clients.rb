# One long-lived process for ActiveRecord (Debian's ruby-activerecord, ruby-pg,
# ruby-mysql2): reads cases as JSON lines on stdin, connects with the URL the way Rails
# reads DATABASE_URL (establish_connection with the URL), answers one JSON line each.
require 'json'
require 'active_record'

$stdout.sync = true
PG_PROOF = 'select ssl, version, current_user, current_database() ' \
           'from pg_stat_ssl where pid = pg_backend_pid()'.freeze

def proof(engine, connection)
  if engine == 'postgres'
    ssl, version, user, database = connection.select_rows(PG_PROOF).first
    { ok: true, user: user, database: database, ssl: [true, 't', 'true'].include?(ssl) ? version : nil }
  else
    status = connection.select_rows("SHOW SESSION STATUS LIKE 'Ssl_version'").first[1]
    user, database = connection.select_rows('SELECT CURRENT_USER(), DATABASE()').first
    { ok: true, user: user.sub(/@[^@]*\z/, ''), database: database,
      ssl: status.to_s.empty? ? nil : status }
  end
end

$stdin.each_line do |line|
  next if line.strip.empty?
  request = JSON.parse(line)
  saved = request['env'].to_h { |name, _| [name, ENV[name]] }
  request['env'].each { |name, value| ENV[name] = value }
  begin
    ActiveRecord::Base.establish_connection(ENV.fetch(request['url_env']))
    answer = proof(request['engine'], ActiveRecord::Base.connection)
  rescue StandardError => e
    answer = { ok: false, error: "#{e.class}: #{e.message}" }
  ensure
    begin
      ActiveRecord::Base.remove_connection
    rescue StandardError
      nil
    end
    saved.each { |name, value| value.nil? ? ENV.delete(name) : ENV[name] = value }
  end
  puts JSON.generate({ id: request['id'] }.merge(answer))
end
