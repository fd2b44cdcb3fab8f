import Logging
import NIOCore
import Tulip
import TulipSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The daemon's side of sd_notify: STATUS= lines, the watchdog, drain progress and the fd store.
// Everything here runs on the loop thread.
extension Daemon {
    /// `N listeners, M open connections`, or `draining, M open connections`.
    func statusLine() -> String {
        let open = self.openConnections
        let connections = "\(open) open connection\(open == 1 ? "" : "s")"
        switch self.state {
        case .draining, .aborting: return "draining, \(connections)"
        default:
            let count = self.listeners.count
            return "\(count) listener\(count == 1 ? "" : "s"), \(connections)"
        }
    }

    /// A connection opened or closed: sends `STATUS=` now, or once a second has passed since the
    /// last one.
    func statusChanged() {
        guard self.state == .serving || self.state == .draining, self.statusTimer == nil else { return }
        let now = NIODeadline.now()
        if let last = self.lastStatusAt, now - last < Self.statusInterval {
            self.statusTimer = try? self.loop.callLater(Self.statusInterval - (now - last)) { [weak self] in
                guard let self else { return }
                self.statusTimer = nil
                self.sendStatus()
            }
        } else {
            self.sendStatus()
        }
    }

    private func sendStatus() {
        guard self.state == .serving || self.state == .draining else { return }
        self.lastStatusAt = .now()
        self.systemd.notifier.status(self.statusLine())
    }

    /// Pets the watchdog from the loop at half of `WATCHDOG_USEC`, so a blocked loop stops petting.
    func startWatchdog() {
        guard let microseconds = self.systemd.watchdogMicroseconds, self.systemd.notifier.isEnabled else { return }
        let half = TimeAmount.microseconds(Int64(clamping: max(microseconds / 2, 1)))
        self.logger.debug("watchdog enabled", metadata: ["interval_usec": "\(microseconds)"])
        self.petWatchdog(every: half)
    }

    private func petWatchdog(every interval: TimeAmount) {
        self.systemd.notifier.watchdog()
        self.watchdogTimer = try? self.loop.callLater(interval) { [weak self] in
            self?.petWatchdog(every: interval)
        }
    }

    /// While a drain closes connections, asks systemd for more stop time.
    func scheduleDrainProgressCheck() {
        self.drainTimer = try? self.loop.callLater(Self.drainProgressInterval) { [weak self] in
            guard let self, self.state == .draining || self.state == .aborting else { return }
            let open = self.openConnections
            if open > 0, open < self.drainOpenConnections {
                self.systemd.notifier.extendTimeout(
                    microseconds: UInt64(Self.drainExtension.nanoseconds / 1000)
                )
            }
            self.drainOpenConnections = open
            self.scheduleDrainProgressCheck()
        }
    }

    func cancelSystemdTimers() {
        for timer in [self.statusTimer, self.watchdogTimer, self.drainTimer] { timer?.cancel() }
        self.statusTimer = nil
        self.watchdogTimer = nil
        self.drainTimer = nil
    }

    // MARK: - fd store

    /// Sends the listener's sockets to the service manager's fd store.
    ///
    /// `FDSTORE=1` + `FDNAME=<listener>`: the next start gets them back by name, so a restart
    /// refuses no connection. Only with a notify socket, never for pipes or sockets systemd already holds.
    /// A unix listener whose socket is stored leaves its socket file in place when it stops.
    func storeSockets(of listener: RunningListener) {
        guard self.systemd.notifier.isEnabled, !listener.isHeldByServiceManager else { return }
        let fds: [CInt]
        do {
            fds = try listener.duplicateSockets()
        } catch {
            self.logger.warning(
                "cannot store the listener's sockets with systemd",
                metadata: ["listener": "\(listener.name)", "error": "\(error)"]
            )
            return
        }
        guard !fds.isEmpty else { return }
        defer { for fd in fds { close(fd) } }
        if self.systemd.notifier.storeFileDescriptors(fds, name: listener.name) {
            listener.markHeldByServiceManager()
            self.logger.debug(
                "sockets stored with systemd",
                metadata: ["listener": "\(listener.name)", "count": "\(fds.count)"]
            )
        } else {
            self.logger.warning(
                "systemd did not take the listener's sockets (FDSTORE=1)",
                metadata: ["listener": "\(listener.name)"]
            )
        }
    }

    /// `FDSTOREREMOVE=1` for a listener that is gone or moved to another address.
    func removeStoredSockets(named name: String) {
        guard self.systemd.notifier.isEnabled else { return }
        self.systemd.notifier.removeStoredFileDescriptors(name: name)
    }
}
