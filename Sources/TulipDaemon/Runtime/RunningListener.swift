import Logging
import NIOCore
import Tulip
import TulipTLS

/// One listener the daemon serves: its server (stream kinds and pipes) or datagram endpoints,
/// the connection logger, and the configuration generation it was started under.
///
/// It drains on its own — for a reload that removes or replaces it — exactly as the whole daemon
/// drains on SIGTERM: stop accepting, ask every connection's protocol to finish, serve until the
/// grace period ends, close (flushing) what is left, abort what has not gone after
/// ``Daemon/flushTimeout``.
///
/// Loop-confined: created, drained and dropped on the daemon's loop thread.
final class RunningListener {
    /// The plan entry it was started from.
    ///
    /// An unchanged listener keeps its entry (and the
    /// protocol factory in it) across reloads.
    let plan: DaemonPlan.Listener
    /// Stream listeners and pipes: what accepts connections.
    let server: (any ServingListener)?
    /// Datagram listeners: the endpoints, one per bound address.
    let datagrams: DatagramEndpointGroup?
    /// Logs and counts the connections.
    let observer: ConnectionLogger
    /// The configuration generation this listener was started under; its entries carry it.
    let generation: Int
    /// Whether the service manager holds these sockets too (passed by systemd, or sent to its fd
    /// store): they are not stored again and a unix socket file is left in place on close.
    private(set) var isHeldByServiceManager: Bool
    private let loop: TulipLoop
    private let logger: Logger
    private var timers: [Handle] = []
    private(set) var isDraining = false

    init(
        plan: DaemonPlan.Listener,
        server: (any ServingListener)?,
        datagrams: DatagramEndpointGroup?,
        observer: ConnectionLogger,
        generation: Int,
        isHeldByServiceManager: Bool,
        loop: TulipLoop,
        logger: Logger
    ) {
        self.plan = plan
        self.server = server
        self.datagrams = datagrams
        self.observer = observer
        self.generation = generation
        self.isHeldByServiceManager = isHeldByServiceManager
        self.loop = loop
        self.logger = logger
    }

    /// The listener's `name`.
    var name: String { self.plan.configuration.name }

    /// Where it listens: the bound addresses, or the configured endpoint.
    var address: String {
        self.server.flatMap(ListenerStarter.boundAddress) ?? self.plan.configuration.endpoint.addressDescription
    }

    /// An operator's `drain`: stops accepting (connections wait in the backlog) and asks every
    /// connection to finish; ``resumeForOperator()`` accepts again.
    func pauseForOperator() {
        guard let server = self.server as? Server else { return }
        server.pauseAccepting()
        server.requestClientShutdown()
    }

    /// An operator's `resume`: accepts again.
    func resumeForOperator() {
        (self.server as? Server)?.resumeAccepting()
    }

    /// Open connections (stream listeners and pipes).
    var openConnections: Int { self.observer.openConnections }

    /// Open connections and datagram endpoints: what a drain waits for.
    var openChannels: Int { self.observer.openConnections + (self.datagrams?.openEndpoints ?? 0) }

    // MARK: - Draining

    /// Starts draining.
    ///
    /// Accepting stops now, protocols are told, and after `grace` the rest are closed, then
    /// aborted ``Daemon/flushTimeout`` later. Idempotent: a listener already draining
    /// keeps its own schedule.
    func drain(grace: TimeAmount) {
        guard !self.isDraining else { return }
        self.isDraining = true
        self.server?.close()
        self.server?.requestClientShutdown()
        // Datagram endpoints have no connections to wait for: they close now, flushing.
        self.datagrams?.closeAll()
        let bound = NIOLoopBound(self, eventLoop: self.loop.eventLoop)
        if let timer = try? self.loop.callLater(grace, { bound.value.graceExpired() }) {
            self.timers.append(timer)
        }
    }

    private func graceExpired() {
        let open = self.openChannels
        if open > 0 {
            self.logger.notice("grace period over; closing open connections", metadata: ["open": "\(open)"])
        }
        self.server?.closeClients()
        let bound = NIOLoopBound(self, eventLoop: self.loop.eventLoop)
        if let timer = try? self.loop.callLater(Daemon.flushTimeout, { bound.value.abort() }) {
            self.timers.append(timer)
        }
    }

    /// Aborts every connection and endpoint now (a second stop signal, or the flush timeout).
    func abort() {
        self.server?.abortClients()
        self.datagrams?.abortAll()
    }

    /// Closes at once without a drain: for listeners started by a start-up or reload that fails.
    func discard() {
        self.isDraining = true
        self.server?.close()
        self.server?.abortClients()
        self.datagrams?.abortAll()
    }

    /// Returns once the listener is closed and its last connection or endpoint is gone; the
    /// drain's timers are cancelled then.
    func waitClosed() async {
        await self.server?.waitClosed()
        await self.datagrams?.waitClosed()
        for timer in self.timers { timer.cancel() }
        self.timers = []
    }

    /// Starts accepting on a stream server that was started with `startServing: false`.
    /// - Throws: ``DaemonStartupError`` naming the listener when `listen(2)` fails.
    func startServing() async throws {
        guard let server = self.server as? Server else { return }
        do {
            try await server.startServing()
        } catch {
            throw DaemonStartupError(
                listener: self.name,
                address: self.plan.configuration.endpoint.addressDescription,
                reason: (error as? TulipError)?.message ?? "\(error)",
                errno: (error as? TulipError)?.errno
            )
        }
    }

    // MARK: - Sockets

    /// Duplicates of the listening sockets (stream) or endpoint sockets (datagram).
    ///
    /// For a successor listener or the service manager's fd store; empty for pipes. The caller
    /// owns them.
    func duplicateSockets() throws -> [CInt] {
        if let server = self.server as? Server { return try server.duplicateSockets() }
        return try self.datagrams?.duplicateSockets() ?? []
    }

    /// Someone else serves these sockets from now on (a successor listener, the fd store): a unix
    /// socket file stays in place when this listener closes.
    func keepSocketFilesOnClose() {
        (self.server as? Server)?.keepSocketFileOnClose()
        self.datagrams?.keepSocketFilesOnClose()
    }

    /// The sockets were sent to the service manager's fd store.
    func markHeldByServiceManager() {
        self.isHeldByServiceManager = true
        self.keepSocketFilesOnClose()
    }

    /// Uses `context` for TLS connections accepted from now on (a certificate reload).
    func replaceTLSContext(_ context: TLSContext) throws {
        try (self.server as? Server)?.replaceSSLContext(context)
    }
}

@available(*, unavailable)
extension RunningListener: Sendable {}

/// What a listener drains: a stream ``Server`` or a ``PipeListener``.
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
