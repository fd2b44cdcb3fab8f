import NIOCore
import TulipTLS

/// Sits right behind the ``OpenSSLHandler`` of a connection that `createConnection(ssl:)` or
/// `startTLS` is setting up, and turns the handshake's outcome into one promise.
///
/// When the handshake finishes, ``handshakeCompleted(context:info:)`` (the TLS handler's
/// completion callback) puts the connection's ``ProtocolChannelHandler`` at the end of the
/// pipeline and succeeds the promise with its transport. Before that, an error (an OpenSSL
/// failure, the handshake timeout), the channel closing, or ``cancel()`` fails it, and the
/// channel is closed (TLS-7). Afterwards it passes everything on. Loop-confined.
final class TLSSetupHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Succeeds with the new transport, or fails with what ended the handshake.
    let promise: EventLoopPromise<NIOLoopBound<ChannelTransport>>
    private let makeHandler: (TLSConnectionInfo) throws -> ProtocolChannelHandler
    private var settled = false
    private var failure: (any Error)?
    private var channel: (any Channel)?

    /// - Parameters:
    ///   - promise: settled once, on the loop.
    ///   - makeHandler: makes the handler of the TLS transport, on the loop, once the handshake
    ///     has finished.
    init(
        promise: EventLoopPromise<NIOLoopBound<ChannelTransport>>,
        makeHandler: @escaping (TLSConnectionInfo) throws -> ProtocolChannelHandler
    ) {
        self.promise = promise
        self.makeHandler = makeHandler
    }

    /// The ``OpenSSLHandler``'s completion callback: runs before any decrypted byte is passed on.
    func handshakeCompleted(context: ChannelHandlerContext, info: TLSConnectionInfo) {
        guard !self.settled else { return }
        do {
            let handler = try self.makeHandler(info)
            try context.pipeline.syncOperations.addHandler(handler)
            self.settled = true
            self.promise.succeed(NIOLoopBound(handler.transport, eventLoop: context.eventLoop))
        } catch {
            self.settle(error)
            context.close(promise: nil)
        }
    }

    /// Fails the setup with `CancellationError` and closes the channel (TLS-7).
    func cancel() {
        guard !self.settled else { return }
        self.settle(CancellationError())
        self.channel?.close(promise: nil)
    }

    private func settle(_ error: any Error) {
        guard !self.settled else { return }
        self.settled = true
        self.promise.fail(error)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.channel = context.channel
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.channel = nil
        self.settle(ChannelError.ioOnClosedChannel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.settled {
            context.fireErrorCaught(error)
        } else if self.failure == nil {
            // OpenSSLHandler closes the channel after reporting; settle with the first cause.
            self.failure = error
            self.settle(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.settle(self.failure ?? TLSHandshakeEOFError())
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension TLSSetupHandler: Sendable {}
