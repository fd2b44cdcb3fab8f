import NIOConcurrencyHelpers

/// The live async sequences a loop handed out, Swift's stand-in for asyncio's async generators.
///
/// A sequence leaves the registry when it finishes or its consumer goes away, so the registry
/// never keeps an abandoned sequence alive (AG-2). Thread-safe.
final class AsyncStreamRegistry: Sendable {
    private struct State {
        var next = 0
        var live: [Int: @Sendable () -> Void] = [:]
        var shutdownCalled = false
    }

    private let state = NIOLockedValueBox(State())

    /// Registers a finisher; returns its id and whether shutdown was already called (AG-6).
    func insert(_ finish: @escaping @Sendable () -> Void) -> (id: Int, lateRegistration: Bool) {
        self.state.withLockedValue { state in
            state.next += 1
            state.live[state.next] = finish
            return (state.next, state.shutdownCalled)
        }
    }

    func remove(_ id: Int) {
        _ = self.state.withLockedValue { $0.live.removeValue(forKey: id) }
    }

    /// AG-1 and AG-3: records the call, then empties the registry before anything is finished.
    func drain() -> [@Sendable () -> Void] {
        self.state.withLockedValue { state in
            state.shutdownCalled = true
            defer { state.live.removeAll() }
            return Array(state.live.values)
        }
    }

    var count: Int { self.state.withLockedValue { $0.live.count } }
}

extension TulipLoop {
    /// Makes an async stream owned by this loop: ``shutdownAsyncGenerators()`` finishes it if it is
    /// still live (AG-2, AG-7).
    ///
    /// A stream made after ``shutdownAsyncGenerators()`` was called is still tracked, and the
    /// exception handler is told, as asyncio warns (AG-6).
    public func makeAsyncStream<Element: Sendable>(
        of elementType: Element.Type = Element.self
    ) -> (stream: AsyncStream<Element>, continuation: AsyncStream<Element>.Continuation) {
        let (stream, continuation) = AsyncStream.makeStream(of: elementType)
        let registry = self.streams
        let (id, late) = registry.insert { continuation.finish() }
        continuation.onTermination = { _ in registry.remove(id) }
        if late {
            self.callExceptionHandler(
                ExceptionContext(message: "async stream \(id) was scheduled after loop.shutdownAsyncGenerators() call")
            )
        }
        return (stream, continuation)
    }

    /// Finishes every still-live stream made by ``makeAsyncStream(of:)`` (asyncio's `shutdown_asyncgens`).
    ///
    /// A second call with nothing new returns at once (AG-3).
    public func shutdownAsyncGenerators() async {
        for finish in self.streams.drain() { finish() }
    }

    /// How many loop-owned streams are live.
    public var liveAsyncStreamCount: Int { self.streams.count }
}
