import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing
import TulipTestKit

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// Smaller rules of ASYNCIO-SPEC.md, one test each, named by rule ID.
@Suite(.timeLimit(.minutes(1)))
struct SpecCoverageTests {
    @Test func rf1AndRf5RunForeverReturnsAfterStopAndTheLoopIsCurrentWhileRunning() async throws {
        let (current, after) = try await withLoop { loop -> (Bool, Bool) in
            let seen = NIOLockedValueBox(false)
            try loop.callSoon {
                seen.withLockedValue { $0 = TulipLoop.current === loop }
                loop.stop()
            }
            try loop.runForever()
            return (seen.withLockedValue { $0 }, TulipLoop.current == nil)
        }
        #expect(current)
        #expect(after)
    }

    @Test func st5StopFromAnotherThreadWakesAnIdleLoop() async throws {
        try await withLoop { loop in
            let stopper = Task.detached {
                try await Task.sleep(for: .milliseconds(50))
                loop.stop()
            }
            try loop.runForever()  // idle: only the other thread's stop can end it
            _ = stopper
        }
    }

    @Test func ic1AndCl5CallsAfterCloseThrowLoopClosed() async throws {
        try await withLoop { loop in
            #expect(!loop.isClosed)
            try loop.close()
            #expect(loop.isClosed)
            #expect(throws: TulipError.loopClosed()) { try loop.callLater(.seconds(1)) {} }
            #expect(throws: TulipError.loopClosed()) { try loop.createTask { 1 } }
            #expect(throws: TulipError.loopClosed()) { try loop.callSoonThreadsafe {} }
        }
    }

    @Test func cl3QueuedCallbacksAreDiscardedOnClose() async throws {
        let ran = try await withLoop { loop -> Bool in
            let flag = NIOLockedValueBox(false)
            try loop.callSoon { flag.withLockedValue { $0 = true } }
            try loop.close()
            return flag.withLockedValue { $0 }
        }
        #expect(!ran)
    }

    @Test func ruc2AClosedLoopNeverStartsTheOperation() async throws {
        let started = try await withLoop { loop -> Bool in
            try loop.close()
            let flag = NIOLockedValueBox(false)
            _ = try? loop.runUntilComplete { flag.withLockedValue { $0 = true } }
            return flag.withLockedValue { $0 }
        }
        #expect(!started)
    }

    @Test func ruc4CompletionStopsTheLoopThroughACallbackSoCallbacksQueuedBeforeItStillRun() async throws {
        let (value, laterRan) = try await withLoop { loop -> (Int, Bool) in
            let later = NIOLockedValueBox(false)
            let value = try loop.runUntilComplete { () -> Int in
                // Queued before the task completes, so before the completion's stop: as in asyncio,
                // where the done callback that stops the loop is itself a call_soon.
                _ = try? loop.callSoon { later.withLockedValue { $0 = true } }
                return 3
            }
            return (value, later.withLockedValue { $0 })
        }
        #expect(value == 3)
        #expect(laterRan)
    }

    @Test func run7AndRun11RunReturnsMainsResultWithNoLoopLeftRunning() async throws {
        let (value, current) = try await onOwnThread { () -> (Int, Bool) in
            let value = try TulipLoop.run { 41 + 1 }
            return (value, TulipLoop.current == nil)
        }
        #expect(value == 42)
        #expect(current)
    }

    @Test func ag1AndAg6AStreamMadeAfterShutdownIsReportedAndStillTracked() async throws {
        let (reports, live) = try await withLoop { loop -> ([String], Int) in
            let reports = NIOLockedValueBox<[String]>([])
            loop.setExceptionHandler { context in reports.withLockedValue { $0.append(context.message) } }
            return try loop.runUntilComplete {
                await loop.shutdownAsyncGenerators()  // AG-1: recorded even with nothing to close
                let (stream, continuation) = loop.makeAsyncStream(of: Int.self)
                let live = loop.liveAsyncStreamCount
                continuation.finish()
                for await _ in stream {}
                return (reports.withLockedValue { $0 }, live)
            }
        }
        #expect(reports.count == 1)
        #expect(reports.first?.contains("shutdownAsyncGenerators") == true)
        #expect(live == 1)
    }

    @Test func ag2AnAbandonedStreamLeavesTheRegistry() async throws {
        let live = try await withLoop { loop -> Int in
            try loop.runUntilComplete {
                do {
                    let pair = loop.makeAsyncStream(of: Int.self)
                    _ = pair.stream
                }
                return loop.liveAsyncStreamCount
            }
        }
        #expect(live == 0)
    }

    @Test func ga7ACancelledChildFailsTheGatherWithCancellation() async throws {
        let sawCancellation = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> Bool in
                let child = try loop.createTask { () async throws -> Int in
                    try await Task.sleep(for: .seconds(30))
                    return 1
                }
                let other = try loop.createTask { 2 }
                child.cancel()
                do {
                    _ = try await gather([child, other], on: loop).value
                    return false
                } catch is CancellationError {
                    return true
                }
            }
        }
        #expect(sawCancellation)
    }

    @Test func ga10CancellingTheWaitingTaskCancelsTheChildren() async throws {
        let childCancelled = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> Bool in
                let child = try loop.createTask { () async throws -> Int in
                    try await Task.sleep(for: .seconds(30))
                    return 1
                }
                let waiter = try loop.createTask { try await gather([child], on: loop).value }
                try await Task.sleep(for: .milliseconds(20))
                waiter.cancel()
                _ = try? await waiter.value
                return child.isCancelled
            }
        }
        #expect(childCancelled)
    }

    @Test func rt1ATransportIsReadingFromCreationAndIt3CloseNeverCallsConnectionLostSynchronously() throws {
        let recorder = RecordingProtocol()
        let harness = try EmbeddedTransport(protocol: recorder)
        #expect(harness.transport.isReading)
        harness.transport.close()
        #expect(harness.transport.isClosing)  // TR-2: closing before connectionLost
        #expect(!recorder.events.contains("lost"))
        _ = harness.isClosed  // runs the loop
        #expect(recorder.events.last == "lost")
    }

    @Test func fc1DefaultLimitsAreAsyncios() throws {
        let harness = try EmbeddedTransport(protocol: RecordingProtocol())
        #expect(harness.transport.writeBufferLimits.low == 16_384)
        #expect(harness.transport.writeBufferLimits.high == 65_536)
    }

    @Test func wt5AWriteOutsideAReadBurstIsSentAtOnce() async throws {
        let sizes = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> [Int] in
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
                let port = server.sockets[0].localAddress.port!
                let client = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { made.first?.transport != nil }
                let transport = made.first!.transport!
                try transport.write(string: "now")
                let size = transport.writeBufferSize  // WT-11: handed to the kernel already
                let got = try await loop.runInExecutor { client.receive(count: 3) }
                client.close()
                server.close()
                return [size, got.count]
            }
        }
        #expect(sizes == [0, 3])
    }

    @Test func fc3LoweringTheHighMarkBelowTheBufferPausesAtOnce() async throws {
        let events = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> [String] in
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
                let port = server.sockets[0].localAddress.port!
                let client = try await loop.runInExecutor { try BlockingClient(port: port, receiveBuffer: 4096) }
                try await eventually(loop) { made.first?.transport != nil }
                let transport = made.first!.transport!
                // Fill the kernel buffers without crossing the default high mark in NIO's buffer.
                let chunk = [UInt8](repeating: 1, count: 8192)
                for _ in 0..<2048 where transport.writeBufferSize < 32_768 { try transport.write(chunk) }
                #expect(!made.first!.events.contains("pause"))
                try transport.setWriteBufferLimits(high: 1024)
                let events = made.first!.events
                client.close()
                server.close()
                return events
            }
        }
        #expect(events.filter { $0 == "pause" }.count == 1)
    }

    @Test func cs5AnEmptyHostMeansEveryInterface() async throws {
        let families = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> Int in
                let server = try await loop.createServer(host: [""], port: 0) { RecordingProtocol() }
                defer { server.close() }
                return server.sockets.count
            }
        }
        #expect(families >= 1)
    }

    @Test func cs9IdenticalAddressesAreBoundOnce() async throws {
        let count = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> Int in
                let server = try await loop.createServer(host: ["127.0.0.1", "127.0.0.1"], port: 0) {
                    RecordingProtocol()
                }
                defer { server.close() }
                return server.sockets.count
            }
        }
        #expect(count == 1)
    }

    @Test func sv3AndSv6ClientsAreTrackedFromCreationAndIsServingFollowsTheServer() async throws {
        let (servingBefore, tracked, servingAfter, sameLoop) = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> (Bool, Int, Bool, Bool) in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { RecordingProtocol() }
                let serving = server.isServing
                let port = server.sockets[0].localAddress.port!
                let client = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { server.clientCount == 1 }
                let tracked = server.clientCount
                server.close()
                client.close()
                await server.waitClosed()
                return (serving, tracked, server.isServing, server.loop === loop)
            }
        }
        #expect(servingBefore)
        #expect(tracked == 1)
        #expect(!servingAfter)
        #expect(sameLoop)  // SV-10
    }

    @Test func us3AdoptingAnInetSocketAsAUnixServerFails() async throws {
        let error = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> TulipError? in
                let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
                let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
                _ = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
                defer { close(fd) }
                do {
                    _ = try await loop.createUnixServer(sock: fd) { RecordingProtocol() }
                    return nil
                } catch let error as TulipError {
                    return error
                }
            }
        }
        #expect(error?.message.hasPrefix("A UNIX Domain Stream Socket was expected") == true)
    }

    @Test func us9AUnixServerCanBindWithoutServing() async throws {
        let path = "/tmp/tulip-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let (serving, refused) = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> (Bool, Bool) in
                let server = try await loop.createUnixServer(path: path, startServing: false) { RecordingProtocol() }
                let refused = try await loop.runInExecutor { () -> Bool in
                    do {
                        _ = try BlockingClient(path: path)
                        return false
                    } catch let error as TulipError {
                        return error.errno == ECONNREFUSED
                    }
                }
                let serving = server.isServing
                server.close()
                return (serving, refused)
            }
        }
        #expect(!serving)
        #expect(refused)
    }

    @Test func wt12DataWrittenFromResumeWritingDuringACloseIsStillFlushed() async throws {
        // The protocol pauses, closes, and writes a trailer when resumed: the trailer must arrive.
        final class Trailer: StreamProtocol {
            var transport: ChannelTransport?
            var resumed = false
            func connectionMade(transport: ChannelTransport) {
                self.transport = transport
                let chunk = [UInt8](repeating: 0x61, count: 65_536)
                for _ in 0..<256 { try? transport.write(chunk) }
                transport.close()
            }
            func resumeWriting() {
                guard !self.resumed else { return }
                self.resumed = true
                try? self.transport?.write(string: "TRAILER")
            }
        }
        let tail = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> [UInt8] in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { Trailer() }
                let port = server.sockets[0].localAddress.port!
                let bytes = try await loop.runInExecutor { try BlockingClient(port: port).receiveAll() ?? [] }
                server.close()
                return Array(bytes.suffix(7))
            }
        }
        #expect(tail == Array("TRAILER".utf8))
    }
}
