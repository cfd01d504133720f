# The stand-in release's server (bin/app start): reads DATABASE_URL the way Ecto's
# Ecto.Repo.Supervisor.parse_url/1 does, then answers every HTTP request on
# 127.0.0.1:$PORT with what it read, one "key=value" per line. The password is never
# shown: only its SHA-256, which the test compares with the one it set.
defmodule StandIn do
  # Ecto 3.14+: user-info split at the first ":" only; every part, and every query
  # value after form decoding, goes through URI.decode; ssl=true becomes a boolean.
  def parse_url(url) do
    info = URI.parse(url)
    if is_nil(info.host), do: raise("host is not present")

    if is_nil(info.path) or not (info.path =~ ~r"^/([^/])+$"),
      do: raise("path should be a database name")

    [username, password] = String.split(info.userinfo, ":", parts: 2)
    "/" <> database = info.path

    query =
      for {key, value} <- URI.query_decoder(info.query || ""), into: %{} do
        case {key, value} do
          {"ssl", "true"} -> {key, true}
          {"ssl", "false"} -> {key, false}
          _ -> {key, URI.decode(value)}
        end
      end

    %{
      scheme: info.scheme,
      hostname: URI.decode(info.host),
      port: info.port,
      username: URI.decode(username),
      password: URI.decode(password),
      database: URI.decode(database),
      # Ecto before 3.14 split at every ":" and kept two fields: the same result only
      # when the user-info holds exactly one raw ":".
      before_3_14_agrees: length(String.split(info.userinfo, ":")) == 2,
      query: query
    }
  end

  def page(url) do
    parsed = parse_url(url)
    digest = :crypto.hash(:sha256, parsed.password) |> Base.encode16(case: :lower)

    lines = [
      "pid=#{System.pid()}",
      "scheme=#{parsed.scheme}",
      "hostname=#{parsed.hostname}",
      "port=#{parsed.port}",
      "username=#{parsed.username}",
      "database=#{parsed.database}",
      "password_sha256=#{digest}",
      "before_3_14_agrees=#{parsed.before_3_14_agrees}",
      "query_keys=#{parsed.query |> Map.keys() |> Enum.sort() |> Enum.join(",")}",
      "ssl=#{inspect(Map.get(parsed.query, "ssl"))}"
    ]

    Enum.join(lines, "\n") <> "\n"
  end

  def serve(listener, body) do
    {:ok, socket} = :gen_tcp.accept(listener)
    skip_request(socket)

    :gen_tcp.send(socket, [
      "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n",
      "content-length: #{byte_size(body)}\r\nconnection: close\r\n\r\n",
      body
    ])

    :gen_tcp.close(socket)
    serve(listener, body)
  end

  defp skip_request(socket) do
    case :gen_tcp.recv(socket, 0, 5000) do
      {:ok, :http_eoh} -> :ok
      {:ok, _line_or_header} -> skip_request(socket)
      {:error, _} -> :ok
    end
  end
end

# Parsed once, before listening: a URL Ecto cannot read stops the server at start, as
# it would stop a real release.
body = StandIn.page(System.fetch_env!("DATABASE_URL"))
port = String.to_integer(System.fetch_env!("PORT"))

{:ok, listener} =
  :gen_tcp.listen(port, [:binary, packet: :http_bin, active: false, reuseaddr: true, ip: {127, 0, 0, 1}])

IO.puts("stand-in release listening on 127.0.0.1:#{port}")
StandIn.serve(listener, body)
