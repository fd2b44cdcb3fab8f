import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reports accept failures of a listening channel to the loop's exception handler (CS-21).
///
/// The failures are running out of descriptors or memory ("socket.accept() out of system resource"),
/// reported after `AcceptBackoffHandler` has paused accepting for a second. The server stays open.
final class AcceptErrorReporter: ChannelInboundHandler {
    typealias InboundIn = any Channel

    private let loop: TulipLoop

    init(loop: TulipLoop) {
        self.loop = loop
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let message: String
        if let ioError = error as? IOError,
            [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(ioError.errnoCode)
        {
            message = "socket.accept() out of system resource"
        } else {
            message = "accept failed on \(context.channel.localAddress.map { "\($0)" } ?? "a listener")"
        }
        self.loop.callExceptionHandler(ExceptionContext(message: message, error: error))
    }
}

// Loop-confined: one reporter per listening channel.
@available(*, unavailable)
extension AcceptErrorReporter: Sendable {}
