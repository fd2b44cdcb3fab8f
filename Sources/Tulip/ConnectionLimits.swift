import NIOCore

/// How many connections a ``Server`` serves at once and how long one may sit idle (a Tulip
/// addition to asyncio's `create_server`).
///
/// A plain value, checked by `createServer`/`createUnixServer`: every limit that is set must be
/// positive. `nil` means no limit.
public struct ConnectionLimits: Hashable, Sendable {
    /// At this many open connections the server stops accepting: its listening sockets stop being
    /// read, so new connections wait in the kernel's backlog; accepting resumes as soon as one
    /// closes.
    public var maxConnections: Int?
    /// The most open connections from one source; a further one is closed at once.
    ///
    /// It is closed before a protocol object is made. A source is an IPv4 address, an IPv6 /64
    /// prefix, or the user id of a unix-socket peer (`SO_PEERCRED`).
    public var maxConnectionsPerSource: Int?
    /// A connection with no bytes in either direction for this long is told
    /// (``StreamProtocol/idleTimeoutReached()``) and then closed, flushing what is queued.
    public var idleTimeout: TimeAmount?

    /// No limits: asyncio's behaviour.
    public static let unlimited = ConnectionLimits()

    /// Makes a set of limits; `nil` leaves that limit off.
    public init(maxConnections: Int? = nil, maxConnectionsPerSource: Int? = nil, idleTimeout: TimeAmount? = nil) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerSource = maxConnectionsPerSource
        self.idleTimeout = idleTimeout
    }

    /// Rejects limits that are set but not positive.
    func validate() throws {
        if let maxConnections = self.maxConnections, maxConnections < 1 {
            throw TulipError.invalidArgument("maxConnections must be at least 1, got \(maxConnections)")
        }
        if let perSource = self.maxConnectionsPerSource, perSource < 1 {
            throw TulipError.invalidArgument("maxConnectionsPerSource must be at least 1, got \(perSource)")
        }
        if let idleTimeout = self.idleTimeout, idleTimeout.nanoseconds <= 0 {
            throw TulipError.invalidArgument("idleTimeout must be positive, got \(idleTimeout.nanoseconds) ns")
        }
    }
}
