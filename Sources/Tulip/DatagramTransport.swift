import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The transport of a datagram endpoint: how a ``DatagramProtocol`` sends, closes and applies
/// back-pressure (asyncio's `DatagramTransport`, ASYNCIO-SPEC §16).
///
/// A `DatagramTransport` is confined to its loop's thread: call it from protocol callbacks, loop
/// callbacks and tasks on that loop. ``sendto(_:to:)`` sends at once with one system call when
/// nothing is queued (DT-4); only when the kernel's buffer is full does it queue the datagram and
/// sends it, in order, once the kernel takes it again. Errors from the operating system never close the
/// endpoint (DT-5, DT-6): they reach ``DatagramProtocol/errorReceived(_:)``. ``close()`` flushes
/// the queue before closing and ``abort()`` drops it (DT-10). Receiving starts only after
/// `connectionMade` returns, and ``pauseReading()`` takes effect at once (DT-11).
///
/// Receiving goes through a NIO datagram channel over a *duplicate* of the socket, which the
/// transport keeps. NIO 2.101 closes its channel when it cannot build a sender address — a
/// datagram from an *unnamed* unix socket (a sender that never bound) — or on a receive error
/// other than `ECONNREFUSED`/`ENOMEM` (for example `EHOSTUNREACH`). Neither ends the endpoint:
/// the protocol gets ``DatagramProtocol/errorReceived(_:)`` (for an unnamed sender, a
/// ``TulipError`` with code `socketError` and errno `EDESTADDRREQ`; that datagram, which could not
/// be answered anyway, is dropped), and a new channel is registered on the same socket at once, so
/// the bound address and the datagrams queued in the kernel survive (DT-6). Re-creations are
/// rate-limited (``channelRestartBurst`` at once, then ``channelRestartsPerSecond``) and reported to
/// the loop's exception handler at most once per ``channelRestartReportInterval``. Sending never
/// goes through NIO, so send errors are never fatal.
public final class DatagramTransport {
    /// The loop that owns this transport.
    public let loop: TulipLoop
    /// A number unique among this process's transports, for logs.
    public let connectionID: UInt64
    /// Addresses: `sockname`, and `peername` when connected (XI-4).
    public private(set) var extraInfo: TransportInfo
    /// The default destination of ``sendto(_:to:)``: the connected peer, or with
    /// `allowBroadcast` the remote address given at creation (DE-8); `nil` otherwise.
    public let remoteAddress: SocketAddress?

    let fileDescriptor: CInt
    private let isConnected: Bool
    var unixFile: BoundSocket.UnixSocketFile?
    var onLost: ((DatagramTransport) -> Void)?

    private var context: ChannelHandlerContext?
    /// Which NIO channel is current; a replaced channel's late events are ignored.
    private(set) var generation = 0
    /// Registers a new NIO channel (over a new duplicate of ``fileDescriptor``) for `generation`.
    var makeChannel: ((Int) -> EventLoopFuture<Void>)?
    /// NIO closed its channel on its own and a new one is being registered.
    private var restarting = false
    private var restartTokens = Double(DatagramTransport.channelRestartBurst)
    private var restartTokensUpdated = NIODeadline.now()
    private var restartsSinceReport = 0
    private var lastRestartReport: NIODeadline?
    /// The receive channel was re-created this many times after NIO closed it (DT-6).
    public private(set) var channelRestarts: UInt64 = 0

    /// Channel re-creations allowed back to back (DT-6).
    public static let channelRestartBurst = 256
    /// The sustained re-creation rate once the burst is spent; beyond it, re-creation waits, and
    /// the datagrams stay queued in the kernel meanwhile.
    public static let channelRestartsPerSecond = 1_000.0
    /// How often, at most, re-creations are reported to the exception handler.
    public static let channelRestartReportInterval = TimeAmount.seconds(10)
    private var protocolObject: (any DatagramProtocol)?
    private var callbacks = ProtocolCallbackStateMachine()

    // Reading.
    private var wantsReading = true
    private var readingArmed = false
    private var autoReadEnabled = false
    private var heldReads: CircularBuffer<AddressedEnvelope<ByteBuffer>> = CircularBuffer(initialCapacity: 0)
    private var deliveryScheduled = false

    // Writing.
    private var queue: CircularBuffer<(data: ByteBuffer, address: SocketAddress?)> = CircularBuffer(initialCapacity: 0)
    private var queuedBytes = 0
    private var retryScheduled = false
    private var limits = WriteBufferLimits.default
    private var writingPaused = false
    private var inTransportCall = false
    private var closing = false
    private var aborted = false
    private var channelGone = false
    private var lostError: (any Error)?
    private var lastChannelError: (any Error)?

    /// Datagrams delivered to the protocol (or held for it) so far.
    public private(set) var datagramsReceived: UInt64 = 0
    /// Datagrams accepted by ``sendto(_:to:)`` so far.
    public private(set) var datagramsSent: UInt64 = 0
    /// Payload bytes received so far.
    public private(set) var bytesReceived: UInt64 = 0
    /// Payload bytes accepted by ``sendto(_:to:)`` so far.
    public private(set) var bytesSent: UInt64 = 0
    /// Datagrams dropped because the transport was closing or closed (DT-9).
    public private(set) var droppedDatagrams = 0
    /// Send and receive errors reported to ``DatagramProtocol/errorReceived(_:)`` (DT-5, DT-6).
    public private(set) var errorCount = 0

    init(
        loop: TulipLoop,
        protocol protocolObject: any DatagramProtocol,
        fileDescriptor: CInt,
        remoteAddress: SocketAddress?,
        isConnected: Bool
    ) {
        self.loop = loop
        self.connectionID = ConnectionIDs.next()
        self.protocolObject = protocolObject
        self.fileDescriptor = fileDescriptor
        self.remoteAddress = remoteAddress
        self.isConnected = isConnected
        self.extraInfo = TransportInfo()
    }

    // MARK: - State

    /// The protocol object receiving this transport's callbacks.
    public var `protocol`: (any DatagramProtocol)? { self.protocolObject }

    /// Whether ``close()`` or ``abort()`` was called or the endpoint failed (TR-2).
    public var isClosing: Bool { self.closing || self.channelGone }

    /// Whether the transport receives: true from creation until ``pauseReading()`` or closing (RT-1).
    public var isReading: Bool { self.wantsReading && !self.isClosing }

    /// Duplicates (close-on-exec) the endpoint's socket; the caller owns the duplicate.
    ///
    /// For a successor endpoint made with `createDatagramEndpoint(sock:)`, or for the service
    /// manager's fd store.
    ///
    /// Loop thread only.
    /// - Throws: ``TulipError`` with code `transportClosing` once the socket is closed, `socketError`
    ///   with the errno when `fcntl(F_DUPFD_CLOEXEC)` fails.
    public func duplicateSocket() throws -> CInt {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.channelGone else { throw TulipError.make(.transportClosing, "the datagram endpoint is closed") }
        let duplicate = fcntl(self.fileDescriptor, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else {
            let code = errno
            throw TulipError.make(
                .socketError,
                "cannot duplicate socket \(self.fileDescriptor): \(BoundSocket.errorText(code))",
                errno: code
            )
        }
        return duplicate
    }

    /// Leaves a unix endpoint's socket file in place when it closes: another owner of the same
    /// socket (a successor endpoint, the service manager's fd store) still serves it.
    ///
    /// Loop thread only.
    public func keepSocketFileOnClose() {
        self.loop.eventLoop.preconditionInEventLoop()
        self.unixFile = nil
    }

    /// The allocator to make buffers for ``sendto(_:to:)`` with.
    public var allocator: ByteBufferAllocator { self.context?.channel.allocator ?? ByteBufferAllocator() }

    /// The asyncio key lookup (`get_extra_info`): `"peername"`, `"sockname"`; `default` otherwise.
    public func extraInfo(_ key: String, default defaultValue: (any Sendable)? = nil) -> (any Sendable)? {
        self.extraInfo.value(forKey: key, default: defaultValue)
    }

    // MARK: - Reading

    /// Stops delivering datagrams at once; ones already read are held, unread ones stay in the
    /// kernel (RT-2, RT-4, DT-11).
    ///
    /// Idempotent; a no-op when closing.
    public func pauseReading() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.isClosing, self.wantsReading else { return }
        self.wantsReading = false
        self.updateAutoRead()
    }

    /// Resumes receiving after ``pauseReading()``.
    ///
    /// Held datagrams are delivered first, in the next iteration. A no-op when not paused or when
    /// closing (RT-2, RT-5).
    public func resumeReading() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.isClosing, !self.wantsReading else { return }
        self.wantsReading = true
        if !self.heldReads.isEmpty {
            self.scheduleHeldDelivery()
        } else {
            self.updateAutoRead()
        }
    }

    private var mayDeliverNow: Bool {
        self.readingArmed && self.wantsReading && !self.isClosing && self.loop.isDispatching
    }

    private func updateAutoRead() {
        let enable = self.mayDeliverNow && self.heldReads.isEmpty && !self.deliveryScheduled
        guard enable != self.autoReadEnabled, let context = self.context, !self.channelGone else { return }
        self.autoReadEnabled = enable
        try? context.channel.syncOptions?.setOption(.autoRead, value: enable)
    }

    private func scheduleHeldDelivery() {
        guard !self.deliveryScheduled else { return }
        self.deliveryScheduled = true
        self.loop.callSoonInternal { [self] in
            self.deliveryScheduled = false
            while self.mayDeliverNow, let envelope = self.heldReads.popFirst() {
                self.deliver(envelope)
            }
            self.updateAutoRead()
        }
    }

    private func deliver(_ envelope: AddressedEnvelope<ByteBuffer>) {
        guard self.callbacks.mayDeliverData(), let protocolObject = self.protocolObject else { return }
        do {
            try protocolObject.datagramReceived(envelope.data, from: envelope.remoteAddress)
        } catch {
            // DT-7: a failing callback is fatal.
            self.loop.callExceptionHandler(
                ExceptionContext(message: "Fatal error: protocol.datagram_received() call failed.", error: error)
            )
            if self.lostError == nil { self.lostError = error }
            self.abort()
        }
    }

    // MARK: - Writing

    /// Sends `data` as one datagram to `address`, or to ``remoteAddress`` when `address` is `nil`.
    ///
    /// An empty buffer sends an empty datagram (DT-2). When nothing is queued the datagram goes to
    /// the kernel now; if its buffer is full, the datagram is queued and sent in order once the
    /// socket is writable (DT-4), counted as its size plus 8 bytes (FC-8), and crossing the
    /// high-water mark calls ``BaseProtocol/pauseWriting()`` before this returns (FC-4). An
    /// operating-system error (`ECONNREFUSED`, `EMSGSIZE`, …) drops the datagram and is reported to
    /// ``DatagramProtocol/errorReceived(_:)`` in a later iteration; the endpoint stays open (DT-5).
    /// After ``close()``/``abort()`` the datagram is dropped and counted (DT-9).
    /// - Throws: ``TulipError/Code/invalidArgument`` when the transport has a remote address and
    ///   `address` is another one ("Invalid address: must be None or …", DT-3), or when it has none
    ///   and `address` is `nil`.
    public func sendto(_ data: ByteBuffer, to address: SocketAddress? = nil) throws {
        self.loop.eventLoop.preconditionInEventLoop()
        let destination: SocketAddress
        if let remote = self.remoteAddress {
            if let address, address != remote {
                throw TulipError.invalidArgument("Invalid address: must be None or \(BoundSocket.describe(remote))")
            }
            destination = remote
        } else if let address {
            destination = address
        } else {
            throw TulipError.invalidArgument("sendto() needs an address: the endpoint is not connected")
        }
        guard self.context != nil || self.restarting, !self.isClosing else {
            self.droppedDatagrams += 1
            return
        }
        self.datagramsSent &+= 1
        self.bytesSent &+= UInt64(data.readableBytes)
        if self.queue.isEmpty && !self.retryScheduled {
            switch self.sendNow(data, to: destination) {
            case .sent:
                return
            case .failed(let error):
                self.inTransportCall = true
                defer { self.inTransportCall = false }
                self.reportError(error)
                return
            case .wouldBlock:
                break
            }
        }
        self.queue.append((data, self.isConnected ? nil : destination))
        self.queuedBytes += data.readableBytes + 8
        self.inTransportCall = true
        defer { self.inTransportCall = false }
        self.evaluatePause()
        self.sendQueued()
    }

    /// Sends the bytes of `bytes` (copied into a new buffer) as one datagram; see ``sendto(_:to:)``.
    public func sendto(_ bytes: some Sequence<UInt8>, to address: SocketAddress? = nil) throws {
        var buffer = self.allocator.buffer(capacity: bytes.underestimatedCount)
        buffer.writeBytes(bytes)
        try self.sendto(buffer, to: address)
    }

    private enum SendResult {
        case sent
        case wouldBlock
        case failed(TulipError)
    }

    /// One `send`/`sendto` system call on the socket NIO polls; the socket is non-blocking.
    private func sendNow(_ data: ByteBuffer, to destination: SocketAddress) -> SendResult {
        while true {
            let result: Int = data.withUnsafeReadableBytes { bytes in
                if self.isConnected {
                    return Glibc.send(self.fileDescriptor, bytes.baseAddress, bytes.count, CInt(MSG_NOSIGNAL))
                }
                return destination.withSockAddr { pointer, length in
                    Glibc.sendto(
                        self.fileDescriptor,
                        bytes.baseAddress,
                        bytes.count,
                        CInt(MSG_NOSIGNAL),
                        pointer,
                        socklen_t(length)
                    )
                }
            }
            if result >= 0 { return .sent }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            default: return .failed(Self.socketError(code))
            }
        }
    }

    static func socketError(_ code: CInt) -> TulipError {
        TulipError.make(.socketError, "[Errno \(code)] \(String(cString: strerror(code)))", errno: code)
    }

    /// Drains the queue in order with direct sends while the kernel takes them; on `EAGAIN` it
    /// tries again a millisecond later.
    private func sendQueued() {
        while !self.retryScheduled, let first = self.queue.first {
            guard !self.channelGone, !self.aborted else { return }
            let destination = first.address ?? self.remoteAddress!  // invariant: queued unaddressed only when connected
            switch self.sendNow(first.data, to: destination) {
            case .sent:
                self.dequeueFirst()
            case .failed(let error):
                self.dequeueFirst()
                self.reportError(error)
            case .wouldBlock:
                // The kernel's buffer is full. NIO's own datagram writer cannot be the waiter: it
                // closes the channel on ECONNREFUSED and cannot batch sends to unix addresses, so
                // the queue retries on a short timer instead, which costs nothing while the
                // kernel keeps up.
                self.retryScheduled = true
                self.loop.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(1)) { [self] in
                    self.retryScheduled = false
                    self.sendQueued()
                }
                return
            }
        }
        if self.queue.isEmpty && self.closing && !self.channelGone {
            self.closeChannel()
        }
    }

    private func dequeueFirst() {
        guard let first = self.queue.popFirst() else { return }
        self.queuedBytes -= first.data.readableBytes + 8
        if self.writingPaused && self.queuedBytes <= self.limits.low {
            self.dispatch { [self] in self.evaluateResume() }
        }
    }

    /// NIO's datagram write errors, as the errno-carrying error the protocol sees.
    private static func normalize(_ error: any Error) -> any Error {
        if let io = error as? IOError { return Self.socketError(io.errnoCode) }
        if let channelError = error as? ChannelError {
            if channelError == .writeMessageTooLarge { return Self.socketError(EMSGSIZE) }
            if channelError == .writeHostUnreachable { return Self.socketError(EHOSTUNREACH) }
        }
        return error
    }

    private func reportError(_ error: any Error) {
        self.errorCount += 1
        self.dispatch { [self] in
            guard !self.callbacks.isLost else { return }
            self.protocolObject?.errorReceived(error)
        }
    }

    /// Datagrams queued and not yet handed to the kernel, each counted as its size plus 8 bytes (FC-8).
    public var writeBufferSize: Int { self.queuedBytes }

    /// The write-buffer limits as asyncio's `(low, high)` (FC-1).
    public var writeBufferLimits: WriteBufferLimits { self.limits }

    /// Sets the water marks (FC-2).
    ///
    /// Pauses the protocol at once if the buffer is already above the new high mark (FC-3).
    /// Lowering them never resumes.
    /// - Throws: ``TulipError/Code/invalidArgument`` unless `high >= low >= 0`.
    public func setWriteBufferLimits(high: Int? = nil, low: Int? = nil) throws {
        self.loop.eventLoop.preconditionInEventLoop()
        self.limits = try WriteBufferLimits(high: high, low: low)
        self.inTransportCall = true
        defer { self.inTransportCall = false }
        self.evaluatePause()
    }

    private func evaluatePause() {
        guard !self.writingPaused, self.queuedBytes > self.limits.high else { return }
        self.writingPaused = true
        self.protocolObject?.pauseWriting()
    }

    private func evaluateResume() {
        guard self.writingPaused, !self.callbacks.isLost, self.queuedBytes <= self.limits.low else { return }
        self.writingPaused = false
        self.protocolObject?.resumeWriting()
    }

    /// Runs a protocol callback now if allowed, or in the next iteration if it would be re-entrant
    /// or the loop is stopped (IT-3).
    private func dispatch(_ body: @escaping () -> Void) {
        if self.inTransportCall || !self.loop.isDispatching {
            self.loop.callSoonInternal(body)
        } else {
            body()
        }
    }

    // MARK: - Ending

    /// Stops receiving at once, sends the queued datagrams, then closes (DT-10).
    ///
    /// `connectionLost(nil)` follows in a later iteration. Idempotent, never throws (TR-3).
    public func close() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.closing else { return }
        self.closing = true
        self.heldReads.removeAll()
        self.updateAutoRead()
        if self.queue.isEmpty && !self.retryScheduled && !self.channelGone {
            self.closeChannel()
        }
    }

    /// Drops the queued datagrams and closes now; `connectionLost(nil)` follows in a later
    /// iteration (DT-10, TR-5).
    public func abort() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.aborted else { return }
        self.closing = true
        self.aborted = true
        self.heldReads.removeAll()
        self.queue.removeAll()
        self.queuedBytes = 0
        guard !self.channelGone else { return }
        self.closeChannel()
    }

    /// Closes the current NIO channel; `channelInactive` finishes the endpoint.
    ///
    /// Between channels (a re-creation in flight) the endpoint finishes when the re-creation sees
    /// `closing`.
    private func closeChannel() {
        guard !self.restarting, let context = self.context else { return }
        context.close(promise: nil)
    }
}

// Loop-confined: every member is touched on the loop's thread only.
@available(*, unavailable)
extension DatagramTransport: Sendable {}

// MARK: - Events from DatagramChannelHandler

extension DatagramTransport {
    func setContext(_ context: ChannelHandlerContext, generation: Int) {
        guard generation == self.generation else { return }
        self.context = context
    }

    /// The channel is registered: schedules `connectionMade`, then arms receiving (DE-9).
    func start(onConnectionMade: @escaping () -> Void) {
        guard let context = self.context else { return }
        let local = context.channel.localAddress ?? ((try? BoundSocket.localAddress(of: self.fileDescriptor)) ?? nil)
        self.extraInfo = TransportInfo(peerAddress: self.isConnected ? self.remoteAddress : nil, localAddress: local)
        self.loop.register(self)
        self.loop.callSoonInternal { [self] in
            if self.callbacks.connectionMade() {
                self.protocolObject?.connectionMade(transport: self)
            }
            self.readingArmed = true
            if !self.heldReads.isEmpty {
                self.scheduleHeldDelivery()
            } else {
                self.updateAutoRead()
            }
            onConnectionMade()
        }
    }

    func channelRead(_ envelope: AddressedEnvelope<ByteBuffer>) {
        guard !self.isClosing else { return }
        self.datagramsReceived &+= 1
        self.bytesReceived &+= UInt64(envelope.data.readableBytes)
        if self.mayDeliverNow && self.heldReads.isEmpty && !self.deliveryScheduled {
            self.deliver(envelope)
        } else {
            self.heldReads.append(envelope)
            self.updateAutoRead()
        }
    }

    /// NIO reports a receive error it survives (`ECONNREFUSED`) or one it closes the channel for;
    /// either way the protocol hears of it through `errorReceived` (DT-6).
    func errorCaught(_ error: any Error) {
        let normalized: any Error
        if error is SocketAddressError {
            // NIO could not make a SocketAddress of the sender: an unnamed unix socket.
            normalized = TulipError.make(
                .socketError,
                "[Errno \(EDESTADDRREQ)] datagram from an unnamed socket dropped: it has no address to answer",
                errno: EDESTADDRREQ
            )
        } else {
            normalized = Self.normalize(error)
        }
        self.lastChannelError = normalized
        self.reportError(normalized)
    }

    func channelInactive(generation: Int) {
        guard generation == self.generation, !self.channelGone else { return }
        self.context = nil
        self.autoReadEnabled = false
        if self.closing || self.makeChannel == nil {
            self.finish()
        } else {
            // NIO closed the channel on its own (DT-6): keep the endpoint, make a new channel.
            if self.lastChannelError == nil {
                self.reportError(Self.socketError(EIO))
            }
            self.lastChannelError = nil
            self.restarting = true
            self.generation += 1
            self.scheduleRestart()
        }
    }

    private func scheduleRestart() {
        let now = NIODeadline.now()
        let elapsed = Double((now - self.restartTokensUpdated).nanoseconds) / 1e9
        self.restartTokens = min(
            Double(Self.channelRestartBurst),
            self.restartTokens + elapsed * Self.channelRestartsPerSecond
        )
        self.restartTokensUpdated = now
        if self.restartTokens >= 1 {
            self.restartTokens -= 1
            self.restartChannel()
        } else {
            let wait = (1 - self.restartTokens) / Self.channelRestartsPerSecond
            self.loop.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(wait * 1e9) + 1)) { [self] in
                self.scheduleRestart()
            }
        }
    }

    private func restartChannel() {
        guard !self.closing, let makeChannel = self.makeChannel else {
            self.restarting = false
            self.finish()
            return
        }
        self.channelRestarts &+= 1
        self.restartsSinceReport += 1
        let now = NIODeadline.now()
        if self.lastRestartReport.map({ now - $0 >= Self.channelRestartReportInterval }) ?? true {
            self.loop.callExceptionHandler(
                ExceptionContext(
                    message:
                        "datagram endpoint \(self.connectionID): NIO closed the receive channel \(self.restartsSinceReport) time(s); re-created on the same socket"
                )
            )
            self.lastRestartReport = now
            self.restartsSinceReport = 0
        }
        let generation = self.generation
        makeChannel(generation).assumeIsolated().whenComplete { [self] outcome in
            guard generation == self.generation else { return }
            self.restarting = false
            switch outcome {
            case .success:
                if self.closing {
                    if self.queue.isEmpty && !self.retryScheduled || self.aborted { self.closeChannel() }
                } else if !self.heldReads.isEmpty {
                    self.scheduleHeldDelivery()
                } else {
                    self.updateAutoRead()
                }
            case .failure(let error):
                if self.lostError == nil { self.lostError = error }
                self.finish()
            }
        }
    }

    /// The endpoint is over: closes the socket and schedules `connectionLost`.
    private func finish() {
        guard !self.channelGone else { return }
        self.channelGone = true
        self.context = nil
        Glibc.close(self.fileDescriptor)
        if !self.closing, self.lostError == nil { self.lostError = self.lastChannelError }
        self.heldReads.removeAll()
        self.queue.removeAll()
        self.queuedBytes = 0
        if let file = self.unixFile { BoundSocket.removeSocketFile(file) }
        self.loop.callSoonInternal { [self] in self.deliverConnectionLost() }
    }

    private func deliverConnectionLost() {
        let error = self.lostError
        if self.callbacks.connectionLost() {
            self.protocolObject?.connectionLost(error: error)
        }
        self.loop.unregister(self)
        self.onLost?(self)
        self.onLost = nil
        self.makeChannel = nil
        self.protocolObject = nil
        self.context = nil
    }
}

// MARK: - Loop pauses

extension DatagramTransport: LoopParticipant {
    func loopDidPause() {
        self.updateAutoRead()
    }

    func loopDidResume() {
        if !self.heldReads.isEmpty {
            self.scheduleHeldDelivery()
        } else {
            self.updateAutoRead()
        }
        if self.writingPaused { self.dispatch { [self] in self.evaluateResume() } }
    }
}
