import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Shared by the load clients (`EchoLoad`, `UDPEchoLoad`).
///
/// CPU time of another process, read from Linux's `/proc/PID/stat`.
public enum ProcessCPU {
    /// Clock ticks per second, the unit of `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`).
    public static var ticksPerSecond: Int {
        Int(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// User and system time of every thread of a process, in clock ticks.
    public struct Ticks: Sendable {
        /// Field 14, `utime`.
        public var user: UInt64
        /// Field 15, `stime`.
        public var system: UInt64

        public init(user: UInt64, system: UInt64) {
            self.user = user
            self.system = system
        }

        public static func - (lhs: Ticks, rhs: Ticks) -> Ticks {
            Ticks(user: lhs.user &- rhs.user, system: lhs.system &- rhs.system)
        }
    }

    /// User and system time of every thread of `pid`, from `/proc/PID/stat` fields 14 and 15.
    ///
    /// Returns nil when the file cannot be read: the process is gone, or this is not Linux.
    public static func ticks(pid: Int32) -> Ticks? {
        guard let file = fopen("/proc/\(pid)/stat", "r") else { return nil }
        defer { fclose(file) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = fread(&bytes, 1, bytes.count, file)
        let text = String(decoding: bytes[..<count], as: UTF8.self)
        // Field 2 (comm) is in parentheses and may hold spaces or ')': split after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field N is fields[N - 3].
        guard fields.count > 12, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]) else {
            return nil
        }
        return Ticks(user: utime, system: stime)
    }

    /// This process's own user plus system CPU time so far, in seconds (`getrusage(RUSAGE_SELF)`).
    public static func selfSeconds() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return user + system
    }
}

/// Blocks the calling thread until `deadline` (monotonic, as ``NIODeadline``).
public func sleep(until deadline: NIODeadline) {
    while true {
        let now = NIODeadline.now()
        if now >= deadline { return }
        let nanoseconds = (deadline - now).nanoseconds
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        nanosleep(&request, nil)
    }
}
