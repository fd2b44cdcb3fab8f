import NIOCore

/// Watches the connections of a server: the daemon's logs and counters hang off this seam.
///
/// Called on the loop's thread. `connectionOpened` comes when the transport is created, before
/// the protocol's `connectionMade`; `connectionClosed` right after the protocol's
/// `connectionLost` has run.
public protocol ConnectionObserver: AnyObject {
    /// A connection was accepted and its transport created.
    func connectionOpened(_ transport: ChannelTransport)
    /// The connection is gone and its protocol was told.
    func connectionClosed(_ transport: ChannelTransport, error: (any Error)?)
    /// A TLS connection was closed before its handshake finished (it never got a transport):
    /// OpenSSL refused it, the peer left, or the handshake timed out.
    func handshakeFailed(peer: SocketAddress?, error: any Error)
    /// The server reached ``ConnectionLimits/maxConnections`` and stopped accepting.
    func acceptingPaused(openConnections: Int)
    /// A connection closed below ``ConnectionLimits/maxConnections`` and accepting resumed.
    func acceptingResumed(openConnections: Int)
    /// A connection was closed right after being accepted, before any protocol object existed.
    func connectionRefused(peer: SocketAddress?, reason: ConnectionRefusalReason)
    /// `startTLS` moved a connection onto a new transport (same connection id): the next
    /// `connectionClosed` for it comes from `replacement`.
    func connectionReplaced(_ transport: ChannelTransport, by replacement: ChannelTransport)
}

extension ConnectionObserver {
    /// Does nothing.
    public func connectionReplaced(_ transport: ChannelTransport, by replacement: ChannelTransport) {}

    /// Does nothing.
    public func handshakeFailed(peer: SocketAddress?, error: any Error) {}
    /// Does nothing.
    public func acceptingPaused(openConnections: Int) {}
    /// Does nothing.
    public func acceptingResumed(openConnections: Int) {}
    /// Does nothing.
    public func connectionRefused(peer: SocketAddress?, reason: ConnectionRefusalReason) {}
}
