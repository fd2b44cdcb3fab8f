import NIOConcurrencyHelpers
import Testing

@testable import Tulip

@Suite(.timeLimit(.minutes(1)))
struct GatherTests {
    struct Boom: Error, Equatable {}

    @Test func ga1ResultsComeInArgumentOrder() async throws {
        let results = try await withLoop { loop in
            try loop.runUntilComplete {
                let slow = try loop.createTask { () async throws -> Int in
                    try await Task.sleep(for: .milliseconds(50))
                    return 1
                }
                let fast = try loop.createTask { 2 }
                return try await gather([slow, fast], on: loop).value
            }
        }
        #expect(results == [1, 2])
    }

    @Test func ga4EmptyGatherIsDoneWithAnEmptyList() async throws {
        let future = gather([Task<Int, any Error>]())
        #expect(future.isDone)
        #expect(try await future.value == [])
    }

    @Test func ga5TheSameTaskTwiceIsAwaitedOnceAndFillsBothPositions() async throws {
        let (results, runs) = try await withLoop { loop in
            try loop.runUntilComplete {
                let runs = NIOLockedValueBox(0)
                let task = try loop.createTask { () -> Int in
                    runs.withLockedValue { $0 += 1 }
                    return 9
                }
                return (try await gather([task, task], on: loop).value, runs.withLockedValue { $0 })
            }
        }
        #expect(results == [9, 9])
        #expect(runs == 1)
    }

    @Test func ga6TheFirstErrorFailsAtOnceWithoutCancellingTheOthers() async throws {
        let (failed, otherFinished) = try await withLoop { loop in
            try loop.runUntilComplete {
                let finished = NIOLockedValueBox(false)
                let failing = try loop.createTask { () async throws -> Int in throw Boom() }
                let slow = try loop.createTask { () async throws -> Int in
                    try await Task.sleep(for: .milliseconds(100))
                    finished.withLockedValue { $0 = true }
                    return 1
                }
                var failed = false
                do { _ = try await gather([failing, slow], on: loop).value } catch is Boom { failed = true }
                let stillRunning = !finished.withLockedValue { $0 }
                _ = try await slow.value
                return (failed && stillRunning, finished.withLockedValue { $0 })
            }
        }
        #expect(failed)
        #expect(otherFinished)
    }

    @Test func ga8ReturningErrorsPutsErrorsInTheList() async throws {
        let results = try await withLoop { loop in
            try loop.runUntilComplete {
                let failing = try loop.createTask { () async throws -> Int in throw Boom() }
                let ok = try loop.createTask { 3 }
                return try await gather(returningErrors: [failing, ok], on: loop).value
            }
        }
        #expect(results.count == 2)
        #expect(throws: Boom.self) { try results[0].get() }
        #expect(try results[1].get() == 3)
    }

    @Test func ga9CancellingTheGatherCancelsChildrenAndEndsWithCancellation() async throws {
        let (accepted, cancelledError, childCancelled, secondCancel) = try await withLoop { loop in
            try loop.runUntilComplete {
                let child = try loop.createTask { () async throws -> Int in
                    try await Task.sleep(for: .seconds(30))
                    return 1
                }
                let future = gather([child], on: loop)
                let accepted = future.cancel()
                var sawCancellation = false
                do { _ = try await future.value } catch is CancellationError { sawCancellation = true }
                return (accepted, sawCancellation, child.isCancelled, future.cancel())
            }
        }
        #expect(accepted)
        #expect(cancelledError)
        #expect(childCancelled)
        #expect(!secondCancel)  // GA-11: a done gather refuses cancel
    }
}
