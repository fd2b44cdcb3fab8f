import NIOCore

/// The smallest NIO echo handler: writes every read back and flushes once per read burst.
///
/// The yardstick for Tulip's echo path, on the same `EmbeddedChannel`.
final class RawEchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}
