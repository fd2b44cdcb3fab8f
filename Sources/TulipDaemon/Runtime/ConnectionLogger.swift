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
    private(set) var acceptedTotal: UInt64 = 0
    /// The open connections, by connection id: for `connections` and the byte totals.
    private(set) var open: [UInt64: ChannelTransport] = [:]
    /// Bytes of the connections that have closed.
    private var closedBytesIn: UInt64 = 0
    private var closedBytesOut: UInt64 = 0
    /// TLS clients closed before their handshake finished.
    private(set) var handshakeFailuresTotal: UInt64 = 0
    /// Called on the loop thread whenever the open-connection count changes.
    var onChange: (() -> Void)?
    /// Pauses at the connection limit and refusals, rate-limited; `nil` when nothing is limited.
    private let limitEvents: LimitEventLog?

    init(logger: Logger, limitEventLoop: (any EventLoop)? = nil) {
        self.logger = logger
        self.limitEvents = limitEventLoop.map { LimitEventLog(logger: logger, eventLoop: $0) }
    }

    func connectionOpened(_ transport: ChannelTransport) {
        self.acceptedTotal += 1
        self.open[transport.connectionID] = transport
        if self.logger.logLevel <= .debug {
            self.logger.debug("connection opened", metadata: self.metadata(transport))
        }
        self.onChange?()
    }

    func connectionClosed(_ transport: ChannelTransport, error: (any Error)?) {
        self.open.removeValue(forKey: transport.connectionID)
        self.closedBytesIn &+= transport.bytesReceived
        self.closedBytesOut &+= transport.bytesSent
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
    ///
    /// A peer that leaves before saying anything (a port probe) is only worth `debug`.
    func handshakeFailed(peer: SocketAddress?, error: any Error) {
        self.handshakeFailuresTotal += 1
        let metadata: Logger.Metadata = ["peer": "\(Self.describe(peer))", "error": "\(error)"]
        if error is TLSHandshakeEOFError {
            self.logger.debug("TLS handshake failed", metadata: metadata)
        } else {
            self.logger.info("TLS handshake failed", metadata: metadata)
        }
    }

    func acceptingPaused(openConnections: Int) {
        self.limitEvents?.acceptingChanged(paused: true, openConnections: openConnections)
    }

    func acceptingResumed(openConnections: Int) {
        self.limitEvents?.acceptingChanged(paused: false, openConnections: openConnections)
    }

    func connectionRefused(peer: SocketAddress?, reason: ConnectionRefusalReason) {
        self.limitEvents?.refused(peer: peer, reason: reason)
    }

    /// A listener could not go on serving (a pipe listener that cannot reopen its FIFO).
    func failed(listener: String, error: any Error) {
        self.logger.error("listener stopped", metadata: ["error": "\(error)"])
    }

    /// Connections opened and not closed yet.
    var openConnections: Int { self.open.count }

    /// After startTLS the TLS transport carries the connection (and its byte counts, which go on
    /// from the plaintext ones).
    func connectionReplaced(_ transport: ChannelTransport, by replacement: ChannelTransport) {
        self.open[replacement.connectionID] = replacement
    }

    /// Bytes received over every connection so far, open ones included.
    var bytesReceivedTotal: UInt64 { self.open.values.reduce(self.closedBytesIn) { $0 &+ $1.bytesReceived } }

    /// Bytes sent over every connection so far, open ones included.
    var bytesSentTotal: UInt64 { self.open.values.reduce(self.closedBytesOut) { $0 &+ $1.bytesSent } }

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
