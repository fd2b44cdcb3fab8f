import NIOConcurrencyHelpers

/// The tasks a loop created with ``TulipLoop/createTask(_:)``.
///
/// They are kept so that ``TulipLoop/run(_:)`` can cancel and await the ones still running when
/// `main` returns (RUN-8). Thread-safe.
final class TaskRegistry: Sendable {
    struct Tracked: Sendable {
        let cancel: @Sendable () -> Void
        let outcome: @Sendable () async -> (any Error)?
    }

    private let state = NIOLockedValueBox<(next: Int, live: [Int: Tracked])>((0, [:]))

    func insert(_ tracked: Tracked) -> Int {
        self.state.withLockedValue { state in
            state.next += 1
            state.live[state.next] = tracked
            return state.next
        }
    }

    func remove(_ id: Int) {
        _ = self.state.withLockedValue { $0.live.removeValue(forKey: id) }
    }

    /// The tasks that have not finished yet.
    var live: [Tracked] { self.state.withLockedValue { Array($0.live.values) } }
}

extension TulipLoop {
    /// Starts `operation` as a task on this loop (asyncio's `create_task`) and tracks it, so that
    /// ``run(_:)`` cancels it if it is still running when `main` returns.
    ///
    /// - Throws: ``TulipError/Code/loopClosed`` after ``close()`` (CL-5).
    @discardableResult
    public func createTask<Success: Sendable>(
        _ operation: sending @escaping () async throws -> Success
    ) throws -> Task<Success, any Error> {
        if self.isClosed { throw TulipError.loopClosed() }
        let registry = self.tasks
        let holder = NIOLockedValueBox<Task<Success, any Error>?>(nil)
        // Registered before the task exists, so a task that finishes at once is still removed.
        let id = registry.insert(
            TaskRegistry.Tracked(
                cancel: { holder.withLockedValue { $0 }?.cancel() },
                outcome: {
                    guard let task = holder.withLockedValue({ $0 }) else { return nil }
                    do {
                        _ = try await task.value
                        return nil
                    } catch {
                        return error
                    }
                }
            )
        )
        let task = Task(executorPreference: self) {
            defer { registry.remove(id) }
            return try await operation()
        }
        holder.withLockedValue { $0 = task }
        return task
    }
}
