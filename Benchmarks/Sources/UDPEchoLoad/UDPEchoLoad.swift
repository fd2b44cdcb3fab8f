import ArgumentParser
import BenchSupport
import Dispatch
import NIOConcurrencyHelpers
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
        guard HostPort(self.udp) != nil else { throw ValidationError("--udp must be HOST:PORT, got '\(self.udp)'") }
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
        let target = HostPort(self.udp)!

        let begin = NIODeadline.now()
        let windowStart = begin + .nanoseconds(Int64(self.warmup * 1e9))
        let window = MeasurementWindow(start: windowStart, end: windowStart + .nanoseconds(Int64(self.duration * 1e9)))

        // Bounded no matter what the server does.
        let hardStop = self.warmup + self.duration + 10
        DispatchQueue.global().asyncAfter(deadline: .now() + hardStop) {
            writeLine("UDPEchoLoad: hard stop after \(hardStop) s (server stuck?)", to: STDERR_FILENO)
            terminate(3)
        }

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
        let cpuWindow = NIOLockedValueBox<CPUWindow?>(nil)
        let sampler = DispatchGroup()
        if let pid = self.serverPid {
            DispatchQueue(label: "UDPEchoLoad.cpu").async(group: sampler) {
                sleep(until: window.start)
                let before = ProcessCPU.ticks(pid: pid)
                let beforeAt = NIODeadline.now()
                sleep(until: window.end)
                let after = ProcessCPU.ticks(pid: pid)
                let afterAt = NIODeadline.now()
                if let before, let after {
                    cpuWindow.withLockedValue {
                        $0 = CPUWindow(ticks: after - before, wall: Double((afterAt - beforeAt).nanoseconds) / 1e9)
                    }
                }
            }
        }

        let counts: [SocketCount]
        do {
            counts = try EventLoopFuture.whenAllSucceed(promises.map(\.futureResult), on: group.any()).wait()
        } catch {
            Self.die("\(error)")
        }
        sampler.wait()
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
            guard let cpu = cpuWindow.withLockedValue({ $0 }) else {
                Self.die("could not read /proc/\(pid)/stat at the window edges (server gone?)")
            }
            let ticksPerSecond = ProcessCPU.ticksPerSecond
            let ticks = cpu.ticks.user + cpu.ticks.system
            let seconds = Double(ticks) / Double(ticksPerSecond)
            let userSeconds = Double(cpu.ticks.user) / Double(ticksPerSecond)
            fields += [
                ("server_pid", "\(pid)"),
                ("server_cpu_ticks", "\(ticks)"),
                ("server_user_ticks", "\(cpu.ticks.user)"),
                ("server_system_ticks", "\(cpu.ticks.system)"),
                ("clock_ticks_per_second", "\(ticksPerSecond)"),
                ("server_cpu_seconds", json(seconds)),
                ("server_cpu_sample_seconds", json(cpu.wall)),
                ("server_cpu_us_per_datagram", datagrams > 0 ? json(seconds * 1e6 / Double(datagrams)) : "null"),
                ("server_user_us_per_datagram", datagrams > 0 ? json(userSeconds * 1e6 / Double(datagrams)) : "null"),
            ]
        }
        writeLine("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}", to: STDOUT_FILENO)
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

/// Server CPU ticks between the window edges, and the wall time between the two reads.
private struct CPUWindow: Sendable {
    var ticks: ProcessCPU.Ticks
    var wall: Double
}

/// `HOST:PORT`, with `[v6]:PORT` for IPv6 literals.
struct HostPort {
    var host: String
    var port: Int

    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }
}

/// Ends the process at once with `status` (libc `exit`; `ParsableCommand.exit` shadows the name).
private func terminate(_ status: Int32) -> Never {
    exit(status)
}

/// A finite Double as a JSON number.
private func json(_ value: Double) -> String {
    value.isFinite ? "\(value)" : "null"
}

/// Writes `text` and a newline straight to file descriptor `fd` (no stdio buffering to flush).
func writeLine(_ text: String, to fd: Int32) {
    var line = text + "\n"
    line.withUTF8 { bytes in
        var rest = UnsafeRawBufferPointer(bytes)
        while !rest.isEmpty {
            let written = write(fd, rest.baseAddress, rest.count)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[written...])
        }
    }
}
