import NIOCore
import Tulip
import TulipDaemon

/// RFC 862 echo: every byte received is sent back.
///
/// Back-pressure is end to end: when the peer does not read and the write buffer goes above its
/// high-water mark, reading pauses until it drains, so a client that only sends never makes the
/// daemon buffer without bound. On the peer's EOF the rest is flushed, then the connection closes.
public struct EchoPlugin: Plugin {
    public typealias Options = DatagramOptions
    public static let name = "echo"
    public static let summary = "RFC 862 echo: sends back every byte it receives"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix, .udp, .unixDatagram, .pipe]

    /// Over datagrams each request is sent back as it is, within the rate limit.
    public static func makeProtocolFactory(
        options: DatagramOptions,
        context: PluginContext
    ) throws -> any ProtocolFactory {
        try options.validate(context: context)
        let logger = context.logger
        return StreamAndDatagramProtocolFactory(
            stream: { EchoProtocol() },
            datagram: {
                DatagramReplyProtocol(limit: options.rateLimit, logger: logger) { request, _ in request }
            }
        )
    }
}

/// The protocol object of ``EchoPlugin``, one per connection.
public final class EchoProtocol: StreamProtocol {
    private var transport: ChannelTransport?

    /// Makes an echo protocol object.
    public init() {}

    public func connectionMade(transport: ChannelTransport) {
        self.transport = transport
    }

    public func dataReceived(_ data: ByteBuffer) throws {
        try self.transport?.write(data)
    }

    public func pauseWriting() {
        self.transport?.pauseReading()
    }

    public func resumeWriting() {
        self.transport?.resumeReading()
    }

    public func connectionLost(error: (any Error)?) {
        self.transport = nil
    }
}
