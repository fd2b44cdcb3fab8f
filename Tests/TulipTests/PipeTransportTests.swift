import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// A write-pipe protocol object that records its callbacks.
final class RecordingWriteProtocol: WritePipeProtocol, @unchecked Sendable {
    // @unchecked Sendable: mutated on the loop thread; `events` locks.
    private let lock = NIOLock()
    private var _events: [String] = []
    var transport: WritePipeTransport?
    var lostError: (any Error)?
    var onConnectionMade: ((WritePipeTransport) -> Void)?

    var events: [String] { self.lock.withLock { self._events } }
    private func record(_ event: String) { self.lock.withLock { self._events.append(event) } }

    func connectionMade(transport: WritePipeTransport) {
        self.record("made")
        self.transport = transport
        self.onConnectionMade?(transport)
    }
    func pauseWriting() { self.record("pause") }
    func resumeWriting() { self.record("resume") }
    func connectionLost(error: (any Error)?) {
        self.record("lost")
        self.lostError = error
    }
}

private func makePipe() -> (read: CInt, write: CInt) {
    var fds: [CInt] = [0, 0]
    precondition(pipe(&fds) == 0)
    return (fds[0], fds[1])
}

/// The file `fd` refers to, or nil when it is closed.
private func identity(_ fd: CInt) -> [UInt]? {
    var status = stat()
    guard fstat(fd, &status) == 0 else { return nil }
    return [UInt(status.st_dev), UInt(status.st_ino)]
}

/// Whether `fd` still refers to the file it referred to when `expected` was taken: tests run in
/// parallel, so a closed descriptor number may already be reused, in which case
/// `fcntl(F_GETFD)` succeeds on an unrelated file.
private func isStillOpen(_ fd: CInt, _ expected: [UInt]?) -> Bool {
    fcntl(fd, F_GETFD) != -1 && identity(fd) == expected
}

private func writeAll(_ fd: CInt, _ string: String) {
    _ = string.withCString { Glibc.write(fd, $0, strlen($0)) }
}

/// Reads until EOF (blocking; `fd` must be blocking).
private func readAll(_ fd: CInt) -> [UInt8] {
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { return result }
        result.append(contentsOf: chunk[0..<n])
    }
}

@Suite(.timeLimit(.minutes(1)))
struct PipeTransportTests {
    @Test func rp1RegularFileRefused() async throws {
        let path = "/tmp/tulip-rp1-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_CREAT | O_RDWR, 0o600)
        defer {
            close(fd)
            unlink(path)
        }
        try await withLoop { loop in
            try loop.runUntilComplete {
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.connectReadPipe(fileDescriptor: fd) { RecordingProtocol() }
                }
                do {
                    _ = try await loop.connectReadPipe(fileDescriptor: fd) { RecordingProtocol() }
                } catch let error as TulipError {
                    #expect(error.message == "Pipe transport is for pipes/sockets only.")
                }
            }
        }
        #expect(isStillOpen(fd, identity(fd)))  // still the caller's
    }

    @Test func wp1RegularFileRefused() async throws {
        let path = "/tmp/tulip-wp1-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_CREAT | O_RDWR, 0o600)
        defer {
            close(fd)
            unlink(path)
        }
        try await withLoop { loop in
            try loop.runUntilComplete {
                do {
                    _ = try await loop.connectWritePipe(fileDescriptor: fd) { RecordingWriteProtocol() }
                    Issue.record("accepted a regular file")
                } catch let error as TulipError {
                    #expect(error.code == .invalidArgument)
                    #expect(error.message == "Pipe transport is only for pipes, sockets and character devices")
                }
            }
        }
    }

    @Test func rp2DataThenRp3EOFThenLostAndRp7Closed() async throws {
        let (r, w) = makePipe()
        let rID = identity(r)
        let (events, received, fdOpenAfter, returnedAfterMade) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingProtocol()
                p.onEOF = { true }  // RP-3: ignored, the pipe still closes
                let (transport, proto) = try await loop.connectReadPipe(fileDescriptor: r) { p }
                let madeOnReturn = p.events == ["made"]  // PR-2
                #expect(proto === p)
                #expect(transport.isReading)
                #expect(transport.extraInfo("pipe") as? CInt == r)
                writeAll(w, "hello ")
                writeAll(w, "pipe")
                close(w)
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, p.received, isStillOpen(r, rID), madeOnReturn)
            }
        }
        #expect(returnedAfterMade)
        #expect(String(decoding: received, as: UTF8.self) == "hello pipe")
        #expect(events.first == "made")
        #expect(Array(events.suffix(2)) == ["eof", "lost"])
        #expect(!fdOpenAfter)
    }

    @Test func rp4CloseSkipsEOFAndClosesTheDescriptor() async throws {
        let (r, w) = makePipe()
        let rID = identity(r)
        defer { close(w) }
        let (events, lostError, fdOpen) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingProtocol()
                let (transport, _) = try await loop.connectReadPipe(fileDescriptor: r) { p }
                transport.close()
                #expect(transport.isClosing)
                #expect(!transport.isReading)
                transport.close()  // idempotent
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, p.lostError.map { "\($0)" }, isStillOpen(r, rID))
            }
        }
        #expect(events == ["made", "lost"])
        #expect(lostError == nil)
        #expect(!fdOpen)
    }

    @Test func rp6PauseHoldsDataUntilResume() async throws {
        let (r, w) = makePipe()
        defer { close(w) }
        let (whilePaused, afterResume) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingProtocol()
                let (transport, _) = try await loop.connectReadPipe(fileDescriptor: r) { p }
                transport.pauseReading()
                transport.pauseReading()  // idempotent
                #expect(!transport.isReading)
                writeAll(w, "held")
                try await Task.sleep(for: .milliseconds(100))
                let whilePaused = p.received.count
                transport.resumeReading()
                #expect(transport.isReading)
                try await eventually(loop) { p.received.count == 4 }
                transport.close()
                try await eventually(loop) { p.events.last == "lost" }
                transport.resumeReading()  // TR-8: no-op after close
                #expect(!transport.isReading)
                return (whilePaused, p.received.count)
            }
        }
        #expect(whilePaused == 0)
        #expect(afterResume == 4)
    }

    @Test func wp2WritesArriveInOrderAndWp5WriteEOFClosesAfterFlushAndWp9ClosesDescriptor() async throws {
        let (r, w) = makePipe()
        let wID = identity(w)
        defer { close(r) }
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let reader = Task { try await onOwnThread { readAll(r) } }
        let (events, fdOpen, closingAtOnce) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingWriteProtocol()
                let (transport, _) = try await loop.connectWritePipe(fileDescriptor: w) { p }
                #expect(p.events == ["made"])  // PR-2
                #expect(transport.canWriteEOF)
                transport.write([UInt8]())  // empty: no-op
                var buffer = transport.allocator.buffer(capacity: payload.count)
                buffer.writeBytes(payload)
                transport.write(buffer)  // 1 MiB: more than the pipe takes, so it queues and pauses
                #expect(transport.writeBufferSize > 0)
                transport.writeEOF()
                let closing = transport.isClosing
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, isStillOpen(w, wID), closing)
            }
        }
        let received = try await reader.value
        #expect(received == payload)
        #expect(closingAtOnce)
        #expect(events.first == "made" && events.last == "lost")
        #expect(events.contains("pause"))  // FC-4 with the FC-1 defaults
        #expect(!fdOpen)
    }

    @Test func wp3WriteAfterCloseIsDroppedAndWp6CloseIsIdempotent() async throws {
        let (r, w) = makePipe()
        defer { close(r) }
        let (dropped, lostError) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingWriteProtocol()
                let (transport, _) = try await loop.connectWritePipe(fileDescriptor: w) { p }
                transport.write(string: "before")
                transport.close()
                transport.close()
                transport.write(string: "after")
                transport.writelines([transport.allocator.buffer(string: "x")])
                try await eventually(loop) { p.events.last == "lost" }
                transport.write(string: "lost")  // TR-8
                return (transport.droppedWrites, p.lostError.map { "\($0)" })
            }
        }
        #expect(dropped == 3)
        #expect(lostError == nil)
        var chunk = [UInt8](repeating: 0, count: 64)
        let n = read(r, &chunk, 64)
        #expect(String(decoding: chunk[0..<max(n, 0)], as: UTF8.self) == "before")
    }

    @Test func wp7AbortDiscardsQueue() async throws {
        let (r, w) = makePipe()
        defer { close(r) }
        let (events, lostError) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingWriteProtocol()
                let (transport, _) = try await loop.connectWritePipe(fileDescriptor: w) { p }
                transport.write([UInt8](repeating: 1, count: 1 << 20))
                transport.abort()
                #expect(transport.isClosing)
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, p.lostError.map { "\($0)" })
            }
        }
        #expect(events.last == "lost")
        #expect(lostError == nil)
        // Less than the megabyte arrived: at most what the pipe buffer held.
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(r, &chunk, chunk.count)
            if n <= 0 { break }
            total += n
        }
        #expect(total < 1 << 20)
    }

    @Test func wp8ReaderGoneWithNothingQueuedIsACleanLoss() async throws {
        let (r, w) = makePipe()
        let wID = identity(w)
        let (events, lostError, fdOpen) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingWriteProtocol()
                _ = try await loop.connectWritePipe(fileDescriptor: w) { p }
                close(r)
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, p.lostError.map { "\($0)" }, isStillOpen(w, wID))
            }
        }
        #expect(events == ["made", "lost"])
        #expect(lostError == nil)
        #expect(!fdOpen)
    }

    @Test func wp8ReaderGoneWithDataQueuedIsABrokenPipe() async throws {
        let (r, w) = makePipe()
        let (events, lostError) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingWriteProtocol()
                let (transport, _) = try await loop.connectWritePipe(fileDescriptor: w) { p }
                transport.write([UInt8](repeating: 2, count: 1 << 20))
                #expect(transport.writeBufferSize > 0)
                close(r)
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, p.lostError)
            }
        }
        #expect(events.last == "lost")
        let ioError = try #require(lostError as? IOError)
        #expect(ioError.errnoCode == EPIPE)
    }

    @Test func wp8FIFOReaderGoneIsDetected() async throws {
        let directory = "/tmp/tulip-fifo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(directory, 0o700)
        let path = directory + "/f"
        #expect(mkfifo(path, 0o600) == 0)
        defer {
            unlink(path)
            rmdir(directory)
        }
        let r = open(path, O_RDONLY | O_NONBLOCK)
        let w = open(path, O_WRONLY | O_NONBLOCK)
        let (events, lostError) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingWriteProtocol()
                let (transport, _) = try await loop.connectWritePipe(fileDescriptor: w) { p }
                transport.write(string: "x")
                try await Task.sleep(for: .milliseconds(20))
                close(r)
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, p.lostError.map { "\($0)" })
            }
        }
        #expect(events == ["made", "lost"])
        #expect(lostError == nil)
    }

    @Test func rp2ReadsFromASocketPair() async throws {
        var pair: [CInt] = [0, 0]
        #expect(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &pair) == 0)
        let fds = pair
        let (events, received) = try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingProtocol()
                _ = try await loop.connectReadPipe(fileDescriptor: fds[0]) { p }
                writeAll(fds[1], "sock")
                close(fds[1])
                try await eventually(loop) { p.events.last == "lost" }
                return (p.events, p.received)
            }
        }
        #expect(String(decoding: received, as: UTF8.self) == "sock")
        #expect(Array(events.suffix(2)) == ["eof", "lost"])
    }

    @Test func connectPipesServesAStreamProtocolOverTwoDescriptors() async throws {
        let (inRead, inWrite) = makePipe()
        let (outRead, outWrite) = makePipe()
        defer { close(outRead) }
        let reader = Task { try await onOwnThread { readAll(outRead) } }
        try await withLoop { loop in
            try loop.runUntilComplete {
                let p = RecordingProtocol()
                p.onData = { data, transport in try transport.write(data) }
                _ = try await loop.connectPipes(readFileDescriptor: inRead, writeFileDescriptor: outWrite) { p }
                writeAll(inWrite, "echo me")
                close(inWrite)
                try await eventually(loop) { p.events.last == "lost" }
            }
        }
        #expect(String(decoding: try await reader.value, as: UTF8.self) == "echo me")
    }

    @Test func sf3AndWp10SendfileRefusesPipeTransports() async throws {
        let (inRead, inWrite) = makePipe()
        let (outRead, outWrite) = makePipe()
        defer {
            close(outRead)
            close(inWrite)
        }
        let code = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> TulipError.Code? in
                let transport = try await loop.connectPipes(readFileDescriptor: inRead, writeFileDescriptor: outWrite) {
                    RecordingProtocol()
                }
                let file = open("/dev/null", O_RDONLY)
                defer { close(file) }
                do {
                    _ = try await loop.sendfile(transport, file: file)
                    return nil
                } catch let error as TulipError {
                    transport.close()
                    return error.code
                }
            }
        }
        #expect(code == .sendfileNotSupported)
    }
}
