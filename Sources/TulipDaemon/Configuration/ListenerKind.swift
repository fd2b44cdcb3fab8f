/// The kind of socket or file a listener exposes; an open set of values.
///
/// The ``description`` is the listener's JSON key in the configuration file, such as `unix_datagram`.
/// Plugins declare the kinds they support with these values.
public struct ListenerKind: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case tcp
        case unix
        case udp
        case unixDatagram = "unix_datagram"
        case pipe
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// A TCP server socket (`SOCK_STREAM` over IPv4 or IPv6).
    public static let tcp = ListenerKind(.tcp)
    /// A unix-domain stream server socket.
    public static let unix = ListenerKind(.unix)
    /// A UDP socket (`SOCK_DGRAM` over IPv4 or IPv6).
    public static let udp = ListenerKind(.udp)
    /// A unix-domain datagram socket.
    public static let unixDatagram = ListenerKind(.unixDatagram)
    /// A pair of named pipes (FIFOs), one to read and one to write, either of them optional.
    public static let pipe = ListenerKind(.pipe)

    /// Every kind, in the order the configuration documentation lists them.
    public static let allKinds: [ListenerKind] = [.tcp, .unix, .udp, .unixDatagram, .pipe]

    /// The kind whose JSON key is `key`, such as `unix_datagram`.
    public init?(configurationKey key: String) {
        guard let base = Base(rawValue: key) else { return nil }
        self.base = base
    }

    /// Whether the listener carries byte streams, served by a `StreamProtocol` per connection or pipe pair.
    public var isStream: Bool {
        switch self.base {
        case .tcp, .unix, .pipe: true
        case .udp, .unixDatagram: false
        }
    }

    /// Whether the listener carries datagrams, served by one `DatagramProtocol` per endpoint.
    public var isDatagram: Bool { !self.isStream }

    /// Whether the kind can carry TLS: stream sockets, but not pipes.
    public var supportsTLS: Bool { self == .tcp || self == .unix }

    /// The kind's JSON key, such as `unix_datagram`.
    public var description: String { self.base.rawValue }
}
