import NIOCore

/// What a transport knows about its connection (asyncio's `get_extra_info`, XI-1).
public struct TransportInfo: Sendable, Hashable {
    /// The peer's address (`peername`): for accepted connections, what `accept()` returned.
    public var peerAddress: SocketAddress?
    /// The local address (`sockname`).
    public var localAddress: SocketAddress?

    /// Makes a value.
    public init(peerAddress: SocketAddress? = nil, localAddress: SocketAddress? = nil) {
        self.peerAddress = peerAddress
        self.localAddress = localAddress
    }

    /// The asyncio key lookup: `"peername"` and `"sockname"`; `default` for anything else (TR-1).
    public func value(forKey key: String, default defaultValue: (any Sendable)? = nil) -> (any Sendable)? {
        switch key {
        case "peername": return self.peerAddress ?? defaultValue
        case "sockname": return self.localAddress ?? defaultValue
        default: return defaultValue
        }
    }
}
