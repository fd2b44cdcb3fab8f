import Dispatch
import Logging
import NIOCore
import Tulip
import TulipSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The running daemon: binds the plan's listeners on one ``TulipLoop``, serves until SIGTERM or
/// SIGINT, reloads on SIGHUP, then drains (ARCHITECTURE §5, lifecycle steps 3 to 5).
///
/// Draining: every listener stops accepting at once, every connection's protocol is told
/// (``StreamProtocol/shutdownRequested()``), connections are served until they end or
/// `shutdown.grace_seconds` runs out, the rest are closed (flushing) and, if a peer does not read
/// what is left within a few more seconds, aborted. ``run()`` returns as soon as the last
/// connection is gone. A second signal aborts every connection at once.
///
/// Reloading: see ``handleSignal(_:)`` and `Daemon+Reload.swift`. Configuration generations are
/// numbered from 1 (the start-up configuration); each successful reload adds one. Every entry the
/// daemon logs carries `config_generation`: the daemon's own entries the current generation, a
/// listener's entries (its connections' included) the generation the listener was started or
/// last replaced under — an unchanged listener keeps the number it started with, a removed one
/// drains under its own.
public final class Daemon: @unchecked Sendable {
    // @unchecked Sendable: all mutable state is touched on `loop`'s thread only; signal handlers
    // hop there with `callSoonThreadsafe`.

    enum State {
        case created
        case serving
        case reloading
        case draining
        case aborting
        case stopped
    }

    /// How long closed-but-unflushed connections get after the grace period before they are aborted.
    public static let flushTimeout: TimeAmount = .seconds(5)

    /// Loads the configuration again for a reload; `nil` when the daemon cannot reload.
    public typealias PlanLoader = @Sendable (_ logger: Logger) throws -> DaemonPlan

    var plan: DaemonPlan
    let loop: TulipLoop
    /// The daemon's own logger, tagged with the current generation.
    var logger: Logger
    /// The configuration generation in force: 1 at start-up.
    var generation = 1
    var state = State.created
    /// The current generation's listeners, in configuration order.
    var listeners: [RunningListener] = []
    /// Listeners a reload removed or replaced, until their drain ends.
    var retiring: [ObjectIdentifier: RunningListener] = [:]
    let loadPlan: PlanLoader?
    /// A SIGHUP arrived during a reload: reload once more when it ends.
    var reloadRequested = false
    private var signalSources: [any DispatchSourceSignal] = []
    private var stopped: CheckedContinuation<Void, Never>?
    /// A stop signal arrived during start-up or a reload: drain once that is over.
    var stopRequested = false
    let systemd: DaemonSystemd
    var lastStatusAt: NIODeadline?
    var statusTimer: Handle?
    var watchdogTimer: Handle?
    var drainTimer: Handle?
    var drainOpenConnections = 0
    /// The admin socket, metrics and their counters.
    var operations = DaemonOperations()

    /// How often a drain checks its progress, and how much more stop time it asks systemd for
    /// (`EXTEND_TIMEOUT_USEC`) when connections closed since the last check.
    static let drainProgressInterval: TimeAmount = .seconds(1)
    static let drainExtension: TimeAmount = .seconds(5)
    /// `STATUS=` is sent at most this often.
    static let statusInterval: TimeAmount = .seconds(1)

    /// Makes a daemon for `plan` on `loop`.
    ///
    /// `systemd` has the sockets, notify socket and watchdog the service manager gave; `reload` loads the configuration again on SIGHUP (the same
    /// loader as start-up, given a logger tagged with the generation it would become), or is `nil`
    /// when SIGHUP should be ignored. `reload` runs on the loop's default executor, off the loop.
    public init(
        plan: DaemonPlan,
        loop: TulipLoop,
        logger: Logger,
        systemd: DaemonSystemd = .none,
        reload: PlanLoader? = nil
    ) {
        self.plan = plan
        self.loop = loop
        var logger = logger
        logger[metadataKey: "config_generation"] = "1"
        self.logger = logger
        self.systemd = systemd
        self.loadPlan = reload
    }

    /// Starts listeners for this daemon's loop, telling `statusChanged` about connections.
    var starter: ListenerStarter {
        ListenerStarter(
            loop: self.loop,
            logger: self.logger,
            onConnectionsChanged: self.systemd.notifier.isEnabled ? { [weak self] in self?.statusChanged() } : nil
        )
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
        var passed = PassedSocketPool(
            self.systemd.passedSockets,
            listenerNames: Set(self.plan.listeners.map(\.configuration.name)),
            logger: self.logger
        )
        do {
            let starter = self.starter
            for listener in self.plan.listeners {
                let sockets = try passed.take(for: listener.configuration)
                let adopted: AdoptedSockets = sockets.isEmpty ? .none : .passed(sockets)
                self.listeners.append(try await starter.start(listener, generation: 1, sockets: adopted))
            }
            try await self.startOperations()
        } catch {
            self.stopOperations()
            for listener in self.listeners { listener.discard() }
            self.listeners = []
            passed.closeRemaining()
            self.cancelSystemdTimers()
            let startup = error as? DaemonStartupError
            self.systemd.notifier.errno(startup?.errno ?? EINVAL, status: "start-up failed: \(error)")
            throw error
        }
        for listener in self.listeners { self.storeSockets(of: listener) }
        self.state = .serving
        self.systemd.notifier.ready(status: self.statusLine())
        self.lastStatusAt = .now()
        if self.stopRequested { self.beginDrain() }
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

    // MARK: - Signals

    /// Returns once every signal source is registered: until then the signals are `SIG_IGN` and
    /// one that arrives is lost (dispatch registers sources asynchronously), which a fast start
    /// under socket activation made visible.
    private func installSignalHandlers() async {
        for signalNumber in [SIGTERM, SIGINT, SIGHUP] {
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

    /// SIGTERM and SIGINT start a drain, or abort when one is under way; SIGHUP reloads while
    /// serving (one more reload follows when it arrives during a reload) and is ignored, with a
    /// log entry, during start-up and drain.
    ///
    /// Loop thread.
    public func handleSignal(_ signalNumber: CInt) {
        if signalNumber == SIGHUP {
            self.handleReloadSignal()
            return
        }
        let name = signalNumber == SIGINT ? "SIGINT" : signalNumber == SIGTERM ? "SIGTERM" : "signal \(signalNumber)"
        switch self.state {
        case .created:
            // Not serving yet: stop as soon as start-up finishes.
            self.logger.notice("\(name) received during start-up; stopping once started")
            self.stopRequested = true
        case .reloading:
            self.logger.notice("\(name) received during a reload; draining once it ends")
            self.stopRequested = true
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

    // MARK: - Draining

    /// Every listener, current and retiring.
    var allListeners: [RunningListener] { self.listeners + Array(self.retiring.values) }

    func beginDrain() {
        self.state = .draining
        self.drainOpenConnections = self.openConnections
        self.systemd.notifier.stopping(status: self.statusLine())
        self.lastStatusAt = .now()
        if self.systemd.notifier.isEnabled {
            self.scheduleDrainProgressCheck()
        }
        let (seconds, attoseconds) = self.plan.configuration.shutdown.gracePeriod.components
        let grace = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        let all = self.allListeners
        for listener in all { listener.drain(grace: grace) }
        _ = try? self.loop.createTask { [self] in
            for listener in all { await listener.waitClosed() }
            self.finish()
        }
    }

    private func abortAll() {
        guard self.state == .draining else { return }
        self.state = .aborting
        for listener in self.allListeners { listener.abort() }
    }

    private func finish() {
        guard self.state != .stopped else { return }
        self.state = .stopped
        self.cancelSystemdTimers()
        self.stopOperations()
        self.stopped?.resume()
        self.stopped = nil
    }

    /// Open connections of every listener, retiring ones included.
    var openConnections: Int {
        self.allListeners.reduce(0) { $0 + $1.openConnections }
    }
}
