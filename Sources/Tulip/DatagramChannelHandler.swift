import NIOCore

/// Translates a NIO datagram channel's events into a ``DatagramTransport``'s protocol callbacks.
///
/// `channelRead` → `datagramReceived`, `errorCaught` → `errorReceived` (never a close: DT-6),
/// `channelInactive` → `connectionLost` after ``DatagramTransport/close()``/``DatagramTransport/abort()``,
/// or a transparent re-creation of the channel when NIO closed it on its own. One handler per
/// channel, on its loop; `generation` tells a replaced channel's late events apart.
final class DatagramChannelHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let transport: DatagramTransport
    let generation: Int

    init(transport: DatagramTransport, generation: Int) {
        self.transport = transport
        self.generation = generation
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.transport.setContext(context, generation: self.generation)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.generation == self.transport.generation else { return }
        self.transport.channelRead(Self.unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard self.generation == self.transport.generation else { return }
        self.transport.errorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.transport.channelInactive(generation: self.generation)
        context.fireChannelInactive()
    }
}

// Loop-confined: one handler serves one pipeline.
@available(*, unavailable)
extension DatagramChannelHandler: Sendable {}
