import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Who a connection counts against for ``ConnectionLimits/maxConnectionsPerSource``: an IPv4
/// address, an IPv6 /64 prefix (one host usually owns a whole /64), or a unix peer's user id.
enum ConnectionSource: Hashable {
    case ipv4(UInt32)
    case ipv6Prefix(UInt64)
    case unixUser(UInt32)

    /// The source of a freshly accepted channel, or `nil` when it cannot be told (the peer left
    /// already): such a connection is not capped.
    ///
    /// Loop thread of `channel`: `SO_PEERCRED` is read synchronously there.
    init?(of channel: any Channel) {
        guard let address = channel.remoteAddress else { return nil }
        if case .unixDomainSocket = address {
            guard let uid = Self.peerUser(of: channel) else { return nil }
            self = .unixUser(uid)
        } else {
            self.init(ipAddress: address)
        }
    }

    /// The source of an IP peer; `nil` for a unix address, whose source is its peer's user id.
    init?(ipAddress address: SocketAddress) {
        // Raw bytes of the sockaddr: sin_addr sits at offset 4 of sockaddr_in, sin6_addr at
        // offset 8 of sockaddr_in6.
        switch address {
        case .v4(let address):
            self = .ipv4(withUnsafeBytes(of: address.address) { Self.integer($0[4..<8]) })
        case .v6(let address):
            let bytes = withUnsafeBytes(of: address.address) { Array($0[8..<24]) }
            // An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 peer it maps.
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                self = .ipv4(Self.integer(bytes[12..<16]))
            } else {
                self = .ipv6Prefix(Self.integer(bytes[0..<8]))
            }
        case .unixDomainSocket:
            return nil
        }
    }

    private static func integer<Result: FixedWidthInteger>(_ bytes: some Collection<UInt8>) -> Result {
        bytes.reduce(0) { $0 << 8 | Result($1) }
    }

    private static func peerUser(of channel: any Channel) -> UInt32? {
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }, which Glibc's module does not export.
        let future: EventLoopFuture<(Int32, UInt32, UInt32)> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SO_PEERCRED
        )
        // On the channel's loop the option is read before the future is returned, so the
        // callback runs now.
        var uid: UInt32?
        future.assumeIsolated().whenSuccess { credentials in uid = credentials.1 }
        return uid
    }
}
