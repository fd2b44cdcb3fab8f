import CoreMetrics
import Prometheus

/// The daemon's Prometheus metrics, kept with swift-metrics handles on a swift-prometheus registry.
///
/// Loop-confined. The daemon's counters live where the work happens (transports, listeners) at no
/// cost on the read/write path; ``update(from:)`` turns a ``DaemonStatus`` snapshot into counter
/// increments and gauge values just before a scrape, so metrics add nothing per message.
final class DaemonMetrics {
    /// The registry the endpoint renders; plugins' own swift-metrics appear here too when the daemon
    /// bootstrapped the metrics system with it.
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private var listeners: [String: ListenerMetrics] = [:]
    private let reloads: CoreMetrics.Counter
    private var reloadsSeen: UInt64 = 0
    private let reloadFailures: CoreMetrics.Counter
    private var reloadFailuresSeen: UInt64 = 0
    private let loopLag: CoreMetrics.Gauge

    init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.factory = PrometheusMetricsFactory(registry: registry)
        self.reloads = CoreMetrics.Counter(
            label: "tulipd_reloads_total",
            dimensions: [("result", "success")],
            factory: self.factory
        )
        self.reloadFailures = CoreMetrics.Counter(
            label: "tulipd_reloads_total",
            dimensions: [("result", "failure")],
            factory: self.factory
        )
        self.loopLag = CoreMetrics.Gauge(label: "tulipd_loop_lag_seconds", factory: self.factory)
    }

    /// Brings every metric up to `status`.
    func update(from status: DaemonStatus) {
        self.reloads.increment(by: Self.delta(status.reloadsTotal, since: &self.reloadsSeen))
        self.reloadFailures.increment(by: Self.delta(status.reloadFailuresTotal, since: &self.reloadFailuresSeen))
        self.loopLag.record(status.loopLagSeconds)
        var present = Set<String>()
        for listener in status.listeners {
            present.insert(listener.name)
            if self.listeners[listener.name] == nil {
                self.listeners[listener.name] = ListenerMetrics(name: listener.name, factory: self.factory)
            }
            self.listeners[listener.name]!.update(from: listener)
        }
        // A listener removed by a reload keeps its counters; it has no open connections any more.
        for (name, metrics) in self.listeners where !present.contains(name) {
            metrics.open.record(0)
            metrics.pausedAtLimit.record(0)
        }
    }

    /// The Prometheus text exposition of every metric.
    func render() -> [UInt8] { self.registry.emitToBuffer() }

    /// How much `value` grew since `seen`, which it then becomes; a value that went down (a listener
    /// of the same name made anew by a reload) counts from zero.
    static func delta(_ value: UInt64, since seen: inout UInt64) -> Int64 {
        let grown = value >= seen ? value - seen : value
        seen = value
        return Int64(clamping: grown)
    }
}

/// The metrics of one listener, labelled `listener`.
private struct ListenerMetrics {
    let open: CoreMetrics.Gauge
    /// 1 while the listener waits below `max_connections` before accepting again, else 0.
    let pausedAtLimit: CoreMetrics.Gauge
    let accepted: CoreMetrics.Counter
    let refusedMaxConnections: CoreMetrics.Counter
    let refusedPerSource: CoreMetrics.Counter
    let bytesReceived: CoreMetrics.Counter
    let bytesSent: CoreMetrics.Counter
    let datagramsReceived: CoreMetrics.Counter
    let tlsHandshakeFailures: CoreMetrics.Counter
    private var seen = Seen()

    private struct Seen {
        var accepted: UInt64 = 0
        var refusedMaxConnections: UInt64 = 0
        var refusedPerSource: UInt64 = 0
        var bytesReceived: UInt64 = 0
        var bytesSent: UInt64 = 0
        var datagramsReceived: UInt64 = 0
        var tlsHandshakeFailures: UInt64 = 0
    }

    init(name: String, factory: PrometheusMetricsFactory) {
        let listener = [("listener", name)]
        func counter(_ label: String, _ extra: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: label, dimensions: listener + extra, factory: factory)
        }
        self.open = CoreMetrics.Gauge(label: "tulipd_connections_open", dimensions: listener, factory: factory)
        self.pausedAtLimit = CoreMetrics.Gauge(
            label: "tulipd_listener_paused_at_limit",
            dimensions: listener,
            factory: factory
        )
        self.accepted = counter("tulipd_connections_accepted_total")
        self.refusedMaxConnections = counter("tulipd_connections_refused_total", [("reason", "max_connections")])
        self.refusedPerSource = counter("tulipd_connections_refused_total", [("reason", "per_source")])
        self.bytesReceived = counter("tulipd_bytes_received_total")
        self.bytesSent = counter("tulipd_bytes_sent_total")
        self.datagramsReceived = counter("tulipd_datagrams_received_total")
        self.tlsHandshakeFailures = counter("tulipd_tls_handshake_failures_total")
    }

    mutating func update(from status: ListenerStatus) {
        self.open.record(status.openConnections)
        self.pausedAtLimit.record(status.state == .pausedAtLimit ? 1 : 0)
        self.accepted.increment(by: DaemonMetrics.delta(status.acceptedTotal, since: &self.seen.accepted))
        self.refusedMaxConnections.increment(
            by: DaemonMetrics.delta(
                status.refusedTotal["max_connections"] ?? 0,
                since: &self.seen.refusedMaxConnections
            )
        )
        self.refusedPerSource.increment(
            by: DaemonMetrics.delta(status.refusedTotal["per_source"] ?? 0, since: &self.seen.refusedPerSource)
        )
        self.bytesReceived.increment(
            by: DaemonMetrics.delta(status.bytesReceivedTotal, since: &self.seen.bytesReceived)
        )
        self.bytesSent.increment(by: DaemonMetrics.delta(status.bytesSentTotal, since: &self.seen.bytesSent))
        self.datagramsReceived.increment(
            by: DaemonMetrics.delta(status.datagramsReceivedTotal, since: &self.seen.datagramsReceived)
        )
        self.tlsHandshakeFailures.increment(
            by: DaemonMetrics.delta(status.tlsHandshakeFailuresTotal, since: &self.seen.tlsHandshakeFailures)
        )
    }
}
