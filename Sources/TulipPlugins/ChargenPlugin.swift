import NIOCore
import Tulip
import TulipDaemon

/// RFC 864 character generator: the classic rotating 72-character lines, sent until the client closes.
///
/// Writing stops while the transport is paused (``BaseProtocol/pauseWriting()``), so a client that
/// stops reading costs at most the write buffer's high-water mark.
public struct ChargenPlugin: Plugin {
    public typealias Options = NoOptions
    public static let name = "chargen"
    public static let summary = "RFC 864 character generator: rotating 72-character lines until the client closes"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]

    public static func makeProtocolFactory(options: NoOptions, context: PluginContext) throws -> any ProtocolFactory {
        StreamProtocolFactory { ChargenProtocol() }
    }
}

/// The protocol object of ``ChargenPlugin``.
public final class ChargenProtocol: StreamProtocol {
    /// The 95 lines of one full rotation (95 × 74 bytes), built once per connection; every write
    /// sends a view of it, so streaming allocates nothing.
    private static let lineCount = 95
    private static let lineLength = 72

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
