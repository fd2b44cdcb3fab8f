import NIOCore

/// Translates a NIO datagram channel's events into a ``DatagramTransport``'s protocol callbacks.
///
/// `channelRead` → `datagramReceived`, `errorCaught` → `errorReceived` (never a close: DT-6),
/// `channelInactive` → `connectionLost`. One handler per channel, on its loop.
final class DatagramChannelHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let transport: DatagramTransport

    init(transport: DatagramTransport) {
        self.transport = transport
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.transport.setContext(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.transport.channelRead(Self.unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.transport.errorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.transport.channelInactive()
        context.fireChannelInactive()
    }
}

// Loop-confined: one handler serves one pipeline.
@available(*, unavailable)
extension DatagramChannelHandler: Sendable {}
