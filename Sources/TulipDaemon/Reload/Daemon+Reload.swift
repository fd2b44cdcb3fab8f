import Logging
import NIOCore
import Tulip
import TulipSystemd

// SIGHUP (ARCHITECTURE §5, lifecycle step 5). Everything here runs on the loop thread.
//
// A reload is two-phase. Prepare: load and check the configuration (off the loop), diff it by
// listener name, bind every added and changed listener — a changed one on duplicates of the old
// listener's sockets when the address is the same — and only once all are bound let them accept.
// Any failure discards what was started and leaves the running generation exactly as it was.
// Commit: the new generation number, unchanged listeners get the TLS context just re-read from
// their files, removed and replaced ones drain, and the fd store follows. Either way the reload
// ends with READY=1.
extension Daemon {
    func handleReloadSignal() {
        switch self.state {
        case .created:
            self.logger.notice("SIGHUP received during start-up; ignored")
        case .draining, .aborting, .stopped:
            self.logger.notice("SIGHUP received while draining; ignored")
        case .reloading:
            self.logger.notice("SIGHUP received during a reload; reloading again once it ends")
            self.reloadRequested = true
        case .serving:
            guard let loadPlan = self.loadPlan else {
                self.logger.notice("SIGHUP received; this daemon was started without a way to reload; ignored")
                return
            }
            self.state = .reloading
            self.systemd.notifier.reloading()
            _ = try? self.loop.createTask { [self] in
                _ = await self.reload(with: loadPlan)
                self.endReload()
            }
        }
    }

    /// A reload asked for on the admin socket: like SIGHUP, but the caller waits for the outcome.
    /// - Throws: ``AdminError`` when the daemon is not serving, is already reloading, cannot
    ///   reload, or the new configuration was not applied (with the reasons).
    func reloadForOperator() async throws(AdminError) -> ReloadOutcome {
        switch self.state {
        case .serving: break
        case .reloading: throw AdminError("a reload is already in progress")
        case .created: throw AdminError("tulipd is still starting")
        case .draining, .aborting, .stopped: throw AdminError("tulipd is stopping")
        }
        guard let loadPlan = self.loadPlan else { throw AdminError("this daemon was started without a way to reload") }
        self.state = .reloading
        self.systemd.notifier.reloading()
        let result = await self.reload(with: loadPlan)
        self.endReload()
        return try result.get()
    }

    private func endReload() {
        self.state = .serving
        self.systemd.notifier.ready(status: self.statusLine())
        self.lastStatusAt = .now()
        if self.stopRequested {
            self.stopRequested = false
            self.beginDrain()
        } else if self.reloadRequested {
            self.reloadRequested = false
            self.handleReloadSignal()
        }
    }

    private func reload(with loadPlan: @escaping PlanLoader) async -> Result<ReloadOutcome, AdminError> {
        let next = self.generation + 1
        var nextLogger = self.logger
        nextLogger[metadataKey: "config_generation"] = "\(next)"
        let candidate = nextLogger
        let plan: DaemonPlan
        do {
            plan = try await self.loop.runInExecutor { try loadPlan(candidate) }
        } catch {
            return .failure(self.reloadFailed(Self.reasons(error)))
        }
        let diff = ConfigurationDiff(old: self.plan.configuration.listeners, new: plan.configuration.listeners)
        let current = Dictionary(self.listeners.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var started: [String: RunningListener] = [:]
        var handedOver: Set<String> = []
        let starter = self.starter
        for listener in plan.listeners {
            let name = listener.configuration.name
            guard !diff.unchanged.contains(name) else { continue }
            do {
                var sockets = AdoptedSockets.none
                if let old = current[name],
                    ConfigurationDiff.canHandOverSockets(
                        from: old.plan.configuration.endpoint,
                        to: listener.configuration.endpoint
                    )
                {
                    sockets = .handedOver(
                        try old.duplicateSockets(),
                        isHeldByServiceManager: old.isHeldByServiceManager
                    )
                    handedOver.insert(name)
                }
                started[name] = try await starter.start(
                    listener,
                    generation: next,
                    sockets: sockets,
                    startServing: false
                )
            } catch {
                // Duplicates handed to a successor that failed are not closed here: the create
                // calls close what they adopted when they fail afterwards, and closing again could
                // hit a descriptor number reused meanwhile. (Adopting a duplicate of a socket that
                // serves right now does not fail in practice.)
                self.discard(started, handedOver: handedOver)
                return .failure(self.reloadFailed(Self.reasons(error)))
            }
        }
        // Everything bound: only now do the new servers accept, so a failed reload never drops
        // a connection that one of them took.
        do {
            for listener in started.values { try await listener.startServing() }
        } catch {
            self.discard(started, handedOver: handedOver)
            return .failure(self.reloadFailed(Self.reasons(error)))
        }
        self.commit(plan, diff: diff, started: started, handedOver: handedOver, current: current)
        return .success(
            ReloadOutcome(
                generation: self.generation,
                added: diff.added,
                removed: diff.removed,
                changed: diff.changed,
                unchanged: diff.unchanged
            )
        )
    }

    private func commit(
        _ plan: DaemonPlan,
        diff: ConfigurationDiff,
        started: [String: RunningListener],
        handedOver: Set<String>,
        current: [String: RunningListener]
    ) {
        let previousLog = self.plan.configuration.log
        let previousOperations = (self.plan.configuration.admin, self.plan.configuration.metrics)
        self.generation += 1
        self.operations.reloadsTotal += 1
        self.operations.drainedByOperator.formIntersection(diff.unchanged)
        self.plan = plan
        self.logger[metadataKey: "config_generation"] = "\(self.generation)"
        var next: [RunningListener] = []
        for listener in plan.listeners {
            let name = listener.configuration.name
            if let fresh = started[name] {
                next.append(fresh)
            } else if let kept = current[name] {
                if let context = listener.tls {
                    do {
                        try kept.replaceTLSContext(context)
                    } catch {
                        self.logger.error(
                            "cannot replace the TLS context",
                            metadata: ["listener": "\(name)", "error": "\(error)"]
                        )
                    }
                }
                next.append(kept)
            }
        }
        self.listeners = next
        for name in diff.removed + diff.changed {
            guard let old = current[name] else { continue }
            if handedOver.contains(name) {
                old.keepSocketFilesOnClose()
            } else {
                self.removeStoredSockets(named: name)
            }
            self.retire(old)
        }
        for listener in next where started[listener.name] != nil {
            self.storeSockets(of: listener)
        }
        self.logger.info(
            "configuration reloaded",
            metadata: [
                "added": "\(diff.added.joined(separator: ","))",
                "removed": "\(diff.removed.joined(separator: ","))",
                "changed": "\(diff.changed.joined(separator: ","))",
                "unchanged": "\(diff.unchanged.joined(separator: ","))",
            ]
        )
        if plan.configuration.log != previousLog {
            self.logger.notice("the log settings changed; they take effect when tulipd restarts")
        }
        if previousOperations != (plan.configuration.admin, plan.configuration.metrics) {
            self.logger.notice("the admin or metrics settings changed; they take effect when tulipd restarts")
        }
    }

    /// Closes the listeners a failed reload started; sockets handed over stay with their owners.
    private func discard(_ started: [String: RunningListener], handedOver: Set<String>) {
        for (name, listener) in started {
            if handedOver.contains(name) { listener.keepSocketFilesOnClose() }
            listener.discard()
        }
    }

    /// Drains a listener a reload removed or replaced, and forgets it once it is closed.
    private func retire(_ listener: RunningListener) {
        let key = ObjectIdentifier(listener)
        self.retiring[key] = listener
        let (seconds, attoseconds) = self.plan.configuration.shutdown.gracePeriod.components
        listener.drain(grace: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        let bound = NIOLoopBound(listener, eventLoop: self.loop.eventLoop)
        _ = try? self.loop.createTask { [self] in
            let listener = bound.value
            await listener.waitClosed()
            self.retiring.removeValue(forKey: key)
            self.logger.info(
                "listener drained",
                metadata: ["listener": "\(listener.name)", "listener_generation": "\(listener.generation)"]
            )
            self.statusChanged()
        }
    }

    private func reloadFailed(_ reasons: [String]) -> AdminError {
        self.operations.reloadFailuresTotal += 1
        self.logger.error(
            "reload failed; keeping configuration generation \(self.generation)",
            metadata: ["errors": "\(reasons.joined(separator: "; "))"]
        )
        return AdminError(
            "reload failed; keeping configuration generation \(self.generation): \(reasons.joined(separator: "; "))"
        )
    }

    /// One line per problem: configuration errors say `file:line:column: key path: message`.
    private static func reasons(_ error: any Error) -> [String] {
        if let errors = error as? ConfigurationErrors { return errors.errors.map { "\($0)" } }
        if let error = error as? ConfigurationError { return ["\(error)"] }
        return ["\(error)"]
    }
}
