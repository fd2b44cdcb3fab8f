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
    public typealias Options = DatagramOptions
    public static let name = "time"
    public static let summary = "RFC 868 time: sends 32-bit seconds since 1900, then closes"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix, .udp, .unixDatagram]

    /// Seconds between 1900-01-01 and the Unix epoch.
    public static let epochOffset: UInt64 = 2_208_988_800

    /// Over datagrams (RFC 868's UDP form) any request gets the four bytes, within the rate limit.
    public static func makeProtocolFactory(
        options: DatagramOptions,
        context: PluginContext
    ) throws -> any ProtocolFactory {
        try options.validate(context: context)
        let logger = context.logger
        return StreamAndDatagramProtocolFactory(
            stream: { TimeProtocol() },
            datagram: {
                DatagramReplyProtocol(limit: options.rateLimit, logger: logger) { _, allocator in
                    var buffer = allocator.buffer(capacity: 4)
                    buffer.writeInteger(TimePlugin.value(unixSeconds: Int(Glibc.time(nil))))
                    return buffer
                }
            }
        )
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
