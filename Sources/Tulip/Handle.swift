import NIOConcurrencyHelpers
import NIOCore

/// A callback scheduled with ``TulipLoop/callSoon(_:)`` or ``TulipLoop/callLater(_:_:)``.
///
/// Cancelling is thread-safe. A cancelled handle is skipped when its turn comes (IT-1 d); for a
/// timer that has not come due yet, the NIO timer is cancelled too, so nothing stays queued.
public final class Handle: Sendable {
    private let cancelled = NIOLockedValueBox(false)
    private let timer = NIOLockedValueBox<Scheduled<Void>?>(nil)
    // Only read on the loop thread, when the handle's turn comes; written once before scheduling.
    nonisolated(unsafe) let callback: () throws -> Void

    init(_ callback: @escaping () throws -> Void) {
        self.callback = callback
    }

    /// Whether ``cancel()`` was called.
    public var isCancelled: Bool { self.cancelled.withLockedValue { $0 } }

    /// Prevents the callback from running, if it has not run yet.
    ///
    /// Idempotent.
    public func cancel() {
        self.cancelled.withLockedValue { $0 = true }
        self.timer.withLockedValue { $0 }?.cancel()
    }

    func attach(_ scheduled: Scheduled<Void>) {
        self.timer.withLockedValue { $0 = scheduled }
    }
}
