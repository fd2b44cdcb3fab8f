/// The admin socket (the `admin` object): a unix stream socket the daemon serves itself, one
/// command per line and one JSON object per reply line.
public struct AdminConfiguration: Sendable, Hashable {
    /// The socket's path (`path`); a stale socket there is replaced, any other file is an error.
    public var path: String
    /// The socket file's permission bits (`mode`); `0600` by default, so only the daemon's user
    /// (and root) can connect.
    public var mode: UInt16

    /// Makes admin settings; the default mode is the configuration file's.
    public init(path: String, mode: UInt16 = 0o600) {
        self.path = path
        self.mode = mode
    }
}

/// The Prometheus metrics endpoint (the `metrics` object): `GET /metrics` over HTTP/1.1.
public struct MetricsConfiguration: Sendable, Hashable {
    /// The address to listen on (`tcp.host`); `127.0.0.1` by default.
    public var host: String
    /// The TCP port (`tcp.port`), 0 to 65535.
    public var port: Int

    /// Makes metrics settings; the default host is the configuration file's.
    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }
}
