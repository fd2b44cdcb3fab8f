import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking `body` on a thread of its own, so blocking loop calls never sit on a Swift
/// concurrency pool thread.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = ThreadBox { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

private final class ThreadBox: @unchecked Sendable {
    // @unchecked Sendable: `body` is set once before the thread starts and read on it only.
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
    func start() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(
            &thread,
            nil,
            { raw in
                let box = Unmanaged<ThreadBox>.fromOpaque(raw!).takeRetainedValue()
                box.body()
                return nil
            },
            context
        )
        pthread_detach(thread)
    }
}

/// A fresh loop for `body`, closed afterwards.
func withLoop<T: Sendable>(_ body: @escaping @Sendable (TulipLoop) throws -> T) async throws -> T {
    try await onOwnThread {
        let loop = TulipLoop()
        defer { try? loop.close() }
        return try body(loop)
    }
}

/// A blocking POSIX client socket for tests; run it off the loop (``TulipLoop/runInExecutor(_:)``).
final class BlockingClient: @unchecked Sendable {
    // @unchecked Sendable: used by one thread at a time.
    let fd: CInt

    /// Connects; `receiveBuffer` sets `SO_RCVBUF` before the handshake, so the window is small
    /// from the start (shrinking it later can stall a loopback connection).
    init(port: Int, host: String = "127.0.0.1", receiveBuffer: Int32? = nil) throws {
        let address = try SocketAddress(ipAddress: host, port: port)
        self.fd = socket(CInt(address.protocol.rawValue), CInt(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer {
            setsockopt(self.fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        try self.connect(address)
    }

    init(path: String) throws {
        let address = try SocketAddress(unixDomainSocketPath: path)
        self.fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
        try self.connect(address)
    }

    private func connect(_ address: SocketAddress) throws {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result = address.withSockAddr { Glibc.connect(self.fd, $0, socklen_t($1)) }
        if result != 0 {
            let code = errno
            Glibc.close(self.fd)
            throw TulipError.make(.bindFailed, "connect: \(String(cString: strerror(code)))", errno: code)
        }
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 { return }
            offset += sent
        }
    }

    func send(_ text: String) { self.send(Array(text.utf8)) }

    /// Reads until `count` bytes, EOF or the 10 s timeout.
    func receive(count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while result.count < count {
            let n = chunk.withUnsafeMutableBytes {
                Glibc.recv(self.fd, $0.baseAddress, min($0.count, count - result.count), 0)
            }
            if n <= 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }

    /// Reads until EOF (or the timeout); `nil` if the connection was reset.
    func receiveAll() -> [UInt8]? {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(self.fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return result }
            if n < 0 { return errno == ECONNRESET ? nil : result }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    func shutdownWrite() { Glibc.shutdown(self.fd, Int32(SHUT_WR)) }

    /// Closes with an RST instead of a FIN.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(self.fd)
    }

    func close() { Glibc.close(self.fd) }
}

/// Whether a TCP connect to `port` is refused.
func connectionRefused(port: Int, host: String = "127.0.0.1") -> Bool {
    do {
        let client = try BlockingClient(port: port, host: host)
        client.close()
        return false
    } catch let error as TulipError {
        return error.errno == ECONNREFUSED
    } catch {
        return false
    }
}

/// Records the callbacks a stream protocol receives, in order, for assertions.
final class RecordingProtocol: StreamProtocol, @unchecked Sendable {
    // @unchecked Sendable: mutated on the loop thread, read by the test after the loop stopped
    // or through `events`, which locks.
    private let lock = NIOLock()
    private var _events: [String] = []
    private(set) var transport: ChannelTransport?
    var received: [UInt8] = []
    var onConnectionMade: ((ChannelTransport) -> Void)?
    var onData: ((ByteBuffer, ChannelTransport) throws -> Void)?
    var onEOF: (() -> Bool)?
    var lostError: (any Error)?
    let lost: EventLoopPromise<Void>?

    init(lost: EventLoopPromise<Void>? = nil) {
        self.lost = lost
    }

    var events: [String] { self.lock.withLock { self._events } }
    private func record(_ event: String) { self.lock.withLock { self._events.append(event) } }

    func connectionMade(transport: ChannelTransport) {
        self.record("made")
        self.transport = transport
        self.onConnectionMade?(transport)
    }

    func dataReceived(_ data: ByteBuffer) throws {
        self.record("data")
        self.received.append(contentsOf: data.readableBytesView)
        try self.onData?(data, self.transport!)
    }

    func eofReceived() throws -> Bool {
        self.record("eof")
        return self.onEOF?() ?? false
    }

    func pauseWriting() { self.record("pause") }
    func resumeWriting() { self.record("resume") }

    func connectionLost(error: (any Error)?) {
        self.record("lost")
        self.lostError = error
        self.lost?.succeed(())
    }
}
