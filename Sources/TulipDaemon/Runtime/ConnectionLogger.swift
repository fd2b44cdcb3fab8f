import Logging
import NIOCore
import Tulip
import TulipTLS

/// Logs each connection of one listener: `debug` when it opens, `info` when it closes, with the
/// listener, protocol, peer, connection id, byte counts and duration (ARCHITECTURE §5.6).
///
/// Loop-confined, like the transports it watches.
final class ConnectionLogger: ConnectionObserver {
    private let logger: Logger
    private(set) var openConnections = 0
    private(set) var acceptedTotal: UInt64 = 0
    /// Called on the loop thread whenever the open-connection count changes.
    var onChange: (() -> Void)?
    /// Refusals are logged at most once a second; the next entry says how many were not.
    private var lastRefusalLog: NIODeadline?
    private var unloggedRefusals = 0

    init(logger: Logger) {
        self.logger = logger
    }

    func connectionOpened(_ transport: ChannelTransport) {
        self.openConnections += 1
        self.acceptedTotal += 1
        if self.logger.logLevel <= .debug {
            self.logger.debug("connection opened", metadata: self.metadata(transport))
        }
        self.onChange?()
    }

    func connectionClosed(_ transport: ChannelTransport, error: (any Error)?) {
        self.openConnections -= 1
        var metadata = self.metadata(transport)
        metadata["bytes_in"] = "\(transport.bytesReceived)"
        metadata["bytes_out"] = "\(transport.bytesSent)"
        let duration = Double((NIODeadline.now() - transport.openedAt).nanoseconds) / 1e9
        metadata["duration"] = "\(Self.format(duration))"
        if let error { metadata["error"] = "\(error)" }
        self.logger.info("connection closed", metadata: metadata)
        self.onChange?()
    }

    /// A TLS client was closed before its handshake finished.
    /// A peer that leaves before saying anything (a port probe) is only worth `debug`.
    func handshakeFailed(peer: SocketAddress?, error: any Error) {
        let metadata: Logger.Metadata = ["peer": "\(Self.describe(peer))", "error": "\(error)"]
        if error is TLSHandshakeEOFError {
            self.logger.debug("TLS handshake failed", metadata: metadata)
        } else {
            self.logger.info("TLS handshake failed", metadata: metadata)
        }
    }

    func acceptingPaused(openConnections: Int) {
        self.logger.notice(
            "listener paused at its connection limit",
            metadata: ["open_connections": "\(openConnections)"]
        )
    }

    func acceptingResumed(openConnections: Int) {
        self.logger.notice("listener resumed accepting", metadata: ["open_connections": "\(openConnections)"])
    }

    /// Rate-limited: a flood of refusals must not become a flood of log entries.
    func connectionRefused(peer: SocketAddress?, reason: ConnectionRefusalReason) {
        let now = NIODeadline.now()
        if let last = self.lastRefusalLog, now - last < .seconds(1) {
            self.unloggedRefusals += 1
            return
        }
        self.lastRefusalLog = now
        let metadata: Logger.Metadata = [
            "peer": "\(Self.describe(peer))",
            "reason": "\(reason)",
            "refused_since_last_entry": "\(self.unloggedRefusals + 1)",
        ]
        self.unloggedRefusals = 0
        self.logger.info("connection refused", metadata: metadata)
    }

    /// A listener could not go on serving (a pipe listener that cannot reopen its FIFO).
    func failed(listener: String, error: any Error) {
        self.logger.error("listener stopped", metadata: ["error": "\(error)"])
    }

    private func metadata(_ transport: ChannelTransport) -> Logger.Metadata {
        [
            "peer": "\(Self.describe(transport.extraInfo.peerAddress))",
            "connection_id": "\(transport.connectionID)",
        ]
    }

    /// `host:port`, `[v6]:port`, or the unix peer's path (`unix` for an unnamed peer).
    static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        switch address {
        case .v4:
            return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        case .v6:
            return "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        case .unixDomainSocket:
            let path = address.pathname ?? ""
            return path.isEmpty ? "unix" : path
        }
    }

    private static func format(_ seconds: Double) -> String {
        let millis = Int((seconds * 1000).rounded())
        return "\(millis / 1000).\(String(millis % 1000).leftPadded(to: 3))"
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        self.count >= width ? self : String(repeating: "0", count: width - self.count) + self
    }
}
