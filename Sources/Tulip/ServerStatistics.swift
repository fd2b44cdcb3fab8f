/// Why a ``Server`` closed a connection right after accepting it, before making its protocol
/// object; an open set of values.
public struct ConnectionRefusalReason: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case maxConnections = "max_connections"
        case perSource = "per_source"
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// The server was already at its connection limit (``ConnectionLimits/maxConnections``).
    ///
    /// Accepting pauses at the limit, so this happens only when several listening sockets (IPv4 and IPv6) accepted in the
    /// same loop iteration in which the last slot filled.
    public static let maxConnections = ConnectionRefusalReason(.maxConnections)
    /// The peer's source already had ``ConnectionLimits/maxConnectionsPerSource`` connections.
    public static let perSource = ConnectionRefusalReason(.perSource)

    /// The reason as logs and metrics label it: `max_connections` or `per_source`.
    public var description: String { self.base.rawValue }
}

/// A ``Server``'s connection counters at one moment, for an admin socket or metrics.
///
/// A value: read it with ``Server/statistics``, which takes it on the loop thread.
public struct ServerStatistics: Hashable, Sendable {
    /// Whether the server accepts connections; an open set of values.
    public struct State: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case notServing = "not_serving"
            case serving
            case pausedAtLimit = "paused_at_limit"
            case paused
            case closed
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Bound but not yet listening (`startServing: false`).
        public static let notServing = State(.notServing)
        /// Accepting connections.
        public static let serving = State(.serving)
        /// At ``ConnectionLimits/maxConnections``: new connections wait in the kernel's backlog.
        public static let pausedAtLimit = State(.pausedAtLimit)
        /// Not accepting because its owner said so (``Server/pauseAccepting()``).
        public static let paused = State(.paused)
        /// ``Server/close()`` was called.
        public static let closed = State(.closed)

        /// The state as logs and metrics name it, such as `paused_at_limit`.
        public var description: String { self.base.rawValue }
    }

    /// Whether the server accepts connections.
    public var state: State
    /// Connections accepted and not yet closed, TLS handshakes in progress included.
    public var openConnections: Int
    /// Connections accepted and served since the server was created (refused ones not counted).
    public var acceptedTotal: UInt64
    /// Connections closed at once because of ``ConnectionRefusalReason/maxConnections``.
    public var refusedMaxConnections: UInt64
    /// Connections closed at once because of ``ConnectionRefusalReason/perSource``.
    public var refusedPerSource: UInt64

    /// Makes a snapshot; the server makes them, tests and other counters' owners may too.
    public init(
        state: State,
        openConnections: Int = 0,
        acceptedTotal: UInt64 = 0,
        refusedMaxConnections: UInt64 = 0,
        refusedPerSource: UInt64 = 0
    ) {
        self.state = state
        self.openConnections = openConnections
        self.acceptedTotal = acceptedTotal
        self.refusedMaxConnections = refusedMaxConnections
        self.refusedPerSource = refusedPerSource
    }

    /// Connections refused for `reason` since the server was created.
    public func refusedTotal(_ reason: ConnectionRefusalReason) -> UInt64 {
        reason == .maxConnections ? self.refusedMaxConnections : self.refusedPerSource
    }
}
