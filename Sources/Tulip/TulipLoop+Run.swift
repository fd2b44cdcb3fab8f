import NIOCore

extension TulipLoop {
    /// Runs `main` on a brand-new loop and finalizes and closes that loop (asyncio's `run`).
    ///
    /// Finalization runs on every exit path, in RUN-8's order: leftover tasks made with
    /// ``createTask(_:)`` are cancelled and awaited, their non-cancellation errors go to the exception
    /// handler ("unhandled exception during asyncio.run() shutdown"), then
    /// ``shutdownAsyncGenerators()``, ``shutdownDefaultExecutor()``, and ``close()``.
    ///
    /// Blocks the calling thread. `configure` runs on the new loop before `main` starts, for
    /// example to install an exception handler.
    /// - Throws: ``TulipError/Code/loopRunning`` if a loop runs on the calling thread (RUN-2),
    ///   otherwise what `main` throws, after finalization (RUN-7).
    public static func run<Success: Sendable>(
        configure: (TulipLoop) -> Void = { _ in },
        _ main: sending @escaping () async throws -> Success
    ) throws -> Success {
        if Self.current != nil {
            throw TulipError.make(.loopRunning, "asyncio.run() cannot be called from a running event loop")
        }
        let loop = TulipLoop()
        configure(loop)
        defer { try? loop.close() }
        let result: Result<Success, any Error>
        do {
            result = .success(try loop.runUntilComplete(main))
        } catch {
            result = .failure(error)
        }
        try? loop.finalize()
        return try result.get()
    }

    /// RUN-8 steps 1 to 4; RUN-9: tasks are cancelled before streams are finished.
    private func finalize() throws {
        let leftovers = self.tasks.live
        try self.runUntilComplete { [self] in
            for task in leftovers { task.cancel() }
            for task in leftovers {
                if let error = await task.outcome(), !(error is CancellationError) {
                    self.callExceptionHandler(
                        ExceptionContext(message: "unhandled exception during asyncio.run() shutdown", error: error)
                    )
                }
            }
            await self.shutdownAsyncGenerators()
            try await self.shutdownDefaultExecutor()
        }
    }
}
