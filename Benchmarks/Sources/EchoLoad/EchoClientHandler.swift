import NIOCore

/// When the measured window opens and closes, shared by every connection.
struct MeasurementWindow: Sendable {
    /// Round trips that complete at or after this instant are counted.
    let start: NIODeadline
    /// Round trips that complete at or after this instant are not; no message is sent after it.
    let end: NIODeadline
}

/// What one connection did, reported when the window closes.
struct ConnectionCount: Sendable {
    /// Round trips completed inside the measured window.
    var measured: UInt64 = 0
    /// Round trips completed in the whole run, warm-up included.
    var total: UInt64 = 0
}

/// Why a connection failed.
enum EchoLoadError: Error, CustomStringConvertible {
    case mismatch(connection: Int, message: UInt64, position: Int, count: Int)
    case closedByPeer(connection: Int, message: UInt64)
    case stalled(connection: Int)
    case channelError(connection: Int, error: any Error)

    var description: String {
        switch self {
        case .mismatch(let connection, let message, let position, let count):
            "connection \(connection): echoed bytes differ from those sent "
                + "(message \(message), \(count) bytes at position \(position))"
        case .closedByPeer(let connection, let message):
            "connection \(connection): closed by the server during message \(message)"
        case .stalled(let connection):
            "connection \(connection): no round trip completed in the whole run"
        case .channelError(let connection, let error):
            "connection \(connection): \(error)"
        }
    }
}

/// One ping-pong connection: send `size` bytes, wait for all of them to come back, check them, repeat.
///
/// Reads may arrive in any split; the handler counts bytes until the whole message is back. A round trip
/// that completes inside the ``MeasurementWindow`` is counted. At the window's end the handler stops
/// sending and completes its promise with the counts; the caller then closes the channel. A mismatch,
/// an early close or a channel error fails the promise instead.
final class EchoClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case running
        case finished
        case failed
    }

    private let connection: Int
    private let payload: Payload
    private let window: MeasurementWindow
    private let promise: EventLoopPromise<ConnectionCount>

    private var state = State.running
    private var count = ConnectionCount()
    private var messageIndex: UInt64 = 0
    private var messageOffset = 0
    private var received = 0

    init(
        connection: Int,
        payload: Payload,
        window: MeasurementWindow,
        promise: EventLoopPromise<ConnectionCount>
    ) {
        self.connection = connection
        self.payload = payload
        self.window = window
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.eventLoop.assumeIsolated().scheduleTask(deadline: self.window.end) {
            self.finish()
        }
        self.sendMessage(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.state == .running else { return }
        let buffer = Self.unwrapInboundIn(data)
        let count = buffer.readableBytes
        guard self.payload.matches(buffer, offset: self.messageOffset, position: self.received) else {
            let error = EchoLoadError.mismatch(
                connection: self.connection,
                message: self.messageIndex,
                position: self.received,
                count: count
            )
            self.fail(error, context: context)
            return
        }
        self.received += count
        guard self.received == self.payload.size else { return }

        // A whole message is back.
        self.received = 0
        self.count.total += 1
        let now = NIODeadline.now()
        if now >= self.window.end {
            self.finish()
            return
        }
        if now >= self.window.start {
            self.count.measured += 1
        }
        self.messageIndex &+= 1
        self.sendMessage(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if self.state == .running {
            self.fail(
                EchoLoadError.closedByPeer(connection: self.connection, message: self.messageIndex),
                context: context
            )
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(EchoLoadError.channelError(connection: self.connection, error: error), context: context)
    }

    private func sendMessage(context: ChannelHandlerContext) {
        self.messageOffset = self.payload.offset(connection: self.connection, index: self.messageIndex)
        // One message in flight per connection, so nothing is gained by deferring the flush.
        context.writeAndFlush(
            Self.wrapOutboundOut(self.payload.message(at: self.messageOffset)),
            promise: nil
        )
    }

    private func finish() {
        guard self.state == .running else { return }
        if self.count.total == 0 {
            self.state = .failed
            self.promise.fail(EchoLoadError.stalled(connection: self.connection))
            return
        }
        self.state = .finished
        self.promise.succeed(self.count)
    }

    private func fail(_ error: EchoLoadError, context: ChannelHandlerContext) {
        guard self.state == .running else { return }
        self.state = .failed
        self.promise.fail(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension EchoClientHandler: Sendable {}
