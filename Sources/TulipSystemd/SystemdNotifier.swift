#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Tells the service manager about the daemon's state (`sd_notify(3)`): `READY=1`, `STATUS=`,
/// `STOPPING=1`, `RELOADING=1`, `WATCHDOG=1`, `EXTEND_TIMEOUT_USEC=`, `ERRNO=`, and hands it
/// sockets to keep (`FDSTORE=1`, `FDSTOREREMOVE=1`; `sd_pid_notify_with_fds(3)`).
///
/// Disabled (every call a no-op) unless `NOTIFY_SOCKET` is set. A failed send is reported by the
/// return value, never thrown: the daemon keeps serving when the manager is gone.
public struct SystemdNotifier: Sendable {
    private let socketPath: String?
    private let usesProcessEnvironment: Bool

    /// A notifier for the process environment: sends with `sd_notify`.
    public init() {
        self.socketPath = ProcessEnvironment.value("NOTIFY_SOCKET")
        self.usesProcessEnvironment = true
    }

    /// A notifier for an injected environment (tests): sends to its `NOTIFY_SOCKET` directly,
    /// as `sd_notify` would, without touching the process environment.
    public init(environment: [String: String]) {
        self.socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        self.usesProcessEnvironment = false
    }

    /// Whether a notify socket is configured.
    public var isEnabled: Bool { self.socketPath != nil }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments).
    /// - Returns: `true` when the datagram was sent; `false` when disabled or the send failed.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard let path = self.socketPath else { return false }
        if self.usesProcessEnvironment {
            return system_sd_notify(unsetEnvironment: false, state) > 0
        }
        return system_send_datagram(path: path, state) == 0
    }

    /// Sends `state` with `fds` attached (`SCM_RIGHTS`); the manager keeps its own duplicates.
    /// - Returns: `true` when the datagram was sent; `false` when disabled or the send failed.
    @discardableResult
    public func notify(_ state: String, fileDescriptors fds: [CInt]) -> Bool {
        guard let path = self.socketPath else { return false }
        if self.usesProcessEnvironment {
            return system_sd_pid_notify_with_fds(state, fds) > 0
        }
        return system_send_datagram(path: path, state, fds: fds) == 0
    }

    /// `FDSTORE=1` + `FDNAME=name` with `fds`.
    ///
    /// The service manager holds the sockets across a restart and passes them back under `name`
    /// (`LISTEN_FDNAMES`). It needs
    /// `FileDescriptorStoreMax=` in the unit; without it the manager drops them.
    @discardableResult
    public func storeFileDescriptors(_ fds: [CInt], name: String) -> Bool {
        guard !fds.isEmpty else { return false }
        return self.notify("FDSTORE=1\nFDNAME=" + Self.sanitized(name), fileDescriptors: fds)
    }

    /// `FDSTOREREMOVE=1` + `FDNAME=name`: the manager closes every stored descriptor of that name.
    @discardableResult
    public func removeStoredFileDescriptors(name: String) -> Bool {
        self.notify("FDSTOREREMOVE=1\nFDNAME=" + Self.sanitized(name))
    }

    /// `READY=1`, with a `STATUS=` line when given.
    @discardableResult
    public func ready(status: String? = nil) -> Bool {
        self.notify("READY=1" + (status.map { "\nSTATUS=" + Self.sanitized($0) } ?? ""))
    }

    /// `STATUS=text` (newlines become spaces).
    @discardableResult
    public func status(_ text: String) -> Bool {
        self.notify("STATUS=" + Self.sanitized(text))
    }

    /// `STOPPING=1`, with a `STATUS=` line when given.
    @discardableResult
    public func stopping(status: String? = nil) -> Bool {
        self.notify("STOPPING=1" + (status.map { "\nSTATUS=" + Self.sanitized($0) } ?? ""))
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC now unless given).
    @discardableResult
    public func reloading(monotonicMicroseconds: UInt64? = nil) -> Bool {
        let now = monotonicMicroseconds ?? Self.monotonicMicroseconds()
        return self.notify("RELOADING=1\nMONOTONIC_USEC=\(now)")
    }

    /// `WATCHDOG=1`.
    @discardableResult
    public func watchdog() -> Bool {
        self.notify("WATCHDOG=1")
    }

    /// `EXTEND_TIMEOUT_USEC=`: asks for that much more time for the current start-up or stop.
    @discardableResult
    public func extendTimeout(microseconds: UInt64) -> Bool {
        self.notify("EXTEND_TIMEOUT_USEC=\(microseconds)")
    }

    /// `ERRNO=code`, with a `STATUS=` line when given: why start-up failed.
    @discardableResult
    public func errno(_ code: CInt, status: String? = nil) -> Bool {
        self.notify((status.map { "STATUS=" + Self.sanitized($0) + "\n" } ?? "") + "ERRNO=\(code)")
    }

    /// CLOCK_MONOTONIC in microseconds.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    static func sanitized(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}

/// The service manager's watchdog: `WATCHDOG_USEC` for this process (`sd_watchdog_enabled(3)`).
public enum SystemdWatchdog {
    /// The interval in microseconds, or nil when the watchdog is off, for the process
    /// environment (with `sd_watchdog_enabled`).
    public static func intervalMicroseconds() -> UInt64? {
        var microseconds: UInt64 = 0
        let result = system_sd_watchdog_enabled(unsetEnvironment: false, &microseconds)
        return result > 0 && microseconds > 0 ? microseconds : nil
    }

    /// The interval for an injected environment: `WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or
    /// equals `pid` (the rules of `sd_watchdog_enabled`).
    public static func intervalMicroseconds(environment: [String: String], pid: Int32) -> UInt64? {
        guard let text = environment["WATCHDOG_USEC"], let value = UInt64(text), value > 0 else { return nil }
        if let pidText = environment["WATCHDOG_PID"] {
            guard let watched = Int32(pidText), watched == pid else { return nil }
        }
        return value
    }
}

enum ProcessEnvironment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }
}
