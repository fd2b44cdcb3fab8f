import NIOCore

/// What the daemon keeps for operators: the admin socket, the metrics endpoint, the loop-lag probe
/// and the counters they report.
///
/// Loop-confined, owned by ``Daemon``.
struct DaemonOperations {
    /// When the daemon started, for `uptime_seconds`.
    let startedAt = NIODeadline.now()
    var admin: AdminServer?
    var metricsEndpoint: MetricsEndpoint?
    /// Made when metrics are configured.
    var metrics: DaemonMetrics?
    var lagProbe: LoopLagProbe?
    /// Reloads that applied a new configuration.
    var reloadsTotal: UInt64 = 0
    /// Reloads that kept the old configuration because the new one failed.
    var reloadFailuresTotal: UInt64 = 0
    /// Listeners an operator drained with `drain` (by name) until `resume`.
    var drainedByOperator: Set<String> = []
}
