import NIOCore

/// Sits first in a listening channel's pipeline: admits or refuses each accepted channel through
/// the server's ``ConnectionLimiter``, and holds back reads while the server is at its limit.
///
/// Reads are held here as well as by turning `autoRead` off because `AcceptBackoffHandler`
/// (behind this handler) issues its own read when its back-off ends; that read must not accept
/// past the limit either. Loop-confined, one per listening channel.
final class ConnectionLimitHandler: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = any Channel

    private let limiter: ConnectionLimiter

    init(limiter: ConnectionLimiter) {
        self.limiter = limiter
    }

    func read(context: ChannelHandlerContext) {
        guard !self.limiter.holdsReads else { return }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = Self.unwrapInboundIn(data)
        if self.limiter.admit(child) {
            context.fireChannelRead(data)
        } else {
            // Not registered yet: closing releases the descriptor and nothing else sees it.
            child.close(promise: nil)
        }
    }
}

// Loop-confined: one handler per listening channel.
@available(*, unavailable)
extension ConnectionLimitHandler: Sendable {}
