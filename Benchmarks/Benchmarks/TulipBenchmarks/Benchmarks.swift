import Benchmark
import NIOCore
import NIOEmbedded
import Tulip
import TulipPlugins
import TulipTestKit

// Allocation benchmarks for Tulip's per-connection hot path (STYLE.md §6).
//
// Benchmark names have no spaces: `thresholds update` writes `Target.Name.p90.json` with spaces
// turned into `_`, but `thresholds check` (benchmark 1.38.1) looks the file up under the raw name,
// so a name with a space is never found and the check fails.
//
// Every benchmark runs `benchmark.scaledIterations` (1,000 with `.kilo`) messages per iteration,
// so `mallocCountTotal` per iteration ÷ 1,000 is mallocs per message; the text output already
// shows it divided (the `*` metrics). Set-up (the channel, the protocol, a few priming messages
// that grow NIO's buffers to their steady size) is excluded with `startMeasurement()`, tear-down
// with `stopMeasurement()`. The inbound payload is allocated once per iteration, outside the
// measurement, and reused: a copy of a `ByteBuffer` shares its storage, so echoing it costs no
// payload allocation either; what is counted is the per-message cost of the machinery alone.

let benchmarks: @Sendable () -> Void = {
    #if LOCAL_TESTING
    let metrics: [BenchmarkMetric] = [.mallocCountTotal, .wallClock, .cpuTotal, .instructions]
    #else
    // CI gates on allocations only: they are deterministic, times on this shared machine are not.
    let metrics: [BenchmarkMetric] = [.mallocCountTotal]
    #endif

    Benchmark.defaultConfiguration = .init(
        metrics: metrics,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 100
    )

    // MARK: - Echo inside a read burst

    // Tulip's echo path: ProtocolChannelHandler → ChannelTransport → EchoProtocol.dataReceived →
    // transport.write (coalesced) → flush on channelReadComplete.
    Benchmark("ChannelTransport.echo.1KiB") { benchmark in
        let harness = try EmbeddedTransport(protocol: EchoProtocol())
        let payload = makePayload(allocator: harness.channel.allocator)
        try echo(payload, through: harness.channel, times: primingMessages)

        benchmark.startMeasurement()
        try echo(payload, through: harness.channel, times: benchmark.scaledIterations.count)
        benchmark.stopMeasurement()

        harness.disconnect()
        blackHole(try harness.channel.finish(acceptAlreadyClosed: true))
    }

    // The yardstick: the same loop through a minimal NIO echo handler.
    Benchmark("RawNIO.echoHandler.1KiB") { benchmark in
        let channel = EmbeddedChannel(handler: RawEchoHandler())
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 4242)).wait()
        let payload = makePayload(allocator: channel.allocator)
        try echo(payload, through: channel, times: primingMessages)

        benchmark.startMeasurement()
        try echo(payload, through: channel, times: benchmark.scaledIterations.count)
        benchmark.stopMeasurement()

        blackHole(try channel.finish())
    }

    // MARK: - Writes outside a read burst

    // `transport.write` called from outside `channelRead` (a timer, a task): written and flushed
    // at once, one flush per write.
    Benchmark("ChannelTransport.writeOutsideReadBurst.1KiB") { benchmark in
        let harness = try EmbeddedTransport(protocol: EchoProtocol())
        let payload = makePayload(allocator: harness.channel.allocator)
        try write(payload, through: harness.transport, draining: harness.channel, times: primingMessages)

        benchmark.startMeasurement()
        try write(
            payload,
            through: harness.transport,
            draining: harness.channel,
            times: benchmark.scaledIterations.count
        )
        benchmark.stopMeasurement()

        harness.disconnect()
        blackHole(try harness.channel.finish(acceptAlreadyClosed: true))
    }

    // Its yardstick: `writeAndFlush` on a plain channel, one flush per write.
    Benchmark("RawNIO.writeAndFlush.1KiB") { benchmark in
        let channel = EmbeddedChannel(handler: RawEchoHandler())
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 4242)).wait()
        let payload = makePayload(allocator: channel.allocator)
        try writeAndFlush(payload, through: channel, times: primingMessages)

        benchmark.startMeasurement()
        try writeAndFlush(payload, through: channel, times: benchmark.scaledIterations.count)
        benchmark.stopMeasurement()

        blackHole(try channel.finish())
    }

    // MARK: - TLS

    // A 1 KiB ping-pong through OpenSSLHandler on both sides (client and server, memory BIOs),
    // counting both sides' allocations, OpenSSL's own mallocs included.
    Benchmark("TLS.echoRoundTrip.1KiB") { benchmark in
        let pair = try TLSEchoPair()
        let payload = makePayload(allocator: pair.client.allocator)
        for _ in 0..<primingMessages { try pair.echo(payload) }

        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { try pair.echo(payload) }
        benchmark.stopMeasurement()

        pair.finish()
    }

    // Its yardstick: the same two embedded channels, pumping and echo handler, without TLS.
    Benchmark("Plain.echoRoundTrip.1KiB") { benchmark in
        let pair = try TLSEchoPair(plain: ())
        let payload = makePayload(allocator: pair.client.allocator)
        for _ in 0..<primingMessages { try pair.echo(payload) }

        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { try pair.echo(payload) }
        benchmark.stopMeasurement()

        pair.finish()
    }

    // MARK: - Control

    // Proves the counter counts: a fresh 1 KiB ByteBuffer per message is two mallocs (the storage
    // object and its bytes), so this must read 2 per message. A zero in the benchmarks above means
    // no allocation, not a metric that was not collected.
    Benchmark("Control.allocateByteBuffer.1KiB") { benchmark in
        let allocator = ByteBufferAllocator()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(makePayload(allocator: allocator))
        }
        benchmark.stopMeasurement()
    }
}

// MARK: - Helpers

/// Messages echoed before the measurement starts, so NIO's buffers have their steady size.
private let primingMessages = 16

/// 1 KiB of a fixed byte pattern.
private func makePayload(allocator: ByteBufferAllocator) -> ByteBuffer {
    var buffer = allocator.buffer(capacity: 1024)
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1024) { bytes in
        for index in 0..<1024 { bytes[index] = UInt8(truncatingIfNeeded: index) }
        return 1024
    }
    return buffer
}

/// One read burst per message, then drains what was echoed.
///
/// `writeInbound` already ends with `channelReadComplete`; the second one is what
/// `EmbeddedTransport.send` does too, and costs both handlers the same (a flush of nothing).
private func echo(_ payload: ByteBuffer, through channel: EmbeddedChannel, times count: Int) throws {
    for _ in 0..<count {
        try channel.writeInbound(payload)
        channel.pipeline.fireChannelReadComplete()
        try drainOutbound(channel)
    }
}

/// One `transport.write` per message from outside a read burst, then drains it.
private func write(
    _ payload: ByteBuffer,
    through transport: ChannelTransport,
    draining channel: EmbeddedChannel,
    times count: Int
) throws {
    for _ in 0..<count {
        try transport.write(payload)
        try drainOutbound(channel)
    }
}

/// One pipeline `writeAndFlush` per message, then drains it.
private func writeAndFlush(_ payload: ByteBuffer, through channel: EmbeddedChannel, times count: Int) throws {
    for _ in 0..<count {
        channel.pipeline.syncOperations.writeAndFlush(NIOAny(payload), promise: nil)
        try drainOutbound(channel)
    }
}

/// Reads everything flushed so far; anything other than one 1 KiB buffer per message is a bug in
/// the benchmark, so it traps rather than measuring the wrong thing.
private func drainOutbound(_ channel: EmbeddedChannel) throws {
    var bytes = 0
    while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
        bytes += buffer.readableBytes
        blackHole(buffer)
    }
    precondition(bytes == 1024, "expected 1024 echoed bytes, got \(bytes)")
}
