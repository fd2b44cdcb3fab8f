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

/// The yardstick of the echo benchmark: a minimal raw SwiftNIO echo server.
///
/// One `MultiThreadedEventLoopGroup` thread, one ``EchoHandler`` per connection that writes every read
/// back and flushes once per read burst (`channelReadComplete`), as `tulipd`'s transport does. Whatever
/// `tulipd` spends above this server per message is Tulip's overhead over its own engine.
///
/// Prints `ready` on stdout once every requested listener is bound, then runs until SIGTERM or SIGINT.
@main
struct RawEchoServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "RawEchoServer",
        abstract: "Minimal raw SwiftNIO echo server (the benchmark yardstick)."
    )

    @Option(name: .customLong("tcp"), help: "Listen on HOST:PORT (TCP, TCP_NODELAY on accepted sockets).")
    var tcp: String?

    @Option(name: .customLong("unix"), help: "Listen on this unix socket path (a stale socket file is removed).")
    var unix: String?

    @Option(help: "Listen backlog.")
    var backlog: Int32 = 256

    func validate() throws {
        guard self.tcp != nil || self.unix != nil else {
            throw ValidationError("give --tcp HOST:PORT and/or --unix PATH")
        }
        if let tcp = self.tcp, HostPort(tcp) == nil {
            throw ValidationError("--tcp must be HOST:PORT, got '\(tcp)'")
        }
    }

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var servers: [any Channel] = []

        if let tcp = self.tcp {
            // Invariant: validate() checked the syntax.
            let address = HostPort(tcp)!
            let channel = try self.makeBootstrap(group: group, tcpNoDelay: true)
                .bind(host: address.host, port: address.port)
                .wait()
            servers.append(channel)
            writeLine("RawEchoServer: tcp \(channel.localAddress.map { "\($0)" } ?? tcp)", to: STDERR_FILENO)
        }
        if let path = self.unix {
            // TCP_NODELAY means nothing on AF_UNIX (NIO skips it there); keep the two bootstraps explicit.
            let channel = try self.makeBootstrap(group: group, tcpNoDelay: false)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
                .wait()
            servers.append(channel)
            writeLine("RawEchoServer: unix \(path)", to: STDERR_FILENO)
        }

        let stop = DispatchSemaphore(value: 0)
        let signalQueue = DispatchQueue(label: "RawEchoServer.signals")
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
        for server in servers {
            try? server.close().wait()
        }
        // Closing the group closes every accepted connection too.
        try? group.syncShutdownGracefully()
        if let path = self.unix {
            unlink(path)
        }
    }

    private func makeBootstrap(group: MultiThreadedEventLoopGroup, tcpNoDelay: Bool) -> ServerBootstrap {
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: self.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
        if tcpNoDelay {
            bootstrap = bootstrap.childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
        }
        return bootstrap
    }
}

/// Writes every read back unchanged and flushes once per read burst.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension EchoHandler: Sendable {}
