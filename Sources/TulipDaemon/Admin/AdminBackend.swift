/// What the admin socket and the metrics endpoint ask of the daemon.
///
/// Every requirement is called on the daemon loop's thread; the values returned are snapshots.
protocol AdminBackend: AnyObject {
    /// The daemon and every listener.
    func adminStatus() -> DaemonStatus
    /// The open connections of `listener`, or of every listener when nil.
    /// - Throws: ``AdminError`` when no listener has that name.
    func adminConnections(listener: String?) throws(AdminError) -> [ConnectionStatus]
    /// Re-reads the configuration, as SIGHUP does.
    /// - Throws: ``AdminError`` with the reasons when the new configuration was not applied.
    func adminReload() async throws(AdminError) -> ReloadOutcome
    /// Stops accepting on `listener` and asks its connections to finish.
    func adminDrain(listener: String) throws(AdminError)
    /// Accepts again on a drained `listener`.
    func adminResume(listener: String) throws(AdminError)
}

/// A snapshot of the daemon for `status`.
struct DaemonStatus: Sendable {
    var pid: Int32
    var uptimeSeconds: Double
    var configGeneration: Int
    /// How late the loop's last periodic tick ran: a busy or blocked loop shows here.
    var loopLagSeconds: Double
    /// Reloads that applied a new configuration.
    var reloadsTotal: UInt64
    /// Reloads that kept the old configuration.
    var reloadFailuresTotal: UInt64 = 0
    var listeners: [ListenerStatus]
}

/// A snapshot of one listener's state and counters.
struct ListenerStatus: Sendable {
    /// `serving`, `paused-at-limit` or `draining`.
    enum State: String, Sendable {
        case serving
        case pausedAtLimit = "paused-at-limit"
        case draining
    }

    var name: String
    var kind: String
    var address: String
    var protocolName: String
    var state: State
    var openConnections: Int
    var acceptedTotal: UInt64
    /// Connections refused by a limit, by reason (`max_connections`, `per_source`).
    var refusedTotal: [String: UInt64]
    var bytesReceivedTotal: UInt64
    var bytesSentTotal: UInt64
    var datagramsReceivedTotal: UInt64
    var tlsHandshakeFailuresTotal: UInt64

    var refusedSum: UInt64 { self.refusedTotal.values.reduce(0, +) }
}

/// One open connection, for `connections`.
struct ConnectionStatus: Sendable {
    var listener: String
    var protocolName: String
    var id: UInt64
    var peer: String
    var bytesIn: UInt64
    var bytesOut: UInt64
    var ageSeconds: Double
}

/// What a reload changed.
struct ReloadOutcome: Sendable {
    var generation: Int
    var added: [String]
    var removed: [String]
    var changed: [String]
    var unchanged: [String]
}
