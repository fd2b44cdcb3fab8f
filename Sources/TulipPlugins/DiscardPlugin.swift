import NIOCore
import Tulip
import TulipDaemon

/// RFC 863 discard: reads and drops everything.
public struct DiscardPlugin: Plugin {
    public typealias Options = DatagramOptions
    public static let name = "discard"
    public static let summary = "RFC 863 discard: reads and drops everything"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix, .udp, .unixDatagram, .pipe]

    /// Over datagrams nothing is ever sent, so `rate_limit` has nothing to limit.
    public static func makeProtocolFactory(
        options: DatagramOptions,
        context: PluginContext
    ) throws -> any ProtocolFactory {
        try options.validate(context: context)
        return StreamAndDatagramProtocolFactory(
            stream: { DiscardProtocol() },
            datagram: {
                DatagramReplyProtocol(limit: nil) { _, _ in nil }
            }
        )
    }
}

/// The protocol object of ``DiscardPlugin``: the default callbacks already drop data and close
/// on EOF.
public final class DiscardProtocol: StreamProtocol {
    /// Makes a discard protocol object.
    public init() {}
}
