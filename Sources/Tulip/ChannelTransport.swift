import NIOCore
import TulipTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The transport of a stream connection: how a protocol object writes, closes and applies
/// back-pressure (asyncio's socket transport, ASYNCIO-SPEC §15).
///
/// A `ChannelTransport` is confined to its loop's thread: call it from protocol callbacks, loop
/// callbacks and tasks on that loop. It keeps asyncio's semantics where NIO's differ
/// (ARCHITECTURE §3): ``close()`` flushes before closing and ``abort()`` discards; writes made
/// while a read burst is delivered are coalesced and flushed once when the burst ends, and
/// flushed at once otherwise; write flow control follows asyncio's water marks (FC-*); reading
/// starts only after `connectionMade` returns and ``pauseReading()`` takes effect at once,
/// holding bytes NIO already read.
public final class ChannelTransport {
    /// The loop that owns this transport.
    public let loop: TulipLoop
    /// A number unique among this process's transports, for logs.
    public let connectionID: UInt64
    /// When the transport was created.
    public let openedAt: NIODeadline
    /// Addresses, cached when the connection was accepted so they outlive it.
    public private(set) var extraInfo: TransportInfo

    private var context: ChannelHandlerContext?
    private var protocolObject: (any StreamProtocol)?
    private var bufferedProtocol: (any BufferedStreamProtocol)?
    private var callbacks = ProtocolCallbackStateMachine()
    weak var observer: (any ConnectionObserver)?
    var onLost: ((ChannelTransport) -> Void)?

    /// Which side of a pipe this transport serves, if it serves one (ASYNCIO-SPEC §17).
    enum PipeRole {
        /// A socket, or a pipe channel with both an input and an output: stream semantics.
        case none
        /// Input only: EOF always closes (RP-3), writes are dropped.
        case read
        /// Output only: NIO's synthetic input closure is ignored, and a reader that goes away
        /// while data is queued ends with a broken-pipe error (WP-8).
        case write
    }
    var pipeRole = PipeRole.none
    /// Whether the channel is a pipe (NIOPipeBootstrap) rather than a socket: `sendfile` refuses
    /// pipes (SF-3, WP-10).
    var isPipe = false
    private var queuedDataMarkerArmed = false
    private var queuedDataDiscarded = false

    // Reading.
    private var wantsReading = true
    private var readingArmed = false
    private var autoReadEnabled = false
    private var heldReads: CircularBuffer<ByteBuffer> = CircularBuffer(initialCapacity: 0)
    private var heldEOF = false
    private var deliveryScheduled = false
    private var inReadBurst = false

    // Writing.
    private var unflushedBytes = 0
    private var limits = WriteBufferLimits.default
    private var exactWaterMarks = true
    private var writingPaused = false
    private var inTransportCall = false
    private var markerArmed = false
    private var eofWritten = false
    private var closing = false
    private var aborted = false
    private var lostError: (any Error)?
    private var channelGone = false

    // sendfile (TulipLoop+Sendfile.swift).
    /// Whether `sendfile` may hand the file to the kernel (sendfile(2) through a NIO `FileRegion`).
    ///
    /// True for plain TCP and unix sockets. A transport whose pipeline transforms bytes (TLS) must
    /// set it to false, so that `sendfile` uses its read/write fallback (SF-3).
    var supportsNativeSendfile = true
    /// What the TLS handshake negotiated, for TLS transports; set before attaching.
    var tlsInfo: TLSConnectionInfo?
    /// Set on the transport `startTLS` makes: its protocol already had `connectionMade` from the
    /// transport it replaces (TLS-6), so attaching announces nothing and reading waits for
    /// ``startReadingAfterUpgrade()``.
    var continuesConnection = false
    /// Told when `startTLS` hands this transport's connection to a new transport (or, with `nil`,
    /// when the upgrade failed and the connection is gone): a server re-tracks its clients.
    var onReplaced: ((ChannelTransport, ChannelTransport?) -> Void)?
    /// Which kind of `sendfile` transfer is in progress, if any.
    var sendfileMode = SendfileMode.none
    /// What a fallback `sendfile` runs once writing resumes (FC-5) or the channel closes.
    private var writableWaiters: [() -> Void] = []

    // Idle timeout (ChannelTransport+IdleTimeout.swift).
    /// Set by the server before the transport attaches: with no bytes in either direction for this
    /// long, the protocol is told and the transport closes.
    var idleTimeout: TimeAmount?
    /// When bytes last moved: stamped once per read burst and once per flush, never per byte.
    var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// The one pending idle check; re-armed only when it fires, not on traffic.
    var idleCheck: Scheduled<Void>?
    /// The write buffer's size at the last idle check: a buffer that drains is traffic too.
    var idleCheckWriteBuffer = 0

    /// Bytes delivered to the protocol (or held for it) so far.
    public private(set) var bytesReceived: UInt64 = 0
    /// Bytes accepted by ``write(_:)`` so far.
    public private(set) var bytesSent: UInt64 = 0
    /// startTLS: one connection, so the TLS transport's totals go on from the plaintext ones.
    func continueCounting(from previous: ChannelTransport) {
        self.bytesReceived = previous.bytesReceived
        self.bytesSent = previous.bytesSent
    }

    /// Writes dropped because the transport was closing or closed (WT-6).
    public private(set) var droppedWrites = 0
    /// Whether writing EOF is supported: true for TCP and unix stream sockets (WT-10).
    public let canWriteEOF: Bool

    init(
        loop: TulipLoop,
        protocol protocolObject: any StreamProtocol,
        connectionID: UInt64,
        openedAt: NIODeadline = .now(),
        canWriteEOF: Bool = true
    ) {
        self.loop = loop
        self.connectionID = connectionID
        self.openedAt = openedAt
        self.extraInfo = TransportInfo()
        self.canWriteEOF = canWriteEOF
        self.setProtocolStorage(protocolObject)
    }

    // MARK: - Protocol

    /// The protocol object receiving this transport's callbacks (TR-7).
    public var `protocol`: (any StreamProtocol)? { self.protocolObject }

    /// Sends every later callback to `newProtocol` (PR-9); switching between a plain and a
    /// buffered protocol switches the read path.
    public func setProtocol(_ newProtocol: any StreamProtocol) {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.callbacks.isLost else { return }
        self.setProtocolStorage(newProtocol)
    }

    private func setProtocolStorage(_ newProtocol: any StreamProtocol) {
        self.protocolObject = newProtocol
        self.bufferedProtocol = newProtocol as? any BufferedStreamProtocol
    }

    // MARK: - State

    /// Whether ``close()`` or ``abort()`` was called or the connection failed (TR-2).
    public var isClosing: Bool { self.closing || self.channelGone }

    /// Whether the transport reads: true from creation until ``pauseReading()`` or closing (RT-1).
    public var isReading: Bool { self.wantsReading && !self.isClosing }

    /// The allocator to make buffers for ``write(_:)`` with.
    public var allocator: ByteBufferAllocator { self.context?.channel.allocator ?? ByteBufferAllocator() }

    /// The asyncio key lookup (`get_extra_info`): `"peername"`, `"sockname"`; `default` otherwise.
    public func extraInfo(_ key: String, default defaultValue: (any Sendable)? = nil) -> (any Sendable)? {
        self.extraInfo.value(forKey: key, default: defaultValue)
    }

    // MARK: - Reading

    /// Stops delivering data at once; bytes already read are held, unread ones stay in the kernel (RT-2, RT-4).
    ///
    /// Idempotent; a no-op when closing.
    public func pauseReading() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.isClosing, self.wantsReading else { return }
        self.wantsReading = false
        self.updateAutoRead()
    }

    /// Resumes reading after ``pauseReading()``: held bytes are delivered first, in the next iteration (RT-2).
    ///
    /// A no-op when not paused or when closing (RT-5).
    public func resumeReading() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.isClosing, !self.wantsReading else { return }
        self.wantsReading = true
        if !self.heldReads.isEmpty || self.heldEOF {
            self.scheduleHeldDelivery()
        } else {
            self.updateAutoRead()
        }
    }

    private var mayDeliverNow: Bool {
        self.readingArmed && self.wantsReading && !self.isClosing && self.loop.isDispatching
    }

    /// NIO reads only while the protocol wants data, the loop runs and nothing is held.
    private func updateAutoRead() {
        let enable = self.mayDeliverNow && self.heldReads.isEmpty && !self.heldEOF && !self.deliveryScheduled
        guard enable != self.autoReadEnabled, let context = self.context, !self.channelGone else { return }
        self.autoReadEnabled = enable
        try? context.channel.syncOptions?.setOption(.autoRead, value: enable)
    }

    private func scheduleHeldDelivery() {
        guard !self.deliveryScheduled else { return }
        self.deliveryScheduled = true
        self.loop.callSoonInternal { [self] in
            self.deliveryScheduled = false
            self.deliverHeld()
        }
    }

    private func deliverHeld() {
        while self.mayDeliverNow, let buffer = self.heldReads.popFirst() {
            self.deliver(buffer)
        }
        if self.heldEOF, self.heldReads.isEmpty, self.mayDeliverNow {
            self.heldEOF = false
            self.deliverEOF()
        }
        self.flushIfNeeded()
        self.updateAutoRead()
    }

    private func deliver(_ buffer: ByteBuffer) {
        guard self.callbacks.mayDeliverData() else { return }
        do {
            if let buffered = self.bufferedProtocol {
                try buffered.feed(buffer)
            } else {
                try self.protocolObject?.dataReceived(buffer)
            }
        } catch {
            self.fail(error, callback: self.bufferedProtocol == nil ? "data_received" : "buffer_updated")
        }
    }

    private func deliverEOF() {
        guard self.callbacks.eofReceived(), let protocolObject = self.protocolObject else { return }
        let keepOpen: Bool
        do {
            keepOpen = try protocolObject.eofReceived()
        } catch {
            self.fail(error, callback: "eof_received")
            return
        }
        // RP-3: a read pipe closes after EOF whatever eofReceived returned; so does TLS (TLS-11:
        // after close_notify there is no half-open TLS connection).
        if !keepOpen || self.pipeRole == .read || self.tlsInfo != nil { self.close() }
    }

    /// PR-6: a failing callback is fatal to the connection; the write buffer is discarded.
    private func fail(_ error: any Error, callback: String) {
        self.loop.callExceptionHandler(
            ExceptionContext(message: "Fatal error: protocol.\(callback)() call failed.", error: error)
        )
        if self.lostError == nil { self.lostError = error }
        self.abort()
    }

    // MARK: - Writing

    /// Queues `data` for sending, without copying it.
    ///
    /// Empty data is ignored (WT-2); after ``close()``/``abort()`` the data is dropped and counted,
    /// never raised (WT-6), except that data written while a graceful close is still flushing is
    /// flushed too (WT-12). Inside a read burst the flush waits for the burst's end; otherwise it
    /// happens now (WT-5). Crossing the high-water mark calls
    /// ``BaseProtocol/pauseWriting()`` before this returns (FC-4).
    /// - Throws: ``TulipError/Code/writeAfterEOF`` after ``writeEOF()`` (WT-3).
    public func write(_ data: ByteBuffer) throws {
        let count = data.readableBytes
        guard count > 0 else { return }
        if self.eofWritten { throw TulipError.make(.writeAfterEOF, "Cannot call write() after write_eof()") }
        if self.sendfileMode == .native { throw Self.sendfileInProgress() }
        guard let context = self.context, !self.channelGone, !self.aborted, self.pipeRole != .read else {
            self.droppedWrites += 1
            return
        }
        self.bytesSent &+= UInt64(count)
        self.inTransportCall = true
        defer { self.inTransportCall = false }
        context.write(NIOAny(data), promise: nil)
        if self.inReadBurst && self.unflushedBytes + count <= self.limits.high {
            self.unflushedBytes += count
        } else {
            self.unflushedBytes = 0
            context.flush()
            self.noteActivity()
        }
        if self.pipeRole == .write { self.trackQueuedData() }
        self.evaluatePause()
    }

    /// WP-8: while data is queued, an empty marker write is pending behind it; NIO fails it if the
    /// channel closes first (the reader went away), which ``channelInactive()`` turns into a
    /// broken-pipe error.
    private func trackQueuedData() {
        guard !self.queuedDataMarkerArmed, let context = self.context, !self.channelGone,
            self.writeBufferSize > 0
        else { return }
        self.queuedDataMarkerArmed = true
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { [self] result in
            self.queuedDataMarkerArmed = false
            switch result {
            case .success: self.trackQueuedData()
            case .failure: self.queuedDataDiscarded = true
            }
        }
    }

    /// Queues the bytes of `bytes` (copied into a new buffer).
    public func write(_ bytes: some Sequence<UInt8>) throws {
        var buffer = self.allocator.buffer(capacity: bytes.underestimatedCount)
        buffer.writeBytes(bytes)
        try self.write(buffer)
    }

    /// Queues the UTF-8 bytes of `string`.
    public func write(string: String) throws {
        try self.write(self.allocator.buffer(string: string))
    }

    /// Writes each buffer in order, as one concatenated write (WT-8).
    /// - Throws: ``TulipError/Code/writeAfterEOF`` after ``writeEOF()``
    ///   ("Cannot call writelines() after write_eof()").
    public func writelines(_ buffers: some Sequence<ByteBuffer>) throws {
        if self.eofWritten { throw TulipError.make(.writeAfterEOF, "Cannot call writelines() after write_eof()") }
        if self.sendfileMode == .native { throw Self.sendfileInProgress() }
        let wasInBurst = self.inReadBurst
        self.inReadBurst = true
        defer { self.inReadBurst = wasInBurst }
        for buffer in buffers { try self.write(buffer) }
        if !wasInBurst { self.flushIfNeeded() }
        self.evaluatePause()
    }

    /// Bytes accepted by ``write(_:)`` and not yet handed to the kernel (WT-11).
    public var writeBufferSize: Int {
        guard let context = self.context, !self.channelGone else { return 0 }
        return (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    /// The write-buffer limits as asyncio's `(low, high)` (FC-1).
    public var writeBufferLimits: WriteBufferLimits { self.limits }

    /// Sets the water marks (FC-2).
    ///
    /// Pauses the protocol at once if the buffer is already above the new high mark (FC-3).
    /// Lowering them never resumes.
    public func setWriteBufferLimits(high: Int? = nil, low: Int? = nil) throws {
        self.loop.eventLoop.preconditionInEventLoop()
        self.limits = try WriteBufferLimits(high: high, low: low)
        self.applyWaterMarks()
        self.inTransportCall = true
        defer { self.inTransportCall = false }
        self.evaluatePause(force: true)
    }

    private func applyWaterMarks() {
        let (mark, exact) = self.limits.nioWaterMark
        self.exactWaterMarks = exact
        try? self.context?.channel.syncOptions?.setOption(.writeBufferWaterMark, value: mark)
    }

    private func flushIfNeeded() {
        guard self.unflushedBytes > 0, let context = self.context else { return }
        self.unflushedBytes = 0
        self.inTransportCall = true
        defer { self.inTransportCall = false }
        context.flush()
        self.noteActivity()
    }

    /// FC-4: pause once the buffer is strictly above high.
    ///
    /// NIO's writability flag says whether that is possible, so the exact size is read only when it is.
    private func evaluatePause(force: Bool = false) {
        guard !self.writingPaused, let context = self.context else { return }
        if self.exactWaterMarks && !force && context.channel.isWritable { return }
        guard self.writeBufferSize > self.limits.high else { return }
        self.writingPaused = true
        // SF-12: a fallback sendfile's own writes pause it, not the protocol.
        if self.sendfileMode != .fallback { self.protocolObject?.pauseWriting() }
        if context.channel.isWritable { self.armDrainMarker() }
    }

    /// FC-5: resume once the buffer is at or below low after a pause.
    private func evaluateResume() {
        guard self.writingPaused, !self.callbacks.isLost else { return }
        guard self.writeBufferSize <= self.limits.low else {
            if self.context?.channel.isWritable == true { self.armDrainMarker() }
            return
        }
        self.writingPaused = false
        if self.sendfileMode != .fallback { self.protocolObject?.resumeWriting() }
        self.runWritableWaiters()
    }

    /// Where NIO's flag cannot tell us (limits changed, or `low == high`), an empty write's
    /// promise completes once everything before it has reached the kernel.
    private func armDrainMarker() {
        guard !self.markerArmed else { return }
        self.markerArmed = true
        self.whenFlushed { [self] in
            self.markerArmed = false
            self.dispatch { self.evaluateResume() }
        }
    }

    /// Runs `body` once every byte written so far has been handed to the kernel.
    private func whenFlushed(_ body: @escaping () -> Void) {
        guard let context = self.context, !self.channelGone else { return }
        self.unflushedBytes = 0
        if self.writeBufferSize == 0 {
            body()
            return
        }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        promise.futureResult.assumeIsolated().whenSuccess { body() }
    }

    /// Runs a protocol callback now if that is allowed, or in the next iteration if it would be
    /// re-entrant (inside a transport method) or the loop is stopped (IT-3).
    private func dispatch(_ body: @escaping () -> Void) {
        if self.inTransportCall || !self.loop.isDispatching {
            self.loop.callSoonInternal(body)
        } else {
            body()
        }
    }

    // MARK: - Ending

    /// Shuts the sending side down once the queued data is flushed; reading goes on (WT-9).
    ///
    /// A no-op when closing or when EOF was already written.
    public func writeEOF() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.isClosing, !self.eofWritten else { return }
        self.eofWritten = true
        self.whenFlushed { [self] in
            guard !self.channelGone else { return }
            self.context?.close(mode: .output, promise: nil)
        }
    }

    /// Stops reading at once, flushes what is queued, then closes (TR-4).
    ///
    /// `connectionLost(nil)` follows in a later iteration (TR-4). Idempotent, never throws (TR-3).
    public func close() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.closing else { return }
        self.closing = true
        self.heldReads.removeAll()
        self.heldEOF = false
        self.updateAutoRead()
        self.closeWhenDrained()
    }

    private func closeWhenDrained() {
        guard !self.aborted, !self.channelGone else { return }
        self.whenFlushed { [self] in
            // WT-12: the buffer drained, so a paused protocol is resumed before the socket closes
            // (NIO would report writability only after this callback), and whatever it writes
            // from resumeWriting is flushed too.
            if self.writingPaused && !self.aborted { self.evaluateResume() }
            if self.writeBufferSize > 0 {
                self.closeWhenDrained()
            } else if !self.channelGone {
                self.context?.close(promise: nil)
            }
        }
    }

    /// Discards what is queued and closes now; `connectionLost(nil)` follows in a later iteration (TR-5).
    ///
    /// Works during a flushing ``close()`` too.
    public func abort() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.aborted else { return }
        self.closing = true
        self.aborted = true
        self.heldReads.removeAll()
        self.heldEOF = false
        guard !self.channelGone, let context = self.context else { return }
        // TLS-9: a TLS transport's abort sends no close_notify and does not wait for the peer's.
        if self.tlsInfo != nil { context.triggerUserOutboundEvent(TLSAbortEvent(), promise: nil) }
        context.close(promise: nil)
    }
}

// Loop-confined: every member is touched on the loop's thread only.
@available(*, unavailable)
extension ChannelTransport: Sendable {}

// MARK: - sendfile support

/// The kind of `sendfile` transfer a transport is carrying.
enum SendfileMode {
    case none
    /// A `FileRegion` owns the write side: ``ChannelTransport/write(_:)`` throws (WT-4).
    case native
    /// Chunks go through ``ChannelTransport/write(_:)``; flow control pauses `sendfile`, not the
    /// protocol (SF-12).
    case fallback
}

extension ChannelTransport {
    static func sendfileInProgress(file: String = #fileID, line: Int = #line) -> TulipError {
        TulipError.make(.sendfileInProgress, "unable to write; sendfile is in progress", file: file, line: line)
    }

    /// Whether the protocol side is paused for flow control (FC-4 until FC-5).
    var isWritingPaused: Bool { self.writingPaused }

    /// Runs `body` at once if writing is not paused or the transport is closing; otherwise when it
    /// resumes (FC-5) or the channel closes, whichever comes first.
    func whenWritable(_ body: @escaping () -> Void) {
        if !self.writingPaused || self.isClosing {
            body()
        } else {
            self.writableWaiters.append(body)
        }
    }

    private func runWritableWaiters() {
        let waiters = self.writableWaiters
        self.writableWaiters = []
        for waiter in waiters { waiter() }
    }

    /// Succeeds once every byte written so far has reached the kernel; fails if the channel is or
    /// becomes closed first (SF-10: native sendfile starts on an empty queue).
    func flushAll() -> EventLoopFuture<Void> {
        guard let context = self.context, !self.channelGone else {
            return self.loop.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        self.unflushedBytes = 0
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        return promise.futureResult
    }

    /// Writes and flushes `region` past the protocol-facing write path (no byte counting, no
    /// pause): NIO sends it with sendfile(2), so file data never passes through user space.
    func writeFileRegion(_ region: FileRegion) -> EventLoopFuture<Void> {
        guard let context = self.context, !self.channelGone else {
            return self.loop.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        self.bytesSent &+= UInt64(region.readableBytes)
        self.noteActivity()
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(IOData.fileRegion(region)), promise: promise)
        return promise.futureResult
    }
}

// MARK: - Events from ProtocolChannelHandler

extension ChannelTransport {
    /// Fills ``TransportInfo/peerCredentials`` on unix stream sockets.
    ///
    /// On the loop's thread the option is read at once, so it is there before the observer and
    /// `connectionMade` run.
    fileprivate func readPeerCredentials(_ channel: any Channel) {
        guard case .unixDomainSocket = channel.localAddress, let provider = channel as? any SocketOptionProvider
        else { return }
        let credentials: EventLoopFuture<RawPeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        credentials.assumeIsolated().whenSuccess { [self] value in
            self.extraInfo.peerCredentials = PeerCredentials(pid: value.pid, uid: value.uid, gid: value.gid)
        }
    }
}

/// `struct ucred` of `<sys/socket.h>`, which Glibc only declares under `_GNU_SOURCE`: same fields,
/// same order, no padding.
private struct RawPeerCredentials: Sendable {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32
}

extension ChannelTransport {
    func attach(to context: ChannelHandlerContext) {
        // handlerAdded on an active channel and channelActive must not both attach.
        guard self.context == nil, !self.channelGone else { return }
        self.context = context
        self.extraInfo = TransportInfo(
            peerAddress: context.channel.remoteAddress,
            localAddress: context.channel.localAddress,
            tlsVersion: self.tlsInfo?.protocolVersion,
            tlsCipher: self.tlsInfo?.cipher,
            alpnProtocol: self.tlsInfo?.alpn,
            peerCertificateSubject: self.tlsInfo?.peerCertificateSubject
        )
        self.readPeerCredentials(context.channel)
        self.applyWaterMarks()
        self.startIdleTimer()
        self.loop.register(self)
        if self.continuesConnection {
            _ = self.callbacks.connectionMade()
            return
        }
        self.observer?.connectionOpened(self)
        // PR-1: connectionMade is scheduled, and reading is armed only once it has returned.
        self.loop.callSoonInternal { [self] in
            guard self.callbacks.connectionMade() else { return }
            self.protocolObject?.connectionMade(transport: self)
            self.readingArmed = true
            if !self.heldReads.isEmpty || self.heldEOF {
                self.scheduleHeldDelivery()
            } else {
                self.updateAutoRead()
            }
        }
    }

    func channelRead(_ buffer: ByteBuffer) {
        guard !self.isClosing else { return }
        self.bytesReceived &+= UInt64(buffer.readableBytes)
        if self.mayDeliverNow && self.heldReads.isEmpty && !self.deliveryScheduled {
            self.inReadBurst = true
            self.deliver(buffer)
        } else {
            self.heldReads.append(buffer)
            self.updateAutoRead()
        }
    }

    func channelReadComplete() {
        self.inReadBurst = false
        self.noteActivity()
        self.flushIfNeeded()
    }

    func inputClosed() {
        // A write pipe has no input: NIO closes it at once, which is no EOF.
        guard self.pipeRole != .write else { return }
        if self.isClosing {
            // TLS-11: the side that called close() hears the peer's close_notify as EOF too, once
            // the shutdown exchange is over and before connectionLost.
            if self.tlsInfo != nil, !self.channelGone, !self.aborted, self.readingArmed, self.loop.isDispatching,
                self.heldReads.isEmpty
            {
                self.deliverEOF()
            }
            return
        }
        if self.mayDeliverNow && self.heldReads.isEmpty && !self.deliveryScheduled {
            self.deliverEOF()
            self.flushIfNeeded()
        } else {
            self.heldEOF = true
        }
        self.updateAutoRead()
    }

    func writabilityChanged(isWritable: Bool) {
        guard isWritable, self.writingPaused else { return }
        self.dispatch { [self] in self.evaluateResume() }
    }

    func shutdownRequested() {
        self.dispatch { [self] in
            guard !self.callbacks.isLost else { return }
            self.protocolObject?.shutdownRequested()
        }
    }

    func errorCaught(_ error: any Error) {
        if self.lostError == nil && !self.aborted { self.lostError = error }
        if !self.channelGone { self.context?.close(promise: nil) }
    }

    /// The channel closed: `connectionLost` is always delivered through the ready queue (IT-3).
    func channelInactive() {
        guard !self.channelGone else { return }
        self.channelGone = true
        self.stopIdleTimer()
        if self.pipeRole == .write, self.lostError == nil, !self.aborted, self.queuedDataDiscarded {
            self.lostError = IOError(errnoCode: EPIPE, reason: "Broken pipe")
        }
        self.runWritableWaiters()  // a waiting fallback sendfile sees `isClosing` and stops
        // RP-3: a pipe with no output closes at EOF instead of reporting a half-closure, so an
        // error-free close we did not ask for is the EOF, delivered after the data held for it.
        guard self.pipeRole == .read, !self.closing, self.lostError == nil else {
            self.heldReads.removeAll()
            self.loop.callSoonInternal { [self] in self.deliverConnectionLost() }
            return
        }
        let held = self.heldReads
        self.heldReads.removeAll()
        self.loop.callSoonInternal { [self] in
            for buffer in held { self.deliver(buffer) }
            self.deliverEOF()
            self.deliverConnectionLost()
        }
    }

    private func deliverConnectionLost() {
        let error = self.lostError
        if self.callbacks.connectionLost() {
            self.protocolObject?.connectionLost(error: error)
        }
        self.loop.unregister(self)
        self.observer?.connectionClosed(self, error: error)
        self.onLost?(self)
        self.onLost = nil
        // PR-5: drop the references to the protocol and the channel.
        self.protocolObject = nil
        self.bufferedProtocol = nil
        self.context = nil
    }
}

// MARK: - start_tls

extension ChannelTransport {
    /// Gives the connection up to `startTLS` (TLS-4, TLS-5, TLS-6): reading stops, what is queued
    /// is flushed ahead of the handshake, this transport's handler leaves the pipeline and the
    /// transport is done (it reports closing and drops writes; its protocol gets no further
    /// callback from it).
    ///
    /// - Returns: the bytes read but not yet delivered (they are the peer's first TLS records),
    ///   and whether the peer's EOF was among them.
    func detachForUpgrade() -> (held: [ByteBuffer], eof: Bool) {
        self.pauseReading()
        self.flushIfNeeded()
        let held = Array(self.heldReads)
        let eof = self.heldEOF
        self.heldReads.removeAll()
        self.heldEOF = false
        self.channelGone = true
        _ = self.callbacks.connectionLost()
        self.loop.unregister(self)
        if let context = self.context {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        self.context = nil
        self.protocolObject = nil
        self.bufferedProtocol = nil
        return (held, eof)
    }

    /// Ends the hand-over: `replacement` carries the connection now (the observer keeps counting
    /// it as the same one), or, when `nil`, the upgrade failed with `error` and the connection is
    /// closed.
    func finishUpgrade(replacement: ChannelTransport?, error: (any Error)?) {
        if let replacement {
            replacement.observer = self.observer
            self.observer?.connectionReplaced(self, by: replacement)
        } else {
            self.observer?.connectionClosed(self, error: error)
        }
        self.onReplaced?(self, replacement)
        self.onReplaced = nil
        self.onLost = nil
        self.observer = nil
    }

    /// The channel, while the transport is attached to it.
    var channel: (any Channel)? { self.channelGone ? nil : self.context?.channel }

    /// Arms reading on a transport made by `startTLS`, once the caller has it: decrypted bytes
    /// that arrived during the hand-over are delivered first, in a later iteration.
    func startReadingAfterUpgrade() {
        guard self.continuesConnection, !self.readingArmed, !self.channelGone else { return }
        self.readingArmed = true
        if !self.heldReads.isEmpty || self.heldEOF {
            self.scheduleHeldDelivery()
        } else {
            self.updateAutoRead()
        }
    }
}

// MARK: - Loop pauses

extension ChannelTransport: LoopParticipant {
    func loopDidPause() {
        self.updateAutoRead()
    }

    func loopDidResume() {
        if !self.heldReads.isEmpty || self.heldEOF {
            self.scheduleHeldDelivery()
        } else {
            self.updateAutoRead()
        }
        if self.writingPaused { self.dispatch { [self] in self.evaluateResume() } }
    }
}
