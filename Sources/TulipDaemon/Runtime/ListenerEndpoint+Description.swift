extension ListenerEndpoint {
    /// The address as logs and errors show it: `127.0.0.1:7007`, `[::1]:7007`, `*:7007`, a unix
    /// path, or `read -> write` for pipes.
    var addressDescription: String {
        switch self {
        case .tcp(let tcp): Self.describe(hosts: tcp.hosts, port: tcp.port)
        case .unix(let unix): unix.path
        case .udp(let udp): Self.describe(hosts: udp.hosts.isEmpty ? ["0.0.0.0"] : udp.hosts, port: udp.port)
        case .unixDatagram(let unix): unix.path
        case .pipe(let pipe): "\(pipe.readPath ?? "-") -> \(pipe.writePath ?? "-")"
        }
    }

    /// `host:port` for each host (`[v6]:port`), comma-separated; `*:port` without hosts.
    static func describe(hosts: [String], port: Int) -> String {
        guard !hosts.isEmpty else { return "*:\(port)" }
        return hosts.map { $0.contains(":") ? "[\($0)]:\(port)" : "\($0):\(port)" }.joined(separator: ", ")
    }
}
