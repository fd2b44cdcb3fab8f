import NIOCore

/// A protocol object for a stream connection — TCP or a unix stream socket (asyncio's `Protocol`).
///
/// The callback order is `connectionMade → dataReceived* → eofReceived? → connectionLost`, with
/// ``BaseProtocol/pauseWriting()``/``BaseProtocol/resumeWriting()`` and ``shutdownRequested()``
/// possibly in between. Every callback runs on the loop's thread. A callback that throws is fatal
/// to its connection: the transport is aborted and ``BaseProtocol/connectionLost(error:)``
/// receives the error (PR-6); the server and the daemon carry on.
public protocol StreamProtocol: BaseProtocol {
    /// The connection is up. Called once, before any other callback; reading starts only after it
    /// returns, so pausing here means nothing is read until resumed (PR-1, RT-3).
    ///
    /// Keep `transport`: it is how the protocol writes and closes.
    func connectionMade(transport: ChannelTransport)

    /// Bytes arrived: a non-empty buffer; chunk boundaries are arbitrary (PR-3).
    ///
    /// The buffer is the one NIO read into: no copy was made. Writing it back with
    /// ``ChannelTransport/write(_:)`` costs no allocation.
    func dataReceived(_ data: ByteBuffer) throws

    /// The peer closed its sending side, after all its data (PR-4).
    ///
    /// - Returns: `false` to let the transport close itself (flushing what is queued); `true` to
    ///   keep it open for writing, in which case the protocol closes it later.
    func eofReceived() throws -> Bool

    /// The daemon asked the connection to finish: it is draining for a stop or a reload.
    ///
    /// A Tulip extension to asyncio's contract. The default does nothing, so the connection is
    /// served until it ends or the grace period runs out; a protocol with natural message
    /// boundaries can close at the next one.
    func shutdownRequested()

    /// No bytes moved in either direction for the server's idle timeout
    /// (``ConnectionLimits/idleTimeout``); the transport closes right after this returns,
    /// flushing what is queued.
    ///
    /// A Tulip extension to asyncio's contract. The default does nothing; a protocol can write a
    /// last message here, which the close flushes.
    func idleTimeoutReached()
}

extension StreamProtocol {
    /// Does nothing.
    public func connectionMade(transport: ChannelTransport) {}
    /// Drops the data.
    public func dataReceived(_ data: ByteBuffer) throws {}
    /// Returns `false`: the transport closes (PR-11).
    public func eofReceived() throws -> Bool { false }
    /// Does nothing.
    public func shutdownRequested() {}
    /// Does nothing.
    public func idleTimeoutReached() {}
}
