import TulipSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the service manager gave the daemon: passed sockets, a notify socket, a watchdog
/// interval (ARCHITECTURE §5, lifecycle steps 2 and 3).
public struct DaemonSystemd: Sendable {
    /// Sockets passed by socket activation, matched to listeners by name.
    public var passedSockets: [ListenFileDescriptor]
    /// Where `READY=1`, `STATUS=`, `STOPPING=1` and `WATCHDOG=1` go; disabled without `NOTIFY_SOCKET`.
    public var notifier: SystemdNotifier
    /// `WATCHDOG_USEC` for this process, or nil when the watchdog is off.
    public var watchdogMicroseconds: UInt64?

    public init(
        passedSockets: [ListenFileDescriptor] = [],
        notifier: SystemdNotifier = SystemdNotifier(environment: [:]),
        watchdogMicroseconds: UInt64? = nil
    ) {
        self.passedSockets = passedSockets
        self.notifier = notifier
        self.watchdogMicroseconds = watchdogMicroseconds
    }

    /// Nothing from a service manager: every listener binds, nothing is notified.
    public static let none = DaemonSystemd()

    /// From the process environment; the `LISTEN_*` variables are consumed (unset).
    /// - Throws: ``DaemonStartupError`` when `LISTEN_FDS`/`LISTEN_FDNAMES` are malformed.
    public static func fromProcessEnvironment() throws -> DaemonSystemd {
        let passed: [ListenFileDescriptor]
        do {
            passed = try ListenFileDescriptors.fromEnvironment()
        } catch {
            throw DaemonStartupError(listener: "-", address: "LISTEN_FDS", reason: "\(error)")
        }
        return DaemonSystemd(
            passedSockets: passed,
            notifier: SystemdNotifier(),
            watchdogMicroseconds: SystemdWatchdog.intervalMicroseconds()
        )
    }
}

extension DaemonSystemd {
    /// Tells the service manager (when `NOTIFY_SOCKET` is set) why start-up failed before a
    /// daemon existed, for example a configuration error: `STATUS=` and `ERRNO=`.
    public static func notifyStartupFailure(errno code: Int32, status: String) {
        SystemdNotifier().errno(code, status: status)
    }
}

extension ListenerEndpoint {
    /// The socket a passed descriptor must be to serve this listener; nil for pipes.
    var expectedSocketKind: SocketKind? {
        switch self {
        case .tcp: SocketKind(family: .inet, type: .stream)
        case .unix: SocketKind(family: .unix, type: .stream)
        case .udp: SocketKind(family: .inet, type: .datagram)
        case .unixDatagram: SocketKind(family: .unix, type: .datagram)
        case .pipe: nil
        }
    }
}

extension SocketKind {
    /// Whether this socket can serve a listener that expects `expected` (inet6 counts as inet).
    func matches(_ expected: SocketKind) -> Bool {
        guard self.type == expected.type else { return false }
        switch (self.family, expected.family) {
        case (.inet, .inet), (.inet6, .inet), (.inet6, .inet6), (.unix, .unix): return true
        default: return false
        }
    }
}
