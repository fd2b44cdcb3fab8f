import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// When the measured window opens and closes, shared by every socket.
struct MeasurementWindow: Sendable {
    /// Round trips that complete at or after this instant are counted.
    let start: NIODeadline
    /// Round trips that complete at or after this instant are not; no datagram is sent after it.
    let end: NIODeadline
}

/// What one socket did, reported when the window closes.
struct SocketCount: Sendable {
    /// Round trips completed inside the measured window.
    var measured: UInt64 = 0
    /// Round trips completed in the whole run, warm-up included.
    var total: UInt64 = 0
    /// Datagrams given up on after the timeout (request or reply lost, or just late), whole run.
    var lost: UInt64 = 0
    /// The part of `lost` given up on inside the measured window.
    var lostInWindow: UInt64 = 0
    /// Replies that arrived after their datagram had been given up on (checked, not counted).
    var late: UInt64 = 0
}

/// Why a socket failed.
enum UDPEchoLoadError: Error, CustomStringConvertible {
    case wrongSize(socket: Int, expected: Int, got: Int)
    case mismatch(socket: Int, sequence: UInt64)
    case wrongSocket(socket: Int, got: UInt32)
    case neverSent(socket: Int, sequence: UInt64)
    case stalled(socket: Int, lost: UInt64)
    case channelError(socket: Int, error: any Error)

    var description: String {
        switch self {
        case .wrongSize(let socket, let expected, let got):
            "socket \(socket): echoed datagram of \(got) bytes, sent \(expected)"
        case .mismatch(let socket, let sequence):
            "socket \(socket): echoed bytes of datagram \(sequence) differ from those sent"
        case .wrongSocket(let socket, let got):
            "socket \(socket): received a datagram sent by socket \(got)"
        case .neverSent(let socket, let sequence):
            "socket \(socket): received datagram \(sequence), which was never sent"
        case .stalled(let socket, let lost):
            "socket \(socket): no round trip completed in the whole run (\(lost) datagrams timed out)"
        case .channelError(let socket, let error):
            "socket \(socket): \(error)"
        }
    }
}

/// The datagrams each socket sends, and the check that an echo holds exactly the bytes of one of them.
///
/// A datagram is `size` bytes: its sequence number (8 bytes, big-endian), the sending socket's index
/// (4 bytes, big-endian), then `size - 12` bytes of the pattern `byte[j] = j & 0xff` starting at
/// `(7 * socket + sequence) & 0xff`. Every datagram of a socket therefore differs from the one before
/// it, and a reply names the datagram it answers, so stale, cross-socket or corrupted echoes are caught
/// and a late reply is told apart from an unknown one.
struct DatagramPayload: Sendable {
    static let headerSize = 12

    /// Bytes per datagram.
    let size: Int
    private let reference: ByteBuffer

    init(size: Int) {
        precondition(size >= Self.headerSize, "datagram size must hold the 12-byte header")
        self.size = size
        let body = size - Self.headerSize
        var reference = ByteBufferAllocator().buffer(capacity: body + 255)
        for j in 0..<(body + 255) {
            reference.writeInteger(UInt8(truncatingIfNeeded: j))
        }
        self.reference = reference
    }

    private func offset(socket: Int, sequence: UInt64) -> Int {
        Int(truncatingIfNeeded: (UInt64(truncatingIfNeeded: socket) &* 7 &+ sequence) & 0xff)
    }

    /// Datagram `sequence` of socket `socket`, written into a fresh buffer from `allocator`.
    func datagram(socket: Int, sequence: UInt64, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: self.size)
        buffer.writeInteger(sequence)
        buffer.writeInteger(UInt32(truncatingIfNeeded: socket))
        let offset = self.offset(socket: socket, sequence: sequence)
        self.reference.withUnsafeReadableBytes { pattern in
            _ = buffer.writeBytes(UnsafeRawBufferPointer(rebasing: pattern[offset..<(offset + self.size - Self.headerSize)]))
        }
        return buffer
    }

    /// The sequence number an echoed datagram claims, after checking its size, socket and body.
    func check(_ received: ByteBuffer, socket: Int) -> Result<UInt64, UDPEchoLoadError> {
        guard received.readableBytes == self.size else {
            return .failure(.wrongSize(socket: socket, expected: self.size, got: received.readableBytes))
        }
        // Invariant: the size check above guarantees the 12 header bytes.
        let sequence = received.getInteger(at: received.readerIndex, as: UInt64.self)!
        let sender = received.getInteger(at: received.readerIndex + 8, as: UInt32.self)!
        guard sender == UInt32(truncatingIfNeeded: socket) else {
            return .failure(.wrongSocket(socket: socket, got: sender))
        }
        let offset = self.offset(socket: socket, sequence: sequence)
        let body = self.size - Self.headerSize
        let same = received.withUnsafeReadableBytes { got in
            self.reference.withUnsafeReadableBytes { expected in
                memcmp(got.baseAddress! + Self.headerSize, expected.baseAddress! + offset, body) == 0
            }
        }
        return same ? .success(sequence) : .failure(.mismatch(socket: socket, sequence: sequence))
    }
}

/// One ping-pong UDP socket: keeps `window` datagrams in flight, each answered by its echo.
///
/// The channel is connected to the server, so only the server's datagrams arrive. Every reply is
/// checked (``DatagramPayload/check(_:socket:)``); a reply to an outstanding datagram completes a round
/// trip and sends the next datagram. A datagram with no reply after `timeout` is counted as lost and
/// replaced by a new one, so a lost request or reply costs at most about 1.5 × `timeout` and never stalls
/// the socket; a reply that turns up after that is checked and counted as late. At the window's end the
/// handler stops sending and completes its promise with the counts; a wrong reply or a channel error
/// (e.g. `ECONNREFUSED` once the server is gone) fails it instead.
final class UDPEchoClientHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = ByteBuffer

    private enum State {
        case running
        case finished
        case failed
    }

    private let socket: Int
    private let payload: DatagramPayload
    private let window: MeasurementWindow
    private let inFlight: Int
    private let timeout: TimeAmount
    private let promise: EventLoopPromise<SocketCount>

    private var state = State.running
    private var count = SocketCount()
    private var nextSequence: UInt64 = 0
    /// Datagrams sent and not yet answered nor given up on, with when they were sent.
    private var outstanding: [(sequence: UInt64, sentAt: NIODeadline)] = []
    private var timeoutTask: Scheduled<Void>?

    init(
        socket: Int,
        payload: DatagramPayload,
        window: MeasurementWindow,
        inFlight: Int,
        timeout: TimeAmount,
        promise: EventLoopPromise<SocketCount>
    ) {
        self.socket = socket
        self.payload = payload
        self.window = window
        self.inFlight = inFlight
        self.timeout = timeout
        self.promise = promise
        self.outstanding.reserveCapacity(inFlight)
    }

    func channelActive(context: ChannelHandlerContext) {
        let loop = context.eventLoop.assumeIsolated()
        loop.scheduleTask(deadline: self.window.end) {
            self.finish()
        }
        self.armTimeoutCheck(context: context)
        for _ in 0..<self.inFlight {
            self.send(context: context, now: .now())
        }
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.state == .running else { return }
        let envelope = Self.unwrapInboundIn(data)
        let sequence: UInt64
        switch self.payload.check(envelope.data, socket: self.socket) {
        case .success(let value): sequence = value
        case .failure(let error):
            self.fail(error, context: context)
            return
        }
        guard let slot = self.outstanding.firstIndex(where: { $0.sequence == sequence }) else {
            if sequence < self.nextSequence {
                self.count.late += 1
            } else {
                self.fail(.neverSent(socket: self.socket, sequence: sequence), context: context)
            }
            return
        }
        self.outstanding.remove(at: slot)
        self.count.total += 1
        let now = NIODeadline.now()
        if now >= self.window.end {
            self.finish()
            return
        }
        if now >= self.window.start {
            self.count.measured += 1
        }
        self.send(context: context, now: now)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(.channelError(socket: self.socket, error: error), context: context)
    }

    /// Checks for lost datagrams twice per timeout, so one is replaced between 1× and 1.5× the timeout.
    private func armTimeoutCheck(context: ChannelHandlerContext) {
        let period = max(TimeAmount.milliseconds(1), .nanoseconds(self.timeout.nanoseconds / 2))
        self.timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: period) {
            guard self.state == .running else { return }
            self.expire(context: context)
            self.armTimeoutCheck(context: context)
        }
    }

    /// Gives up on every datagram older than the timeout and sends one new datagram for each.
    private func expire(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        let before = self.outstanding.count
        self.outstanding.removeAll { $0.sentAt + self.timeout <= now }
        let expired = before - self.outstanding.count
        guard expired > 0 else { return }
        self.count.lost += UInt64(expired)
        if now >= self.window.start && now < self.window.end {
            self.count.lostInWindow += UInt64(expired)
        }
        guard now < self.window.end else { return }
        for _ in 0..<expired {
            self.send(context: context, now: now)
        }
        context.flush()
    }

    /// Queues the next datagram; the caller flushes (once per read burst or timer tick).
    private func send(context: ChannelHandlerContext, now: NIODeadline) {
        let sequence = self.nextSequence
        self.nextSequence &+= 1
        self.outstanding.append((sequence, now))
        let datagram = self.payload.datagram(socket: self.socket, sequence: sequence, allocator: context.channel.allocator)
        context.write(Self.wrapOutboundOut(datagram), promise: nil)
    }

    private func finish() {
        guard self.state == .running else { return }
        self.timeoutTask?.cancel()
        if self.count.total == 0 {
            self.state = .failed
            self.promise.fail(UDPEchoLoadError.stalled(socket: self.socket, lost: self.count.lost))
            return
        }
        self.state = .finished
        self.promise.succeed(self.count)
    }

    private func fail(_ error: UDPEchoLoadError, context: ChannelHandlerContext) {
        guard self.state == .running else { return }
        self.state = .failed
        self.timeoutTask?.cancel()
        self.promise.fail(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension UDPEchoClientHandler: Sendable {}
