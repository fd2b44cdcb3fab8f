import Dispatch
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Shared by the load clients (`EchoLoad`, `UDPEchoLoad`) and the raw servers (`RawEchoServer`,
// `RawUDPEchoServer`): endpoint parsing, unbuffered output, the hard stop and the server CPU window.

/// `HOST:PORT`, with `[v6]:PORT` for IPv6 literals.
public struct HostPort: Sendable {
    public var host: String
    public var port: Int

    /// Nil unless `text` is `HOST:PORT` with a non-empty host and a port in `ports`.
    public init?(_ text: String, ports: ClosedRange<Int> = 0...65535) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            ports.contains(port)
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

/// Writes `text` and a newline straight to file descriptor `fd` (no stdio buffering to flush).
public func writeLine(_ text: String, to fd: Int32) {
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

/// Ends the process at once with `status` (libc `exit`; `ParsableCommand.exit` shadows the name).
public func terminate(_ status: Int32) -> Never {
    exit(status)
}

/// A finite Double as a JSON number, else `null`.
public func json(_ value: Double) -> String {
    value.isFinite ? "\(value)" : "null"
}

/// One JSON object on one line, from (key, JSON value) pairs in order.
public func jsonObject(_ fields: [(String, String)]) -> String {
    "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
}

/// Ends the process with status 3 after `seconds`, saying so on stderr as `PROGRAM: hard stop ...`:
/// bounded no matter what the server does.
public func armHardStop(program: String, after seconds: Double) {
    DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
        writeLine("\(program): hard stop after \(seconds) s (server stuck?)", to: STDERR_FILENO)
        terminate(3)
    }
}

/// Server CPU ticks between the window edges, and the wall time between the two reads.
public struct CPUWindow: Sendable {
    public var ticks: ProcessCPU.Ticks
    public var wall: Double
}

/// Reads another process's CPU time at the two edges of the measured window from a thread of its
/// own, off the event loops, so CPU and round trips cover the same interval.
public final class ServerCPUSampler: Sendable {
    private let result = NIOLockedValueBox<CPUWindow?>(nil)
    private let group = DispatchGroup()

    /// Starts sampling `pid` at `start` and `end` on a queue labelled `label`.
    public init(pid: Int32, start: NIODeadline, end: NIODeadline, label: String) {
        DispatchQueue(label: label).async(group: self.group) { [result] in
            sleep(until: start)
            let before = ProcessCPU.ticks(pid: pid)
            let beforeAt = NIODeadline.now()
            sleep(until: end)
            let after = ProcessCPU.ticks(pid: pid)
            let afterAt = NIODeadline.now()
            if let before, let after {
                result.withLockedValue {
                    $0 = CPUWindow(ticks: after - before, wall: Double((afterAt - beforeAt).nanoseconds) / 1e9)
                }
            }
        }
    }

    /// Waits for the second read; nil when either read failed (the server is gone).
    public func wait() -> CPUWindow? {
        self.group.wait()
        return self.result.withLockedValue { $0 }
    }

    /// The JSON fields for the window: ticks, seconds and CPU (all, and user) microseconds per one of
    /// `count` round trips, named `server_cpu_us_per_UNIT` and `server_user_us_per_UNIT`.
    public static func fields(pid: Int32, cpu: CPUWindow, count: UInt64, unit: String) -> [(String, String)] {
        let ticksPerSecond = ProcessCPU.ticksPerSecond
        let ticks = cpu.ticks.user + cpu.ticks.system
        let seconds = Double(ticks) / Double(ticksPerSecond)
        let userSeconds = Double(cpu.ticks.user) / Double(ticksPerSecond)
        return [
            ("server_pid", "\(pid)"),
            ("server_cpu_ticks", "\(ticks)"),
            ("server_user_ticks", "\(cpu.ticks.user)"),
            ("server_system_ticks", "\(cpu.ticks.system)"),
            ("clock_ticks_per_second", "\(ticksPerSecond)"),
            ("server_cpu_seconds", json(seconds)),
            ("server_cpu_sample_seconds", json(cpu.wall)),
            ("server_cpu_us_per_\(unit)", count > 0 ? json(seconds * 1e6 / Double(count)) : "null"),
            ("server_user_us_per_\(unit)", count > 0 ? json(userSeconds * 1e6 / Double(count)) : "null"),
        ]
    }
}
