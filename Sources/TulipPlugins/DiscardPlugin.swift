import NIOCore
import Tulip
import TulipDaemon

/// RFC 863 discard: reads and drops everything.
public struct DiscardPlugin: Plugin {
    public typealias Options = NoOptions
    public static let name = "discard"
    public static let summary = "RFC 863 discard: reads and drops everything"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix, .pipe]

    public static func makeProtocolFactory(options: NoOptions, context: PluginContext) throws -> any ProtocolFactory {
        StreamProtocolFactory { DiscardProtocol() }
    }
}

/// The protocol object of ``DiscardPlugin``: the default callbacks already drop data and close
/// on EOF.
public final class DiscardProtocol: StreamProtocol {
    /// Makes a discard protocol object.
    public init() {}
}
