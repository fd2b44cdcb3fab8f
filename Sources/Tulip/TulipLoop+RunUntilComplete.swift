import NIOConcurrencyHelpers
import NIOCore

extension TulipLoop {
    /// Runs `operation` as a task on this loop and runs the loop until it finishes, blocking the
    /// calling thread; returns its result or rethrows its error (RUC-3).
    ///
    /// The loop stops through the task's completion, so the iteration in which it completed runs
    /// to its end (RUC-4). The closed and running checks come before the task is created (RUC-2).
    /// - Throws: as ``runForever()``; ``TulipError/Code/stoppedBeforeCompletion`` if someone
    ///   stopped the loop first (RUC-7), in which case the task keeps running in later runs and its
    ///   completion does not stop them (RUC-6).
    public func runUntilComplete<Success: Sendable>(
        _ operation: sending @escaping () async throws -> Success
    ) throws -> Success {
        try self.checkRunnable()
        let outcome = NIOLockedValueBox<(waiting: Bool, result: Result<Success, any Error>?)>((true, nil))
        let task = Task(executorPreference: self) { [self] in
            let result: Result<Success, any Error>
            do {
                result = .success(try await operation())
            } catch {
                result = .failure(error)
            }
            let waiting = outcome.withLockedValue { state in
                state.result = result
                return state.waiting
            }
            // RUC-6: only the run that is still waiting for this task may be stopped by it.
            if waiting { self.stop() }
            return try result.get()
        }
        _ = task
        return try self.runUntilDone(outcome)
    }

    /// Runs the loop until `task` finishes and returns its value (RUC-1 for an existing task).
    public func runUntilComplete<Success: Sendable>(_ task: Task<Success, any Error>) throws -> Success {
        try self.runUntilComplete { try await task.value }
    }

    private func runUntilDone<Success>(
        _ outcome: NIOLockedValueBox<(waiting: Bool, result: Result<Success, any Error>?)>
    ) throws -> Success {
        defer { outcome.withLockedValue { $0.waiting = false } }
        try self.runForever()
        guard let result = outcome.withLockedValue({ $0.result }) else {
            throw TulipError.make(.stoppedBeforeCompletion, "Event loop stopped before Future completed.")
        }
        return try result.get()
    }

    /// RF-2..RF-4 without starting anything (RUC-2).
    func checkRunnable() throws {
        if let other = Self.current, other !== self { throw TulipError.anotherLoopRunning() }
        if self.isClosed { throw TulipError.loopClosed() }
        if self.isRunning || self.eventLoop.inEventLoop { throw TulipError.loopRunning() }
    }
}
