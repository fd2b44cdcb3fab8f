import Testing

@testable import TulipSystemd

#if canImport(Glibc)
import Glibc
#endif

struct SetupError: Error {
    var what: String
}

/// A unix datagram socket in a temp directory standing in for systemd's notify socket.
final class NotifyListener {
    let directory: String
    let path: String
    let fd: CInt

    init() throws {
        var template = Array("/tmp/tulip-notify-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SetupError(what: "mkdtemp") }
        self.directory = String(cString: made)
        self.path = self.directory + "/notify.sock"
        self.fd = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(self.path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(self.fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else { throw SetupError(what: "bind") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    var environment: [String: String] { ["NOTIFY_SOCKET": self.path] }

    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(self.fd, &buffer, buffer.count, 0)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    deinit {
        close(self.fd)
        unlink(self.path)
        rmdir(self.directory)
    }
}

struct SystemdNotifierTests {
    @Test func sendsEachStateAsOneDatagram() throws {
        let listener = try NotifyListener()
        let notifier = SystemdNotifier(environment: listener.environment)
        #expect(notifier.isEnabled)
        #expect(notifier.ready())
        #expect(listener.receive() == "READY=1")
        #expect(notifier.status("2 listeners, 0 open connections"))
        #expect(listener.receive() == "STATUS=2 listeners, 0 open connections")
        #expect(notifier.stopping())
        #expect(listener.receive() == "STOPPING=1")
        #expect(notifier.watchdog())
        #expect(listener.receive() == "WATCHDOG=1")
        #expect(notifier.reloading(monotonicMicroseconds: 1234))
        #expect(listener.receive() == "RELOADING=1\nMONOTONIC_USEC=1234")
        #expect(notifier.extendTimeout(microseconds: 5_000_000))
        #expect(listener.receive() == "EXTEND_TIMEOUT_USEC=5000000")
        #expect(notifier.errno(98, status: "listener \"echo\" could not listen"))
        #expect(listener.receive() == "STATUS=listener \"echo\" could not listen\nERRNO=98")
    }

    @Test func readyCarriesAStatusLineAndNewlinesAreFlattened() throws {
        let listener = try NotifyListener()
        let notifier = SystemdNotifier(environment: listener.environment)
        notifier.ready(status: "one\ntwo")
        #expect(listener.receive() == "READY=1\nSTATUS=one two")
    }

    @Test func isDisabledWithoutNotifySocket() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(!notifier.ready())
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": ""]).isEnabled)
    }

    @Test func aFailedSendReturnsFalseInsteadOfThrowing() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/tulip/notify.sock"])
        #expect(notifier.isEnabled)
        #expect(!notifier.ready())
        #expect(!notifier.watchdog())
    }

    @Test func watchdogIntervalFollowsWatchdogPid() {
        #expect(SystemdWatchdog.intervalMicroseconds(environment: [:], pid: 42) == nil)
        #expect(SystemdWatchdog.intervalMicroseconds(environment: ["WATCHDOG_USEC": "200000"], pid: 42) == 200_000)
        #expect(
            SystemdWatchdog.intervalMicroseconds(
                environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "42"],
                pid: 42
            ) == 200_000
        )
        #expect(
            SystemdWatchdog.intervalMicroseconds(
                environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "43"],
                pid: 42
            ) == nil
        )
        #expect(SystemdWatchdog.intervalMicroseconds(environment: ["WATCHDOG_USEC": "0"], pid: 42) == nil)
        #expect(SystemdWatchdog.intervalMicroseconds(environment: ["WATCHDOG_USEC": "soon"], pid: 42) == nil)
    }
}

struct ListenFileDescriptorsTests {
    @Test func parsesNamedDescriptorsForThisPid() throws {
        let fds = try ListenFileDescriptors.parse(
            environment: ["LISTEN_PID": "42", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "echo:echo-unix:echo-udp"],
            pid: 42
        )
        #expect(
            fds == [
                ListenFileDescriptor(fd: 3, name: "echo"),
                ListenFileDescriptor(fd: 4, name: "echo-unix"),
                ListenFileDescriptor(fd: 5, name: "echo-udp"),
            ]
        )
    }

    @Test func anotherProcessesDescriptorsAreNotOurs() throws {
        #expect(try ListenFileDescriptors.parse(environment: ["LISTEN_PID": "41", "LISTEN_FDS": "1"], pid: 42).isEmpty)
        #expect(try ListenFileDescriptors.parse(environment: ["LISTEN_FDS": "1"], pid: 42).isEmpty)
        #expect(try ListenFileDescriptors.parse(environment: [:], pid: 42).isEmpty)
    }

    @Test func missingNamesAreUnknown() throws {
        let fds = try ListenFileDescriptors.parse(environment: ["LISTEN_PID": "42", "LISTEN_FDS": "2"], pid: 42)
        #expect(fds.map(\.name) == ["unknown", "unknown"])
        #expect(fds.map(\.fd) == [3, 4])
    }

    @Test(arguments: ["echo", "echo:udp:extra", ""])
    func aNameCountMismatchIsAnError(names: String) {
        #expect(throws: ListenFileDescriptors.ParseError.self) {
            try ListenFileDescriptors.parse(
                environment: ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": names],
                pid: 42
            )
        }
    }

    @Test func aBadCountIsAnError() {
        #expect(throws: ListenFileDescriptors.ParseError.self) {
            try ListenFileDescriptors.parse(environment: ["LISTEN_PID": "42", "LISTEN_FDS": "many"], pid: 42)
        }
    }

    @Test func zeroDescriptors() throws {
        #expect(try ListenFileDescriptors.parse(environment: ["LISTEN_PID": "42", "LISTEN_FDS": "0"], pid: 42).isEmpty)
    }

    /// STYLE §4.9: the link works, and outside socket activation nothing was passed.
    @Test func libsystemdLinksAndNothingIsPassedOutsideActivation() {
        #expect(ListenFileDescriptors.count() == 0)
    }

    @Test func socketKindReadsTypeAndFamily() throws {
        let stream = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
        let datagram = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue), 0)
        defer {
            close(stream)
            close(datagram)
        }
        #expect(try SocketKind(fd: stream) == SocketKind(family: .inet, type: .stream))
        #expect(try SocketKind(fd: datagram) == SocketKind(family: .unix, type: .datagram))
        #expect("\(try SocketKind(fd: datagram))" == "unix datagram")
        #expect(throws: ListenFileDescriptors.ParseError.self) { try SocketKind(fd: 0x7fff_0000) }
    }
}
