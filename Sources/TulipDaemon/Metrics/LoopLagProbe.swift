import NIOCore
import Tulip

/// Measures how late the loop runs a callback scheduled for a known time: a busy or blocked loop
/// shows as lag (`loop_lag_seconds` in `status`, `tulipd_loop_lag_seconds` in metrics).
///
/// Loop-confined; ticks every ``interval`` from ``start()`` until ``stop()``.
final class LoopLagProbe: @unchecked Sendable {
    // @unchecked Sendable: loop-confined; its timer callbacks run on the loop's thread.
    /// How often the probe ticks.
    static let interval: TimeAmount = .milliseconds(500)

    private let loop: TulipLoop
    private var timer: Handle?
    /// The lateness of the last tick, in seconds.
    private(set) var lastLagSeconds: Double = 0

    init(loop: TulipLoop) {
        self.loop = loop
    }

    func start() {
        self.schedule()
    }

    func stop() {
        self.timer?.cancel()
        self.timer = nil
    }

    private func schedule() {
        let due = NIODeadline.now() + Self.interval
        self.timer = try? self.loop.callLater(Self.interval) { [weak self] in
            guard let self else { return }
            let late = NIODeadline.now() - due
            self.lastLagSeconds = max(0, Double(late.nanoseconds) / 1e9)
            self.schedule()
        }
    }
}
