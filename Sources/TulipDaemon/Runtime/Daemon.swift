import Dispatch
import Logging
import NIOCore
import Tulip
import TulipTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The running daemon: binds the plan's listeners on one ``TulipLoop``, serves until SIGTERM or
/// SIGINT, then drains (ARCHITECTURE §5, lifecycle steps 3 and 4).
///
/// Draining: every listener stops accepting at once, every connection's protocol is told
/// (``StreamProtocol/shutdownRequested()``), connections are served until they end or
/// `shutdown.grace_seconds` runs out, the rest are closed (flushing) and, if a peer does not read
/// what is left within a few more seconds, aborted. ``run()`` returns as soon as the last
/// connection is gone. A second signal aborts every connection at once.
public final class Daemon: @unchecked Sendable {
    // @unchecked Sendable: all mutable state is touched on `loop`'s thread only; signal handlers
    // hop there with `callSoon`.

    private enum State {
        case created
        case serving
        case draining
        case aborting
        case stopped
    }

    private struct RunningListener {
        let plan: DaemonPlan.Listener
        /// Stream listeners: the server.
        let server: (any ServingListener)?
        /// Datagram listeners: the endpoints, one per bound address.
        let datagrams: DatagramEndpointGroup?
        let observer: ConnectionLogger
    }

    /// How long closed-but-unflushed connections get after the grace period before they are aborted.
    public static let flushTimeout: TimeAmount = .seconds(5)

    private let plan: DaemonPlan
    private let loop: TulipLoop
    private let logger: Logger
    private var state = State.created
    private var listeners: [RunningListener] = []
    private var signalSources: [any DispatchSourceSignal] = []
    private var stopped: CheckedContinuation<Void, Never>?
    private var timers: [Handle] = []
    private var stopRequestedDuringStartup = false

    /// Makes a daemon for `plan` on `loop`.
    public init(plan: DaemonPlan, loop: TulipLoop, logger: Logger) {
        self.plan = plan
        self.loop = loop
        self.logger = logger
    }

    /// Starts every listener, serves until a stop signal and drains.
    ///
    /// Run it on the loop, for example with ``TulipLoop/runUntilComplete(_:)``.
    /// - Throws: ``DaemonStartupError`` when a listener cannot be set up; nothing is left bound.
    public func run() async throws {
        self.loop.eventLoop.preconditionInEventLoop()
        self.installSignalHandlers()
        defer { self.removeSignalHandlers() }
        do {
            for listener in self.plan.listeners {
                self.listeners.append(try await self.start(listener))
            }
        } catch {
            for listener in self.listeners {
                listener.server?.close()
                listener.datagrams?.abortAll()
            }
            self.listeners = []
            throw error
        }
        self.state = .serving
        if self.stopRequestedDuringStartup { self.beginDrain() }
        self.logger.info(
            "tulipd ready",
            metadata: ["listeners": "\(self.listeners.count)", "pid": "\(getpid())"]
        )
        if self.state != .stopped {
            await withCheckedContinuation { continuation in
                self.stopped = continuation
            }
        }
        self.logger.info("tulipd stopped")
    }

    // MARK: - Listeners

    private func start(_ listener: DaemonPlan.Listener) async throws -> RunningListener {
        let plan = listener
        let configuration = listener.configuration
        var logger = self.logger
        logger[metadataKey: "listener"] = "\(configuration.name)"
        logger[metadataKey: "protocol"] = "\(listener.plugin.name)"
        let observer = ConnectionLogger(logger: logger)
        let factory = listener.factory
        if configuration.endpoint.kind.isDatagram {
            return try await self.startDatagram(listener, logger: logger, observer: observer)
        }
        let server: any ServingListener
        let address: String
        do {
            switch configuration.endpoint {
            case .pipe(let pipe):
                let listener = PipeListener(
                    name: configuration.name,
                    endpoint: pipe,
                    loop: self.loop,
                    logger: observer,
                    makeProtocol: { try factory.makeStreamProtocol() }
                )
                try await listener.start()
                logger.info("listening", metadata: ["address": "\(listener.address)"])
                return RunningListener(plan: plan, server: listener, datagrams: nil, observer: observer)
            case .tcp(let tcp):
                address = Self.describe(hosts: tcp.hosts, port: tcp.port)
                server = try await self.loop.createServer(
                    host: tcp.hosts.isEmpty ? nil : tcp.hosts,
                    port: tcp.port,
                    backlog: tcp.backlog,
                    reuseAddress: tcp.reuseAddress,
                    reusePort: tcp.reusePort,
                    keepAlive: tcp.keepAlive,
                    observer: observer,
                    ssl: listener.tls,
                    sslHandshakeTimeout: Self.handshakeTimeout(configuration),
                    makeProtocol: { try factory.makeStreamProtocol() }
                )
            case .unix(let unix):
                address = unix.path
                server = try await self.loop.createUnixServer(
                    path: unix.path,
                    backlog: unix.backlog,
                    mode: unix.mode,
                    observer: observer,
                    ssl: listener.tls,
                    sslHandshakeTimeout: Self.handshakeTimeout(configuration),
                    makeProtocol: { try factory.makeStreamProtocol() }
                )
            default:
                throw DaemonStartupError(
                    listener: configuration.name,
                    address: "\(configuration.endpoint.kind)",
                    reason: "\(configuration.endpoint.kind) listeners are not supported yet"
                )
            }
        } catch let error as DaemonStartupError {
            throw error
        } catch let error as TulipError {
            let address = Self.describe(configuration.endpoint)
            self.logger.error(
                "cannot start listener",
                metadata: ["listener": "\(configuration.name)", "address": "\(address)", "error": "\(error.message)"]
            )
            throw DaemonStartupError(listener: configuration.name, address: address, reason: error.message)
        }
        let bound = (server as? Server)?.sockets.map { ConnectionLogger.describe($0.localAddress) }.joined(separator: ", ") ?? ""
        logger.info("listening", metadata: ["address": "\(bound.isEmpty ? address : bound)"])
        return RunningListener(plan: listener, server: server, datagrams: nil, observer: observer)
    }

    /// The `tls` block's handshake timeout, or nil without TLS (`createServer` refuses one then).
    private static func handshakeTimeout(_ configuration: ListenerConfiguration) -> TimeAmount? {
        guard let tls = configuration.tls else { return nil }
        let (seconds, attoseconds) = tls.handshakeTimeout.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Opens a datagram listener's endpoints: one per `udp` host (`0.0.0.0` when none is given),
    /// or the `unix_datagram` path; each gets its own protocol object.
    private func startDatagram(
        _ listener: DaemonPlan.Listener,
        logger: Logger,
        observer: ConnectionLogger
    ) async throws -> RunningListener {
        let configuration = listener.configuration
        let factory = listener.factory
        let group = DatagramEndpointGroup(logger: logger)
        let boundGroup = NIOLoopBound(group, eventLoop: self.loop.eventLoop)
        let makeProtocol: @Sendable () throws -> any DatagramProtocol = {
            boundGroup.value.observe(try factory.makeDatagramProtocol())
        }
        var address = Self.describe(configuration.endpoint)
        var opened: [DatagramTransport] = []
        do {
            switch configuration.endpoint {
            case .udp(let udp):
                for host in udp.hosts.isEmpty ? ["0.0.0.0"] : udp.hosts {
                    address = Self.describe(hosts: [host], port: udp.port)
                    let (transport, _) = try await self.loop.createDatagramEndpoint(
                        local: (host, udp.port),
                        reusePort: udp.reusePort,
                        allowBroadcast: udp.allowBroadcast,
                        makeProtocol: makeProtocol
                    )
                    opened.append(transport)
                }
            case .unixDatagram(let unix):
                let (transport, _) = try await self.loop.createDatagramEndpoint(
                    localPath: unix.path,
                    mode: unix.mode,
                    cleanupSocket: true,
                    makeProtocol: makeProtocol
                )
                opened.append(transport)
            default:
                preconditionFailure("startDatagram called for a stream listener")
            }
        } catch {
            for transport in opened { transport.abort() }
            let reason = (error as? TulipError)?.message ?? "\(error)"
            self.logger.error(
                "cannot start listener",
                metadata: ["listener": "\(configuration.name)", "address": "\(address)", "error": "\(reason)"]
            )
            throw DaemonStartupError(listener: configuration.name, address: address, reason: reason)
        }
        return RunningListener(plan: listener, server: nil, datagrams: group, observer: observer)
    }

    // MARK: - Signals

    private func installSignalHandlers() {
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [self] in
                _ = try? self.loop.callSoonThreadsafe { self.handleSignal(signalNumber) }
            }
            source.resume()
            self.signalSources.append(source)
        }
    }

    private func removeSignalHandlers() {
        for source in self.signalSources { source.cancel() }
        self.signalSources = []
    }

    /// Starts a drain on the first signal and aborts on the second.
    ///
    /// Loop thread.
    public func handleSignal(_ signalNumber: CInt) {
        let name = signalNumber == SIGINT ? "SIGINT" : signalNumber == SIGTERM ? "SIGTERM" : "signal \(signalNumber)"
        switch self.state {
        case .created:
            // Not serving yet: stop as soon as start-up finishes.
            self.logger.notice("\(name) received during start-up; stopping once started")
            self.stopRequestedDuringStartup = true
        case .serving:
            self.logger.notice(
                "\(name) received; draining",
                metadata: ["grace_period": "\(self.plan.configuration.shutdown.gracePeriod)"]
            )
            self.beginDrain()
        case .draining:
            self.logger.notice("\(name) received again; aborting open connections")
            self.abortAll()
        case .aborting, .stopped:
            break
        }
    }

    private func beginDrain() {
        self.state = .draining
        for listener in self.listeners {
            listener.server?.close()
            listener.server?.requestClientShutdown()
            // Datagram endpoints have no connections to wait for: they close now, flushing.
            listener.datagrams?.closeAll()
        }
        let (seconds, attoseconds) = self.plan.configuration.shutdown.gracePeriod.components
        let grace = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        if let timer = try? self.loop.callLater(grace, { [self] in self.graceExpired() }) {
            self.timers.append(timer)
        }
        _ = try? self.loop.createTask { [self] in
            for listener in self.listeners {
                await listener.server?.waitClosed()
                await listener.datagrams?.waitClosed()
            }
            self.finish()
        }
    }

    private func graceExpired() {
        guard self.state == .draining else { return }
        let open = self.listeners.reduce(0) {
            $0 + $1.observer.openConnections + ($1.datagrams?.openEndpoints ?? 0)
        }
        if open > 0 {
            self.logger.notice("grace period over; closing open connections", metadata: ["open": "\(open)"])
        }
        for listener in self.listeners { listener.server?.closeClients() }
        if let timer = try? self.loop.callLater(Self.flushTimeout, { [self] in self.abortAll() }) {
            self.timers.append(timer)
        }
    }

    private func abortAll() {
        guard self.state == .draining else { return }
        self.state = .aborting
        for listener in self.listeners {
            listener.server?.abortClients()
            listener.datagrams?.abortAll()
        }
    }

    private func finish() {
        guard self.state != .stopped else { return }
        self.state = .stopped
        for timer in self.timers { timer.cancel() }
        self.timers = []
        self.stopped?.resume()
        self.stopped = nil
    }

    // MARK: - Descriptions

    static func describe(_ endpoint: ListenerEndpoint) -> String {
        switch endpoint {
        case .tcp(let tcp): return Self.describe(hosts: tcp.hosts, port: tcp.port)
        case .unix(let unix): return unix.path
        case .udp(let udp): return Self.describe(hosts: udp.hosts.isEmpty ? ["0.0.0.0"] : udp.hosts, port: udp.port)
        case .unixDatagram(let unix): return unix.path
        case .pipe(let pipe): return "\(pipe.readPath ?? "-") -> \(pipe.writePath ?? "-")"
        default: return "\(endpoint.kind)"
        }
    }

    static func describe(hosts: [String], port: Int) -> String {
        let list = hosts
        guard !list.isEmpty else { return "*:\(port)" }
        return list.map { $0.contains(":") ? "[\($0)]:\(port)" : "\($0):\(port)" }.joined(separator: ", ")
    }
}

/// What the daemon drains: a stream ``Server`` or a ``PipeListener``. Loop thread.
protocol ServingListener: AnyObject {
    /// Stops accepting; live connections go on.
    func close()
    /// Tells every connection's protocol that the daemon is draining.
    func requestClientShutdown()
    /// Closes every connection, flushing.
    func closeClients()
    /// Aborts every connection.
    func abortClients()
    /// Returns once closed with no connection left.
    func waitClosed() async
}

extension Server: ServingListener {}
extension PipeListener: ServingListener {}
