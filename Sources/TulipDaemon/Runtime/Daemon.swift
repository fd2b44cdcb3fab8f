import Dispatch
import Logging
import NIOCore
import Tulip
import TulipSystemd
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
    private let systemd: DaemonSystemd
    /// Passed sockets not adopted yet, by name.
    private var passedSockets: [String: [ListenFileDescriptor]] = [:]
    private var lastStatusAt: NIODeadline?
    private var statusTimer: Handle?
    private var watchdogTimer: Handle?
    private var drainTimer: Handle?
    private var drainOpenConnections = 0

    /// How often a drain checks its progress, and how much more stop time it asks systemd for
    /// (`EXTEND_TIMEOUT_USEC`) when connections closed since the last check.
    static let drainProgressInterval: TimeAmount = .seconds(1)
    static let drainExtension: TimeAmount = .seconds(5)
    /// `STATUS=` is sent at most this often.
    static let statusInterval: TimeAmount = .seconds(1)

    /// Makes a daemon for `plan` on `loop`; `systemd` has the sockets, notify socket and watchdog
    /// the service manager gave.
    public init(plan: DaemonPlan, loop: TulipLoop, logger: Logger, systemd: DaemonSystemd = .none) {
        self.plan = plan
        self.loop = loop
        self.logger = logger
        self.systemd = systemd
    }

    /// Starts every listener, serves until a stop signal and drains.
    ///
    /// Run it on the loop, for example with ``TulipLoop/runUntilComplete(_:)``.
    /// - Throws: ``DaemonStartupError`` when a listener cannot be set up; nothing is left bound.
    public func run() async throws {
        self.loop.eventLoop.preconditionInEventLoop()
        await self.installSignalHandlers()
        defer { self.removeSignalHandlers() }
        self.startWatchdog()
        do {
            try self.claimPassedSockets()
            for listener in self.plan.listeners {
                self.listeners.append(try await self.start(listener))
            }
        } catch {
            for listener in self.listeners {
                listener.server?.close()
                listener.datagrams?.abortAll()
            }
            self.listeners = []
            self.closeUnadoptedSockets()
            self.cancelSystemdTimers()
            let startup = error as? DaemonStartupError
            self.systemd.notifier.errno(startup?.errno ?? EINVAL, status: "start-up failed: \(error)")
            throw error
        }
        self.state = .serving
        self.systemd.notifier.ready(status: self.statusLine())
        self.lastStatusAt = .now()
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
        let observer = ConnectionLogger(logger: logger, limitEventLoop: self.loop.eventLoop)
        if self.systemd.notifier.isEnabled {
            observer.onChange = { [weak self] in self?.statusChanged() }
        }
        let factory = listener.factory
        let passed = try self.takePassedSockets(for: configuration)
        if configuration.endpoint.kind.isDatagram {
            return try await self.startDatagram(listener, passed: passed, logger: logger, observer: observer)
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
                if let socket = passed.first {
                    server = try await self.loop.createServer(
                        sock: socket.fd,
                        backlog: tcp.backlog,
                        keepAlive: tcp.keepAlive,
                        observer: observer,
                        limits: configuration.limits.connectionLimits,
                        makeProtocol: { try factory.makeStreamProtocol() }
                    )
                    break
                }
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
                    limits: configuration.limits.connectionLimits,
                    makeProtocol: { try factory.makeStreamProtocol() }
                )
            case .unix(let unix):
                address = unix.path
                if let socket = passed.first {
                    // The socket file is systemd's: it is neither chmod-ed nor unlinked here.
                    server = try await self.loop.createUnixServer(
                        sock: socket.fd,
                        backlog: unix.backlog,
                        cleanupSocket: false,
                        observer: observer,
                        limits: configuration.limits.connectionLimits,
                        makeProtocol: { try factory.makeStreamProtocol() }
                    )
                    break
                }
                server = try await self.loop.createUnixServer(
                    path: unix.path,
                    backlog: unix.backlog,
                    mode: unix.mode,
                    observer: observer,
                    ssl: listener.tls,
                    sslHandshakeTimeout: Self.handshakeTimeout(configuration),
                    limits: configuration.limits.connectionLimits,
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
            throw DaemonStartupError(
                listener: configuration.name,
                address: address,
                reason: error.message,
                errno: error.errno
            )
        }
        let bound =
            (server as? Server)?.sockets.map { ConnectionLogger.describe($0.localAddress) }.joined(separator: ", ")
            ?? ""
        var metadata: Logger.Metadata = ["address": "\(bound.isEmpty ? address : bound)"]
        if let socket = passed.first { metadata["fd"] = "\(socket.fd)" }
        logger.info(passed.isEmpty ? "listening" : "listening on a socket passed by systemd", metadata: metadata)
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
        passed: [ListenFileDescriptor],
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
            if !passed.isEmpty {
                for socket in passed {
                    address = "fd \(socket.fd)"
                    let (transport, _) = try await self.loop.createDatagramEndpoint(
                        sock: socket.fd,
                        makeProtocol: makeProtocol
                    )
                    opened.append(transport)
                }
                return RunningListener(plan: listener, server: nil, datagrams: group, observer: observer)
            }
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
            throw DaemonStartupError(
                listener: configuration.name,
                address: address,
                reason: reason,
                errno: (error as? TulipError)?.errno
            )
        }
        return RunningListener(plan: listener, server: nil, datagrams: group, observer: observer)
    }

    // MARK: - Signals

    /// Returns once both signal sources are registered: until then the signals are `SIG_IGN` and
    /// one that arrives is lost (dispatch registers sources asynchronously), which a fast start
    /// under socket activation made visible.
    private func installSignalHandlers() async {
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [self] in
                _ = try? self.loop.callSoonThreadsafe { self.handleSignal(signalNumber) }
            }
            await withCheckedContinuation { (registered: CheckedContinuation<Void, Never>) in
                source.setRegistrationHandler { registered.resume() }
                source.resume()
            }
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
        self.drainOpenConnections = self.openConnections
        self.systemd.notifier.stopping(status: self.statusLine())
        self.lastStatusAt = .now()
        if self.systemd.notifier.isEnabled {
            self.scheduleDrainProgressCheck()
        }
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
        self.cancelSystemdTimers()
        self.stopped?.resume()
        self.stopped = nil
    }

    // MARK: - systemd

    /// Groups the passed sockets by name; those no listener is named after are logged and closed.
    private func claimPassedSockets() throws {
        let names = Set(self.plan.listeners.map(\.configuration.name))
        for socket in self.systemd.passedSockets {
            if names.contains(socket.name) {
                self.passedSockets[socket.name, default: []].append(socket)
            } else {
                self.logger.warning(
                    "closing a socket passed by systemd that no listener is named after",
                    metadata: ["fd": "\(socket.fd)", "fd_name": "\(socket.name)"]
                )
                ListenFileDescriptors.close(socket.fd)
            }
        }
    }

    /// The passed sockets for `configuration`, type-checked against the listener's kind.
    private func takePassedSockets(for configuration: ListenerConfiguration) throws -> [ListenFileDescriptor] {
        guard let passed = self.passedSockets.removeValue(forKey: configuration.name) else { return [] }
        let address = Self.describe(configuration.endpoint)
        func mismatch(_ reason: String) -> DaemonStartupError {
            for socket in passed { ListenFileDescriptors.close(socket.fd) }
            return DaemonStartupError(listener: configuration.name, address: address, reason: reason, errno: EINVAL)
        }
        let kind = configuration.endpoint.kind
        guard let expected = configuration.endpoint.expectedSocketKind else {
            throw mismatch(
                "systemd passed a socket named \"\(configuration.name)\", but listener \"\(configuration.name)\" is a \(kind) listener, which cannot adopt sockets"
            )
        }
        for socket in passed {
            let actual: SocketKind
            do {
                actual = try SocketKind(fd: socket.fd)
            } catch {
                throw mismatch("systemd passed fd \(socket.fd) named \"\(socket.name)\": \(error)")
            }
            guard actual.matches(expected) else {
                throw mismatch(
                    "the socket \"\(socket.name)\" passed by systemd (fd \(socket.fd)) is \(actual), but listener \"\(configuration.name)\" is a \(kind) listener and needs \(expected)"
                )
            }
        }
        if passed.count > 1, !kind.isDatagram {
            throw mismatch(
                "systemd passed \(passed.count) sockets named \"\(configuration.name)\"; a \(kind) listener adopts one (use one socket unit per address)"
            )
        }
        return passed
    }

    private func closeUnadoptedSockets() {
        for socket in self.passedSockets.values.joined() { ListenFileDescriptors.close(socket.fd) }
        self.passedSockets = [:]
    }

    private var openConnections: Int {
        self.listeners.reduce(0) { $0 + $1.observer.openConnections }
    }

    /// `N listeners, M open connections`, or `draining, M open connections`.
    private func statusLine() -> String {
        let open = self.openConnections
        let connections = "\(open) open connection\(open == 1 ? "" : "s")"
        switch self.state {
        case .draining, .aborting: return "draining, \(connections)"
        default:
            let count = self.listeners.count
            return "\(count) listener\(count == 1 ? "" : "s"), \(connections)"
        }
    }

    /// A connection opened or closed: sends `STATUS=` now, or once a second has passed since the
    /// last one.
    private func statusChanged() {
        guard self.state == .serving || self.state == .draining, self.statusTimer == nil else { return }
        let now = NIODeadline.now()
        if let last = self.lastStatusAt, now - last < Self.statusInterval {
            self.statusTimer = try? self.loop.callLater(Self.statusInterval - (now - last)) { [weak self] in
                guard let self else { return }
                self.statusTimer = nil
                self.sendStatus()
            }
        } else {
            self.sendStatus()
        }
    }

    private func sendStatus() {
        guard self.state == .serving || self.state == .draining else { return }
        self.lastStatusAt = .now()
        self.systemd.notifier.status(self.statusLine())
    }

    /// Pets the watchdog from the loop at half of `WATCHDOG_USEC`, so a blocked loop stops petting.
    private func startWatchdog() {
        guard let microseconds = self.systemd.watchdogMicroseconds, self.systemd.notifier.isEnabled else { return }
        let half = TimeAmount.microseconds(Int64(clamping: max(microseconds / 2, 1)))
        self.logger.debug("watchdog enabled", metadata: ["interval_usec": "\(microseconds)"])
        self.petWatchdog(every: half)
    }

    private func petWatchdog(every interval: TimeAmount) {
        self.systemd.notifier.watchdog()
        self.watchdogTimer = try? self.loop.callLater(interval) { [weak self] in
            self?.petWatchdog(every: interval)
        }
    }

    /// While a drain closes connections, asks systemd for more stop time.
    private func scheduleDrainProgressCheck() {
        self.drainTimer = try? self.loop.callLater(Self.drainProgressInterval) { [weak self] in
            guard let self, self.state == .draining || self.state == .aborting else { return }
            let open = self.openConnections
            if open > 0, open < self.drainOpenConnections {
                self.systemd.notifier.extendTimeout(
                    microseconds: UInt64(Self.drainExtension.nanoseconds / 1000)
                )
            }
            self.drainOpenConnections = open
            self.scheduleDrainProgressCheck()
        }
    }

    private func cancelSystemdTimers() {
        for timer in [self.statusTimer, self.watchdogTimer, self.drainTimer] { timer?.cancel() }
        self.statusTimer = nil
        self.watchdogTimer = nil
        self.drainTimer = nil
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

/// What the daemon drains: a stream ``Server`` or a ``PipeListener``.
///
/// Loop thread.
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
