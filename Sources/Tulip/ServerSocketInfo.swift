import NIOCore

/// A listening socket of a ``Server`` (asyncio's restricted socket wrapper, SV-5).
public struct ServerSocketInfo: Sendable, Hashable {
    /// The descriptor; owned by the server, never close it yourself.
    public var fileDescriptor: CInt
    /// The bound address (`getsockname`).
    public var localAddress: SocketAddress
}
