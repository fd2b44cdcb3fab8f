import NIOCore
import TulipTLS

/// Translates NIO channel events into a ``ChannelTransport``'s protocol callbacks.
///
/// `channelActive` → `connectionMade`, `channelRead` → `dataReceived`, `inputClosed` →
/// `eofReceived` (the channel must allow remote half-closure), `channelInactive`/`errorCaught`
/// → `connectionLost`, writability → `pauseWriting`/`resumeWriting`, and
/// `ChannelShouldQuiesceEvent` → `shutdownRequested`. One handler per channel, on its loop.
public final class ProtocolChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// The transport the protocol object sees.
    public let transport: ChannelTransport

    /// Makes a handler for `protocolObject` on `loop`; the protocol gets `connectionMade` once the
    /// channel is active.
    public init(
        loop: TulipLoop,
        protocol protocolObject: any StreamProtocol,
        observer: (any ConnectionObserver)? = nil
    ) {
        self.transport = ChannelTransport(
            loop: loop,
            protocol: protocolObject,
            connectionID: ConnectionIDs.next()
        )
        self.transport.observer = observer
    }

    /// A handler behind an ``OpenSSLHandler`` whose handshake has finished: no EOF writing, no
    /// native sendfile, and the TLS facts in the extra info.
    ///
    /// With `previous` (`startTLS`), the new transport continues that transport's connection: same
    /// id and opening time, and no second `connectionMade` (TLS-6).
    init(
        loop: TulipLoop,
        protocol protocolObject: any StreamProtocol,
        observer: (any ConnectionObserver)?,
        tls: TLSConnectionInfo,
        continuing previous: ChannelTransport? = nil
    ) {
        self.transport = ChannelTransport(
            loop: loop,
            protocol: protocolObject,
            connectionID: previous?.connectionID ?? ConnectionIDs.next(),
            openedAt: previous?.openedAt ?? .now(),
            canWriteEOF: false
        )
        self.transport.continuesConnection = previous != nil
        if let previous { self.transport.continueCounting(from: previous) }
        self.transport.supportsNativeSendfile = false
        self.transport.tlsInfo = tls
        self.transport.observer = observer
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.transport.attach(to: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.transport.attach(to: context)
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.transport.channelRead(Self.unwrapInboundIn(data))
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.transport.channelReadComplete()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed:
            self.transport.inputClosed()
        case is ChannelShouldQuiesceEvent:
            self.transport.shutdownRequested()
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.transport.writabilityChanged(isWritable: context.channel.isWritable)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.transport.errorCaught(error)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.transport.channelInactive()
        context.fireChannelInactive()
    }
}

// Loop-confined: one handler serves one pipeline.
@available(*, unavailable)
extension ProtocolChannelHandler: Sendable {}
