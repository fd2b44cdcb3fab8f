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

/// Echo load client: N ping-pong connections against an echo server, one JSON line of results.
///
/// Every connection sends `--size` bytes, waits until all of them are back (in however many reads),
/// checks them, and sends the next message. Round trips are counted only when they complete inside the
/// measured window, which opens `--warmup` seconds after start and lasts `--duration` seconds. With
/// `--server-pid`, the server's CPU time (`/proc/PID/stat` utime+stime) is read by a separate thread at
/// the window's two edges, so CPU and messages cover the same interval.
///
/// Exit status: 0 success; 1 connection failure, closed connection, stalled connection or echoed bytes
/// that differ from those sent; 3 the hard stop (warm-up + duration + 10 s) was reached; 64 bad arguments.
@main
struct EchoLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "EchoLoad",
        abstract: "Ping-pong load client for echo servers; prints one JSON line."
    )

    @Option(name: .customLong("tcp"), help: "Connect to HOST:PORT over TCP (TCP_NODELAY).")
    var tcp: String?

    @Option(name: .customLong("unix"), help: "Connect to this unix socket path.")
    var unix: String?

    @Option(help: "Concurrent connections.")
    var connections: Int = 100

    @Option(help: "Bytes per message.")
    var size: Int = 1024

    @Option(help: "Seconds before the measured window opens.")
    var warmup: Double = 1

    @Option(help: "Seconds the measured window lasts.")
    var duration: Double = 5

    @Option(help: "Client event loop threads.")
    var threads: Int = 1

    @Option(help: "Also report this process's CPU time over the measured window (Linux /proc).")
    var serverPid: Int32?

    func validate() throws {
        switch (self.tcp, self.unix) {
        case (.some(let tcp), .none):
            guard Endpoint.parse(tcp: tcp) != nil else {
                throw ValidationError("--tcp must be HOST:PORT, got '\(tcp)'")
            }
        case (.none, .some): break
        default: throw ValidationError("give exactly one of --tcp HOST:PORT and --unix PATH")
        }
        guard (1...10_000).contains(self.connections) else { throw ValidationError("--connections: 1...10000") }
        guard (1...(64 << 20)).contains(self.size) else { throw ValidationError("--size: 1...64 MiB") }
        guard (0...600).contains(self.warmup) else { throw ValidationError("--warmup: 0...600 seconds") }
        guard self.duration > 0 && self.duration <= 3600 else { throw ValidationError("--duration: (0, 3600] seconds") }
        guard (1...64).contains(self.threads) else { throw ValidationError("--threads: 1...64") }
    }

    func run() throws {
        let endpoint: Endpoint =
            if let tcp = self.tcp {
                // Invariant: validate() checked the syntax.
                Endpoint.parse(tcp: tcp)!
            } else {
                // Invariant: validate() required one of the two.
                .unix(self.unix!)
            }

        let begin = NIODeadline.now()
        let windowStart = begin + .nanoseconds(Int64(self.warmup * 1e9))
        let window = MeasurementWindow(start: windowStart, end: windowStart + .nanoseconds(Int64(self.duration * 1e9)))

        // Bounded no matter what the server does: a stuck server or connect ends the run here.
        armHardStop(program: "EchoLoad", after: self.warmup + self.duration + 10)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.threads)
        let payload = Payload(size: self.size)
        let promises = (0..<self.connections).map { _ in group.any().makePromise(of: ConnectionCount.self) }

        let connects = (0..<self.connections).map { index in
            let promise = promises[index]
            let bootstrap = ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = EchoClientHandler(
                            connection: index,
                            payload: payload,
                            window: window,
                            promise: promise
                        )
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
            switch endpoint {
            case .tcp(let host, let port):
                return bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1).connect(host: host, port: port)
            case .unix(let path):
                return bootstrap.connect(unixDomainSocketPath: path)
            }
        }

        let channels: [any Channel]
        do {
            channels = try EventLoopFuture.whenAllSucceed(connects, on: group.any()).wait()
        } catch {
            Self.die("connect to \(endpoint) failed: \(error)")
        }

        // Sample the server's CPU at the window edges from a thread of its own, off the event loops.
        let sampler = self.serverPid.map {
            ServerCPUSampler(pid: $0, start: window.start, end: window.end, label: "EchoLoad.cpu")
        }

        let counts: [ConnectionCount]
        do {
            counts = try EventLoopFuture.whenAllSucceed(promises.map(\.futureResult), on: group.any()).wait()
        } catch {
            Self.die("\(error)")
        }
        let cpuWindow = sampler?.wait()
        _ = try? EventLoopFuture.whenAllComplete(channels.map { $0.close() }, on: group.any()).wait()
        try? group.syncShutdownGracefully()

        let messages = counts.reduce(0) { $0 + $1.measured }
        let total = counts.reduce(0) { $0 + $1.total }
        var fields: [(String, String)] = [
            ("messages", "\(messages)"),
            ("seconds", json(self.duration)),
            ("messages_per_second", json(Double(messages) / self.duration)),
            ("connections", "\(self.connections)"),
            ("size", "\(self.size)"),
            ("transport", "\"\(endpoint.kind)\""),
            ("warmup_seconds", json(self.warmup)),
            ("messages_including_warmup", "\(total)"),
            ("client_cpu_seconds", json(ProcessCPU.selfSeconds())),
            ("threads", "\(self.threads)"),
        ]
        if let pid = self.serverPid {
            guard let cpu = cpuWindow else {
                Self.die("could not read /proc/\(pid)/stat at the window edges (server gone?)")
            }
            fields += ServerCPUSampler.fields(pid: pid, cpu: cpu, count: messages, unit: "message")
        }
        writeLine(jsonObject(fields), to: STDOUT_FILENO)
    }

    private static func die(_ message: String) -> Never {
        writeLine("EchoLoad: \(message)", to: STDERR_FILENO)
        terminate(1)
    }
}

/// Where to connect.
enum Endpoint: CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(String)

    /// Parses `HOST:PORT`, with `[v6]:PORT` for IPv6 literals.
    static func parse(tcp text: String) -> Endpoint? {
        HostPort(text, ports: 1...65535).map { .tcp(host: $0.host, port: $0.port) }
    }

    var kind: String {
        switch self {
        case .tcp: "tcp"
        case .unix: "unix"
        }
    }

    var description: String {
        switch self {
        case .tcp(let host, let port): "tcp \(host):\(port)"
        case .unix(let path): "unix \(path)"
        }
    }
}
