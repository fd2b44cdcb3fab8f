/// Where a listener accepts traffic: one socket address or pipe pair, with its socket options.
///
/// The configuration file gives exactly one of the keys `tcp`, `unix`, `udp`, `unix_datagram` or `pipe`
/// per listener; each case holds that object's settings with defaults filled in.
public enum ListenerEndpoint: Sendable, Hashable {
    /// A TCP server.
    case tcp(TCPEndpoint)
    /// A unix-domain stream server.
    case unix(UnixEndpoint)
    /// A UDP endpoint.
    case udp(UDPEndpoint)
    /// A unix-domain datagram endpoint.
    case unixDatagram(UnixDatagramEndpoint)
    /// A pair of named pipes.
    case pipe(PipeEndpoint)

    /// The endpoint's kind.
    public var kind: ListenerKind {
        switch self {
        case .tcp: .tcp
        case .unix: .unix
        case .udp: .udp
        case .unixDatagram: .unixDatagram
        case .pipe: .pipe
        }
    }
}

// MARK: - Inet endpoints

/// A TCP server's address and socket options (the `tcp` object).
public struct TCPEndpoint: Sendable, Hashable {
    /// The addresses or host names to bind (`host`); empty means every interface, one socket per
    /// address family.
    public var hosts: [String]
    /// The port (`port`), 0 to 65535; 0 lets the kernel choose.
    public var port: Int
    /// The accept queue length (`backlog`), 1 to 65535; 100 by default, as asyncio.
    public var backlog: Int
    /// Whether to set `SO_REUSEADDR` (`reuse_address`); `true` by default, as asyncio on Unix.
    public var reuseAddress: Bool
    /// Whether to set `SO_REUSEPORT` (`reuse_port`), so several daemons can share the port.
    public var reusePort: Bool
    /// Whether to set `SO_KEEPALIVE` on accepted connections (`keep_alive`).
    public var keepAlive: Bool

    /// Makes a TCP endpoint; the defaults are the configuration file's.
    public init(
        hosts: [String] = [],
        port: Int,
        backlog: Int = 100,
        reuseAddress: Bool = true,
        reusePort: Bool = false,
        keepAlive: Bool = false
    ) {
        self.hosts = hosts
        self.port = port
        self.backlog = backlog
        self.reuseAddress = reuseAddress
        self.reusePort = reusePort
        self.keepAlive = keepAlive
    }
}

/// A UDP endpoint's address and socket options (the `udp` object).
public struct UDPEndpoint: Sendable, Hashable {
    /// The addresses or host names to bind (`host`); empty means every interface.
    public var hosts: [String]
    /// The port (`port`), 0 to 65535; 0 lets the kernel choose.
    public var port: Int
    /// Whether to set `SO_REUSEPORT` (`reuse_port`).
    public var reusePort: Bool
    /// Whether to set `SO_BROADCAST` (`allow_broadcast`).
    public var allowBroadcast: Bool

    /// Makes a UDP endpoint; the defaults are the configuration file's.
    public init(hosts: [String] = [], port: Int, reusePort: Bool = false, allowBroadcast: Bool = false) {
        self.hosts = hosts
        self.port = port
        self.reusePort = reusePort
        self.allowBroadcast = allowBroadcast
    }
}

// MARK: - Unix-domain endpoints

/// A unix-domain stream server's socket file (the `unix` object).
public struct UnixEndpoint: Sendable, Hashable {
    /// The socket's path (`path`), at most 107 bytes so it fits `sockaddr_un`.
    public var path: String
    /// The permission bits to give the socket file (`mode`), at most `0o777`; `nil` leaves what the
    /// umask gives.
    public var mode: UInt16?
    /// The accept queue length (`backlog`), 1 to 65535; 100 by default.
    public var backlog: Int

    /// Makes a unix-domain stream endpoint; the defaults are the configuration file's.
    public init(path: String, mode: UInt16? = nil, backlog: Int = 100) {
        self.path = path
        self.mode = mode
        self.backlog = backlog
    }
}

/// A unix-domain datagram socket file (the `unix_datagram` object).
public struct UnixDatagramEndpoint: Sendable, Hashable {
    /// The socket's path (`path`), at most 107 bytes so it fits `sockaddr_un`.
    public var path: String
    /// The permission bits to give the socket file (`mode`), at most `0o777`; `nil` leaves what the
    /// umask gives.
    public var mode: UInt16?

    /// Makes a unix-domain datagram endpoint.
    public init(path: String, mode: UInt16? = nil) {
        self.path = path
        self.mode = mode
    }
}

// MARK: - Pipes

/// A pair of named pipes (the `pipe` object); at least one of the two paths is set.
public struct PipeEndpoint: Sendable, Hashable {
    /// The FIFO the daemon reads from (`read`), if any.
    public var readPath: String?
    /// The FIFO the daemon writes to (`write`), if any.
    public var writePath: String?
    /// The FIFOs' permission bits (`mode`), at most `0o777`; `0o600` by default.
    public var mode: UInt16

    /// Makes a pipe endpoint; the default mode is the configuration file's.
    public init(readPath: String? = nil, writePath: String? = nil, mode: UInt16 = 0o600) {
        self.readPath = readPath
        self.writePath = writePath
        self.mode = mode
    }
}
