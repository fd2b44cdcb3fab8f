import ArgumentParser
import BenchSupport
import Dispatch
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The yardstick of the UDP echo benchmark: a minimal raw SwiftNIO datagram echo server.
///
/// One `MultiThreadedEventLoopGroup` thread and one unconnected `DatagramBootstrap` channel whose
/// ``DatagramEchoHandler`` writes every datagram back to its source (the `AddressedEnvelope` as read)
/// and flushes once per read burst (`channelReadComplete`). The channel options match what `tulipd`
/// sets on its datagram endpoints: a 64 KiB fixed receive buffer, so any UDP datagram fits one read,
/// and up to 16 datagrams per read burst. Whatever `tulipd` spends above this server per datagram is
/// Tulip's overhead over its own engine.
///
/// Prints `ready` on stdout once bound, then runs until SIGTERM or SIGINT.
@main
struct RawUDPEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "RawUDPEchoServer",
        abstract: "Minimal raw SwiftNIO UDP echo server (the UDP benchmark yardstick)."
    )

    @Option(name: .customLong("udp"), help: "Bind HOST:PORT.")
    var udp: String

    @Option(help: "Datagrams read per read burst (ChannelOptions.maxMessagesPerRead).")
    var maxMessagesPerRead: UInt = 16

    func validate() throws {
        if HostPort(self.udp) == nil {
            throw ValidationError("--udp must be HOST:PORT, got '\(self.udp)'")
        }
        guard (1...1024).contains(self.maxMessagesPerRead) else {
            throw ValidationError("--max-messages-per-read: 1...1024")
        }
    }

    func run() throws {
        // Invariant: validate() checked the syntax.
        let address = HostPort(self.udp)!
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try DatagramBootstrap(group: group)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelOption(.maxMessagesPerRead, value: self.maxMessagesPerRead)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramEchoHandler())
                }
            }
            .bind(host: address.host, port: address.port)
            .wait()
        writeLine("RawUDPEchoServer: udp \(channel.localAddress.map { "\($0)" } ?? self.udp)", to: STDERR_FILENO)

        let stop = DispatchSemaphore(value: 0)
        let signalQueue = DispatchQueue(label: "RawUDPEchoServer.signals")
        var sources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
        }

        writeLine("ready", to: STDOUT_FILENO)

        stop.wait()
        for source in sources {
            source.cancel()
        }
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Writes every datagram back to where it came from and flushes once per read burst.
final class DatagramEchoHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The envelope's remote address is the datagram's source: the reply goes back there.
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A send or receive error (e.g. ECONNREFUSED from an ICMP port-unreachable) concerns one peer,
        // never the endpoint: keep serving, as tulipd does.
    }
}

@available(*, unavailable)
extension DatagramEchoHandler: Sendable {}
