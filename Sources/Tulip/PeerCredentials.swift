/// Who is at the other end of a unix stream socket (`SO_PEERCRED`): the peer process's pid, user and
/// group as they were when it connected.
///
/// A value; taken on the loop's thread when the connection is accepted.
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    /// The peer's process id.
    public var pid: Int32
    /// The peer's effective user id.
    public var uid: UInt32
    /// The peer's effective group id.
    public var gid: UInt32

    /// Makes a value.
    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// `pid=N uid=N gid=N`.
    public var description: String { "pid=\(self.pid) uid=\(self.uid) gid=\(self.gid)" }
}
