/// A listener could not be set up: the daemon exits with status 1 (ARCHITECTURE §5).
public struct DaemonStartupError: Error, Sendable, CustomStringConvertible {
    /// The listener's name.
    public var listener: String
    /// The address it tried (`127.0.0.1:7007`, a unix path).
    public var address: String
    /// What went wrong.
    public var reason: String
    /// The `errno` behind it, when there is one (sent to systemd as `ERRNO=`).
    public var errno: Int32? = nil

    public var description: String {
        "listener \"\(self.listener)\" could not listen on \(self.address): \(self.reason)"
    }
}
