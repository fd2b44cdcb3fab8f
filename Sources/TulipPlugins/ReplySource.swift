import NIOCore

/// The rate-limit key of a datagram's source: the host, without the port.
///
/// A reflection attack spoofs the victim's address; keying on address *and port* would let it
/// spread over 65,535 ports and get as many buckets. Built from the raw `sockaddr` bytes, so
/// making a key allocates nothing for inet sources.
struct ReplySource: Hashable, Sendable {
    private enum Storage: Hashable, Sendable {
        case v4(UInt32)
        case v6(UInt64, UInt64)
        case unix(String)
    }

    private let storage: Storage

    init(_ address: SocketAddress) {
        switch address {
        case .v4:
            // sockaddr_in: family (2 bytes), port (2), address (4).
            self.storage = .v4(
                address.withSockAddr { pointer, _ in
                    UnsafeRawPointer(pointer).loadUnaligned(fromByteOffset: 4, as: UInt32.self)
                }
            )
        case .v6:
            // sockaddr_in6: family (2), port (2), flow info (4), address (16).
            self.storage = address.withSockAddr { pointer, _ in
                let raw = UnsafeRawPointer(pointer)
                return .v6(
                    raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                    raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
                )
            }
        case .unixDomainSocket:
            self.storage = .unix(address.pathname ?? "")
        }
    }
}
