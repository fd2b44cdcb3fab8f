import NIOCore
import Tulip

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Serves one `pipe` listener: the listener's stream protocol reads from the `read` FIFO and
/// writes to the `write` FIFO (ARCHITECTURE §5).
///
/// The listener is one connection for its whole life: a protocol object over a
/// ``ChannelTransport`` made by ``TulipLoop/connectPipes(readFileDescriptor:writeFileDescriptor:observer:makeProtocol:)``
/// that gets whatever any writer of the `read` FIFO sends, while writers come and go.
///
/// Descriptors:
/// - `read` is opened `O_RDONLY | O_NONBLOCK` for the connection, and once more `O_RDWR`, never
///   read or written, for the listener's life. That second descriptor is a writer that never
///   leaves, so the FIFO never reports end-of-file or a hang-up when the last client writer
///   closes. Without it each hang-up would end the connection, and a writer arriving between
///   the hang-up and NIO's read of the end-of-file makes that read come back empty, which NIO
///   treats as impossible and traps on: the daemon would crash. It also keeps a reader on the
///   FIFO between connections, so nothing a writer sends is discarded. Should the connection
///   end anyway (a read error), the `read` FIFO is opened again for a new one.
/// - `write` is opened once `O_RDWR`. Linux never blocks on that open, and never fails it with
///   `ENXIO` the way `O_WRONLY | O_NONBLOCK` does while no reader is there; holding it also keeps
///   the FIFO's buffer alive between connections, so a reader that opens late still gets the
///   echo. Each connection writes to a duplicate of it.
/// - Without a `write` path what the protocol writes is dropped; without a `read` path the one
///   connection lasts until the listener closes.
///
/// FIFOs are created with `mode` when missing and left in place when the daemon stops. An
/// existing path that is not a FIFO is an error and is not touched.
///
/// Loop-confined.
final class PipeListener: ConnectionObserver {
    let name: String
    let endpoint: PipeEndpoint
    private let loop: TulipLoop
    private let logger: ConnectionLogger
    private let makeProtocol: @Sendable () throws -> any StreamProtocol
    private var writeKeeper: CInt = -1
    private var readKeeper: CInt = -1
    private var current: ChannelTransport?
    private var isClosed = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(
        name: String,
        endpoint: PipeEndpoint,
        loop: TulipLoop,
        logger: ConnectionLogger,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) {
        self.name = name
        self.endpoint = endpoint
        self.loop = loop
        self.logger = logger
        self.makeProtocol = makeProtocol
    }

    /// `read → write` paths, for logs and errors.
    var address: String {
        "\(self.endpoint.readPath ?? "-") -> \(self.endpoint.writePath ?? "-")"
    }

    /// Creates or checks the FIFOs, opens the write side and starts the first connection.
    /// - Throws: ``DaemonStartupError`` naming the listener and the path.
    func start() async throws {
        for path in [self.endpoint.readPath, self.endpoint.writePath].compactMap({ $0 }) {
            try self.prepareFIFO(at: path)
        }
        if let readPath = self.endpoint.readPath {
            self.readKeeper = try self.open(readPath, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        }
        if let writePath = self.endpoint.writePath {
            self.writeKeeper = try self.open(writePath, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        }
        do {
            try await self.startConnection()
        } catch {
            self.releaseDescriptors()
            throw error
        }
    }

    private func prepareFIFO(at path: String) throws {
        var status = stat()
        if lstat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFIFO else {
                throw DaemonStartupError(listener: self.name, address: path, reason: "\(path) exists and is not a FIFO")
            }
            return
        }
        guard mkfifo(path, mode_t(self.endpoint.mode)) == 0, chmod(path, mode_t(self.endpoint.mode)) == 0 else {
            throw self.error(path, "mkfifo")
        }
    }

    private func open(_ path: String, _ flags: CInt) throws -> CInt {
        let fd = Glibc.open(path, flags)
        guard fd >= 0 else { throw self.error(path, "open") }
        return fd
    }

    private func error(_ path: String, _ call: String) -> DaemonStartupError {
        let code = errno
        return DaemonStartupError(
            listener: self.name,
            address: path,
            reason: "\(call): \(String(cString: strerror(code)))"
        )
    }

    private func startConnection() async throws {
        let input = try self.endpoint.readPath.map { try self.open($0, O_RDONLY | O_NONBLOCK | O_CLOEXEC) }
        var output: CInt?
        if self.writeKeeper >= 0 {
            output = fcntl(self.writeKeeper, F_DUPFD_CLOEXEC, 0)
            guard output! >= 0 else {
                if let input { Glibc.close(input) }
                throw self.error(self.endpoint.writePath ?? "-", "dup")
            }
        }
        do {
            self.current = try await self.loop.connectPipes(
                readFileDescriptor: input,
                writeFileDescriptor: output,
                observer: self,
                makeProtocol: self.makeProtocol
            )
        } catch {
            if let input { Glibc.close(input) }
            if let output { Glibc.close(output) }
            throw DaemonStartupError(listener: self.name, address: self.address, reason: "\(error)")
        }
    }

    // MARK: - ConnectionObserver

    func connectionOpened(_ transport: ChannelTransport) {
        self.logger.connectionOpened(transport)
    }

    func connectionClosed(_ transport: ChannelTransport, error: (any Error)?) {
        self.logger.connectionClosed(transport, error: error)
        guard transport === self.current else { return }
        self.current = nil
        if self.isClosed || self.endpoint.readPath == nil {
            self.finish()
            return
        }
        // The writers are gone: serve the next ones.
        let bound = NIOLoopBound(self, eventLoop: self.loop.eventLoop)
        _ = try? self.loop.createTask {
            let listener = bound.value
            do {
                try await listener.startConnection()
            } catch {
                listener.logger.failed(listener: listener.name, error: error)
                listener.finish()
            }
        }
    }

    // MARK: - Draining

    /// Stops serving new writers; the current connection goes on (``closeClients()`` ends it).
    func close() {
        guard !self.isClosed else { return }
        self.isClosed = true
        if self.current == nil { self.finish() }
    }

    /// Pipe connections have no natural end, so a shutdown request closes the current one
    /// gracefully: what the protocol queued is flushed first.
    func requestClientShutdown() { self.closeClients() }

    /// Closes the current connection, flushing.
    func closeClients() { self.current?.close() }

    /// Aborts the current connection.
    func abortClients() { self.current?.abort() }

    /// Returns once the listener is closed and its last connection is gone.
    func waitClosed() async {
        if self.isClosed && self.current == nil { return }
        await withCheckedContinuation { self.waiters.append($0) }
    }

    private func finish() {
        self.isClosed = true
        self.releaseDescriptors()
        let waiters = self.waiters
        self.waiters = []
        for waiter in waiters { waiter.resume() }
    }

    private func releaseDescriptors() {
        if self.writeKeeper >= 0 { Glibc.close(self.writeKeeper) }
        if self.readKeeper >= 0 { Glibc.close(self.readKeeper) }
        self.readKeeper = -1
        self.writeKeeper = -1
    }
}

@available(*, unavailable)
extension PipeListener: Sendable {}
