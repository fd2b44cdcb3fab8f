import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

@Suite(.timeLimit(.minutes(1)))
struct TulipLoopTests {
    @Test func it1CallbacksScheduledDuringAnIterationRunInTheNextOne() async throws {
        let order = try await withLoop { loop -> [String] in
            let log = NIOLockedValueBox<[String]>([])
            try loop.callSoon {
                log.withLockedValue { $0.append("a") }
                try loop.callSoon { log.withLockedValue { $0.append("c") } }
                loop.stop()
            }
            try loop.callSoon { log.withLockedValue { $0.append("b") } }
            try loop.runForever()
            let first = log.withLockedValue { $0 }
            // ST-2: the iteration that honoured stop ran a and b only; c waits for the next run (RF-6).
            #expect(first == ["a", "b"])
            loop.stop()
            try loop.runForever()
            return log.withLockedValue { $0 }
        }
        #expect(order == ["a", "b", "c"])
    }

    @Test func st3PreStoppedRunDoesExactlyOneIteration() async throws {
        let counts = try await withLoop { loop -> (Int, Int) in
            let count = NIOLockedValueBox(0)
            @Sendable func tick() {
                count.withLockedValue { $0 += 1 }
                _ = try? loop.callSoon { tick() }
            }
            try loop.callSoon { tick() }
            loop.stop()
            try loop.runForever()
            let afterFirst = count.withLockedValue { $0 }
            loop.stop()
            try loop.runForever()
            return (afterFirst, count.withLockedValue { $0 })
        }
        #expect(counts.0 == 1)
        #expect(counts.1 == 2)
    }

    @Test func st4StopRequestDoesNotLeakIntoTheNextRun() async throws {
        let ran = try await withLoop { loop -> Bool in
            loop.stop()
            try loop.runForever()
            let flag = NIOLockedValueBox(false)
            _ = try loop.callLater(.milliseconds(20)) {
                flag.withLockedValue { $0 = true }
                loop.stop()
            }
            try loop.runForever()  // would return at once if the old stop leaked
            return flag.withLockedValue { $0 }
        }
        #expect(ran)
    }

    @Test func st1StopOnAClosedLoopNeverThrowsAndRf2RunningItDoes() async throws {
        try await withLoop { loop in
            try loop.close()
            loop.stop()
            loop.stop()
            #expect(loop.isClosed)
            #expect(throws: TulipError.loopClosed()) { try loop.runForever() }
            #expect(throws: TulipError.loopClosed()) { try loop.callSoon {} }
            #expect(throws: TulipError.loopClosed()) { try loop.runUntilComplete { 1 } }
        }
    }

    @Test func rf3NestedRunFromInsideTheLoopThrowsAndTheOuterRunCarriesOn() async throws {
        let (error, stillRunning) = try await withLoop { loop -> (TulipError?, Bool) in
            try loop.runUntilComplete {
                var caught: TulipError?
                do { try loop.runForever() } catch let error as TulipError { caught = error }
                return (caught, loop.isRunning)
            }
        }
        #expect(error == TulipError.loopRunning())
        #expect(stillRunning)
    }

    @Test func rf4RunningAnotherLoopFromALoopThreadThrows() async throws {
        let error = try await withLoop { loop -> TulipError? in
            let other = TulipLoop()
            defer { try? other.close() }
            return try loop.runUntilComplete {
                do {
                    try other.runForever()
                    return nil
                } catch let error as TulipError {
                    return error
                }
            }
        }
        #expect(error?.code == .anotherLoopRunning)
    }

    @Test func rf8ServersAndTimersSurviveStopAndRestart() async throws {
        let value = try await withLoop { loop -> Int in
            let box = NIOLockedValueBox(0)
            _ = try loop.callLater(.milliseconds(30)) {
                box.withLockedValue { $0 = 42 }
                loop.stop()
            }
            loop.stop()
            try loop.runForever()  // one iteration; the timer is not due yet
            #expect(box.withLockedValue { $0 } == 0)
            try loop.runForever()  // the timer fires in this run and stops it
            return box.withLockedValue { $0 }
        }
        #expect(value == 42)
    }

    @Test func ir1IsRunningIsTrueOnlyDuringARun() async throws {
        let (before, during, after) = try await withLoop { loop -> (Bool, Bool, Bool) in
            let before = loop.isRunning
            let during = try loop.runUntilComplete { loop.isRunning }
            return (before, during, loop.isRunning)
        }
        #expect(!before && during && !after)
    }

    @Test func ruc3ReturnsTheResultOrRethrows() async throws {
        struct Boom: Error {}
        try await withLoop { loop throws in
            let value = try loop.runUntilComplete { 7 }
            #expect(value == 7)
            #expect(throws: Boom.self) { try loop.runUntilComplete { () async throws -> Int in throw Boom() } }
        }
    }

    @Test func ruc7StoppingBeforeCompletionThrowsAndRuc6TheTaskCannotStopALaterRun() async throws {
        try await withLoop { loop in
            let gate = loop.makeAsyncStream(of: Int.self)
            #expect(throws: TulipError.make(.stoppedBeforeCompletion, "")) {
                try loop.runUntilComplete { () async -> Int in
                    loop.stop()
                    for await value in gate.stream { return value }
                    return -1
                }
            }
            // The task is still pending; finishing it now must not stop the next run early.
            gate.continuation.yield(1)
            let flag = NIOLockedValueBox(false)
            _ = try loop.callLater(.milliseconds(50)) {
                flag.withLockedValue { $0 = true }
                loop.stop()
            }
            try loop.runForever()
            #expect(flag.withLockedValue { $0 })
        }
    }

    @Test func it2ACallbackErrorGoesToTheExceptionHandlerAndTheLoopContinues() async throws {
        struct Boom: Error {}
        let (messages, ranAfter) = try await withLoop { loop -> ([String], Bool) in
            let messages = NIOLockedValueBox<[String]>([])
            loop.setExceptionHandler { context in messages.withLockedValue { $0.append(context.message) } }
            let after = NIOLockedValueBox(false)
            try loop.callSoon { throw Boom() }
            try loop.callSoon {
                after.withLockedValue { $0 = true }
                loop.stop()
            }
            try loop.runForever()
            return (messages.withLockedValue { $0 }, after.withLockedValue { $0 })
        }
        #expect(messages.count == 1)
        #expect(messages.first?.hasPrefix("Exception in callback") == true)
        #expect(ranAfter)
    }

    @Test func cl1ClosingARunningLoopThrowsAndCl2CloseIsIdempotent() async throws {
        try await withLoop { loop in
            let error = try loop.runUntilComplete { () -> TulipError? in
                do {
                    try loop.close()
                    return nil
                } catch let error as TulipError {
                    return error
                }
            }
            #expect(error?.code == .runningLoopCannotClose)
            #expect(!loop.isClosed)
            try loop.close()
            try loop.close()
            #expect(loop.isClosed)
        }
    }

    @Test func cancelledHandlesAreSkipped() async throws {
        let ran = try await withLoop { loop -> Bool in
            let flag = NIOLockedValueBox(false)
            let handle = try loop.callSoon { flag.withLockedValue { $0 = true } }
            handle.cancel()
            loop.stop()
            try loop.runForever()
            return flag.withLockedValue { $0 }
        }
        #expect(!ran)
    }

    @Test func tasksRunOnTheLoopThread() async throws {
        let onLoop = try await withLoop { loop -> Bool in
            try loop.runUntilComplete {
                let task = try loop.createTask { loop.eventLoop.inEventLoop }
                return try await task.value && loop.eventLoop.inEventLoop && TulipLoop.current === loop
            }
        }
        #expect(onLoop)
    }

    @Test func run8LeftoverTasksAreCancelledStreamsFinishedAndTheLoopClosed() async throws {
        struct Boom: Error {}
        let outcome = try await onOwnThread { () -> (Bool, Bool, [String], Bool) in
            let cancelled = NIOLockedValueBox(false)
            let streamFinished = NIOLockedValueBox(false)
            let reports = NIOLockedValueBox<[String]>([])
            let loopBox = NIOLockedValueBox<TulipLoop?>(nil)
            let result = try TulipLoop.run(configure: { loop in
                loopBox.withLockedValue { $0 = loop }
                loop.setExceptionHandler { context in reports.withLockedValue { $0.append(context.message) } }
            }) { () async throws -> Bool in
                let loop = TulipLoop.current!
                let (stream, _) = loop.makeAsyncStream(of: Int.self)
                try loop.createTask {
                    // RUN-9: the task is cancelled first, then the stream is finished.
                    do {
                        try await Task.sleep(for: .seconds(30))
                    } catch {
                        cancelled.withLockedValue { $0 = true }
                    }
                    for await _ in stream {}
                    streamFinished.withLockedValue { $0 = true }
                }
                try loop.createTask { () async throws -> Void in
                    do {
                        try await Task.sleep(for: .seconds(30))
                    } catch {
                        throw Boom()
                    }
                }
                await Task.yield()
                return true
            }
            let closed = loopBox.withLockedValue { $0 }?.isClosed ?? false
            return (
                result && cancelled.withLockedValue { $0 }, streamFinished.withLockedValue { $0 },
                reports.withLockedValue { $0 }, closed
            )
        }
        #expect(outcome.0)
        #expect(outcome.1)
        #expect(outcome.2 == ["unhandled exception during asyncio.run() shutdown"])
        #expect(outcome.3)
    }

    @Test func run2RunFromARunningLoopThrows() async throws {
        let error = try await withLoop { loop -> TulipError? in
            try loop.runUntilComplete {
                do {
                    _ = try TulipLoop.run { 1 }
                    return nil
                } catch let error as TulipError {
                    return error
                }
            }
        }
        #expect(error?.code == .loopRunning)
    }

    @Test func ag3ShutdownAsyncGeneratorsFinishesLiveStreamsOnce() async throws {
        let counts = try await withLoop { loop -> (Int, Int) in
            try loop.runUntilComplete {
                let (stream, _) = loop.makeAsyncStream(of: Int.self)
                let before = loop.liveAsyncStreamCount
                await loop.shutdownAsyncGenerators()
                var seen = 0
                for await _ in stream { seen += 1 }
                await loop.shutdownAsyncGenerators()
                return (before, loop.liveAsyncStreamCount + seen)
            }
        }
        #expect(counts.0 == 1)
        #expect(counts.1 == 0)
    }

    @Test func ex2RunInExecutorAfterShutdownThrows() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                let value = try await loop.runInExecutor { 5 }
                #expect(value == 5)
                try await loop.shutdownDefaultExecutor()
                await #expect(throws: TulipError.make(.executorShutdown, "")) { try await loop.runInExecutor { 1 } }
            }
        }
    }
}
