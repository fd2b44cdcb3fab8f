import NIOCore

// The idle timeout of ``ConnectionLimits/idleTimeout``: one scheduled check per connection that
// re-arms itself for `lastActivity + idleTimeout` when it finds traffic, so that the read and
// write paths only stamp a time and never touch a timer.
extension ChannelTransport {
    /// Records that bytes moved; free when the server has no idle timeout.
    @inline(__always)
    func noteActivity() {
        if self.idleTimeout != nil { self.lastActivity = .now() }
    }

    func startIdleTimer() {
        guard let idleTimeout = self.idleTimeout else { return }
        self.lastActivity = .now()
        self.scheduleIdleCheck(at: self.lastActivity + idleTimeout)
    }

    func stopIdleTimer() {
        self.idleCheck?.cancel()
        self.idleCheck = nil
    }

    private func scheduleIdleCheck(at deadline: NIODeadline) {
        self.idleCheck = self.loop.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.checkIdle()
        }
    }

    private func checkIdle() {
        self.idleCheck = nil
        guard let idleTimeout = self.idleTimeout, !self.isClosing else { return }
        let now = NIODeadline.now()
        // Bytes draining to a slow reader are traffic, even with no new writes.
        let buffered = self.writeBufferSize
        if buffered > 0 && buffered != self.idleCheckWriteBuffer { self.lastActivity = now }
        self.idleCheckWriteBuffer = buffered
        let deadline = self.lastActivity + idleTimeout
        guard deadline <= now else {
            self.scheduleIdleCheck(at: deadline)
            return
        }
        // IT-3: protocol callbacks wait while the loop is stopped.
        if self.loop.isDispatching {
            self.idleTimeoutReached()
        } else {
            self.loop.callSoonInternal { [self] in self.idleTimeoutReached() }
        }
    }

    private func idleTimeoutReached() {
        guard !self.isClosing else { return }
        self.protocol?.idleTimeoutReached()
        self.close()
    }
}
