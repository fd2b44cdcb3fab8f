import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// A temporary file, removed and closed by ``remove()``.
struct TemporaryFile: Sendable {
    let fd: CInt
    let path: String

    /// A file holding `bytes`.
    init(_ bytes: [UInt8] = []) throws {
        var template = Array("/tmp/tulip-sendfile-XXXXXX".utf8CString)
        self.fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard self.fd >= 0 else { throw TulipError.invalidArgument("mkstemp failed") }
        self.path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(self.fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TulipError.invalidArgument("write failed") }
            offset += n
        }
    }

    /// A sparse file of `size` bytes with `markers` written at their offsets.
    init(sparseSize size: Int, markers: [(Int, [UInt8])]) throws {
        try self.init()
        ftruncate(self.fd, off_t(size))
        for (offset, bytes) in markers {
            _ = bytes.withUnsafeBytes { pwrite(self.fd, $0.baseAddress, $0.count, off_t(offset)) }
        }
    }

    var position: Int { Int(lseek(self.fd, 0, SEEK_CUR)) }

    func remove() {
        unlink(self.path)
        close(self.fd)
    }
}

/// What `TemporaryFile(sparseSize:markers:)` holds.
func sparseContents(size: Int, markers: [(Int, [UInt8])]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: size)
    for (offset, marker) in markers { bytes.replaceSubrange(offset..<(offset + marker.count), with: marker) }
    return bytes
}

/// One server connection for a sendfile test: the server-side transport and a blocking client.
struct SendfileConnection {
    let server: Server
    let transport: ChannelTransport
    let protocolObject: RecordingProtocol
    let client: BlockingClient

    static func open(_ loop: TulipLoop, receiveBuffer: Int32? = nil) async throws -> SendfileConnection {
        let made = Made()
        let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
            let p = RecordingProtocol()
            made.add(p)
            return p
        }
        let port = server.sockets[0].localAddress.port!
        let client = try await loop.runInExecutor { try BlockingClient(port: port, receiveBuffer: receiveBuffer) }
        try await eventually(loop) { made.first?.transport != nil }
        let p = made.first!
        return SendfileConnection(server: server, transport: p.transport!, protocolObject: p, client: client)
    }

    /// Starts reading until EOF on the default executor.
    func startReading(_ loop: TulipLoop) throws -> Task<[UInt8]?, any Error> {
        let client = self.client
        return try loop.createTask { try await loop.runInExecutor { client.receiveAll() } }
    }

    func finish() async {
        self.client.close()
        self.server.close()
        await self.server.waitClosed()
    }
}

@Suite(.timeLimit(.minutes(1)))
struct SendfileTests {
    static func pattern(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 11) }
    }

    @Test func sf1Sf7Sf8Sf9Sf10NativeSendsExactBytesWithOffsetAndCountInOrder() async throws {
        let payload = Self.pattern(9 << 20 + 17)  // several 1 MiB segments
        let file = try TemporaryFile(payload)
        defer { file.remove() }
        let (received, sent, positions, bytesSent) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop)
                let reading = try connection.startReading(loop)
                let transport = connection.transport
                lseek(file.fd, 123, SEEK_SET)  // SF-7: the current position is ignored
                try transport.write(string: "<")
                let first = try await loop.sendfile(transport, file: file.fd, offset: 7, count: 5_000_000)
                let afterFirst = file.position
                try transport.write(string: "|")
                let second = try await loop.sendfile(transport, file: file.fd)
                let afterSecond = file.position
                let third = try await loop.sendfile(transport, file: file.fd, offset: payload.count - 10, count: 1000)
                let afterThird = file.position
                try transport.write(string: ">")
                let bytesSent = transport.bytesSent
                transport.close()
                let received = try await reading.value
                await connection.finish()
                return (received, [first, second, third], [afterFirst, afterSecond, afterThird], bytesSent)
            }
        }
        // SF-1, SF-8: the counts; SF-9: the positions; SF-10: the order.
        #expect(sent == [5_000_000, payload.count, 10])
        #expect(positions == [5_000_007, payload.count, payload.count])
        #expect(bytesSent == UInt64(3 + 5_000_000 + payload.count + 10))
        let expected =
            Array("<".utf8) + payload[7..<5_000_007] + Array("|".utf8) + payload + payload.suffix(10)
            + Array(">".utf8)
        #expect(received?.count == expected.count)
        #expect(received == expected)
    }

    @Test func sf8AnEmptyFileOrAnOffsetAtEOFSendsNothing() async throws {
        let empty = try TemporaryFile()
        let small = try TemporaryFile(Array("hello".utf8))
        defer {
            empty.remove()
            small.remove()
        }
        let (results, received, position) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop)
                let reading = try connection.startReading(loop)
                let a = try await loop.sendfile(connection.transport, file: empty.fd)
                let b = try await loop.sendfile(connection.transport, file: small.fd, offset: 5)
                let c = try await loop.sendfile(connection.transport, file: small.fd, offset: 50, count: 3)
                let position = small.position
                connection.transport.close()
                let received = try await reading.value
                await connection.finish()
                return ([a, b, c], received, position)
            }
        }
        #expect(results == [0, 0, 0])
        #expect(received == [])
        #expect(position == 50)
    }

    @Test func sf12FallbackSendsExactBytesAndKeepsFlowControlFromTheProtocol() async throws {
        let payload = Self.pattern(3 << 20 + 5)
        let file = try TemporaryFile(payload)
        defer { file.remove() }
        let (received, sent, position, events) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop, receiveBuffer: 8192)
                let transport = connection.transport
                transport.supportsNativeSendfile = false  // as a TLS transport would
                let reading = try connection.startReading(loop)
                let sent = try await loop.sendfile(transport, file: file.fd, offset: 3, count: 3 << 20)
                let position = file.position
                #expect(transport.isReading)  // restored (SF-12)
                transport.close()
                let received = try await reading.value
                await connection.finish()
                return (received, sent, position, connection.protocolObject.events)
            }
        }
        #expect(sent == 3 << 20)
        #expect(position == 3 + 3 << 20)
        #expect(received == Array(payload[3..<(3 + 3 << 20)]))
        #expect(!events.contains("pause") && !events.contains("resume"))  // SF-12
    }

    @Test func sf5FallbackDisabledOnAFallbackOnlyTransportRaises() async throws {
        let file = try TemporaryFile(Self.pattern(1000))
        defer { file.remove() }
        let (error, received, position) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop)
                connection.transport.supportsNativeSendfile = false
                let reading = try connection.startReading(loop)
                lseek(file.fd, 42, SEEK_SET)
                let error = await #expect(throws: TulipError.self) {
                    try await loop.sendfile(connection.transport, file: file.fd, fallback: false)
                }
                let position = file.position
                connection.transport.close()
                let received = try await reading.value
                await connection.finish()
                return (error, received, position)
            }
        }
        #expect(error?.code == .sendfileNotSupported)
        #expect(error?.message.hasPrefix("fallback is disabled and native sendfile is not supported") == true)
        #expect(received == [])
        #expect(position == 42)
    }

    @Test func sf4NativeUnavailableForANonRegularFileRaisesWithoutFallback() async throws {
        var fds: [CInt] = [0, 0]
        pipe(&fds)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let readEnd = fds[0]
        let (error, received) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop)
                let reading = try connection.startReading(loop)
                let error = await #expect(throws: TulipError.self) {
                    try await loop.sendfile(connection.transport, file: readEnd, fallback: false)
                }
                connection.transport.close()
                let received = try await reading.value
                await connection.finish()
                return (error, received)
            }
        }
        #expect(error?.code == .sendfileNotAvailable)
        #expect(received == [])
    }

    @Test func sf6OffsetAndCountAreValidatedOnEveryPath() async throws {
        let file = try TemporaryFile(Self.pattern(100))
        defer { file.remove() }
        let codes = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop)
                var codes: [TulipError.Code?] = []
                for native in [true, false] {
                    connection.transport.supportsNativeSendfile = native
                    for (offset, count) in [(-1, nil), (0, 0), (0, -5)] as [(Int, Int?)] {
                        let error = await #expect(throws: TulipError.self) {
                            try await loop.sendfile(connection.transport, file: file.fd, offset: offset, count: count)
                        }
                        codes.append(error?.code)
                    }
                }
                await connection.finish()
                return codes
            }
        }
        #expect(codes == Array(repeating: .invalidArgument, count: 6))
    }

    @Test func sf2AClosingTransportRaisesAndLeavesTheFileAlone() async throws {
        let file = try TemporaryFile(Self.pattern(100))
        defer { file.remove() }
        let (error, position) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop)
                lseek(file.fd, 5, SEEK_SET)
                connection.transport.close()
                let error = await #expect(throws: TulipError.self) {
                    try await loop.sendfile(connection.transport, file: file.fd, offset: 50)
                }
                let position = file.position
                await connection.finish()
                return (error, position)
            }
        }
        #expect(error?.code == .transportClosing)
        #expect(error?.message == "Transport is closing")
        #expect(position == 5)
    }

    @Test func wt4Sf11WritesAreRefusedWhileANativeSendfileRunsAndReadingIsRestored() async throws {
        let size = 64 << 20
        let markers: [(Int, [UInt8])] = [(0, [1, 2, 3]), (5 << 20, [4, 5]), (size - 1, [9])]
        let file = try TemporaryFile(sparseSize: size, markers: markers)
        defer { file.remove() }
        let (outcome, received, sent) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop, receiveBuffer: 4096)
                let transport = connection.transport
                let bound = NIOLoopBound(transport, eventLoop: loop.eventLoop)
                let transfer = try loop.createTask { try await loop.sendfile(bound.value, file: file.fd) }
                // The client does not read yet, so the transfer cannot finish.
                try await eventually(loop) { transport.sendfileMode == .native }
                var outcome: [TulipError.Code?] = []
                outcome.append((#expect(throws: TulipError.self) { try transport.write(string: "x") })?.code)
                outcome.append(
                    (#expect(throws: TulipError.self) { try transport.writelines([ByteBuffer(string: "y")]) })?.code
                )
                #expect(!transport.isReading && !transport.isClosing)  // SF-11: paused, still open
                let reading = try connection.startReading(loop)
                let sent = try await transfer.value
                #expect(transport.isReading)
                try transport.write(string: "after")  // writes work again
                transport.close()
                let received = try await reading.value
                await connection.finish()
                return (outcome, received, sent)
            }
        }
        #expect(outcome == [.sendfileInProgress, .sendfileInProgress])
        #expect(sent == size)
        #expect(received == sparseContents(size: size, markers: markers) + Array("after".utf8))
    }

    @Test func sf13APeerThatResetsMidTransferRaisesConnectionLost() async throws {
        let file = try TemporaryFile(sparseSize: 256 << 20, markers: [])
        defer { file.remove() }
        let (error, position) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop, receiveBuffer: 4096)
                let client = connection.client
                _ = try loop.createTask {
                    try await loop.runInExecutor {
                        _ = client.receive(count: 2 << 20)
                        client.reset()
                    }
                }
                let error = await #expect(throws: TulipError.self) {
                    try await loop.sendfile(connection.transport, file: file.fd)
                }
                let position = file.position
                connection.server.close()
                await connection.server.waitClosed()
                return (error, position)
            }
        }
        #expect(error?.code == .connectionLost)
        #expect(position > 0 && position < 256 << 20)  // SF-9: the progress
    }

    /// A file truncated while the kernel sends it: the transfer ends early, never hangs and
    /// never pads; what arrived is a prefix of the original contents.
    @Test func aFileThatShrinksDuringANativeTransferEndsItEarly() async throws {
        let size = 256 << 20
        let markers: [(Int, [UInt8])] = [(0, Array("start".utf8)), (700_000, [7, 7, 7]), (size - 4, [1, 2, 3, 4])]
        let file = try TemporaryFile(sparseSize: size, markers: markers)
        defer { file.remove() }
        let (result, received) = try await withLoop { loop in
            try loop.runUntilComplete {
                let connection = try await SendfileConnection.open(loop, receiveBuffer: 16384)
                let client = connection.client
                let path = file.path
                let reading = try loop.createTask {
                    try await loop.runInExecutor { () -> [UInt8] in
                        // Read slowly, truncate the file from this thread, then drain to EOF.
                        var received: [UInt8] = []
                        while received.count < 1 << 20 {
                            let part = client.receive(count: 16384)
                            if part.isEmpty { break }
                            received += part
                            usleep(500)
                        }
                        truncate(path, off_t(3 << 19))  // 1.5 MiB, page aligned
                        received += client.receiveAll() ?? []
                        return received
                    }
                }
                let result: Result<Int, TulipError>
                do {
                    result = .success(try await loop.sendfile(connection.transport, file: file.fd))
                } catch let error as TulipError {
                    result = .failure(error)
                }
                connection.transport.close()
                let received = try await reading.value
                await connection.finish()
                return (result, received)
            }
        }
        switch result {
        case .success(let sent):
            #expect(sent < size)
        case .failure(let error):
            #expect(error.code == .fileTruncated)
        }
        #expect(received.count >= 1 << 20 && received.count < size)
        let original = sparseContents(size: received.count, markers: markers.filter { $0.0 < received.count })
        #expect(received == original)
    }
}
