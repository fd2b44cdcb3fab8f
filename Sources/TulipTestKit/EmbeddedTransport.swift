import NIOCore
import NIOEmbedded
import Tulip

/// Runs one ``StreamProtocol`` on an `EmbeddedChannel`, so plugin authors can test a protocol
/// object without sockets, threads or NIO: send bytes in, read what it wrote, end the input.
///
/// Everything is synchronous and deterministic: each call runs the loop's pending work before it
/// returns, so callbacks (including the scheduled `connectionMade`) have happened by then.
/// Single-threaded, like the protocol objects it drives.
///
/// - Important: the embedded peer reads everything at once, so writes never pause: a protocol
///   that writes until ``BaseProtocol/pauseWriting()`` (chargen) needs a real socket to test.
public final class EmbeddedTransport {
    /// The channel underneath; reach for it only for what this type does not offer.
    public let channel: EmbeddedChannel
    /// The Tulip loop the protocol sees, driven by the channel's embedded event loop.
    public let loop: TulipLoop
    /// The transport handed to the protocol object.
    public let transport: ChannelTransport

    /// Connects `protocolObject` to a fresh embedded channel and delivers `connectionMade`.
    public init(protocol protocolObject: any StreamProtocol) throws {
        let eventLoop = EmbeddedEventLoop()
        self.channel = EmbeddedChannel(loop: eventLoop)
        self.loop = TulipLoop._makeForTesting(on: eventLoop)
        let handler = ProtocolChannelHandler(loop: self.loop, protocol: protocolObject)
        self.transport = handler.transport
        try self.channel.pipeline.syncOperations.addHandler(handler)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4242)).wait()
        self.run()
    }

    /// Feeds `bytes` to the protocol as one read, as if they arrived on the socket.
    public func send(_ bytes: some Sequence<UInt8>) throws {
        var buffer = self.channel.allocator.buffer(capacity: bytes.underestimatedCount)
        buffer.writeBytes(bytes)
        try self.send(buffer)
    }

    /// Feeds the UTF-8 bytes of `string` as one read.
    public func send(string: String) throws {
        try self.send(Array(string.utf8))
    }

    /// Feeds `buffer` as one read burst (read, then read-complete).
    public func send(_ buffer: ByteBuffer) throws {
        try self.channel.writeInbound(buffer)
        self.channel.pipeline.fireChannelReadComplete()
        self.run()
    }

    /// The peer shuts its sending side: the protocol gets `eofReceived`.
    public func sendEOF() {
        self.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        self.run()
    }

    /// Tells the protocol the daemon is draining (`shutdownRequested`).
    public func requestShutdown() {
        self.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        self.run()
    }

    /// Everything the protocol wrote since the last call, concatenated.
    public func readOutbound() throws -> [UInt8] {
        self.run()
        var result: [UInt8] = []
        while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
            result.append(contentsOf: buffer.readableBytesView)
        }
        return result
    }

    /// What the protocol wrote, as UTF-8 text.
    public func readOutboundString() throws -> String {
        String(decoding: try self.readOutbound(), as: UTF8.self)
    }

    /// Whether the connection has been closed (by the protocol or the transport).
    public var isClosed: Bool {
        self.run()
        return !self.channel.isActive
    }

    /// Runs pending loop work and advances embedded time by `amount` (timers, `callLater`).
    public func advanceTime(by amount: TimeAmount) {
        self.channel.embeddedEventLoop.advanceTime(by: amount)
        self.run()
    }

    /// Closes the channel from the peer's side (`connectionLost(nil)` follows).
    public func disconnect() {
        _ = try? self.channel.close().wait()
        self.run()
    }

    private func run() {
        self.channel.embeddedEventLoop.run()
    }
}

// Loop-confined, like the protocol objects it drives.
@available(*, unavailable)
extension EmbeddedTransport: Sendable {}
