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

/// UDP echo load client: N connected datagram sockets doing ping-pong, one JSON line of results.
///
/// Every socket keeps `--window` datagrams of `--size` bytes in flight (1 by default: pure ping-pong),
/// checks each reply and sends the next datagram. A datagram with no reply after `--timeout-ms` is
/// counted as lost and replaced, so loss never stalls a socket. Round trips are counted only when they
/// complete inside the measured window, which opens `--warmup` seconds after start and lasts
/// `--duration` seconds. With `--server-pid`, the server's CPU time (`/proc/PID/stat` utime+stime) is
/// read by a separate thread at the window's two edges, so CPU and datagrams cover the same interval.
///
/// Exit status: 0 success; 1 a socket failed (bind/connect, a channel error such as `ECONNREFUSED`, a
/// wrong or unknown reply, no round trip at all) or more than `--max-loss` of the window's datagrams
/// were lost; 3 the hard stop (warm-up + duration + 10 s) was reached; 64 bad arguments.
@main
struct UDPEchoLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "UDPEchoLoad",
        abstract: "Ping-pong load client for UDP echo servers; prints one JSON line."
    )

    @Option(name: .customLong("udp"), help: "Send to HOST:PORT.")
    var udp: String

    @Option(help: "Datagram sockets, each with its own source port.")
    var sockets: Int = 10

    @Option(help: "Bytes per datagram (at least 12: sequence number and socket index).")
    var size: Int = 512

    @Option(help: "Datagrams each socket keeps in flight.")
    var window: Int = 1

    @Option(help: "Milliseconds without a reply after which a datagram is counted as lost and replaced.")
    var timeoutMs: Int = 200

    @Option(help: "Seconds before the measured window opens.")
    var warmup: Double = 1

    @Option(help: "Seconds the measured window lasts.")
    var duration: Double = 5

    @Option(help: "Client event loop threads.")
    var threads: Int = 1

    @Option(help: "Fail when more than this fraction of the window's datagrams were lost.")
    var maxLoss: Double = 0.01

    @Option(help: "Also report this process's CPU time over the measured window (Linux /proc).")
    var serverPid: Int32?

    func validate() throws {
        guard HostPort(self.udp, ports: 1...65535) != nil else {
            throw ValidationError("--udp must be HOST:PORT, got '\(self.udp)'")
        }
        guard (1...10_000).contains(self.sockets) else { throw ValidationError("--sockets: 1...10000") }
        guard (DatagramPayload.headerSize...65_507).contains(self.size) else {
            throw ValidationError("--size: \(DatagramPayload.headerSize)...65507")
        }
        guard (1...64).contains(self.window) else { throw ValidationError("--window: 1...64") }
        guard (1...10_000).contains(self.timeoutMs) else { throw ValidationError("--timeout-ms: 1...10000") }
        guard (0...600).contains(self.warmup) else { throw ValidationError("--warmup: 0...600 seconds") }
        guard self.duration > 0 && self.duration <= 3600 else { throw ValidationError("--duration: (0, 3600] seconds") }
        guard (1...64).contains(self.threads) else { throw ValidationError("--threads: 1...64") }
        guard (0...1).contains(self.maxLoss) else { throw ValidationError("--max-loss: 0...1") }
    }

    func run() throws {
        // Invariant: validate() checked the syntax.
        let target = HostPort(self.udp, ports: 1...65535)!

        let begin = NIODeadline.now()
        let windowStart = begin + .nanoseconds(Int64(self.warmup * 1e9))
        let window = MeasurementWindow(start: windowStart, end: windowStart + .nanoseconds(Int64(self.duration * 1e9)))

        // Bounded no matter what the server does.
        armHardStop(program: "UDPEchoLoad", after: self.warmup + self.duration + 10)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.threads)
        let payload = DatagramPayload(size: self.size)
        let promises = (0..<self.sockets).map { _ in group.any().makePromise(of: SocketCount.self) }
        let timeout = TimeAmount.milliseconds(Int64(self.timeoutMs))

        let connects = (0..<self.sockets).map { index in
            let promise = promises[index]
            return DatagramBootstrap(group: group)
                // Larger than any UDP datagram, so an oversized echo is seen whole and reported.
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
                .channelOption(.maxMessagesPerRead, value: 16)
                .channelInitializer { [window, inFlight = self.window] channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = UDPEchoClientHandler(
                            socket: index,
                            payload: payload,
                            window: window,
                            inFlight: inFlight,
                            timeout: timeout,
                            promise: promise
                        )
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
                // A connected socket: replies from anywhere but the server are dropped by the kernel.
                .connect(host: target.host, port: target.port)
        }

        let channels: [any Channel]
        do {
            channels = try EventLoopFuture.whenAllSucceed(connects, on: group.any()).wait()
        } catch {
            Self.die("bind/connect to udp \(self.udp) failed: \(error)")
        }

        // Sample the server's CPU at the window edges from a thread of its own, off the event loops.
        let sampler = self.serverPid.map {
            ServerCPUSampler(pid: $0, start: window.start, end: window.end, label: "UDPEchoLoad.cpu")
        }

        let counts: [SocketCount]
        do {
            counts = try EventLoopFuture.whenAllSucceed(promises.map(\.futureResult), on: group.any()).wait()
        } catch {
            Self.die("\(error)")
        }
        let cpuWindow = sampler?.wait()
        _ = try? EventLoopFuture.whenAllComplete(channels.map { $0.close() }, on: group.any()).wait()
        try? group.syncShutdownGracefully()

        let datagrams = counts.reduce(0) { $0 + $1.measured }
        let total = counts.reduce(0) { $0 + $1.total }
        let lost = counts.reduce(0) { $0 + $1.lost }
        let lostInWindow = counts.reduce(0) { $0 + $1.lostInWindow }
        let late = counts.reduce(0) { $0 + $1.late }
        let lossFraction = Double(lostInWindow) / Double(max(1, datagrams + lostInWindow))
        var fields: [(String, String)] = [
            ("datagrams", "\(datagrams)"),
            ("seconds", json(self.duration)),
            ("datagrams_per_second", json(Double(datagrams) / self.duration)),
            ("sockets", "\(self.sockets)"),
            ("size", "\(self.size)"),
            ("window", "\(self.window)"),
            ("timeout_ms", "\(self.timeoutMs)"),
            ("transport", "\"udp\""),
            ("warmup_seconds", json(self.warmup)),
            ("datagrams_including_warmup", "\(total)"),
            ("lost", "\(lost)"),
            ("lost_in_window", "\(lostInWindow)"),
            ("loss_fraction_in_window", json(lossFraction)),
            ("late", "\(late)"),
            ("client_cpu_seconds", json(ProcessCPU.selfSeconds())),
            ("threads", "\(self.threads)"),
        ]
        if let pid = self.serverPid {
            guard let cpu = cpuWindow else {
                Self.die("could not read /proc/\(pid)/stat at the window edges (server gone?)")
            }
            fields += ServerCPUSampler.fields(pid: pid, cpu: cpu, count: datagrams, unit: "datagram")
        }
        writeLine(jsonObject(fields), to: STDOUT_FILENO)
        if lossFraction > self.maxLoss {
            Self.die(
                "lost \(lostInWindow) of \(datagrams + lostInWindow) datagrams in the window "
                    + "(\(json(lossFraction * 100))% > --max-loss \(json(self.maxLoss * 100))%)"
            )
        }
    }

    private static func die(_ message: String) -> Never {
        writeLine("UDPEchoLoad: \(message)", to: STDERR_FILENO)
        terminate(1)
    }
}
