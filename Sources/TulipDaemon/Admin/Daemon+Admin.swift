import Logging
import NIOCore
import Tulip

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The admin socket and the metrics endpoint ask the daemon through AdminBackend; everything here
// runs on the loop thread.
extension Daemon: AdminBackend {
    /// Starts the loop-lag probe, the admin socket and the metrics endpoint the configuration asks
    /// for; a socket that cannot be bound fails start-up like a listener.
    func startOperations() async throws {
        let probe = LoopLagProbe(loop: self.loop)
        probe.start()
        self.operations.lagProbe = probe
        let configuration = self.plan.configuration
        if let admin = configuration.admin {
            do {
                self.operations.admin = try await AdminServer.start(
                    admin,
                    loop: self.loop,
                    backend: self,
                    logger: self.logger
                )
            } catch {
                throw DaemonStartupError(
                    listener: "admin",
                    address: admin.path,
                    reason: (error as? TulipError)?.message ?? "\(error)",
                    errno: (error as? TulipError)?.errno
                )
            }
            self.logger.info("admin socket listening", metadata: ["address": "\(admin.path)"])
        }
        if let metricsConfiguration = configuration.metrics {
            let metrics = DaemonMetrics()
            self.operations.metrics = metrics
            let bound = NIOLoopBound(self, eventLoop: self.loop.eventLoop)
            do {
                let endpoint = try await MetricsEndpoint.start(metricsConfiguration, loop: self.loop) {
                    let daemon = bound.value
                    metrics.update(from: daemon.adminStatus())
                    return metrics.render()
                }
                self.operations.metricsEndpoint = endpoint
                self.logger.info("metrics endpoint listening", metadata: ["address": "\(endpoint.address)/metrics"])
            } catch {
                throw DaemonStartupError(
                    listener: "metrics",
                    address: "\(metricsConfiguration.host):\(metricsConfiguration.port)",
                    reason: (error as? TulipError)?.message ?? "\(error)",
                    errno: (error as? TulipError)?.errno
                )
            }
        }
    }

    /// Closes the admin socket and the metrics endpoint and stops the probe: at the end of a stop,
    /// or when start-up fails.
    func stopOperations() {
        self.operations.admin?.close()
        self.operations.admin = nil
        self.operations.metricsEndpoint?.close()
        self.operations.metricsEndpoint = nil
        self.operations.lagProbe?.stop()
        self.operations.lagProbe = nil
    }

    // MARK: - AdminBackend

    func adminStatus() -> DaemonStatus {
        let current = Set(self.listeners.map(\.name))
        // Listeners a reload removed stay listed while they drain; a replaced one's old
        // connections are not listed apart from its successor.
        let removed = self.retiring.values.filter { !current.contains($0.name) }
        return DaemonStatus(
            pid: getpid(),
            uptimeSeconds: Double((NIODeadline.now() - self.operations.startedAt).nanoseconds) / 1e9,
            configGeneration: self.generation,
            loopLagSeconds: self.operations.lagProbe?.lastLagSeconds ?? 0,
            reloadsTotal: self.operations.reloadsTotal,
            reloadFailuresTotal: self.operations.reloadFailuresTotal,
            listeners: (self.listeners + removed).map { self.status(of: $0) }
        )
    }

    func adminConnections(listener: String?) throws(AdminError) -> [ConnectionStatus] {
        var selected = self.listeners
        if let listener {
            selected = selected.filter { $0.name == listener }
            guard !selected.isEmpty else { throw self.unknownListener(listener) }
        }
        let now = NIODeadline.now()
        return selected.flatMap { running in
            running.observer.open.values.sorted { $0.connectionID < $1.connectionID }.map { transport in
                ConnectionStatus(
                    listener: running.name,
                    protocolName: running.plan.plugin.name,
                    id: transport.connectionID,
                    peer: ConnectionLogger.describe(transport.extraInfo.peerAddress),
                    bytesIn: transport.bytesReceived,
                    bytesOut: transport.bytesSent,
                    ageSeconds: Double((now - transport.openedAt).nanoseconds) / 1e9
                )
            }
        }
    }

    func adminReload() async throws(AdminError) -> ReloadOutcome {
        try await self.reloadForOperator()
    }

    func adminDrain(listener name: String) throws(AdminError) {
        let listener = try self.servingListener(named: name)
        guard !self.operations.drainedByOperator.contains(name) else { return }
        self.operations.drainedByOperator.insert(name)
        listener.pauseForOperator()
        self.logger.notice("listener drained by an operator", metadata: ["listener": "\(name)"])
    }

    func adminResume(listener name: String) throws(AdminError) {
        let listener = try self.servingListener(named: name)
        guard self.operations.drainedByOperator.remove(name) != nil else { return }
        listener.resumeForOperator()
        self.logger.notice("listener resumed by an operator", metadata: ["listener": "\(name)"])
    }

    // MARK: - Helpers

    private func servingListener(named name: String) throws(AdminError) -> RunningListener {
        guard self.state == .serving || self.state == .reloading else { throw AdminError("tulipd is stopping") }
        guard let listener = self.listeners.first(where: { $0.name == name }) else {
            throw self.unknownListener(name)
        }
        guard listener.server is Server else {
            throw AdminError(
                "listener '\(name)' is a \(listener.plan.configuration.endpoint.kind) listener; only tcp and unix listeners accept connections to drain"
            )
        }
        return listener
    }

    private func unknownListener(_ name: String) -> AdminError {
        AdminError(
            "no listener named '\(name)'; listeners: \(self.listeners.map(\.name).joined(separator: ", "))"
        )
    }

    private func status(of listener: RunningListener) -> ListenerStatus {
        let statistics = (listener.server as? Server)?.statistics
        let state: ListenerStatus.State
        if listener.isDraining || self.operations.drainedByOperator.contains(listener.name)
            || self.state == .draining || self.state == .aborting
        {
            state = .draining
        } else if statistics?.state == .pausedAtLimit {
            state = .pausedAtLimit
        } else {
            state = .serving
        }
        let observer = listener.observer
        let datagrams = listener.datagrams
        return ListenerStatus(
            name: listener.name,
            kind: "\(listener.plan.configuration.endpoint.kind)",
            address: listener.address,
            protocolName: listener.plan.plugin.name,
            state: state,
            openConnections: listener.openConnections,
            acceptedTotal: observer.acceptedTotal,
            refusedTotal: [
                "max_connections": statistics?.refusedMaxConnections ?? 0,
                "per_source": statistics?.refusedPerSource ?? 0,
            ],
            bytesReceivedTotal: observer.bytesReceivedTotal &+ (datagrams?.bytesReceivedTotal ?? 0),
            bytesSentTotal: observer.bytesSentTotal &+ (datagrams?.bytesSentTotal ?? 0),
            datagramsReceivedTotal: datagrams?.datagramsReceivedTotal ?? 0,
            tlsHandshakeFailuresTotal: observer.handshakeFailuresTotal
        )
    }
}
