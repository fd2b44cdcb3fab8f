import NIOCore
import Tulip
import TulipDaemon

/// RFC 864 character generator: the classic rotating 72-character lines, sent until the client closes.
///
/// Writing stops while the transport is paused (``BaseProtocol/pauseWriting()``), so a client that
/// stops reading costs at most the write buffer's high-water mark.
public struct ChargenPlugin: Plugin {
    public typealias Options = DatagramOptions
    public static let name = "chargen"
    public static let summary = "RFC 864 character generator: rotating 72-character lines until the client closes"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix, .udp, .unixDatagram]

    /// Over datagrams (RFC 864's UDP form) each request gets one reply of six whole lines.
    ///
    /// The reply is 444 bytes, within the RFC's 512, and continues the rotation from the endpoint's
    /// previous reply, within the rate limit. The RFC's random length is replaced by a fixed one so
    /// replies are predictable.
    public static func makeProtocolFactory(
        options: DatagramOptions,
        context: PluginContext
    ) throws -> any ProtocolFactory {
        try options.validate(context: context)
        let logger = context.logger
        return StreamAndDatagramProtocolFactory(
            stream: { ChargenProtocol() },
            datagram: {
                var next = 0
                return DatagramReplyProtocol(limit: options.rateLimit, logger: logger) { _, allocator in
                    let reply = ChargenProtocol.datagramReply(startingAt: next, allocator: allocator)
                    next = (next + ChargenProtocol.linesPerDatagram) % ChargenProtocol.lineCount
                    return reply
                }
            }
        )
    }
}

/// The protocol object of ``ChargenPlugin``.
public final class ChargenProtocol: StreamProtocol {
    /// The 95 lines of one full rotation (95 × 74 bytes), built once per connection; every write
    /// sends a view of it, so streaming allocates nothing.
    static let lineCount = 95
    static let lineLength = 72
    /// Lines in one datagram reply: 6 × 74 = 444 bytes, the most whole lines within 512.
    static let linesPerDatagram = 6

    /// One datagram reply: `linesPerDatagram` lines of the rotation from line `start`.
    static func datagramReply(startingAt start: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: Self.linesPerDatagram * (Self.lineLength + 2))
        for offset in 0..<Self.linesPerDatagram {
            let line = (start + offset) % Self.lineCount
            for column in 0..<Self.lineLength {
                buffer.writeInteger(UInt8(32 + (line + column) % 95))
            }
            buffer.writeStaticString("\r\n")
        }
        return buffer
    }

    static func makeCycle(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: Self.lineCount * (Self.lineLength + 2))
        for line in 0..<Self.lineCount {
            for column in 0..<Self.lineLength {
                buffer.writeInteger(UInt8(32 + (line + column) % 95))
            }
            buffer.writeStaticString("\r\n")
        }
        return buffer
    }

    private var transport: ChannelTransport?
    private var cycle = ByteBuffer()
    private var paused = false

    /// Makes a chargen protocol object.
    public init() {}

    public func connectionMade(transport: ChannelTransport) {
        self.transport = transport
        self.cycle = Self.makeCycle(allocator: transport.allocator)
        self.produce()
    }

    /// Throws received data away, as RFC 864 says ("Any data received is thrown away.").
    public func dataReceived(_ data: ByteBuffer) throws {}

    public func pauseWriting() {
        self.paused = true
    }

    public func resumeWriting() {
        self.paused = false
        self.produce()
    }

    public func connectionLost(error: (any Error)?) {
        self.transport = nil
    }

    private func produce() {
        guard let transport = self.transport else { return }
        // `write` calls pauseWriting synchronously once the buffer is above its high-water mark.
        while !self.paused && !transport.isClosing {
            do {
                try transport.write(self.cycle)
            } catch {
                return
            }
        }
    }
}
