import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// Records what a datagram protocol receives, for assertions.
final class RecordingDatagramProtocol: DatagramProtocol, @unchecked Sendable {
    // @unchecked Sendable: mutated on the loop thread; the test reads it on the loop too (inside
    // runUntilComplete) or after the loop stopped.
    private let lock = NIOLock()
    private var _events: [String] = []
    private(set) var transport: DatagramTransport?
    var datagrams: [(bytes: [UInt8], from: SocketAddress)] = []
    var errors: [any Error] = []
    var lostError: (any Error)?
    var onDatagram: ((ByteBuffer, SocketAddress, DatagramTransport) throws -> Void)?
    var onMade: ((DatagramTransport) -> Void)?

    var events: [String] { self.lock.withLock { self._events } }
    private func record(_ event: String) { self.lock.withLock { self._events.append(event) } }

    func connectionMade(transport: DatagramTransport) {
        self.record("made")
        self.transport = transport
        self.onMade?(transport)
    }

    func datagramReceived(_ data: ByteBuffer, from address: SocketAddress) throws {
        self.record("datagram")
        self.datagrams.append((Array(data.readableBytesView), address))
        try self.onDatagram?(data, address, self.transport!)
    }

    func errorReceived(_ error: any Error) {
        self.record("error")
        self.errors.append(error)
    }

    func pauseWriting() { self.record("pause") }
    func resumeWriting() { self.record("resume") }

    func connectionLost(error: (any Error)?) {
        self.record("lost")
        self.lostError = error
    }
}

private func socketOption(_ fd: CInt, _ level: CInt, _ name: CInt) -> CInt {
    var value: CInt = -1
    var length = socklen_t(MemoryLayout<CInt>.size)
    getsockopt(fd, level, name, &value, &length)
    return value
}

private func temporaryDirectory() -> String {
    var template = Array("/tmp/tulip-dgram-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
}

private let loopback = try! SocketAddress(ipAddress: "127.0.0.1", port: 0)

@Suite(.timeLimit(.minutes(1)))
struct DatagramEndpointTests {
    /// An unconnected UDP endpoint on loopback, and its protocol.
    private static func endpoint(
        _ loop: TulipLoop,
        remote: SocketAddress? = nil
    ) async throws -> (DatagramTransport, RecordingDatagramProtocol) {
        let (transport, p) = try await loop.createDatagramEndpoint(
            localAddress: remote == nil ? loopback : nil,
            remoteAddress: remote
        ) { RecordingDatagramProtocol() }
        return (transport, p as! RecordingDatagramProtocol)
    }

    @Test func de1SoReuseAddrIsNeverSet() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (transport, _) = try await Self.endpoint(loop)
                #expect(socketOption(transport.fileDescriptor, SOL_SOCKET, SO_REUSEADDR) == 0)
                transport.close()
            }
        }
    }

    @Test func de2SockMustBeADatagramSocketAndExcludesOtherArguments() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let stream = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
                defer { close(stream) }
                await #expect {
                    _ = try await loop.createDatagramEndpoint(sock: stream) { RecordingDatagramProtocol() }
                } throws: { error in
                    (error as? TulipError)?.message.contains("A datagram socket was expected, got") == true
                }
                let dgram = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
                await #expect {
                    _ = try await loop.createDatagramEndpoint(localAddress: loopback, sock: dgram) {
                        RecordingDatagramProtocol()
                    }
                } throws: { error in (error as? TulipError)?.message.contains("local_addr") == true }
                // Used as it is: bound by the caller, not rebound.
                _ = loopback.withSockAddr { bind(dgram, $0, socklen_t($1)) }
                let before = try BoundSocket.localAddress(of: dgram)
                let (transport, _) = try await loop.createDatagramEndpoint(sock: dgram) { RecordingDatagramProtocol() }
                #expect(transport.extraInfo.localAddress == before)
                transport.close()
            }
        }
    }

    @Test func de3NoAddressNeedsAFamily() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                await #expect {
                    _ = try await loop.createDatagramEndpoint { RecordingDatagramProtocol() }
                } throws: { error in (error as? TulipError)?.message == "unexpected address family" }
                let (unbound, _) = try await loop.createDatagramEndpoint(family: .inet) { RecordingDatagramProtocol() }
                let (receiver, rp) = try await Self.endpoint(loop)
                // The kernel binds the unbound socket on its first send.
                try unbound.sendto(Array("hi".utf8), to: receiver.extraInfo.localAddress!)
                let p = rp as RecordingDatagramProtocol
                try await eventually(loop) { p.datagrams.count == 1 }
                unbound.close()
                receiver.close()
            }
        }
    }

    @Test func de4StaleUnixDatagramSocketIsReplacedButNoOtherFile() async throws {
        let directory = temporaryDirectory()
        let path = directory + "/stale.sock"
        let other = directory + "/file"
        try await withLoop { loop in
            try loop.runUntilComplete {
                let stale = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue), 0)
                _ = try SocketAddress(unixDomainSocketPath: path).withSockAddr { bind(stale, $0, socklen_t($1)) }
                close(stale)  // the file stays behind
                let (transport, _) = try await loop.createDatagramEndpoint(localPath: path) {
                    RecordingDatagramProtocol()
                }
                #expect(transport.extraInfo.localAddress?.pathname == path)
                transport.close()
                close(open(other, O_CREAT | O_WRONLY, 0o600))
                await #expect(throws: TulipError.make(.addressInUse, "")) {
                    _ = try await loop.createDatagramEndpoint(localPath: other) { RecordingDatagramProtocol() }
                }
            }
        }
        unlink(path)
        unlink(other)
        rmdir(directory)
    }

    @Test func de7ReusePortAndDe8BroadcastLeavesTheSocketUnconnected() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (receiver, rp) = try await Self.endpoint(loop)
                let target = receiver.extraInfo.localAddress!
                let (reusing, _) = try await loop.createDatagramEndpoint(localAddress: loopback, reusePort: true) {
                    RecordingDatagramProtocol()
                }
                #expect(socketOption(reusing.fileDescriptor, SOL_SOCKET, SO_REUSEPORT) == 1)
                let (broadcast, _) = try await loop.createDatagramEndpoint(
                    remoteAddress: target,
                    allowBroadcast: true
                ) { RecordingDatagramProtocol() }
                #expect(socketOption(broadcast.fileDescriptor, SOL_SOCKET, SO_BROADCAST) == 1)
                #expect(BoundSocket.peerAddress(of: broadcast.fileDescriptor) == nil)
                #expect(broadcast.extraInfo.peerAddress == nil)
                try broadcast.sendto(Array("default".utf8))  // goes to the remote address (DT-3)
                let p = rp as RecordingDatagramProtocol
                try await eventually(loop) { p.datagrams.count == 1 }
                #expect(p.datagrams[0].bytes == Array("default".utf8))
                for t in [receiver, reusing, broadcast] { t.close() }
            }
        }
    }

    @Test func de9ReturnsAfterConnectionMadeAndReceivingStartsAfterIt() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (transport, p) = try await Self.endpoint(loop)
                #expect(p.events == ["made"])
                #expect(transport.isReading)
                transport.close()
                try await eventually(loop) { p.events == ["made", "lost"] }
            }
        }
    }

    @Test func dt2EmptyDatagramIsSentAndDt8BoundariesArePreserved() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (receiver, rp) = try await Self.endpoint(loop)
                let (sender, _) = try await Self.endpoint(loop, remote: receiver.extraInfo.localAddress!)
                let sizes = [0, 1, 1_000, 9_000, 65_507]
                for size in sizes {
                    try sender.sendto((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) })
                }
                try await eventually(loop) { rp.datagrams.count == sizes.count }
                #expect(rp.datagrams.map(\.bytes.count) == sizes)
                for (index, size) in sizes.enumerated() {
                    #expect(rp.datagrams[index].bytes == (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) })
                }
                #expect(rp.datagrams[0].from == sender.extraInfo.localAddress)
                sender.close()
                receiver.close()
            }
        }
    }

    @Test func dt3ConnectedEndpointRejectsAnotherAddress() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (receiver, _) = try await Self.endpoint(loop)
                let target = receiver.extraInfo.localAddress!
                let (sender, _) = try await Self.endpoint(loop, remote: target)
                let elsewhere = try SocketAddress(ipAddress: "127.0.0.1", port: (target.port! % 60_000) + 1)
                #expect {
                    try sender.sendto([1], to: elsewhere)
                } throws: { error in
                    (error as? TulipError)?.message == "Invalid address: must be None or ('127.0.0.1', \(target.port!))"
                }
                try sender.sendto([1], to: target)  // the remote address itself is fine
                sender.close()
                receiver.close()
            }
        }
    }

    /// A UDP port nobody listens on (bound, then closed).
    private static func closedPort() -> Int {
        let fd = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
        _ = loopback.withSockAddr { bind(fd, $0, socklen_t($1)) }
        let port = (try? BoundSocket.localAddress(of: fd))??.port ?? 9
        close(fd)
        return port
    }

    @Test func dt5SendErrorsGoToErrorReceivedAndTheEndpointKeepsWorking() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (receiver, rp) = try await Self.endpoint(loop)
                let (sender, sp) = try await Self.endpoint(loop)
                // EMSGSIZE: larger than any UDP datagram.
                try sender.sendto([UInt8](repeating: 1, count: 70_000), to: receiver.extraInfo.localAddress!)
                try await eventually(loop) { sp.errors.count == 1 }
                #expect((sp.errors[0] as? TulipError)?.errno == EMSGSIZE)
                #expect(!sender.isClosing)
                try sender.sendto(Array("after".utf8), to: receiver.extraInfo.localAddress!)
                try await eventually(loop) { rp.datagrams.count == 1 }
                #expect(sp.events == ["made", "error"])
                sender.close()
                receiver.close()
            }
        }
    }

    @Test func dt6IcmpRefusalOnAConnectedEndpointIsReportedAndTheEndpointKeepsWorking() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let port = Self.closedPort()
                let target = try SocketAddress(ipAddress: "127.0.0.1", port: port)
                let (sender, sp) = try await Self.endpoint(loop, remote: target)
                try sender.sendto(Array("nobody".utf8))
                try await eventually(loop) { !sp.errors.isEmpty }
                #expect((sp.errors[0] as? TulipError)?.errno == ECONNREFUSED)
                #expect(!sender.isClosing && sender.isReading)
                // Someone listens there now: the same endpoint still sends and receives.
                let (receiver, rp) = try await loop.createDatagramEndpoint(localAddress: target) {
                    RecordingDatagramProtocol()
                }
                let r = rp as! RecordingDatagramProtocol
                r.onDatagram = { data, from, transport in try transport.sendto(data, to: from) }
                try sender.sendto(Array("again".utf8))
                try await eventually(loop) { sp.datagrams.count == 1 }
                #expect(sp.datagrams[0].bytes == Array("again".utf8))
                #expect(!sp.events.contains("lost"))
                sender.close()
                receiver.close()
            }
        }
    }

    /// Descriptors of this process that refer to the socket behind `fd` (its inode), so that
    /// other tests running in parallel do not disturb the count.
    private static func descriptorsSharingSocket(of fd: CInt) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return 0 }
        return Self.descriptorsForSocketInode(UInt64(info.st_ino))
    }

    private static func descriptorsForSocketInode(_ inode: UInt64) -> Int {
        guard let directory = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(directory) }
        var count = 0
        var buffer = [CChar](repeating: 0, count: 256)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            guard name != ".", name != ".." else { continue }
            let length = readlink("/proc/self/fd/" + name, &buffer, buffer.count - 1)
            guard length > 0 else { continue }
            if String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "socket:[\(inode)]" {
                count += 1
            }
        }
        return count
    }

    /// Sends `bytes` from `fd` to the unix datagram socket at `path` without blocking the loop:
    /// a full receive queue is waited out with short sleeps.
    private static func sendUnix(_ fd: CInt, _ bytes: [UInt8], to path: String, _ loop: TulipLoop) async throws {
        let address = try SocketAddress(unixDomainSocketPath: path)
        while true {
            let result = address.withSockAddr { pointer, length in
                bytes.withUnsafeBytes {
                    Glibc.sendto(fd, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT), pointer, socklen_t(length))
                }
            }
            if result >= 0 { return }
            guard errno == EAGAIN || errno == EWOULDBLOCK else {
                throw TulipError.make(.socketError, "sendto: \(errno)", errno: errno)
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    private static func unixClient(boundAt path: String? = nil) throws -> CInt {
        let fd = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TulipError.make(.socketError, "socket", errno: errno) }
        if let path {
            _ = try SocketAddress(unixDomainSocketPath: path).withSockAddr { bind(fd, $0, socklen_t($1)) }
        }
        return fd
    }

    private static func receive(_ fd: CInt) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT)) }
        return count >= 0 ? Array(buffer[0..<count]) : nil
    }

    /// DT-6: a datagram from an unnamed (never bound) unix socket no longer closes the endpoint.
    ///
    /// It used to make NIO close the channel — one datagram shut a unix datagram listener down.
    /// Now it is an `errorReceived` and the endpoint keeps serving on the same socket.
    @Test func dt6UnnamedUnixSenderNeitherClosesNorMisattributes() async throws {
        let directory = temporaryDirectory()
        let path = directory + "/echo.sock"
        let clientPath = directory + "/client.sock"
        try await withLoop { loop in
            loop.setExceptionHandler { _ in }
            try loop.runUntilComplete {
                let (receiver, rpAny) = try await loop.createDatagramEndpoint(localPath: path) {
                    RecordingDatagramProtocol()
                }
                let rp = rpAny as! RecordingDatagramProtocol
                rp.onDatagram = { data, from, transport in try transport.sendto(data, to: from) }
                let unnamed = try Self.unixClient()
                let named = try Self.unixClient(boundAt: clientPath)
                defer {
                    close(unnamed)
                    close(named)
                }
                try await Self.sendUnix(unnamed, Array("anonymous".utf8), to: path, loop)
                try await eventually(loop) { rp.errors.count == 1 }
                #expect((rp.errors[0] as? TulipError)?.errno == EDESTADDRREQ)
                #expect(!receiver.isClosing && receiver.isReading)
                // A named datagram followed at once by an unnamed one: the unnamed one is never
                // attributed to the named sender.
                try await Self.sendUnix(named, Array("ping".utf8), to: path, loop)
                try await Self.sendUnix(unnamed, Array("anonymous".utf8), to: path, loop)
                try await Self.sendUnix(named, Array("pong".utf8), to: path, loop)
                var answers: [[UInt8]] = []
                try await eventually(loop) {
                    while let answer = Self.receive(named) { answers.append(answer) }
                    return answers.count == 2
                }
                #expect(answers == [Array("ping".utf8), Array("pong".utf8)])
                #expect(rp.datagrams.map(\.bytes) == [Array("ping".utf8), Array("pong".utf8)])
                try await eventually(loop) { rp.errors.count == 2 }
                #expect(!rp.events.contains("lost"))
                #expect(receiver.channelRestarts == 2)
                receiver.close()
                try await eventually(loop) { rp.events.last == "lost" }
                #expect(rp.lostError == nil)
            }
        }
        unlink(clientPath)
        rmdir(directory)
    }

    /// DT-6: a thousand unnamed datagrams in a row leave the endpoint serving, with exactly the
    /// descriptors it had (the socket and NIO's duplicate); closing still closes them all.
    @Test func dt6AThousandUnnamedUnixDatagramsLeaveTheEndpointServingWithBoundedDescriptors() async throws {
        let directory = temporaryDirectory()
        let path = directory + "/echo.sock"
        let clientPath = directory + "/client.sock"
        try await withLoop { loop in
            loop.setExceptionHandler { _ in }
            try loop.runUntilComplete {
                let (receiver, rpAny) = try await loop.createDatagramEndpoint(localPath: path) {
                    RecordingDatagramProtocol()
                }
                let rp = rpAny as! RecordingDatagramProtocol
                rp.onDatagram = { data, from, transport in try transport.sendto(data, to: from) }
                var info = stat()
                fstat(receiver.fileDescriptor, &info)
                let inode = UInt64(info.st_ino)
                let before = Self.descriptorsSharingSocket(of: receiver.fileDescriptor)
                #expect(before == 2)
                let unnamed = try Self.unixClient()
                let named = try Self.unixClient(boundAt: clientPath)
                defer {
                    close(unnamed)
                    close(named)
                }
                for index in 0..<1_000 {
                    try await Self.sendUnix(unnamed, [UInt8(truncatingIfNeeded: index)], to: path, loop)
                }
                try await eventually(loop, timeout: .seconds(30)) { rp.errors.count == 1_000 }
                #expect(!receiver.isClosing)
                #expect(rp.datagrams.isEmpty)
                try await Self.sendUnix(named, Array("still here".utf8), to: path, loop)
                var answer: [UInt8]?
                try await eventually(loop) {
                    answer = Self.receive(named)
                    return answer != nil
                }
                #expect(answer == Array("still here".utf8))
                #expect(Self.descriptorsSharingSocket(of: receiver.fileDescriptor) == before)
                #expect(!rp.events.contains("lost"))
                receiver.close()
                try await eventually(loop) { rp.events.last == "lost" }
                #expect(Self.descriptorsForSocketInode(inode) == 0)
            }
        }
        unlink(clientPath)
        rmdir(directory)
    }

    @Test func dt7AThrowingCallbackIsFatal() async throws {
        struct Boom: Error {}
        try await withLoop { loop in
            loop.setExceptionHandler { _ in }
            try loop.runUntilComplete {
                let (receiver, rp) = try await Self.endpoint(loop)
                rp.onDatagram = { _, _, _ in throw Boom() }
                let (sender, _) = try await Self.endpoint(loop, remote: receiver.extraInfo.localAddress!)
                try sender.sendto([1])
                try await eventually(loop) { rp.events.last == "lost" }
                #expect(rp.lostError is Boom)
                sender.close()
            }
        }
    }

    @Test func dt10CloseFlushesQueuedDatagramsAndFc8CountsEightBytesEach() async throws {
        let directory = temporaryDirectory()
        let path = directory + "/receiver.sock"
        let senderPath = directory + "/sender.sock"
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (receiver, rpAny) = try await loop.createDatagramEndpoint(localPath: path) {
                    RecordingDatagramProtocol()
                }
                let rp = rpAny as! RecordingDatagramProtocol
                receiver.pauseReading()  // the kernel queue fills, so the sender gets EAGAIN
                let (sender, spAny) = try await loop.createDatagramEndpoint(localPath: senderPath, remotePath: path) {
                    RecordingDatagramProtocol()
                }
                let sp = spAny as! RecordingDatagramProtocol
                try sender.setWriteBufferLimits(high: 4_000)
                let size = 100
                let count = 2_000
                for index in 0..<count {
                    try sender.sendto([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: size))
                }
                let queued = sender.writeBufferSize
                #expect(queued > 0)
                #expect(queued % (size + 8) == 0)  // FC-8
                #expect(sp.events.contains("pause"))
                sender.close()
                #expect(sender.isClosing)
                receiver.resumeReading()
                try await eventually(loop) { sp.events.last == "lost" }
                try await eventually(loop) { rp.datagrams.count == count }
                #expect(
                    rp.datagrams.enumerated().allSatisfy {
                        $0.element.bytes.first == UInt8(truncatingIfNeeded: $0.offset)
                    }
                )
                #expect(sp.events.filter { $0 == "pause" }.count == 1)
                #expect(sp.lostError == nil)
                receiver.close()
            }
        }
        unlink(path)
        unlink(senderPath)
        rmdir(directory)
    }

    @Test func dt11PauseReadingHoldsDatagramsUntilResumed() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (receiver, rp) = try await Self.endpoint(loop)
                receiver.pauseReading()
                #expect(!receiver.isReading)
                let (sender, _) = try await Self.endpoint(loop, remote: receiver.extraInfo.localAddress!)
                for index in 0..<5 { try sender.sendto([UInt8(index)]) }
                try await Task.sleep(for: .milliseconds(50))
                #expect(rp.datagrams.isEmpty)
                receiver.resumeReading()
                try await eventually(loop) { rp.datagrams.count == 5 }
                #expect(rp.datagrams.map(\.bytes) == (0..<5).map { [UInt8($0)] })
                sender.close()
                receiver.close()
            }
        }
    }

    @Test func xi4PeernameOnlyWhenConnected() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (receiver, _) = try await Self.endpoint(loop)
                let target = receiver.extraInfo.localAddress!
                #expect(receiver.extraInfo("peername") == nil)
                #expect(target.port != 0 && target.ipAddress == "127.0.0.1")
                let (sender, _) = try await Self.endpoint(loop, remote: target)
                #expect(sender.extraInfo.peerAddress == target)
                #expect(sender.extraInfo.localAddress?.port != 0)
                sender.close()
                receiver.close()
            }
        }
    }

    @Test func fc8LimitsDefaultAndValidate() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let (transport, _) = try await Self.endpoint(loop)
                #expect(transport.writeBufferLimits == WriteBufferLimits.default)
                #expect(transport.writeBufferSize == 0)
                #expect(throws: TulipError.invalidArgument("")) { try transport.setWriteBufferLimits(high: 1, low: 2) }
                transport.close()
                try transport.sendto([1], to: transport.extraInfo.localAddress!)  // DT-9: dropped
                #expect(transport.droppedDatagrams == 1)
            }
        }
    }
}
