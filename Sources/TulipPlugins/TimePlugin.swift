import NIOCore
import Tulip
import TulipDaemon

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// RFC 868 time: four bytes, big-endian seconds since 1900-01-01 00:00 UTC, then the connection
/// closes.
public struct TimePlugin: Plugin {
    public typealias Options = NoOptions
    public static let name = "time"
    public static let summary = "RFC 868 time: sends 32-bit seconds since 1900, then closes"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]

    /// Seconds between 1900-01-01 and the Unix epoch.
    public static let epochOffset: UInt64 = 2_208_988_800

    public static func makeProtocolFactory(options: NoOptions, context: PluginContext) throws -> any ProtocolFactory {
        StreamProtocolFactory { TimeProtocol() }
    }

    /// RFC 868's value for `unixSeconds`; it wraps modulo 2^32 (in 2036), as the RFC's clients expect.
    public static func value(unixSeconds: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: UInt64(unixSeconds) &+ Self.epochOffset)
    }
}

/// The protocol object of ``TimePlugin``.
public final class TimeProtocol: StreamProtocol {
    /// Makes a time protocol object.
    public init() {}

    public func connectionMade(transport: ChannelTransport) {
        var buffer = transport.allocator.buffer(capacity: 4)
        buffer.writeInteger(TimePlugin.value(unixSeconds: Int(Glibc.time(nil))))
        try? transport.write(buffer)
        transport.close()
    }
}
