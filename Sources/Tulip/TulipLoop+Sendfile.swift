import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension TulipLoop {
    /// The largest `FileRegion` handed to NIO at once on the native path.
    ///
    /// The file's size is checked again before each one, so a file that shrinks ends the transfer
    /// at a segment boundary without an error.
    static let sendfileSegmentSize = 1 << 20
    /// The chunk size of the read/write fallback.
    static let sendfileChunkSize = 256 << 10

    /// Sends `count` bytes of `file` from `offset` over `transport` and returns how many were sent
    /// (asyncio's `loop.sendfile`, ASYNCIO-SPEC §18).
    ///
    /// On plain TCP and unix transports the kernel copies the file to the socket (sendfile(2)
    /// through a NIO `FileRegion`); the data never passes through user space. While that runs,
    /// ``ChannelTransport/write(_:)`` throws (WT-4) and reading is paused, then restored if it
    /// was active (SF-11). Where native sending is impossible (the descriptor is not a regular
    /// file, or the transport transforms bytes, as TLS does) the file is read in chunks off the
    /// loop and written through the transport, honouring flow control: `sendfile` waits while
    /// the transport is paused, the protocol sees no `pauseWriting` of its own (SF-12), and
    /// memory stays bounded by one chunk plus the high-water mark.
    ///
    /// `offset` is absolute; the file's current position is ignored (SF-7) and set to
    /// `offset + sent` afterwards, also after an error (SF-9). `count == nil` sends until EOF;
    /// fewer bytes are sent if EOF comes first, including when the file shrinks during the
    /// transfer (SF-8). Bytes written before the call arrive before the file's, bytes written
    /// after it returns after them (SF-10).
    ///
    /// Call it from a task on this loop (``createTask(_:)``, ``runUntilComplete(_:)``). `file`
    /// stays the caller's: `sendfile` works on a duplicate and never closes it.
    ///
    /// - Throws:
    ///   - ``TulipError/Code/invalidArgument`` for a negative `offset` or a `count` ≤ 0 (SF-6);
    ///   - ``TulipError/Code/transportClosing`` when the transport is closing; nothing is read (SF-2);
    ///   - ``TulipError/Code/sendfileNotAvailable`` with `fallback: false` when the file cannot be
    ///     sent natively (SF-4), ``TulipError/Code/sendfileNotSupported`` with `fallback: false`
    ///     on a transport that cannot send natively (SF-5); nothing is sent in either case;
    ///   - ``TulipError/Code/sendfileInProgress`` when another `sendfile` is running on the transport;
    ///   - ``TulipError/Code/connectionLost`` when the connection fails or closes mid-transfer (SF-13);
    ///   - ``TulipError/Code/fileTruncated`` when the file shrank below the part the kernel was
    ///     sending; the transport is then aborted, since the bytes it promised cannot follow;
    ///   - ``TulipError/Code/fileReadFailed`` when the fallback cannot read the file;
    ///   - `CancellationError` when the task is cancelled (checked between segments and chunks).
    public func sendfile(
        _ transport: ChannelTransport,
        file: CInt,
        offset: Int = 0,
        count: Int? = nil,
        fallback: Bool = true
    ) async throws -> Int {
        self.eventLoop.preconditionInEventLoop()
        // SF-6, on every path.
        guard offset >= 0 else {
            throw TulipError.invalidArgument("offset must be a non-negative integer (got \(offset))")
        }
        if let count, count <= 0 {
            throw TulipError.invalidArgument("count must be a positive integer (got \(count))")
        }
        if transport.isPipe {
            throw TulipError.make(
                .sendfileNotSupported,
                "sendfile is not supported for transport \(transport.connectionID)"
            )
        }
        if transport.isClosing { throw TulipError.make(.transportClosing, "Transport is closing") }
        if transport.sendfileMode != .none { throw ChannelTransport.sendfileInProgress() }

        if transport.supportsNativeSendfile {
            if let length = Self.nativeLength(file: file, offset: offset, count: count) {
                return try await self.sendfileNative(transport, file: file, offset: offset, length: length)
            }
            if !fallback {
                throw TulipError.make(.sendfileNotAvailable, "native sendfile is not available: not a regular file")
            }
        } else if !fallback {
            throw TulipError.make(
                .sendfileNotSupported,
                "fallback is disabled and native sendfile is not supported for transport \(transport.connectionID)"
            )
        }
        return try await self.sendfileFallback(transport, file: file, offset: offset, count: count)
    }

    /// The bytes the native path will send, or `nil` when it cannot: `fstat` fails or the file is
    /// not regular (SF-4).
    static func nativeLength(file: CInt, offset: Int, count: Int?) -> Int? {
        var info = stat()
        guard fstat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        let available = max(0, Int(info.st_size) - offset)
        return min(available, count ?? Int.max)
    }

    private func sendfileNative(_ transport: ChannelTransport, file: CInt, offset: Int, length: Int) async throws -> Int
    {
        guard length > 0 else {
            lseek(file, off_t(offset), SEEK_SET)  // SF-8, SF-9: an empty file or offset at EOF
            return 0
        }
        // SF-10: the file's bytes start on an empty queue.
        do {
            try await transport.flushAll().get()
        } catch {
            throw NativeSendfile.connectionLost(error)
        }
        if transport.isClosing { throw TulipError.make(.transportClosing, "Transport is closing") }
        let duplicate = fcntl(file, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else {
            let code = errno
            throw TulipError.make(.fileReadFailed, "dup: \(String(cString: strerror(code)))", errno: code)
        }
        let transfer = NativeSendfile(
            transport: transport,
            file: file,
            duplicate: duplicate,
            offset: offset,
            length: length
        )
        let bound = NIOLoopBound(transfer, eventLoop: self.eventLoop)
        let eventLoop = self.eventLoop
        let result = transfer.start()
        return try await withTaskCancellationHandler {
            try await result.get()
        } onCancel: {
            eventLoop.execute { bound.value.cancel() }
        }
    }

    private func sendfileFallback(
        _ transport: ChannelTransport,
        file: CInt,
        offset: Int,
        count: Int?
    ) async throws -> Int {
        let wasReading = transport.isReading
        let pausedBefore = transport.isWritingPaused
        transport.pauseReading()
        transport.sendfileMode = .fallback
        var sent = 0
        defer {
            transport.sendfileMode = .none
            if wasReading { transport.resumeReading() }
            if sent > 0 { lseek(file, off_t(offset + sent), SEEK_SET) }  // SF-9
            // SF-12: the protocol was paused when we began and the transport resumed meanwhile.
            if pausedBefore && !transport.isWritingPaused && !transport.isClosing {
                transport.protocol?.resumeWriting()
            }
        }
        while count.map({ sent < $0 }) ?? true {
            try await Self.waitUntilWritable(transport)
            try Task.checkCancellation()
            let want = min(Self.sendfileChunkSize, count.map { $0 - sent } ?? Self.sendfileChunkSize)
            let position = offset + sent
            let chunk = try await self.runInExecutor { try Self.readChunk(file: file, at: position, count: want) }
            if chunk.readableBytes == 0 { break }
            try await Self.waitUntilWritable(transport)
            try transport.write(chunk)
            sent += chunk.readableBytes
        }
        try await Self.waitUntilWritable(transport)
        return sent
    }

    /// Suspends until the transport is below its low-water mark again; throws once it is closing.
    private static func waitUntilWritable(_ transport: ChannelTransport) async throws {
        if !transport.isClosing && transport.isWritingPaused {
            await withCheckedContinuation { continuation in
                transport.whenWritable { continuation.resume() }
            }
        }
        if transport.isClosing {
            throw TulipError.make(.connectionLost, "Connection lost during sendfile")
        }
    }

    /// Reads up to `count` bytes at `position` (fewer at EOF); runs on the default executor.
    static func readChunk(file: CInt, at position: Int, count: Int) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
            var done = 0
            while done < count {
                let n = pread(file, pointer.baseAddress! + done, count - done, off_t(position + done))
                if n > 0 {
                    done += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    let code = errno
                    throw TulipError.make(.fileReadFailed, "pread: \(String(cString: strerror(code)))", errno: code)
                }
            }
            return done
        }
        return buffer
    }
}

/// One native transfer: `FileRegion` segments written one after another through the transport.
///
/// NIO retries a `FileRegion` whose sendfile(2) returns 0, so a file that shrinks below the
/// segment in flight would make it spin forever; a watchdog sees that (the file is now shorter
/// than where the kernel stands) and aborts the transport. Loop-confined.
final class NativeSendfile {
    private static let watchdogInterval = TimeAmount.milliseconds(20)

    private let transport: ChannelTransport
    private let file: CInt
    private let duplicate: CInt
    private let handle: NIOFileHandle
    private let startOffset: Int
    private let endOffset: Int
    private let promise: EventLoopPromise<Int>
    /// Where the segment in flight starts and ends; everything before `position` reached the kernel.
    private var position: Int
    private var segmentEnd: Int
    /// How far the watchdog last saw the kernel get; the progress reported after an error (SF-9).
    private var reached: Int
    private var wasReading = false
    private var cancelled = false
    private var truncated = false
    private var finished = false
    private var watchdog: Scheduled<Void>?

    init(transport: ChannelTransport, file: CInt, duplicate: CInt, offset: Int, length: Int) {
        self.transport = transport
        self.file = file
        self.duplicate = duplicate
        self.handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: duplicate)
        self.startOffset = offset
        self.endOffset = offset + length
        self.position = offset
        self.segmentEnd = offset
        self.reached = offset
        self.promise = transport.loop.eventLoop.makePromise(of: Int.self)
    }

    static func connectionLost(_ error: any Error) -> TulipError {
        if let error = error as? TulipError { return error }
        return TulipError.make(.connectionLost, "Connection lost during sendfile: \(error)")
    }

    func start() -> EventLoopFuture<Int> {
        self.wasReading = self.transport.isReading
        self.transport.pauseReading()  // SF-11
        self.transport.sendfileMode = .native
        self.armWatchdog()
        self.sendNextSegment()
        return self.promise.futureResult
    }

    func cancel() {
        self.cancelled = true
    }

    private var currentSize: Int? {
        var info = stat()
        guard fstat(self.duplicate, &info) == 0 else { return nil }
        return Int(info.st_size)
    }

    private func sendNextSegment() {
        guard !self.finished else { return }
        if self.cancelled { return self.finish(.failure(CancellationError())) }
        // SF-8: a file that shrank since the last segment ends the transfer where it ends now.
        let available = min(self.endOffset, self.currentSize ?? self.endOffset)
        guard self.position < available else { return self.finish(.success(())) }
        if self.transport.isClosing {
            return self.finish(.failure(TulipError.make(.connectionLost, "Connection lost during sendfile")))
        }
        let end = min(available, self.position + TulipLoop.sendfileSegmentSize)
        self.segmentEnd = end
        let region = FileRegion(fileHandle: self.handle, readerIndex: self.position, endIndex: end)
        self.transport.writeFileRegion(region).assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                self.position = end
                self.sendNextSegment()
            case .failure(let error):
                self.position = max(self.position, self.reached)
                if self.truncated {
                    let sent = self.position - self.startOffset
                    self.finish(
                        .failure(
                            TulipError.make(
                                .fileTruncated,
                                "the file shrank during sendfile; \(sent) bytes were sent and the transport was aborted"
                            )
                        )
                    )
                } else {
                    self.finish(.failure(Self.connectionLost(error)))
                }
            }
        }
    }

    /// Every 20 ms while a segment is in flight, checks whether the kernel has reached the file's new end.
    private func armWatchdog() {
        self.watchdog = self.transport.loop.eventLoop.assumeIsolated().scheduleTask(in: Self.watchdogInterval) {
            guard !self.finished else { return }
            // Only the segment is queued (writes are refused meanwhile), so what is still buffered
            // is its unsent tail.
            let reached = max(self.position, self.segmentEnd - self.transport.writeBufferSize)
            self.reached = reached
            if let size = self.currentSize, size < self.segmentEnd, reached >= size {
                self.truncated = true
                self.transport.abort()
                return
            }
            self.armWatchdog()
        }
    }

    private func finish(_ result: Result<Void, any Error>) {
        guard !self.finished else { return }
        self.finished = true
        self.watchdog?.cancel()
        self.watchdog = nil
        try? self.handle.close()
        self.transport.sendfileMode = .none
        if self.wasReading { self.transport.resumeReading() }
        lseek(self.file, off_t(self.position), SEEK_SET)  // SF-9, on success and on error
        switch result {
        case .success:
            self.promise.succeed(self.position - self.startOffset)
        case .failure(let error):
            self.promise.fail(error)
        }
    }
}

// Loop-confined.
@available(*, unavailable)
extension NativeSendfile: Sendable {}
