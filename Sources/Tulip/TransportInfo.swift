import NIOCore

/// What a transport knows about its connection (asyncio's `get_extra_info`, XI-1).
public struct TransportInfo: Sendable, Hashable {
    /// The peer's address (`peername`): for accepted connections, what `accept()` returned.
    public var peerAddress: SocketAddress?
    /// The local address (`sockname`).
    public var localAddress: SocketAddress?

    /// The negotiated TLS version (`TLSv1.2`, `TLSv1.3`); nil without TLS.
    public var tlsVersion: String?
    /// The negotiated cipher's OpenSSL name (`cipher`); nil without TLS.
    public var tlsCipher: String?
    /// The negotiated ALPN protocol (`alpn_protocol`), if any.
    public var alpnProtocol: String?
    /// The subject of the peer's certificate (`peercert`), if it sent one.
    public var peerCertificateSubject: String?
    /// The peer's credentials on a unix stream socket (`peercred`); nil on other transports.
    public var peerCredentials: PeerCredentials?

    /// Makes a value.
    public init(
        peerAddress: SocketAddress? = nil,
        localAddress: SocketAddress? = nil,
        tlsVersion: String? = nil,
        tlsCipher: String? = nil,
        alpnProtocol: String? = nil,
        peerCertificateSubject: String? = nil,
        peerCredentials: PeerCredentials? = nil
    ) {
        self.peerAddress = peerAddress
        self.localAddress = localAddress
        self.tlsVersion = tlsVersion
        self.tlsCipher = tlsCipher
        self.alpnProtocol = alpnProtocol
        self.peerCertificateSubject = peerCertificateSubject
        self.peerCredentials = peerCredentials
    }

    /// The asyncio key lookup: `"peername"` and `"sockname"`, and on TLS transports `"ssl_version"`,
    /// `"cipher"`, `"alpn_protocol"` and `"peercert"` (the subject), on unix stream sockets `"peercred"`
    /// (a ``PeerCredentials``); `default` for anything else (TR-1).
    public func value(forKey key: String, default defaultValue: (any Sendable)? = nil) -> (any Sendable)? {
        switch key {
        case "peername": return self.peerAddress ?? defaultValue
        case "sockname": return self.localAddress ?? defaultValue
        case "ssl_version": return self.tlsVersion ?? defaultValue
        case "cipher": return self.tlsCipher ?? defaultValue
        case "alpn_protocol": return self.alpnProtocol ?? defaultValue
        case "peercert": return self.peerCertificateSubject ?? defaultValue
        case "peercred": return self.peerCredentials ?? defaultValue
        default: return defaultValue
        }
    }
}
