import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

// MARK: - Swift concurrency executor

/// The loop is a task executor and a serial executor: `Task(executorPreference: loop)` and every
/// task that ``TulipLoop/runUntilComplete(_:)`` or ``TulipLoop/run(_:)`` starts run their jobs as
/// ready-queue entries on the loop thread, so a task step is one callback of an iteration, as in
/// asyncio, and tasks make no progress while the loop is stopped.
extension TulipLoop: TaskExecutor, SerialExecutor {
    /// Queues a job for the next iteration.
    ///
    /// A job enqueued after ``close()`` is dropped.
    public func enqueue(_ job: consuming ExecutorJob) {
        self.enqueue(.job(UnownedJob(job)))
    }

    /// This loop as an unowned serial executor.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(complexEquality: self)
    }

    /// This loop as an unowned task executor.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Whether `other` is this loop.
    public func isSameExclusiveExecutionContext(other: TulipLoop) -> Bool {
        other === self
    }

    /// Traps unless called on the loop thread.
    public func checkIsolated() {
        self.eventLoop.preconditionInEventLoop()
    }
}

// MARK: - Default executor (asyncio's run_in_executor)

enum ExecutorState {
    case notStarted
    case running(NIOThreadPool)
    case shutDown
}

extension TulipLoop {
    /// Runs blocking `work` on the loop's default executor, a lazily started thread pool, and
    /// returns its result (asyncio's `run_in_executor(None, …)`).
    ///
    /// - Throws: ``TulipError/Code/executorShutdown`` after ``shutdownDefaultExecutor()`` (EX-2),
    ///   ``TulipError/Code/loopClosed`` after ``close()`` (CL-5), or what `work` throws.
    public func runInExecutor<Result: Sendable>(
        _ work: @escaping @Sendable () throws -> Result
    ) async throws -> Result {
        if self.isClosed { throw TulipError.loopClosed() }
        let pool: NIOThreadPool = try self.executorState.withLockedValue { state in
            switch state {
            case .notStarted:
                let pool = NIOThreadPool(numberOfThreads: 4)
                pool.start()
                state = .running(pool)
                return pool
            case .running(let pool):
                return pool
            case .shutDown:
                throw TulipError.make(.executorShutdown, "Executor shutdown has been called")
            }
        }
        return try await pool.runIfActive(eventLoop: self.eventLoop, work).get()
    }

    /// Shuts the default executor down and waits for its threads (EX-1).
    ///
    /// Afterwards ``runInExecutor(_:)`` throws (EX-2). Returns at once if it was never started.
    public func shutdownDefaultExecutor() async throws {
        let pool: NIOThreadPool? = self.executorState.withLockedValue { state in
            defer { state = .shutDown }
            if case .running(let pool) = state { return pool }
            return nil
        }
        try await pool?.shutdownGracefully()
    }

    func shutdownExecutorWithoutWaiting() {
        let pool: NIOThreadPool? = self.executorState.withLockedValue { state in
            defer { state = .shutDown }
            if case .running(let pool) = state { return pool }
            return nil
        }
        pool?.shutdownGracefully { _ in }
    }
}
