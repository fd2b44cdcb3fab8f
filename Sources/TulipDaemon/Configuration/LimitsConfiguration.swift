/// A listener's connection limits (the `limits` object), on `tcp` and `unix` listeners.
///
/// The top-level `limits` object gives every stream listener its defaults; a listener's own
/// `limits` overrides them key by key (``merging(over:)``). A `nil` limit is no limit.
public struct LimitsConfiguration: Sendable, Hashable {
    /// At this many open connections the listener stops accepting until one closes
    /// (`max_connections`).
    public var maxConnections: Int?
    /// At this many open connections from one source (IPv4 address, IPv6 /64, unix peer uid), a
    /// further one is closed at once (`max_connections_per_source`).
    public var maxConnectionsPerSource: Int?
    /// A connection with no bytes in either direction for this long is closed
    /// (`idle_timeout_seconds`, fractions allowed).
    public var idleTimeout: Duration?

    /// Makes limits; `nil` leaves a limit off.
    public init(maxConnections: Int? = nil, maxConnectionsPerSource: Int? = nil, idleTimeout: Duration? = nil) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerSource = maxConnectionsPerSource
        self.idleTimeout = idleTimeout
    }

    /// Whether no limit is set.
    public var isUnlimited: Bool {
        self.maxConnections == nil && self.maxConnectionsPerSource == nil && self.idleTimeout == nil
    }

    /// These limits, with every key they leave unset taken from `defaults`.
    public func merging(over defaults: LimitsConfiguration) -> LimitsConfiguration {
        LimitsConfiguration(
            maxConnections: self.maxConnections ?? defaults.maxConnections,
            maxConnectionsPerSource: self.maxConnectionsPerSource ?? defaults.maxConnectionsPerSource,
            idleTimeout: self.idleTimeout ?? defaults.idleTimeout
        )
    }
}
