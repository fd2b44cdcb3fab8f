import Logging
import NIOCore
import Tulip

/// Logs one listener's limit events without flooding: a `notice` when accepting pauses at
/// `max_connections` or resumes, and an `info` for refused connections, each at most once a
/// second, with how many events the entry stands for.
///
/// A listener serving at its limit pauses and resumes with every connection; the log says so
/// once a second and, when a second ends with the state changed or refusals unlogged, one entry
/// then, so that its last word is always the listener's state. Loop-confined, one per listener.
final class LimitEventLog {
    private static let interval = TimeAmount.seconds(1)

    private let logger: Logger
    private let eventLoop: any EventLoop

    private var isPaused = false
    private var loggedPaused = false
    private var openConnections = 0
    private var pausesSinceEntry = 0
    private var lastStateEntry: NIODeadline?

    private var refusalsSinceEntry = 0
    private var lastRefusal: (peer: SocketAddress?, reason: ConnectionRefusalReason)?
    private var lastRefusalEntry: NIODeadline?

    private var catchUp: Scheduled<Void>?

    init(logger: Logger, eventLoop: any EventLoop) {
        self.logger = logger
        self.eventLoop = eventLoop
    }

    deinit {
        self.catchUp?.cancel()
    }

    func acceptingChanged(paused: Bool, openConnections: Int) {
        self.isPaused = paused
        self.openConnections = openConnections
        if paused { self.pausesSinceEntry += 1 }
        self.logState(now: self.eventLoop.now)
    }

    func refused(peer: SocketAddress?, reason: ConnectionRefusalReason) {
        self.refusalsSinceEntry += 1
        self.lastRefusal = (peer, reason)
        self.logRefusals(now: self.eventLoop.now)
    }

    private func logState(now: NIODeadline) {
        guard self.isPaused != self.loggedPaused else { return }
        if let last = self.lastStateEntry, now - last < Self.interval {
            self.scheduleCatchUp(at: last + Self.interval)
            return
        }
        self.lastStateEntry = now
        self.loggedPaused = self.isPaused
        var metadata: Logger.Metadata = ["open_connections": "\(self.openConnections)"]
        if self.isPaused {
            metadata["pauses_since_last_entry"] = "\(self.pausesSinceEntry)"
            self.pausesSinceEntry = 0
            self.logger.notice("listener paused at its connection limit", metadata: metadata)
        } else {
            self.logger.notice("listener resumed accepting", metadata: metadata)
        }
    }

    private func logRefusals(now: NIODeadline) {
        guard self.refusalsSinceEntry > 0, let refusal = self.lastRefusal else { return }
        if let last = self.lastRefusalEntry, now - last < Self.interval {
            self.scheduleCatchUp(at: last + Self.interval)
            return
        }
        self.lastRefusalEntry = now
        self.logger.info(
            "connection refused",
            metadata: [
                "peer": "\(ConnectionLogger.describe(refusal.peer))",
                "reason": "\(refusal.reason)",
                "refused_since_last_entry": "\(self.refusalsSinceEntry)",
            ]
        )
        self.refusalsSinceEntry = 0
    }

    private func scheduleCatchUp(at deadline: NIODeadline) {
        guard self.catchUp == nil else { return }
        self.catchUp = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.catchUp = nil
            let now = self.eventLoop.now
            self.logState(now: now)
            self.logRefusals(now: now)
        }
    }
}

// Loop-confined: one log per listener, used on the loop's thread.
@available(*, unavailable)
extension LimitEventLog: Sendable {}
