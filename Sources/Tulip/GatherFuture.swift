import NIOConcurrencyHelpers

/// The future that ``gather(_:)`` returns: the children's results in argument order.
///
/// It keeps asyncio's semantics (GA-*) rather than a task group's: the first failing child fails
/// it at once without cancelling the others; ``cancel()`` cancels every child and the future then
/// finishes with `CancellationError` once all of them are done. Thread-safe.
public final class GatherFuture<Element: Sendable>: Sendable {
    private struct State {
        var outcome: Result<[Element], any Error>?
        var waiters: [CheckedContinuation<[Element], any Error>] = []
        var cancelRequested = false
        var slots: [Element?]
        var remaining: Int
    }

    private let state: NIOLockedValueBox<State>
    private let cancelChildren: @Sendable () -> Bool

    init(count: Int, cancelChildren: @escaping @Sendable () -> Bool) {
        self.state = NIOLockedValueBox(State(slots: Array(repeating: nil, count: count), remaining: count))
        self.cancelChildren = cancelChildren
        if count == 0 { self.complete(.success([])) }
    }

    /// Whether the future has its outcome.
    public var isDone: Bool { self.state.withLockedValue { $0.outcome != nil } }

    /// Waits for the outcome.
    ///
    /// Cancelling the waiting task cancels the gather (GA-10).
    public var value: [Element] {
        get async throws {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let outcome: Result<[Element], any Error>? = self.state.withLockedValue { state in
                        if let outcome = state.outcome { return outcome }
                        state.waiters.append(continuation)
                        return nil
                    }
                    if let outcome { continuation.resume(with: outcome) }
                }
            } onCancel: {
                self.cancel()
            }
        }
    }

    /// Cancels every unfinished child (GA-9).
    ///
    /// Returns false, touching nothing, when the future is already done (GA-11); otherwise whether at
    /// least one child was still running.
    @discardableResult
    public func cancel() -> Bool {
        let proceed = self.state.withLockedValue { state -> Bool in
            guard state.outcome == nil else { return false }
            state.cancelRequested = true
            return true
        }
        guard proceed else { return false }
        return self.cancelChildren()
    }

    /// A child at `index` finished; `isError` results fail the gather unless it returns errors.
    func childFinished(at index: Int, with result: Result<Element, any Error>, failFast: Bool) {
        let outcome: Result<[Element], any Error>? = self.state.withLockedValue { state in
            state.remaining -= 1
            if state.outcome != nil { return nil }  // GA-6: later errors are retrieved and dropped.
            switch result {
            case .success(let value):
                state.slots[index] = value
            case .failure(let error):
                if failFast && !state.cancelRequested { return .failure(error) }
            }
            guard state.remaining == 0 else { return nil }
            if state.cancelRequested { return .failure(CancellationError()) }
            return .success(state.slots.map { $0! })  // every slot is filled once remaining hits 0.
        }
        if let outcome { self.complete(outcome) }
    }

    private func complete(_ outcome: Result<[Element], any Error>) {
        let waiters = self.state.withLockedValue { state in
            state.outcome = outcome
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: outcome) }
    }
}

/// Runs the children concurrently and collects their results in argument order (asyncio's
/// `gather`, GA-1).
///
/// Passing the same task twice awaits it once and puts its result at both positions (GA-5). The
/// first child to fail fails the returned future at once with that error; the others keep running
/// (GA-6); a cancelled child fails it with `CancellationError` (GA-7).
///
/// - Parameters:
///   - tasks: the children to await; their results keep this order.
///   - loop: where the watchers run; `nil` uses the running loop or, failing that, the
///     global executor (GA-2).
/// - Returns: a future of the children's results in argument order.
public func gather<Success: Sendable>(
    _ tasks: [Task<Success, any Error>],
    on loop: TulipLoop? = nil
) -> GatherFuture<Success> {
    makeGather(tasks, on: loop, wrap: { $0 }, wrapError: nil)
}

/// The `return_exceptions=True` form: errors are placed in the results as values and the future
/// completes when every child is done (GA-8).
public func gather<Success: Sendable>(
    returningErrors tasks: [Task<Success, any Error>],
    on loop: TulipLoop? = nil
) -> GatherFuture<Result<Success, any Error>> {
    makeGather(tasks, on: loop, wrap: { .success($0) }, wrapError: { .failure($0) })
}

/// Creates each operation as a task on `loop` (``TulipLoop/createTask(_:)``) and gathers them.
public func gather<Success: Sendable>(
    on loop: TulipLoop,
    _ operations: [@Sendable () async throws -> Success]
) throws -> GatherFuture<Success> {
    let tasks = try operations.map { operation in try loop.createTask { try await operation() } }
    return gather(tasks, on: loop)
}

private func makeGather<Success: Sendable, Element: Sendable>(
    _ tasks: [Task<Success, any Error>],
    on loop: TulipLoop?,
    wrap: @escaping @Sendable (Success) -> Element,
    wrapError: (@Sendable (any Error) -> Element)?
) -> GatherFuture<Element> {
    let failFast = wrapError == nil
    var firstIndex: [Task<Success, any Error>: Int] = [:]
    var unique: [Task<Success, any Error>] = []
    for task in tasks where firstIndex[task] == nil {
        firstIndex[task] = unique.count
        unique.append(task)
    }
    let uniqueTasks = unique
    let future = GatherFuture<Element>(count: tasks.count) {
        var accepted = false
        for task in uniqueTasks where !task.isCancelled {
            task.cancel()
            accepted = true
        }
        return accepted
    }
    let executor: (any TaskExecutor)? = loop ?? TulipLoop.current
    let positions = Dictionary(grouping: tasks.indices, by: { firstIndex[tasks[$0]]! })
    for (uniqueIndex, task) in unique.enumerated() {
        let indices = positions[uniqueIndex] ?? []
        Task(executorPreference: executor) {
            let result: Result<Element, any Error>
            do {
                result = .success(wrap(try await task.value))
            } catch {
                result = wrapError.map { .success($0(error)) } ?? .failure(error)
            }
            for index in indices { future.childFinished(at: index, with: result, failFast: failFast) }
        }
    }
    return future
}
