import NIOCore
import NIOEmbedded
import Testing
import TulipTestKit

@testable import Tulip

/// Callback-contract rules checked on an embedded channel (deterministic, no sockets).
struct ProtocolContractTests {
    final class Buffered: BufferedStreamProtocol {
        var storage = [UInt8](repeating: 0, count: 3)
        var received: [UInt8] = []
        var hints: [Int] = []
        var dataReceivedCalls = 0
        var emptyBuffer = false
        private var pointer: UnsafeMutableRawBufferPointer?

        deinit { self.pointer?.deallocate() }

        func getBuffer(sizeHint: Int) throws -> UnsafeMutableRawBufferPointer {
            self.hints.append(sizeHint)
            if self.emptyBuffer { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
            if self.pointer == nil { self.pointer = .allocate(byteCount: 3, alignment: 1) }
            return self.pointer!  // allocated just above.
        }

        func bufferUpdated(_ count: Int) throws {
            self.received.append(contentsOf: self.pointer![0..<count])
        }
    }

    @Test func bp1AndBp4ABufferedProtocolGetsEveryChunkThroughItsOwnBuffer() throws {
        let protocolObject = Buffered()
        let harness = try EmbeddedTransport(protocol: protocolObject)
        try harness.send(string: "abcdefgh")
        #expect(String(decoding: protocolObject.received, as: UTF8.self) == "abcdefgh")
        // Three-byte buffers: the transport kept asking until all eight bytes were delivered.
        #expect(protocolObject.hints == [8, 5, 2])
    }

    @Test func bp3AnEmptyBufferIsFatalToTheConnection() throws {
        let protocolObject = Buffered()
        protocolObject.emptyBuffer = true
        let harness = try EmbeddedTransport(protocol: protocolObject)
        try harness.send(string: "x")
        #expect(harness.isClosed)
    }

    @Test func pr9SetProtocolRedirectsLaterCallbacks() throws {
        let first = RecordingProtocol()
        let harness = try EmbeddedTransport(protocol: first)
        try harness.send(string: "one")
        let second = RecordingProtocol()
        harness.transport.setProtocol(second)
        #expect(harness.transport.protocol === second)
        try harness.send(string: "two")
        #expect(first.received == Array("one".utf8))
        #expect(second.received == Array("two".utf8))
    }

    @Test func rt2PauseAndResumeAreIdempotentAndHoldDataUntilResumed() throws {
        let recorder = RecordingProtocol()
        let harness = try EmbeddedTransport(protocol: recorder)
        harness.transport.pauseReading()
        harness.transport.pauseReading()
        #expect(!harness.transport.isReading)
        try harness.send(string: "held")
        #expect(recorder.received.isEmpty)  // RT-4: held, not delivered
        harness.transport.resumeReading()
        harness.transport.resumeReading()
        _ = try harness.readOutbound()  // runs the loop
        #expect(recorder.received == Array("held".utf8))
    }

    @Test func rt5AndTr8CallsAfterCloseAreHarmlessNoOps() throws {
        let recorder = RecordingProtocol()
        let harness = try EmbeddedTransport(protocol: recorder)
        harness.transport.close()
        #expect(!harness.transport.isReading)
        harness.transport.resumeReading()
        #expect(!harness.transport.isReading)
        #expect(harness.isClosed)
        harness.transport.pauseReading()
        harness.transport.close()
        harness.transport.abort()
        try harness.transport.write(string: "late")
        #expect(recorder.events == ["made", "lost"])
    }

    @Test func wt8WritelinesIsOneConcatenatedWrite() throws {
        let harness = try EmbeddedTransport(protocol: RecordingProtocol())
        let allocator = ByteBufferAllocator()
        try harness.transport.writelines(["a", "bc", "", "def"].map { allocator.buffer(string: $0) })
        #expect(try harness.readOutboundString() == "abcdef")
        harness.transport.writeEOF()
        #expect(throws: TulipError.make(.writeAfterEOF, "")) {
            try harness.transport.writelines([allocator.buffer(string: "x")])
        }
    }

    @Test func wt2AnEmptyWriteQueuesNothing() throws {
        let harness = try EmbeddedTransport(protocol: RecordingProtocol())
        try harness.transport.write(ByteBuffer())
        #expect(try harness.readOutbound().isEmpty)
        #expect(harness.transport.bytesSent == 0)
    }

    @Test func pr11DefaultEofClosesTheTransport() throws {
        final class Bare: StreamProtocol {}
        let harness = try EmbeddedTransport(protocol: Bare())
        harness.sendEOF()
        #expect(harness.isClosed)
    }

    @Test func pr1ConnectionMadeIsScheduledNotSynchronous() throws {
        let recorder = RecordingProtocol()
        let eventLoop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: eventLoop)
        let loop = TulipLoop._makeForTesting(on: eventLoop)
        try channel.pipeline.syncOperations.addHandler(ProtocolChannelHandler(loop: loop, protocol: recorder))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(recorder.events.isEmpty)  // not yet: it waits for the next iteration
        eventLoop.run()
        #expect(recorder.events == ["made"])
        _ = try channel.finish()
    }
}

/// The pure callback-order state machine (PR-1, PR-4, PR-5, TR-6), without NIO.
struct ProtocolCallbackStateMachineTests {
    @Test func ordersCallbacksAndDeliversLostExactlyOnce() {
        var machine = ProtocolCallbackStateMachine()
        var results: [Bool] = [machine.mayDeliverData()]
        results.append(machine.connectionMade())
        results.append(machine.connectionMade())
        results.append(machine.mayDeliverData())
        results.append(machine.eofReceived())
        results.append(machine.eofReceived())
        results.append(machine.mayDeliverData())
        results.append(machine.connectionLost())
        results.append(machine.connectionLost())
        #expect(results == [false, true, false, true, true, false, false, true, false])
        #expect(machine.isLost)
    }

    @Test func aConnectionThatNeverGotConnectionMadeGetsNoConnectionLost() {
        var machine = ProtocolCallbackStateMachine()
        let lost = machine.connectionLost()
        let made = machine.connectionMade()
        #expect(!lost && !made)
    }
}
