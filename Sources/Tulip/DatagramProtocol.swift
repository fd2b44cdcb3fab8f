import NIOCore

/// A protocol object for a datagram endpoint — UDP or a unix datagram socket (asyncio's
/// `DatagramProtocol`).
///
/// The callback order is `connectionMade → (datagramReceived | errorReceived)* → connectionLost`,
/// with ``BaseProtocol/pauseWriting()``/``BaseProtocol/resumeWriting()`` possibly in between.
/// Every callback runs on the loop's thread, one at a time. A send or receive error from the
/// operating system (`ECONNREFUSED` after an ICMP port-unreachable, `EMSGSIZE` for an oversized
/// datagram) never closes the endpoint: it goes to ``errorReceived(_:)`` (DT-5, DT-6). An error
/// thrown by ``datagramReceived(_:from:)`` is fatal: the transport is aborted and
/// ``BaseProtocol/connectionLost(error:)`` receives it (DT-7).
public protocol DatagramProtocol: BaseProtocol {
    /// The endpoint is up. Called once, before any other callback; receiving starts only after it
    /// returns (DE-9).
    ///
    /// Keep `transport`: it is how the protocol sends and closes.
    func connectionMade(transport: DatagramTransport)

    /// One datagram arrived from `address` (DT-8); `data` may be empty.
    ///
    /// The buffer is the one NIO read into: no copy was made, so sending it back with
    /// ``DatagramTransport/sendto(_:to:)`` costs no allocation.
    /// - Throws: anything; a thrown error is fatal to the endpoint (DT-7).
    func datagramReceived(_ data: ByteBuffer, from address: SocketAddress) throws

    /// A send or receive failed at the operating-system level; the endpoint stays open (DT-5, DT-6).
    ///
    /// `error` is a ``TulipError`` whose ``TulipError/errno`` carries the code, or an NIO `IOError`.
    func errorReceived(_ error: any Error)
}

extension DatagramProtocol {
    /// Does nothing.
    public func connectionMade(transport: DatagramTransport) {}
    /// Drops the datagram.
    public func datagramReceived(_ data: ByteBuffer, from address: SocketAddress) throws {}
    /// Does nothing.
    public func errorReceived(_ error: any Error) {}
}
