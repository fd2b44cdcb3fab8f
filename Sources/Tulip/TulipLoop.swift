import DequeModule
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An asyncio-style event loop on one SwiftNIO event-loop thread.
///
/// A `TulipLoop` owns one NIO event loop (and its thread) from creation until ``close()``. Every
/// protocol callback, transport method and loop-scheduled callback runs on that thread; protocol
/// objects and transports are confined to it.
///
/// The loop keeps asyncio's iteration model (ASYNCIO-SPEC §1): callbacks scheduled with
/// ``callSoon(_:)``, due timers and Swift jobs that prefer this loop as their executor go onto a
/// ready queue, and one *iteration* runs the callbacks that were ready when it began; what they
/// schedule runs in the next one, after NIO has polled for I/O again. While the loop runs, I/O
/// events reach protocols directly, with no queue hop per event. ``stop()`` ends the current
/// iteration and then pauses reading and accepting on every channel of the loop, so no I/O
/// callback runs until the next ``runForever()``; events that still arrive (a reset, a write
/// completion) are queued and delivered, in order, when the loop runs again.
///
/// - Important: ``runForever()`` and ``runUntilComplete(_:)`` block the calling thread; call them
///   from a thread you own (the main thread of a program, a dedicated test thread), never from
///   the loop's own thread or from a Swift concurrency pool thread that other work depends on.
///   Everything else is thread-safe.
public final class TulipLoop: @unchecked Sendable {
    // @unchecked Sendable: `shared` is guarded by `lock`; the remaining mutable state is only
    // touched on `eventLoop`'s thread (asserted where it is used).

    enum Entry {
        case handle(Handle)
        case job(UnownedJob)
        case action(() -> Void)
    }

    struct Shared {
        var ready = Deque<Entry>()
        var isRunning = false
        var isClosed = false
        var stopRequested = false
        var drainScheduled = false
        var runFinished: ConditionLock<Int>? = nil
    }

    /// The NIO event loop that carries this loop's I/O and callbacks.
    public let eventLoop: any EventLoop
    private let group: MultiThreadedEventLoopGroup?
    private let lock = NIOLock()
    private var shared = Shared()

    // MARK: Loop-thread state

    /// True while a run is in progress, as seen from the loop thread.
    ///
    /// I/O handlers read it to decide whether to deliver an event now or queue it for the next run.
    var isDispatching = false
    private var participants: [ObjectIdentifier: any LoopParticipant] = [:]
    private var exceptionHandlerStorage = NIOLockedValueBox<(@Sendable (ExceptionContext) -> Void)?>(nil)
    let tasks = TaskRegistry()
    let streams = AsyncStreamRegistry()
    let executorState = NIOLockedValueBox<ExecutorState>(.notStarted)

    private static let runningLoop = ThreadSpecificVariable<TulipLoop>()

    /// Creates a loop with its own NIO event-loop thread.
    public init() {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        self.eventLoop = group.next()
    }

    /// A loop that runs on an event loop someone else drives, always dispatching.
    ///
    /// For tests on `EmbeddedEventLoop` (see `TulipTestKit`). Not API.
    ///
    /// Ready-queue entries run when `eventLoop` runs its tasks; ``runForever()`` is not available.
    public static func _makeForTesting(on eventLoop: any EventLoop) -> TulipLoop {
        TulipLoop(drivenBy: eventLoop)
    }

    private init(drivenBy eventLoop: any EventLoop) {
        self.group = nil
        self.eventLoop = eventLoop
        self.shared.isRunning = true
        self.isDispatching = true
    }

    deinit {
        if !self.shared.isClosed {
            self.group?.shutdownGracefully { _ in }
        }
    }

    /// The loop that is running on the calling thread, if any (asyncio's `get_running_loop()`).
    ///
    /// Inside a callback, protocol method or task of a running loop this is that loop.
    public static var current: TulipLoop? { Self.runningLoop.currentValue }

    // MARK: - State

    /// Whether the loop is running (IR-1).
    ///
    /// Any thread may ask.
    public var isRunning: Bool { self.lock.withLock { self.shared.isRunning } }

    /// Whether ``close()`` has completed (IC-1).
    ///
    /// Any thread may ask.
    public var isClosed: Bool { self.lock.withLock { self.shared.isClosed } }

    /// The loop's monotonic clock.
    public func time() -> NIODeadline { .now() }

    // MARK: - Running

    /// Runs iterations until ``stop()`` is honoured, blocking the calling thread (RF-1).
    ///
    /// - Throws: ``TulipError/Code/loopClosed`` on a closed loop (RF-2),
    ///   ``TulipError/Code/loopRunning`` if this loop already runs (RF-3),
    ///   ``TulipError/Code/anotherLoopRunning`` when called from another running loop's thread (RF-4).
    public func runForever() throws {
        let finished = try self.beginRun()
        finished.lock(whenValue: 1)
        finished.unlock()
    }

    /// Checks RF-2..RF-4, marks the loop running and starts the run on the loop thread.
    private func beginRun() throws -> ConditionLock<Int> {
        if let other = Self.current, other !== self { throw TulipError.anotherLoopRunning() }
        let finished = ConditionLock(value: 0)
        try self.lock.withLock {
            if self.shared.isClosed { throw TulipError.loopClosed() }
            if self.shared.isRunning || self.eventLoop.inEventLoop { throw TulipError.loopRunning() }
            self.shared.isRunning = true
            self.shared.runFinished = finished
        }
        self.eventLoop.execute { self.startRun() }
        return finished
    }

    private func startRun() {
        self.eventLoop.assertInEventLoop()
        Self.runningLoop.currentValue = self
        self.isDispatching = true
        for participant in self.participants.values { participant.loopDidResume() }
        // The first iteration goes through `execute` so that NIO polls once before it: a pre-stopped
        // run (ST-3) still sees the I/O that is ready right now.
        self.lock.withLock { self.shared.drainScheduled = true }
        self.eventLoop.execute { self.runIteration() }
    }

    private func finishRun() {
        self.eventLoop.assertInEventLoop()
        self.isDispatching = false
        for participant in self.participants.values { participant.loopDidPause() }
        Self.runningLoop.currentValue = nil
        let finished = self.lock.withLock {
            self.shared.isRunning = false
            defer { self.shared.runFinished = nil }
            return self.shared.runFinished
        }
        finished?.lock()
        finished?.unlock(withValue: 1)
    }

    /// One iteration (IT-1 d): runs exactly the callbacks that were ready when it began.
    private func runIteration() {
        self.eventLoop.assertInEventLoop()
        let batch: Deque<Entry>? = self.lock.withLock {
            self.shared.drainScheduled = false
            guard self.shared.isRunning else { return nil }
            defer { self.shared.ready = Deque() }
            return self.shared.ready
        }
        guard let batch else { return }
        for entry in batch { self.run(entry) }
        let mustFinish: Bool = self.lock.withLock {
            if self.shared.stopRequested {
                self.shared.stopRequested = false  // ST-4: the run that honours a stop consumes it.
                return true
            }
            if !self.shared.ready.isEmpty && !self.shared.drainScheduled {
                self.shared.drainScheduled = true
                self.eventLoop.execute { self.runIteration() }
            }
            return false
        }
        if mustFinish { self.finishRun() }
    }

    private func run(_ entry: Entry) {
        switch entry {
        case .handle(let handle):
            guard !handle.isCancelled else { return }
            do {
                try handle.callback()
            } catch {
                self.callExceptionHandler(ExceptionContext(message: "Exception in callback \(handle)", error: error))
            }
        case .job(let job):
            job.runSynchronously(
                isolatedTo: self.asUnownedSerialExecutor(),
                taskExecutor: self.asUnownedTaskExecutor()
            )
        case .action(let action):
            action()
        }
    }

    /// Asks the loop to stop after the current iteration (ST-1, ST-2).
    ///
    /// Never throws, not even on a closed loop, and may be called from any thread (ST-5): a loop
    /// waiting for I/O is woken. Called before ``runForever()``, the next run does exactly one
    /// iteration (ST-3).
    public func stop() {
        self.lock.withLock {
            guard !self.shared.isClosed else { return }
            self.shared.stopRequested = true
            self.scheduleIterationLocked()
        }
    }

    private func scheduleIterationLocked() {
        if self.shared.isRunning && !self.shared.drainScheduled {
            self.shared.drainScheduled = true
            self.eventLoop.execute { self.runIteration() }
        }
    }

    /// Queues an entry for the next iteration; returns false when the loop is closed.
    @discardableResult
    func enqueue(_ entry: Entry) -> Bool {
        self.lock.withLock {
            guard !self.shared.isClosed else { return false }
            self.shared.ready.append(entry)
            self.scheduleIterationLocked()
            return true
        }
    }

    // MARK: - Callbacks

    /// Schedules `callback` to run in the next iteration, after the callbacks already queued (FIFO).
    ///
    /// Thread-safe (it doubles as asyncio's `call_soon_threadsafe`). An error thrown by the callback
    /// goes to the exception handler and the loop carries on (IT-2).
    /// - Throws: ``TulipError/Code/loopClosed`` after ``close()`` (CL-5).
    @discardableResult
    public func callSoon(_ callback: @escaping @Sendable () throws -> Void) throws -> Handle {
        let handle = Handle(callback)
        guard self.enqueue(.handle(handle)) else { throw TulipError.loopClosed() }
        return handle
    }

    /// The same as ``callSoon(_:)``: every Tulip scheduling call is thread-safe and wakes the loop.
    @discardableResult
    public func callSoonThreadsafe(_ callback: @escaping @Sendable () throws -> Void) throws -> Handle {
        try self.callSoon(callback)
    }

    /// Schedules `callback` after `delay`; when it comes due it joins the ready queue (IT-1 c).
    ///
    /// A timer that comes due while the loop is stopped runs in the next run.
    /// - Throws: ``TulipError/Code/loopClosed`` after ``close()`` (CL-5).
    @discardableResult
    public func callLater(_ delay: TimeAmount, _ callback: @escaping @Sendable () throws -> Void) throws -> Handle {
        if self.isClosed { throw TulipError.loopClosed() }
        let handle = Handle(callback)
        let scheduled = self.eventLoop.scheduleTask(in: delay) { [weak self] in
            guard let self, !handle.isCancelled else { return }
            self.enqueue(.handle(handle))
        }
        handle.attach(scheduled)
        return handle
    }

    /// Loop-internal scheduling that cannot fail: dropped silently once the loop is closed.
    func callSoonInternal(_ action: @escaping () -> Void) {
        self.enqueue(.action(action))
    }

    // MARK: - Exception handler

    /// Replaces the handler that receives errors nobody else can (IT-2, PR-7, RUN-8, AG-4).
    ///
    /// `nil` restores the default, which writes the context to standard error.
    public func setExceptionHandler(_ handler: (@Sendable (ExceptionContext) -> Void)?) {
        self.exceptionHandlerStorage.withLockedValue { $0 = handler }
    }

    /// Passes `context` to the exception handler.
    public func callExceptionHandler(_ context: ExceptionContext) {
        if let handler = self.exceptionHandlerStorage.withLockedValue({ $0 }) {
            handler(context)
        } else {
            var stderr = StandardError()
            print("tulip: \(context)", to: &stderr)
        }
    }

    // MARK: - I/O participants

    func register(_ participant: any LoopParticipant) {
        self.eventLoop.assertInEventLoop()
        self.participants[ObjectIdentifier(participant)] = participant
    }

    func unregister(_ participant: any LoopParticipant) {
        self.eventLoop.assertInEventLoop()
        self.participants.removeValue(forKey: ObjectIdentifier(participant))
    }

    // MARK: - Closing

    /// Closes the loop (CL-*).
    ///
    /// It discards queued callbacks and timers, shuts the default executor down without waiting,
    /// and releases the NIO thread. Idempotent (CL-2).
    ///
    /// Transports and servers are not closed (CL-6); they become inert.
    /// - Throws: ``TulipError/Code/runningLoopCannotClose`` on a running loop (CL-1).
    public func close() throws {
        let proceed: Bool = try self.lock.withLock {
            if self.shared.isRunning {
                throw TulipError.make(.runningLoopCannotClose, "Cannot close a running event loop")
            }
            if self.shared.isClosed { return false }
            self.shared.isClosed = true
            self.shared.ready.removeAll()
            return true
        }
        guard proceed else { return }
        self.shutdownExecutorWithoutWaiting()
        self.group?.shutdownGracefully { _ in }
    }
}

/// Something on the loop whose I/O must pause while the loop is stopped (ARCHITECTURE §2).
protocol LoopParticipant: AnyObject {
    /// The loop stopped: stop reading or accepting until ``loopDidResume()``.
    func loopDidPause()
    /// The loop runs again: restore reading or accepting as the participant wants it.
    func loopDidResume()
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        _ = string.withCString { pointer in Glibc.write(2, pointer, strlen(pointer)) }
    }
}
